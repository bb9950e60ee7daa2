//! Every user-facing string of the verification pages, in one place, ready for translation:
//! a translation is another constructor like [`Strings::en`].

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Strings {
    pub lang: &'static str,
    pub enter_title: &'static str,
    pub enter_help: &'static str,
    pub code_label: &'static str,
    pub continue_button: &'static str,
    pub signin_title: &'static str,
    pub signin_help: &'static str,
    pub username_label: &'static str,
    pub password_label: &'static str,
    pub signin_button: &'static str,
    pub consent_title: &'static str,
    pub consent_asks: &'static str,
    pub consent_scopes: &'static str,
    pub consent_code_label: &'static str,
    pub consent_code_help: &'static str,
    pub consent_origin: &'static str,
    pub consent_warning_title: &'static str,
    pub consent_warning: &'static str,
    pub approve_button: &'static str,
    pub deny_button: &'static str,
    pub approved_title: &'static str,
    pub denied_title: &'static str,
    pub done_help: &'static str,
    pub signed_in_as: &'static str,
    pub sign_out: &'static str,
    pub start_again: &'static str,
    pub wrong_code: &'static str,
    pub attempts_left: &'static str,
    pub expired_code_title: &'static str,
    pub expired_code: &'static str,
    pub used_code_title: &'static str,
    pub used_code: &'static str,
    pub claimed_code: &'static str,
    pub too_many_title: &'static str,
    pub too_many: &'static str,
    pub expired_flow_title: &'static str,
    pub expired_flow: &'static str,
    pub dead_link_title: &'static str,
    pub dead_link: &'static str,
    pub bad_credentials: &'static str,
    pub session_lost_title: &'static str,
    pub session_lost: &'static str,
    pub unavailable_title: &'static str,
    pub unavailable: &'static str,
    pub just_now: &'static str,
    pub seconds_ago: &'static str,
    pub minutes_ago: &'static str,
    pub unknown_device: &'static str,
    pub scope_openid: &'static str,
    pub scope_profile: &'static str,
    pub scope_email: &'static str,
    pub scope_offline_access: &'static str,
    pub scope_other: &'static str,
}

impl Strings {
    pub fn en() -> Strings {
        Strings {
            lang: "en",
            enter_title: "Connect a device",
            enter_help: "Enter the code shown on your device.",
            code_label: "Code",
            continue_button: "Continue",
            signin_title: "Sign in",
            signin_help: "Sign in to continue connecting your device.",
            username_label: "Username",
            password_label: "Password",
            signin_button: "Sign in",
            consent_title: "Allow this device?",
            consent_asks: "wants to use your account.",
            consent_scopes: "It will be able to:",
            consent_code_label: "Code",
            consent_code_help: "Check that this is the code on your device's screen.",
            consent_origin: "Requested {ago} from {ip}",
            consent_warning_title: "Only continue if you started this yourself.",
            consent_warning: "Approve only a device that is in front of you and that you just started signing in. \
                If someone sent you this link or this code, deny: they are trying to get into your account.",
            approve_button: "Approve",
            deny_button: "Deny",
            approved_title: "Device connected",
            denied_title: "Request denied",
            done_help: "You can return to your device now.",
            signed_in_as: "Signed in as",
            sign_out: "Sign out",
            start_again: "Start again",
            wrong_code: "That code is not right. Check the code on your device and try again.",
            attempts_left: "Attempts left: {n}.",
            expired_code_title: "This code has expired",
            expired_code: "Codes last a few minutes. Start again on your device to get a new code.",
            used_code_title: "This code has already been used",
            used_code: "Each code can be approved or denied once. Start again on your device to get a new code.",
            claimed_code: "This code is being approved in another browser. Finish there, or start again on your device.",
            too_many_title: "Too many attempts",
            too_many: "For your safety, code entry is paused. Try again in {secs} seconds.",
            expired_flow_title: "This page has expired",
            expired_flow: "Too much time has passed since you started. Start again.",
            dead_link_title: "This link is no longer valid",
            dead_link: "A sign-in link works only in the first browser that opens it. Start again on your device.",
            bad_credentials: "Wrong username or password.",
            session_lost_title: "Please try again",
            session_lost: "Your session has expired, or this browser blocks cookies. Reload the page and try again.",
            unavailable_title: "Temporarily unavailable",
            unavailable: "The service is busy. Try again in a moment.",
            just_now: "just now",
            seconds_ago: "{n} seconds ago",
            minutes_ago: "{n} minutes ago",
            unknown_device: "an unknown device",
            scope_openid: "Confirm who you are",
            scope_profile: "See your name and username",
            scope_email: "See your email address",
            scope_offline_access: "Stay signed in on the device, even when you are not using it",
            scope_other: "Use: {scope}",
        }
    }

    /// A scope in words.
    pub fn scope(&self, scope: &str) -> String {
        match scope {
            "openid" => self.scope_openid.to_owned(),
            "profile" => self.scope_profile.to_owned(),
            "email" => self.scope_email.to_owned(),
            "offline_access" => self.scope_offline_access.to_owned(),
            other => self.scope_other.replace("{scope}", other),
        }
    }

    /// "2 minutes ago".
    pub fn ago(&self, secs: u64) -> String {
        match secs {
            0..5 => self.just_now.to_owned(),
            5..120 => self.seconds_ago.replace("{n}", &secs.to_string()),
            _ => self.minutes_ago.replace("{n}", &(secs / 60).to_string()),
        }
    }
}
