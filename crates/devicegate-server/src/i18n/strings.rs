//! Every word the pages and the flows API say to a person, in one language: the messages of
//! `locales/<lang>.ftl`. Messages without variables are formatted once, at start, into fields
//! (templates read them as `t.<name>`); messages with variables are methods taking them.
//! A message a translation leaves out falls back to English.

use std::fmt;
use std::sync::Arc;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use serde::Serialize;

/// One language's Fluent messages, English beneath.
pub(crate) struct Bundle(pub(crate) FluentBundle<Arc<FluentResource>>);

impl fmt::Debug for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bundle")
            .field("locales", &self.0.locales)
            .finish()
    }
}

impl Bundle {
    /// The message `id` with `args`; its id if no resource has it (a test keeps English whole).
    pub(crate) fn format(&self, id: &str, args: Option<&FluentArgs>) -> String {
        let Some(pattern) = self.0.get_message(id).and_then(|m| m.value()) else {
            return id.to_owned();
        };
        let mut errors = Vec::new();
        let text = self
            .0
            .format_pattern(pattern, args, &mut errors)
            .into_owned();
        if !errors.is_empty() {
            tracing::warn!(
                message = id,
                ?errors,
                "a translation does not format cleanly"
            );
        }
        text
    }
}

macro_rules! strings {
    (plain { $($p:ident),* $(,)? } with_args { $($f:ident($($a:ident),*)),* $(,)? }) => {
        /// The person's language's words; see the module documentation.
        #[derive(Debug, Serialize)]
        pub struct Strings {
            /// The language tag, for `<html lang>`.
            pub lang: String,
            $(pub $p: String,)*
            #[serde(skip)]
            bundle: Bundle,
        }

        impl Strings {
            pub(crate) fn new(lang: String, bundle: Bundle) -> Strings {
                Strings { $($p: bundle.format(stringify!($p), None),)* lang, bundle }
            }

            $(pub fn $f<'a>(&self, $($a: impl Into<FluentValue<'a>>),*) -> String {
                let mut args = FluentArgs::new();
                $(args.set(stringify!($a), $a);)*
                self.bundle.format(stringify!($f), Some(&args))
            })*

            /// Every message, with the variables it takes.
            pub(crate) const MESSAGES: &[(&str, &[&str])] = &[
                $((stringify!($p), &[]),)*
                $((stringify!($f), &[$(stringify!($a)),*]),)*
            ];
        }
    };
}

