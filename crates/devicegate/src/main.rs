use std::process::ExitCode;

fn main() -> ExitCode {
    match devicegate::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
