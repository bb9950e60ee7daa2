//! Finds the translation files in `locales/`, so that adding a language is adding a file.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("locales");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("locales/ is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ftl"))
        .collect();
    files.sort();
    let mut out = String::from("/// Built-in translations: (language tag, Fluent source).\n");
    out.push_str("pub(crate) const BUILT_IN: &[(&str, &str)] = &[\n");
    for path in files {
        let tag = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("UTF-8 file name");
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(
            out,
            "    ({tag:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .expect("write to a String");
    }
    out.push_str("];\n");
    let target = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("locales.rs");
    std::fs::write(target, out).expect("OUT_DIR is writable");
}