strings! {
    plain {
        enter_title,
        enter_help,
        code_label,
        continue_button,
        signin_title,
        signin_help,
        username_label,
        password_label,
        signin_button,
        consent_title,
        consent_asks,
        consent_scopes,
        consent_code_label,
        consent_code_help,
        consent_warning_title,
        consent_warning,
        approve_button,
        deny_button,
        approved_title,
        denied_title,
        done_help,
        signed_in_as,
        sign_out,
        start_again,
        wrong_code,
        expired_code_title,
        expired_code,
        used_code_title,
        used_code,
        claimed_code,
        too_many_title,
        flow_failed,
        sign_in_first,
        expired_flow_title,
        expired_flow,
        dead_link_title,
        dead_link,
        bad_credentials,
        session_lost_title,
        session_lost,
        bad_form_title,
        bad_form,
        unavailable_title,
        unavailable,
        factor_title,
        totp_code_label,
        totp_verify_button,
        totp_confirm_button,
        totp_enroll_button,
        totp_enroll_help,
        totp_required_help,
        recovery_code_label,
        recovery_code_button,
        recovery_codes_help,
        wrong_factor,
        link_title,
        link_button,
        link_dead,
        devices_title,
        devices_help,
        devices_none,
        device_never_refreshed,
        device_sign_out_button,
        device_confirm_button,
        device_keep,
        device_signed_out,
        device_gone,
        proximity_warning,
        geo_unknown,
        proximity_refused,
        confirm_code_label,
        confirm_code_missing,
        from_link_warning,
        passkeys_off,
        passkey_button,
        passkey_or,
        passkey_failed,
        passkey_factor_button,
        passkey_factor_help,
        no_script_passkeys,
        account_title,
        account_signin_help,
        account_signin_button,
        account_link,
        account_stale,
        account_reauth_button,
        passkeys_heading,
        passkeys_help,
        passkeys_none,
        passkey_name_label,
        passkey_name_placeholder,
        passkey_add_button,
        passkey_added,
        passkey_rename_button,
        passkey_remove_button,
        passkey_removed,
        passkey_renamed,
        passkey_never_used,
        passkey_synced,
        passkey_device_bound,
        passkey_add_failed,
        totp_heading,
        totp_off,
        totp_enrolled,
        recovery_new_button,
        passwords_off,
        upstream_failed_title,
        upstream_unknown,
        upstream_bad_state,
        upstream_refused,
        upstream_unreachable,
        upstream_invalid,
        upstream_not_allowed,
        upstream_done_title,
        upstream_done,
        internal_title,
        internal,
        just_now,
        unknown_device,
        scope_openid,
        scope_profile,
        scope_email,
        scope_offline_access,
        api_not_found,
        api_invalid_session,
        api_not_now,
        api_busy,
        api_sign_on_first,
        api_unsupported
    }
    with_args {
        consent_origin(ago, ip),
        attempts_left(n),
        too_many(secs),
        continue_with(name),
        link_help(name),
        device_facts(approved, active, ip),
        device_active(date),
        device_confirm(name),
        proximity_same_address(ip),
        proximity_same_network(ip),
        proximity_elsewhere(ip, you),
        geo_device_in(place),
        geo_you_in(place),
        place_city(city, country),
        passkey_created(date),
        passkey_used(date),
        totp_on(n),
        seconds_ago(n),
        minutes_ago(n),
        scope_other(scope),
        api_invalid_request(detail)
    }
}

impl Strings {
    /// Two sentences as one text: a space between them, none after a full-width full stop
    /// (Japanese and Chinese write sentences on without one).
    pub fn then(&self, first: &str, second: &str) -> String {
        let gap = match first.chars().last() {
            Some('。' | '！' | '？' | '：') => "",
            _ => " ",
        };
        format!("{first}{gap}{second}")
    }

    /// A scope in words.
    pub fn scope(&self, scope: &str) -> String {
        match scope {
            "openid" => self.scope_openid.clone(),
            "profile" => self.scope_profile.clone(),
            "email" => self.scope_email.clone(),
            "offline_access" => self.scope_offline_access.clone(),
            other => self.scope_other(other),
        }
    }

    /// A place in words: "Lisbon, Portugal", or the country alone.
    pub fn place(&self, p: &devicegate_proto::Place) -> Option<String> {
        match (&p.city, &p.country) {
            (Some(city), Some(country)) => Some(self.place_city(city.as_str(), country.as_str())),
            (None, Some(country)) => Some(country.clone()),
            (Some(city), None) => Some(city.clone()),
            (None, None) => None,
        }
    }

    /// An API error that no step of a flow described, by its code; `detail` (English, for
    /// developers) kept where it says what was wrong with the request.
    pub fn describe(&self, code: devicegate_proto::ErrorCode, detail: Option<&str>) -> String {
        use devicegate_proto::ErrorCode as C;
        match code {
            C::NotFound => self.api_not_found.clone(),
            C::ServerError => self.internal.clone(),
            C::TemporarilyUnavailable => self.unavailable.clone(),
            C::UnsupportedMediaType => self.api_unsupported.clone(),
            C::InvalidSession => self.api_invalid_session.clone(),
            C::InvalidAction => self.api_not_now.clone(),
            _ => self.api_invalid_request(detail.unwrap_or_default()),
        }
    }

    /// "2 minutes ago".
    pub fn ago(&self, secs: u64) -> String {
        match secs {
            0..5 => self.just_now.clone(),
            5..120 => self.seconds_ago(secs),
            _ => self.minutes_ago(secs / 60),
        }
    }
}
