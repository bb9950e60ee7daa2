# devicegate's words, in English: the fallback for every other language.
#
# To translate: copy this file to <language>.ftl (de.ftl, pt.ftl, ja.ftl, ...) and translate
# the text after each "=". Keep the names before "=" and the { $variables } as they are.
# Plural forms follow Fluent (https://projectfluent.org): the categories a language has
# (one, few, many, other, ...) are listed in the Unicode CLDR plural rules; write the ones your
# language uses, and mark the last with "*". A message left out falls back to English.
# Operators can replace any message without rebuilding: see `locales_dir` in the README.

enter_title = Connect a device
enter_help = Enter the code shown on your device.
code_label = Code
continue_button = Continue
signin_title = Sign in
signin_help = Sign in to continue connecting your device.
username_label = Username
password_label = Password
signin_button = Sign in
consent_title = Allow this device?
consent_asks = wants to use your account.
consent_scopes = It will be able to:
consent_code_label = Code
consent_code_help = Check that this is the code on your device's screen.
consent_origin = Requested { $ago } from { $ip }
consent_warning_title = Only continue if you started this yourself.
consent_warning = Approve only a device that is in front of you and that you just started signing in. If someone sent you this link or this code, deny: they are trying to get into your account.
approve_button = Approve
deny_button = Deny
approved_title = Device connected
denied_title = Request denied
done_help = You can return to your device now.
signed_in_as = Signed in as
sign_out = Sign out
start_again = Start again
wrong_code = That code is not right. Check the code on your device and try again.
attempts_left = { $n ->
    [one] One attempt left.
   *[other] { $n } attempts left.
}
expired_code_title = This code has expired
expired_code = Codes last a few minutes. Start again on your device to get a new code.
used_code_title = This code has already been used
used_code = Each code can be approved or denied once. Start again on your device to get a new code.
claimed_code = This code is being approved in another browser. Finish there, or start again on your device.
too_many_title = Too many attempts
too_many = For your safety, this is paused. { $secs ->
    [one] Try again in one second.
   *[other] Try again in { $secs } seconds.
}
flow_failed = That was the fifth wrong code for this attempt, so it has ended. Check the code shown on your device and enter it again.
sign_in_first = Many wrong codes have been tried recently, so codes can only be entered after signing in. Sign in, then enter the code shown on your device.
expired_flow_title = This page has expired
expired_flow = Too much time has passed since you started. Start again.
dead_link_title = This link is no longer valid
dead_link = A sign-in link works only in the first browser that opens it. Start again on your device.
bad_credentials = Wrong username or password.
session_lost_title = Please try again
session_lost = Your session has expired, or this browser blocks cookies. Reload the page and try again.
bad_form_title = This form could not be read
bad_form = The browser sent more than this page asks for. Start again.
unavailable_title = Temporarily unavailable
unavailable = The service is busy. Try again in a moment.
continue_with = Continue with { $name }
factor_title = Second step
totp_code_label = Code from your authenticator app
totp_verify_button = Verify
totp_confirm_button = Confirm and continue
totp_enroll_button = Set up an authenticator app
totp_enroll_help = Scan this code with your authenticator app (or type the key below), then enter the six-digit code it shows.
totp_required_help = This organisation asks for a second step at sign-in. Set up an authenticator app to continue.
recovery_code_label = Or a recovery code
recovery_code_button = Use recovery code
recovery_codes_help = Save these recovery codes somewhere safe. Each works once, in place of a code from your app, if you lose it. They are shown only now.
wrong_factor = That code is not right, or was already used. Try the next one your app shows.
link_title = Set up how you sign in
link_help = Your administrator sent you this link to set up a passkey for { $name }. It works once.
link_button = Continue
link_dead = This link has expired or was already used. Ask your administrator for a new one.
devices_title = Your devices
devices_help = Devices you approved that can still use your account. Sign out one you no longer use, lost, or do not recognise.
devices_none = No device holds access to your account.
device_facts = Approved { $approved } · { $active } · from { $ip }
device_never_refreshed = not active since
device_active = last active { $date }
device_sign_out_button = Sign out this device
device_confirm = Sign out { $name }? It loses access at once, and must be approved again to sign in.
device_confirm_button = Sign out
device_keep = Keep it
device_signed_out = The device is signed out.
device_gone = That device is no longer signed in.
proximity_same_address = You are on the same connection as this device ({ $ip }).
proximity_same_network = You are on the same network as this device ({ $ip }).
proximity_elsewhere = This device is somewhere else: it asked from { $ip }, and you are at { $you }.
proximity_warning = You are not near this device. If you did not just start this on a device in front of you, deny: someone may be trying to get into your account.
# Shown when the operator put a GeoIP database in place. { $place } is place_city or a country name.
geo_device_in = This device is in { $place }.
geo_you_in = You are in { $place }.
geo_unknown = We cannot tell where you are.
# How a city and its country are written together, e.g. "Lisbon, Portugal".
place_city = { $city }, { $country }
proximity_refused = This device can only be approved from the network it is on. Go to the device and approve it from there, or deny.
confirm_code_label = The code above is the one on the device in front of me, and I want to give that device access to my account.
confirm_code_missing = This code came in a link. Check it against the device in front of you, tick the box, then approve; if it is not there, deny.
from_link_warning = This code came in a link. Only approve if the same code is on a device in front of you: approving gives that device access to your account.
passkeys_off = Passkeys are not available on this server.
passkey_button = Sign in with a passkey
passkey_or = or
passkey_failed = That passkey did not sign you in. Try again, or use another way.
passkey_factor_button = Use a passkey
passkey_factor_help = Confirm it is you with your passkey (your device's screen lock or security key).
no_script_passkeys = Passkeys need JavaScript in this browser.
account_title = Security settings
account_signin_help = Sign in to see and change how you sign in.
account_signin_button = Sign in
account_link = Security settings
account_stale = To change these settings, sign in again first.
account_reauth_button = Sign in again
passkeys_heading = Passkeys
passkeys_help = A passkey signs you in with your device's screen lock or a security key: nothing to type, and nothing a fake site can reuse.
passkeys_none = You have no passkeys yet.
passkey_name_label = Name for the new passkey
passkey_name_placeholder = e.g. work laptop
passkey_add_button = Add a passkey
passkey_added = Passkey added.
passkey_rename_button = Rename
passkey_remove_button = Remove
passkey_removed = Passkey removed.
passkey_renamed = Passkey renamed.
passkey_created = Added { $date }
passkey_used = last used { $date }
passkey_never_used = never used
passkey_synced = synced between your devices
passkey_device_bound = on one device only
passkey_add_failed = The passkey was not added. Try again.
totp_heading = Authenticator app
totp_on = One-time codes are on. { $n ->
    [0] No recovery codes left: make new ones.
    [one] One recovery code left.
   *[other] { $n } recovery codes left.
}
totp_off = One-time codes are off.
totp_enrolled = Your authenticator app is set up.
recovery_new_button = Make new recovery codes
passwords_off = Sign in with your organisation's account: password sign-in is off here.
upstream_failed_title = Sign-in did not complete
upstream_unknown = That sign-in option does not exist. Go back and choose another.
upstream_bad_state = This sign-in link has expired or was already used, or was opened in another browser. Go back to the device page and sign in again.
upstream_refused = Your organisation's sign-in did not sign you in. Go back and try again.
upstream_unreachable = Your organisation's sign-in could not be reached. Try again in a moment.
upstream_invalid = Your organisation's sign-in answered something we could not verify. Try again; if it happens again, tell your administrator.
upstream_not_allowed = This account may not approve devices here. Sign in with another account, or ask your administrator.
upstream_done_title = Signed in
upstream_done = You are signed in. Go back to the app to continue.
internal_title = Something went wrong
internal = The server could not complete this step. Try again; if it happens again, tell your administrator.
just_now = just now
seconds_ago = { $n ->
    [one] one second ago
   *[other] { $n } seconds ago
}
minutes_ago = { $n ->
    [one] one minute ago
   *[other] { $n } minutes ago
}
unknown_device = an unknown device
scope_openid = Confirm who you are
scope_profile = See your name and username
scope_email = See your email address
scope_offline_access = Stay signed in on the device, even when you are not using it
scope_other = Use: { $scope }

## The flows API's error_description, shown by custom verification UIs.

api_not_found = This sign-in does not exist or has ended. Start again on your device.
api_invalid_session = Your sign-in has ended. Sign in again.
api_not_now = This step is not possible at this point of the sign-in.
api_busy = Too many changes at once. Try again.
api_sign_on_first = Code entry is paused for anyone not signed in. Sign in first, then enter the code.
api_invalid_request = The request could not be read: { $detail }
api_unsupported = The request must be JSON.
