//! The C entry points PAM calls (`pam_sm_authenticate`, `pam_sm_setcred`), through
//! `pam-bindings`, which catches panics so that none crosses into the calling process.

use std::ffi::CStr;
use std::path::PathBuf;

use pam::constants::{PAM_ERROR_MSG, PAM_PROMPT_ECHO_OFF, PAM_TEXT_INFO, PamFlag, PamResultCode};
use pam::conv::Conv;
use pam::module::{PamHandle, PamHooks};

use crate::{Config, Conversation, Refusal, config};

struct PamDevicegate;
pam::pam_hooks!(PamDevicegate);

impl PamHooks for PamDevicegate {
    fn sm_authenticate(pamh: &mut PamHandle, args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        let path = args
            .iter()
            .filter_map(|a| a.to_str().ok())
            .find_map(|a| a.strip_prefix("config="))
            .map_or_else(|| PathBuf::from(config::DEFAULT_PATH), PathBuf::from);
        let account = match pamh.get_user(None) {
            Ok(u) => u,
            Err(e) => {
                log(&format!("no user name: {e:?}"));
                return e;
            }
        };
        // Nothing is asked of the issuer for an account this host does not have: a stranger
        // cycling names would otherwise spend the host's share of device codes.
        let Some(uid) = uid_of(&account) else {
            log(&format!("{account}: no such account"));
            return PamResultCode::PAM_USER_UNKNOWN;
        };
        let cfg = match Config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                log(&format!("{e}"));
                say(
                    pamh,
                    PAM_ERROR_MSG,
                    "Device sign-in is not configured correctly; see the system log.",
                );
                return PamResultCode::PAM_AUTHINFO_UNAVAIL;
            }
        };
        // root (or any uid 0) only through an explicit entry of the user map.
        if uid == 0 && cfg.user_map_file.is_none() {
            log(&format!("{account}: uid 0 needs a user_map_file entry"));
            say(
                pamh,
                PAM_ERROR_MSG,
                "Device sign-in is not allowed for this account.",
            );
            return PamResultCode::PAM_AUTH_ERR;
        }
        let outcome = {
            let mut conv = PamConv(pamh);
            crate::authenticate(&cfg, &account, &mut conv)
        };
        match outcome {
            Ok(who) => {
                log(&format!("{account}: signed in, approved as {who}"));
                PamResultCode::PAM_SUCCESS
            }
            Err(refusal) => {
                log(&format!("{account}: refused: {}", refusal.for_log()));
                say(pamh, PAM_ERROR_MSG, &format!("Sign-in refused: {refusal}."));
                match refusal {
                    Refusal::Config(_) | Refusal::Unreachable(_) => {
                        PamResultCode::PAM_AUTHINFO_UNAVAIL
                    }
                    _ => PamResultCode::PAM_AUTH_ERR,
                }
            }
        }
    }

    fn sm_setcred(_pamh: &mut PamHandle, _args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        PamResultCode::PAM_SUCCESS
    }
}

/// The PAM conversation as [`Conversation`].
struct PamConv<'a>(&'a PamHandle);

impl Conversation for PamConv<'_> {
    fn info(&mut self, text: &str) {
        say(self.0, PAM_TEXT_INFO, text);
    }

    fn prompt(&mut self, text: &str) {
        say(self.0, PAM_PROMPT_ECHO_OFF, text);
    }
}

/// The account's uid, if this host has the account (`getpwnam_r`).
fn uid_of(account: &str) -> Option<u32> {
    let name = std::ffi::CString::new(account).ok()?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives the use of `pwd`.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    (rc == 0 && !found.is_null()).then_some(pwd.pw_uid)
}

/// One message through the application's conversation; nothing if it has none.
fn say(pamh: &PamHandle, style: pam::constants::PamMessageStyle, text: &str) {
    if let Ok(Some(conv)) = pamh.get_item::<Conv>() {
        let _ = conv.send(style, text);
    }
}

/// One line to syslog (authpriv), as every PAM module does; nothing if there is no syslog.
fn log(line: &str) {
    let formatter = syslog::Formatter3164 {
        facility: syslog::Facility::LOG_AUTHPRIV,
        hostname: None,
        process: "pam_devicegate".into(),
        pid: std::process::id(),
    };
    if let Ok(mut writer) = syslog::unix(formatter) {
        let _ = writer.info(line);
    }
}
