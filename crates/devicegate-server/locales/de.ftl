# devicegate's words, in German (Deutsch). Formal address ("Sie").
# Terms: Gerät (device), Code, anmelden/abmelden (sign in/out), zulassen/ablehnen (approve/deny),
# Passkey (der Passkey), Authenticator-App, Wiederherstellungscode (recovery code).

enter_title = Gerät verbinden
enter_help = Geben Sie den Code ein, der auf Ihrem Gerät angezeigt wird.
code_label = Code
continue_button = Weiter
signin_title = Anmelden
signin_help = Melden Sie sich an, um mit dem Verbinden Ihres Geräts fortzufahren.
username_label = Benutzername
password_label = Passwort
signin_button = Anmelden
consent_title = Dieses Gerät zulassen?
consent_asks = möchte Ihr Konto verwenden.
consent_scopes = Das Gerät kann dann:
consent_code_label = Code
consent_code_help = Prüfen Sie, ob dieser Code auf dem Bildschirm Ihres Geräts angezeigt wird.
consent_origin = Angefordert { $ago } von { $ip }
consent_warning_title = Fahren Sie nur fort, wenn Sie diesen Vorgang selbst gestartet haben.
consent_warning = Lassen Sie nur ein Gerät zu, das sich vor Ihnen befindet und an dem Sie gerade selbst die Anmeldung gestartet haben. Wenn Ihnen jemand diesen Link oder diesen Code geschickt hat, wählen Sie „Ablehnen“: Diese Person versucht, sich Zugang zu Ihrem Konto zu verschaffen.
approve_button = Zulassen
deny_button = Ablehnen
approved_title = Gerät verbunden
denied_title = Anfrage abgelehnt
done_help = Sie können jetzt zu Ihrem Gerät zurückkehren.
signed_in_as = Angemeldet als
sign_out = Abmelden
start_again = Von vorn beginnen
wrong_code = Dieser Code ist nicht richtig. Prüfen Sie den Code auf Ihrem Gerät und versuchen Sie es erneut.
attempts_left = { $n ->
    [one] Noch ein Versuch übrig.
   *[other] Noch { $n } Versuche übrig.
}
expired_code_title = Dieser Code ist abgelaufen
expired_code = Codes sind nur wenige Minuten gültig. Starten Sie die Anmeldung auf Ihrem Gerät neu, um einen neuen Code zu erhalten.
used_code_title = Dieser Code wurde bereits verwendet
used_code = Jeder Code kann nur einmal verwendet werden, um ein Gerät zuzulassen oder abzulehnen. Starten Sie die Anmeldung auf Ihrem Gerät neu, um einen neuen Code zu erhalten.
claimed_code = Dieser Code wird gerade in einem anderen Browser verwendet. Schließen Sie den Vorgang dort ab oder starten Sie die Anmeldung auf Ihrem Gerät neu.
too_many_title = Zu viele Versuche
too_many = Zu Ihrer Sicherheit ist die Eingabe vorübergehend gesperrt. { $secs ->
    [one] Versuchen Sie es in einer Sekunde erneut.
   *[other] Versuchen Sie es in { $secs } Sekunden erneut.
}
flow_failed = Dies war der fünfte falsche Code, daher wurde der Vorgang beendet. Prüfen Sie den Code auf Ihrem Gerät und geben Sie ihn erneut ein.
sign_in_first = In letzter Zeit wurden viele falsche Codes eingegeben. Codes können daher nur nach der Anmeldung eingegeben werden. Melden Sie sich an und geben Sie dann den Code ein, der auf Ihrem Gerät angezeigt wird.
expired_flow_title = Diese Seite ist abgelaufen
expired_flow = Seit dem Start ist zu viel Zeit vergangen. Beginnen Sie bitte von vorn.
dead_link_title = Dieser Link ist nicht mehr gültig
dead_link = Ein Anmeldelink funktioniert nur in dem Browser, der ihn zuerst öffnet. Starten Sie die Anmeldung auf Ihrem Gerät neu.
bad_credentials = Benutzername oder Passwort ist falsch.
session_lost_title = Bitte versuchen Sie es erneut
session_lost = Ihre Sitzung ist abgelaufen oder dieser Browser blockiert Cookies. Laden Sie die Seite neu und versuchen Sie es erneut.
bad_form_title = Dieses Formular konnte nicht gelesen werden
bad_form = Der Browser hat mehr Daten gesendet, als diese Seite erwartet. Beginnen Sie bitte von vorn.
unavailable_title = Vorübergehend nicht verfügbar
unavailable = Der Dienst ist ausgelastet. Versuchen Sie es gleich noch einmal.
continue_with = Weiter mit { $name }
factor_title = Zweiter Schritt
totp_code_label = Code aus Ihrer Authenticator-App
totp_verify_button = Bestätigen
totp_confirm_button = Bestätigen und weiter
totp_enroll_button = Authenticator-App einrichten
totp_enroll_help = Scannen Sie diesen QR-Code mit Ihrer Authenticator-App (oder geben Sie den Schlüssel unten ein) und geben Sie dann den sechsstelligen Code ein, den die App anzeigt.
totp_required_help = Diese Organisation verlangt bei der Anmeldung einen zweiten Schritt. Richten Sie eine Authenticator-App ein, um fortzufahren.
recovery_code_label = Oder ein Wiederherstellungscode
recovery_code_button = Wiederherstellungscode verwenden
recovery_codes_help = Bewahren Sie diese Wiederherstellungscodes an einem sicheren Ort auf. Falls Sie keinen Zugriff mehr auf Ihre App haben, können Sie jeden davon einmal anstelle eines Codes aus der App verwenden. Die Codes werden nur dieses eine Mal angezeigt.
wrong_factor = Dieser Code ist nicht richtig oder wurde bereits verwendet. Versuchen Sie es mit dem nächsten Code, den Ihre App anzeigt.
link_title = Anmeldemethode einrichten
link_help = Ihr Administrator hat Ihnen diesen Link gesendet, damit Sie einen Passkey für { $name } einrichten. Der Link funktioniert nur einmal.
link_button = Weiter
link_dead = Dieser Link ist abgelaufen oder wurde bereits verwendet. Bitten Sie Ihren Administrator um einen neuen Link.
devices_title = Ihre Geräte
devices_help = Geräte, die Sie zugelassen haben und die weiterhin auf Ihr Konto zugreifen können. Melden Sie Geräte ab, die Sie nicht mehr verwenden, verloren haben oder nicht kennen.
devices_none = Kein Gerät hat Zugriff auf Ihr Konto.
device_facts = Zugelassen am { $approved } · { $active } · von { $ip }
device_never_refreshed = seitdem nicht aktiv
device_active = zuletzt aktiv am { $date }
device_sign_out_button = Dieses Gerät abmelden
device_confirm = { $name } abmelden? Das Gerät verliert sofort den Zugriff und muss erneut zugelassen werden, um sich wieder anzumelden.
device_confirm_button = Abmelden
device_keep = Angemeldet lassen
device_signed_out = Das Gerät wurde abgemeldet.
device_gone = Dieses Gerät ist nicht mehr angemeldet.
proximity_same_address = Sie nutzen dieselbe Verbindung wie dieses Gerät ({ $ip }).
proximity_same_network = Sie befinden sich im selben Netzwerk wie dieses Gerät ({ $ip }).
proximity_elsewhere = Dieses Gerät befindet sich an einem anderen Ort: Die Anfrage kam von { $ip }, Ihre Adresse ist { $you }.
proximity_warning = Sie befinden sich nicht in der Nähe dieses Geräts. Wenn Sie nicht gerade selbst an einem Gerät vor Ihnen die Anmeldung gestartet haben, wählen Sie „Ablehnen“: Möglicherweise versucht jemand, sich Zugang zu Ihrem Konto zu verschaffen.
# Shown when the operator put a GeoIP database in place. { $place } is place_city or a country name.
# Written as "Standort: …" so that no article is needed (in der Schweiz, in den USA, ...).
geo_device_in = Standort dieses Geräts: { $place }.
geo_you_in = Ihr Standort: { $place }.
geo_unknown = Ihr Standort lässt sich nicht ermitteln.
# How a city and its country are written together, e.g. "Lissabon, Portugal".
place_city = { $city }, { $country }
proximity_refused = Dieses Gerät kann nur aus dem Netzwerk zugelassen werden, in dem es sich befindet. Gehen Sie zum Gerät und lassen Sie es von dort aus zu, oder wählen Sie „Ablehnen“.
confirm_code_label = Der obige Code wird auf dem Gerät vor mir angezeigt, und ich möchte diesem Gerät Zugriff auf mein Konto gewähren.
confirm_code_missing = Dieser Code stammt aus einem Link. Vergleichen Sie ihn mit dem Code auf dem Gerät vor Ihnen, setzen Sie das Häkchen und lassen Sie das Gerät dann zu. Wird der Code dort nicht angezeigt, wählen Sie „Ablehnen“.
from_link_warning = Dieser Code stammt aus einem Link. Lassen Sie das Gerät nur zu, wenn derselbe Code auf einem Gerät vor Ihnen angezeigt wird: Mit der Zulassung erhält dieses Gerät Zugriff auf Ihr Konto.
passkeys_off = Passkeys sind auf diesem Server nicht verfügbar.
passkey_button = Mit Passkey anmelden
passkey_or = oder
passkey_failed = Die Anmeldung mit diesem Passkey hat nicht funktioniert. Versuchen Sie es erneut oder wählen Sie eine andere Methode.
passkey_factor_button = Passkey verwenden
passkey_factor_help = Bestätigen Sie Ihre Identität mit Ihrem Passkey (Displaysperre Ihres Geräts oder Sicherheitsschlüssel).
no_script_passkeys = Für Passkeys muss JavaScript in diesem Browser aktiviert sein.
account_title = Sicherheitseinstellungen
account_signin_help = Melden Sie sich an, um Ihre Anmeldemethoden anzuzeigen und zu ändern.
account_signin_button = Anmelden
account_link = Sicherheitseinstellungen
account_stale = Melden Sie sich erneut an, um diese Einstellungen zu ändern.
account_reauth_button = Erneut anmelden
passkeys_heading = Passkeys
passkeys_help = Mit einem Passkey melden Sie sich über die Displaysperre Ihres Geräts oder einen Sicherheitsschlüssel an: Sie müssen nichts eingeben, und eine gefälschte Website kann nichts davon wiederverwenden.
passkeys_none = Sie haben noch keine Passkeys.
passkey_name_label = Name für den neuen Passkey
passkey_name_placeholder = z. B. Arbeitslaptop
passkey_add_button = Passkey hinzufügen
passkey_added = Passkey hinzugefügt.
passkey_rename_button = Umbenennen
passkey_remove_button = Entfernen
passkey_removed = Passkey entfernt.
passkey_renamed = Passkey umbenannt.
passkey_created = Hinzugefügt am { $date }
passkey_used = zuletzt verwendet am { $date }
passkey_never_used = nie verwendet
passkey_synced = zwischen Ihren Geräten synchronisiert
passkey_device_bound = nur auf einem Gerät
passkey_add_failed = Der Passkey wurde nicht hinzugefügt. Versuchen Sie es erneut.
totp_heading = Authenticator-App
totp_on = Einmalcodes sind aktiviert. { $n ->
    [0] Keine Wiederherstellungscodes mehr übrig: Erstellen Sie neue.
    [one] Noch ein Wiederherstellungscode übrig.
   *[other] Noch { $n } Wiederherstellungscodes übrig.
}
totp_off = Einmalcodes sind deaktiviert.
totp_enrolled = Ihre Authenticator-App ist eingerichtet.
recovery_new_button = Neue Wiederherstellungscodes erstellen
passwords_off = Melden Sie sich mit dem Konto Ihrer Organisation an: Die Anmeldung mit Passwort ist hier deaktiviert.
upstream_failed_title = Anmeldung nicht abgeschlossen
upstream_unknown = Diese Anmeldeoption gibt es nicht. Gehen Sie zurück und wählen Sie eine andere.
upstream_bad_state = Dieser Anmeldelink ist abgelaufen, wurde bereits verwendet oder in einem anderen Browser geöffnet. Kehren Sie zur Geräteseite zurück und melden Sie sich erneut an.
upstream_refused = Die Anmeldung bei Ihrer Organisation war nicht erfolgreich. Gehen Sie zurück und versuchen Sie es erneut.
upstream_unreachable = Der Anmeldedienst Ihrer Organisation ist nicht erreichbar. Versuchen Sie es gleich noch einmal.
upstream_invalid = Der Anmeldedienst Ihrer Organisation hat eine Antwort gesendet, die wir nicht überprüfen konnten. Versuchen Sie es erneut. Wenn das Problem weiterhin auftritt, wenden Sie sich an Ihren Administrator.
upstream_not_allowed = Mit diesem Konto können hier keine Geräte zugelassen werden. Melden Sie sich mit einem anderen Konto an oder wenden Sie sich an Ihren Administrator.
upstream_done_title = Angemeldet
upstream_done = Sie sind angemeldet. Kehren Sie zur App zurück, um fortzufahren.
internal_title = Etwas ist schiefgelaufen
internal = Der Server konnte diesen Schritt nicht abschließen. Versuchen Sie es erneut. Wenn das Problem weiterhin auftritt, wenden Sie sich an Ihren Administrator.
just_now = gerade eben
seconds_ago = { $n ->
    [one] vor einer Sekunde
   *[other] vor { $n } Sekunden
}
minutes_ago = { $n ->
    [one] vor einer Minute
   *[other] vor { $n } Minuten
}
# Stands in for the address after "von" in consent_origin and device_facts, hence the dative.
unknown_device = einem unbekannten Gerät
scope_openid = Ihre Identität bestätigen
scope_profile = Ihren Namen und Benutzernamen einsehen
scope_email = Ihre E-Mail-Adresse einsehen
scope_offline_access = Auf dem Gerät angemeldet bleiben, auch wenn Sie es gerade nicht verwenden
scope_other = Berechtigung „{ $scope }“ nutzen

## The flows API's error_description, shown by custom verification UIs.

api_not_found = Diese Anmeldung existiert nicht oder wurde beendet. Starten Sie die Anmeldung auf Ihrem Gerät neu.
api_invalid_session = Ihre Anmeldung ist abgelaufen. Melden Sie sich erneut an.
api_not_now = Dieser Schritt ist an dieser Stelle der Anmeldung nicht möglich.
api_busy = Zu viele gleichzeitige Änderungen. Versuchen Sie es erneut.
api_sign_on_first = Die Codeeingabe ist für nicht angemeldete Personen vorübergehend gesperrt. Melden Sie sich zuerst an und geben Sie dann den Code ein.
api_invalid_request = Die Anfrage konnte nicht gelesen werden: { $detail }
api_unsupported = Die Anfrage muss im JSON-Format sein.
