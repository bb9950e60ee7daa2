# devicegate's words in French (fr). Translated from en.ftl; a message left out falls back to English.
# Terms: device = appareil, passkey = clé d'accès, sign in = se connecter / connexion,
# approve / deny = approuver / refuser, authenticator app = application d'authentification,
# recovery code = code de récupération.

enter_title = Connecter un appareil
enter_help = Saisissez le code affiché sur votre appareil.
code_label = Code
continue_button = Continuer
signin_title = Connexion
signin_help = Connectez-vous pour poursuivre la connexion de votre appareil.
username_label = Nom d'utilisateur
password_label = Mot de passe
signin_button = Se connecter
consent_title = Approuver cet appareil ?
consent_asks = souhaite utiliser votre compte.
consent_scopes = Il pourra :
consent_code_label = Code
consent_code_help = Vérifiez qu'il s'agit bien du code affiché sur l'écran de votre appareil.
consent_origin = Demande envoyée { $ago } depuis { $ip }
consent_warning_title = Ne continuez que si c'est vous qui avez lancé cette demande.
consent_warning = N'approuvez qu'un appareil qui se trouve devant vous et sur lequel vous venez de lancer la connexion. Si quelqu'un vous a envoyé ce lien ou ce code, refusez : cette personne essaie d'accéder à votre compte.
approve_button = Approuver
deny_button = Refuser
approved_title = Appareil connecté
denied_title = Demande refusée
done_help = Vous pouvez maintenant revenir à votre appareil.
signed_in_as = Connecté en tant que
sign_out = Se déconnecter
start_again = Recommencer
wrong_code = Ce code est incorrect. Vérifiez le code affiché sur votre appareil et réessayez.
attempts_left = { $n ->
    [one] Il vous reste une tentative.
    [many] Il vous reste { $n } de tentatives.
   *[other] Il vous reste { $n } tentatives.
}
expired_code_title = Ce code a expiré
expired_code = Un code n'est valable que quelques minutes. Recommencez sur votre appareil pour obtenir un nouveau code.
used_code_title = Ce code a déjà été utilisé
used_code = Un code ne peut être approuvé ou refusé qu'une seule fois. Recommencez sur votre appareil pour obtenir un nouveau code.
claimed_code = Ce code est en cours d'approbation dans un autre navigateur. Terminez là-bas, ou recommencez sur votre appareil.
too_many_title = Trop de tentatives
too_many = Pour votre sécurité, cette action est suspendue. { $secs ->
    [one] Réessayez dans une seconde.
    [many] Réessayez dans { $secs } de secondes.
   *[other] Réessayez dans { $secs } secondes.
}
flow_failed = C'était le cinquième code incorrect : cette tentative est donc terminée. Vérifiez le code affiché sur votre appareil et saisissez-le de nouveau.
sign_in_first = De nombreux codes incorrects ont été essayés récemment : les codes ne peuvent donc être saisis qu'après connexion. Connectez-vous, puis saisissez le code affiché sur votre appareil.
expired_flow_title = Cette page a expiré
expired_flow = Trop de temps s'est écoulé depuis le début. Recommencez.
dead_link_title = Ce lien n'est plus valide
dead_link = Un lien de connexion ne fonctionne que dans le premier navigateur qui l'ouvre. Recommencez sur votre appareil.
bad_credentials = Nom d'utilisateur ou mot de passe incorrect.
session_lost_title = Veuillez réessayer
session_lost = Votre session a expiré, ou ce navigateur bloque les cookies. Actualisez la page et réessayez.
bad_form_title = Impossible de lire ce formulaire
bad_form = Le navigateur a envoyé plus d'informations que cette page n'en demande. Recommencez.
unavailable_title = Service momentanément indisponible
unavailable = Le service est surchargé. Réessayez dans un instant.
continue_with = Continuer avec { $name }
factor_title = Deuxième étape
totp_code_label = Code de votre application d'authentification
totp_verify_button = Vérifier
totp_confirm_button = Confirmer et continuer
totp_enroll_button = Configurer une application d'authentification
totp_enroll_help = Scannez ce QR code avec votre application d'authentification (ou saisissez la clé ci-dessous), puis saisissez le code à six chiffres qu'elle affiche.
totp_required_help = Cette organisation exige une deuxième étape lors de la connexion. Configurez une application d'authentification pour continuer.
recovery_code_label = Ou un code de récupération
recovery_code_button = Utiliser un code de récupération
recovery_codes_help = Conservez ces codes de récupération en lieu sûr. Si vous perdez votre application, chacun d'eux peut remplacer une seule fois un code de l'application. C'est la seule fois qu'ils sont affichés.
wrong_factor = Ce code est incorrect ou a déjà été utilisé. Essayez le prochain code affiché par votre application.
link_title = Configurer votre méthode de connexion
link_help = Votre administrateur vous a envoyé ce lien pour créer une clé d'accès pour { $name }. Il ne fonctionne qu'une seule fois.
link_button = Continuer
link_dead = Ce lien a expiré ou a déjà été utilisé. Demandez-en un nouveau à votre administrateur.
devices_title = Vos appareils
devices_help = Les appareils que vous avez approuvés et qui peuvent encore utiliser votre compte. Déconnectez tout appareil que vous n'utilisez plus, que vous avez perdu ou que vous ne reconnaissez pas.
devices_none = Aucun appareil n'a accès à votre compte.
device_facts = Approuvé le { $approved } · { $active } · depuis { $ip }
device_never_refreshed = inactif depuis l'approbation
device_active = dernière activité le { $date }
device_sign_out_button = Déconnecter cet appareil
device_confirm = Déconnecter { $name } ? L'appareil perdra immédiatement l'accès et devra être approuvé de nouveau pour se connecter.
device_confirm_button = Déconnecter
device_keep = Conserver
device_signed_out = L'appareil a été déconnecté.
device_gone = Cet appareil n'est plus connecté.
proximity_same_address = Vous utilisez la même connexion que cet appareil ({ $ip }).
proximity_same_network = Vous êtes sur le même réseau que cet appareil ({ $ip }).
proximity_elsewhere = Cet appareil se trouve ailleurs : sa demande provient de { $ip }, et vous êtes sur { $you }.
proximity_warning = Vous n'êtes pas à proximité de cet appareil. Si vous ne venez pas de lancer cette connexion sur un appareil qui se trouve devant vous, refusez : quelqu'un essaie peut-être d'accéder à votre compte.
# Shown when the operator put a GeoIP database in place. { $place } is place_city or a country name.
geo_device_in = Localisation de cet appareil : { $place }.
geo_you_in = Votre localisation : { $place }.
geo_unknown = Nous ne pouvons pas déterminer où vous vous trouvez.
# How a city and its country are written together, e.g. "Lisbonne, Portugal".
place_city = { $city }, { $country }
proximity_refused = Cet appareil ne peut être approuvé que depuis le réseau auquel il est connecté. Rendez-vous près de l'appareil et approuvez-le sur place, ou refusez.
confirm_code_label = Le code ci-dessus est celui de l'appareil qui se trouve devant moi, et je veux donner à cet appareil l'accès à mon compte.
confirm_code_missing = Ce code provient d'un lien. Comparez-le avec celui de l'appareil qui se trouve devant vous, cochez la case, puis approuvez ; s'il n'y figure pas, refusez.
from_link_warning = Ce code provient d'un lien. N'approuvez que si le même code s'affiche sur un appareil qui se trouve devant vous : approuver donne à cet appareil l'accès à votre compte.
passkeys_off = Les clés d'accès ne sont pas disponibles sur ce serveur.
passkey_button = Se connecter avec une clé d'accès
passkey_or = ou
passkey_failed = Cette clé d'accès n'a pas permis de vous connecter. Réessayez, ou utilisez une autre méthode.
passkey_factor_button = Utiliser une clé d'accès
passkey_factor_help = Confirmez votre identité avec votre clé d'accès (verrouillage de l'écran de votre appareil ou clé de sécurité).
no_script_passkeys = Pour utiliser les clés d'accès, activez JavaScript dans ce navigateur.
account_title = Paramètres de sécurité
account_signin_help = Connectez-vous pour consulter et modifier vos méthodes de connexion.
account_signin_button = Se connecter
account_link = Paramètres de sécurité
account_stale = Pour modifier ces paramètres, reconnectez-vous d'abord.
account_reauth_button = Se reconnecter
passkeys_heading = Clés d'accès
passkeys_help = Une clé d'accès vous connecte grâce au verrouillage de l'écran de votre appareil ou à une clé de sécurité : rien à saisir, et rien qu'un faux site puisse réutiliser.
passkeys_none = Vous n'avez pas encore de clé d'accès.
passkey_name_label = Nom de la nouvelle clé d'accès
passkey_name_placeholder = ex. : ordinateur portable pro
passkey_add_button = Ajouter une clé d'accès
passkey_added = Clé d'accès ajoutée.
passkey_rename_button = Renommer
passkey_remove_button = Supprimer
passkey_removed = Clé d'accès supprimée.
passkey_renamed = Clé d'accès renommée.
passkey_created = Ajoutée le { $date }
passkey_used = dernière utilisation le { $date }
passkey_never_used = jamais utilisée
passkey_synced = synchronisée sur vos appareils
passkey_device_bound = sur un seul appareil
passkey_add_failed = La clé d'accès n'a pas été ajoutée. Réessayez.
totp_heading = Application d'authentification
totp_on = Les codes à usage unique sont activés. { $n ->
    [0] Il ne vous reste aucun code de récupération : générez-en de nouveaux.
    [one] Il vous reste un code de récupération.
    [many] Il vous reste { $n } de codes de récupération.
   *[other] Il vous reste { $n } codes de récupération.
}
totp_off = Les codes à usage unique sont désactivés.
totp_enrolled = Votre application d'authentification est configurée.
recovery_new_button = Générer de nouveaux codes de récupération
passwords_off = Connectez-vous avec le compte de votre organisation : la connexion par mot de passe est désactivée ici.
upstream_failed_title = La connexion n'a pas abouti
upstream_unknown = Cette option de connexion n'existe pas. Revenez en arrière et choisissez-en une autre.
upstream_bad_state = Ce lien de connexion a expiré, a déjà été utilisé ou a été ouvert dans un autre navigateur. Revenez à la page de l'appareil et reconnectez-vous.
upstream_refused = La connexion via votre organisation n'a pas abouti. Revenez en arrière et réessayez.
upstream_unreachable = Le service de connexion de votre organisation est injoignable. Réessayez dans un instant.
upstream_invalid = Le service de connexion de votre organisation a renvoyé une réponse que nous n'avons pas pu vérifier. Réessayez ; si le problème persiste, contactez votre administrateur.
upstream_not_allowed = Ce compte n'est pas autorisé à approuver des appareils ici. Connectez-vous avec un autre compte, ou contactez votre administrateur.
upstream_done_title = Connecté
upstream_done = Vous êtes connecté. Revenez à l'application pour continuer.
internal_title = Une erreur s'est produite
internal = Le serveur n'a pas pu terminer cette étape. Réessayez ; si le problème persiste, contactez votre administrateur.
just_now = à l'instant
seconds_ago = { $n ->
    [one] il y a une seconde
    [many] il y a { $n } de secondes
   *[other] il y a { $n } secondes
}
minutes_ago = { $n ->
    [one] il y a une minute
    [many] il y a { $n } de minutes
   *[other] il y a { $n } minutes
}
unknown_device = un appareil inconnu
scope_openid = Confirmer votre identité
scope_profile = Voir votre nom et votre nom d'utilisateur
scope_email = Voir votre adresse e-mail
scope_offline_access = Rester connecté sur l'appareil, même lorsque vous ne l'utilisez pas
scope_other = Utiliser : { $scope }

## The flows API's error_description, shown by custom verification UIs.

api_not_found = Cette connexion n'existe pas ou a pris fin. Recommencez sur votre appareil.
api_invalid_session = Votre session de connexion a pris fin. Reconnectez-vous.
api_not_now = Cette étape n'est pas possible à ce stade de la connexion.
api_busy = Trop de modifications simultanées. Réessayez.
api_sign_on_first = La saisie des codes est suspendue pour les personnes non connectées. Connectez-vous d'abord, puis saisissez le code.
api_invalid_request = Impossible de lire la requête : { $detail }
api_unsupported = La requête doit être au format JSON.
