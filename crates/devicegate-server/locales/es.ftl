# devicegate's words in Spanish (neutral international Spanish, "tú").
# Translated from en.ftl; a message left out here falls back to English.

enter_title = Conectar un dispositivo
enter_help = Escribe el código que aparece en tu dispositivo.
code_label = Código
continue_button = Continuar
signin_title = Iniciar sesión
signin_help = Inicia sesión para terminar de conectar tu dispositivo.
username_label = Nombre de usuario
password_label = Contraseña
signin_button = Iniciar sesión
consent_title = ¿Permitir este dispositivo?
consent_asks = quiere usar tu cuenta.
consent_scopes = Podrá:
consent_code_label = Código
consent_code_help = Comprueba que sea el código que aparece en la pantalla de tu dispositivo.
consent_origin = Solicitado { $ago } desde { $ip }
consent_warning_title = Continúa solo si fuiste tú quien inició este proceso.
consent_warning = Aprueba solo un dispositivo que tengas delante y en el que acabes de empezar a iniciar sesión. Si alguien te envió este enlace o este código, rechaza la solicitud: esa persona está intentando entrar en tu cuenta.
approve_button = Aprobar
deny_button = Rechazar
approved_title = Dispositivo conectado
denied_title = Solicitud rechazada
done_help = Ya puedes volver a tu dispositivo.
signed_in_as = Sesión iniciada como
sign_out = Cerrar sesión
start_again = Volver a empezar
wrong_code = Ese código no es correcto. Revisa el código de tu dispositivo y vuelve a intentarlo.
attempts_left = { $n ->
    [one] Te queda un intento.
   *[other] Te quedan { $n } intentos.
}
expired_code_title = Este código expiró
expired_code = Los códigos duran unos minutos. Vuelve a empezar en tu dispositivo para obtener un código nuevo.
used_code_title = Este código ya se usó
used_code = Cada código solo se puede aprobar o rechazar una vez. Vuelve a empezar en tu dispositivo para obtener un código nuevo.
claimed_code = Este código se está aprobando en otro navegador. Termina allí o vuelve a empezar en tu dispositivo.
too_many_title = Demasiados intentos
too_many = Por tu seguridad, los intentos están en pausa. { $secs ->
    [one] Vuelve a intentarlo en un segundo.
   *[other] Vuelve a intentarlo en { $secs } segundos.
}
flow_failed = Ese fue el quinto código incorrecto en este intento, así que el intento terminó. Revisa el código que aparece en tu dispositivo y vuelve a escribirlo.
sign_in_first = Hace poco se probaron muchos códigos incorrectos, así que ahora solo se pueden escribir códigos después de iniciar sesión. Inicia sesión y luego escribe el código que aparece en tu dispositivo.
expired_flow_title = Esta página expiró
expired_flow = Pasó demasiado tiempo desde que empezaste. Vuelve a empezar.
dead_link_title = Este enlace ya no es válido
dead_link = Un enlace de inicio de sesión solo funciona en el primer navegador que lo abre. Vuelve a empezar en tu dispositivo.
bad_credentials = Nombre de usuario o contraseña incorrectos.
session_lost_title = Vuelve a intentarlo
session_lost = Tu sesión expiró o este navegador bloquea las cookies. Recarga la página y vuelve a intentarlo.
bad_form_title = No se pudo leer este formulario
bad_form = El navegador envió más datos de los que pide esta página. Vuelve a empezar.
unavailable_title = No disponible temporalmente
unavailable = El servicio está ocupado. Vuelve a intentarlo en un momento.
continue_with = Continuar con { $name }
factor_title = Segundo paso
totp_code_label = Código de tu aplicación de autenticación
totp_verify_button = Verificar
totp_confirm_button = Confirmar y continuar
totp_enroll_button = Configurar una aplicación de autenticación
totp_enroll_help = Escanea este código QR con tu aplicación de autenticación (o escribe la clave que aparece abajo) y luego escribe el código de seis dígitos que te muestre.
totp_required_help = Esta organización pide un segundo paso al iniciar sesión. Configura una aplicación de autenticación para continuar.
recovery_code_label = O un código de recuperación
recovery_code_button = Usar un código de recuperación
recovery_codes_help = Guarda estos códigos de recuperación en un lugar seguro. Si pierdes tu aplicación, cada uno sirve una vez en lugar de un código de la aplicación. Solo se muestran ahora.
wrong_factor = Ese código no es correcto o ya se usó. Prueba con el siguiente que muestre tu aplicación.
link_title = Configura cómo inicias sesión
link_help = Tu administrador te envió este enlace para configurar una llave de acceso para { $name }. Solo funciona una vez.
link_button = Continuar
link_dead = Este enlace expiró o ya se usó. Pide uno nuevo a tu administrador.
devices_title = Tus dispositivos
devices_help = Dispositivos que aprobaste y que todavía pueden usar tu cuenta. Cierra la sesión de los que ya no uses, hayas perdido o no reconozcas.
devices_none = Ningún dispositivo tiene acceso a tu cuenta.
device_facts = Aprobado el { $approved } · { $active } · desde { $ip }
device_never_refreshed = sin actividad desde entonces
device_active = última actividad: { $date }
device_sign_out_button = Cerrar sesión en este dispositivo
device_confirm = ¿Cerrar la sesión de { $name }? Perderá el acceso de inmediato y habrá que aprobarlo de nuevo para que vuelva a iniciar sesión.
device_confirm_button = Cerrar sesión
device_keep = Mantener
device_signed_out = Se cerró la sesión del dispositivo.
device_gone = Ese dispositivo ya no tiene la sesión iniciada.
proximity_same_address = Estás en la misma conexión que este dispositivo ({ $ip }).
proximity_same_network = Estás en la misma red que este dispositivo ({ $ip }).
proximity_elsewhere = Este dispositivo está en otro lugar: hizo la solicitud desde { $ip } y tú estás en { $you }.
proximity_warning = No estás cerca de este dispositivo. Si no acabas de iniciar este proceso en un dispositivo que tienes delante, rechaza la solicitud: alguien podría estar intentando entrar en tu cuenta.
# Shown when the operator put a GeoIP database in place. { $place } is place_city or a country name.
geo_device_in = Este dispositivo está en { $place }.
geo_you_in = Tú estás en { $place }.
geo_unknown = No podemos saber dónde estás.
# How a city and its country are written together, e.g. "Lisboa, Portugal".
place_city = { $city }, { $country }
proximity_refused = Este dispositivo solo se puede aprobar desde la red en la que está. Ve al dispositivo y apruébalo desde allí, o rechaza la solicitud.
confirm_code_label = El código de arriba es el del dispositivo que tengo delante y quiero dar a ese dispositivo acceso a mi cuenta.
confirm_code_missing = Este código llegó en un enlace. Compáralo con el del dispositivo que tienes delante, marca la casilla y luego aprueba; si no aparece ahí, rechaza la solicitud.
from_link_warning = Este código llegó en un enlace. Aprueba solo si el mismo código aparece en un dispositivo que tienes delante: al aprobar, le das a ese dispositivo acceso a tu cuenta.
passkeys_off = Las llaves de acceso no están disponibles en este servidor.
passkey_button = Iniciar sesión con una llave de acceso
passkey_or = o
passkey_failed = No se pudo iniciar sesión con esa llave de acceso. Vuelve a intentarlo o usa otro método.
passkey_factor_button = Usar una llave de acceso
passkey_factor_help = Confirma que eres tú con tu llave de acceso (el bloqueo de pantalla de tu dispositivo o una llave de seguridad).
no_script_passkeys = Las llaves de acceso requieren JavaScript en este navegador.
account_title = Configuración de seguridad
account_signin_help = Inicia sesión para ver y cambiar cómo inicias sesión.
account_signin_button = Iniciar sesión
account_link = Configuración de seguridad
account_stale = Para cambiar esta configuración, primero vuelve a iniciar sesión.
account_reauth_button = Volver a iniciar sesión
passkeys_heading = Llaves de acceso
passkeys_help = Con una llave de acceso inicias sesión usando el bloqueo de pantalla de tu dispositivo o una llave de seguridad: no tienes que escribir nada y no hay nada que un sitio falso pueda reutilizar.
passkeys_none = Todavía no tienes llaves de acceso.
passkey_name_label = Nombre de la nueva llave de acceso
passkey_name_placeholder = p. ej., portátil del trabajo
passkey_add_button = Agregar una llave de acceso
passkey_added = Se agregó la llave de acceso.
passkey_rename_button = Cambiar nombre
passkey_remove_button = Eliminar
passkey_removed = Se eliminó la llave de acceso.
passkey_renamed = Se cambió el nombre de la llave de acceso.
passkey_created = Agregada el { $date }
passkey_used = último uso: { $date }
passkey_never_used = nunca usada
passkey_synced = sincronizada entre tus dispositivos
passkey_device_bound = solo en un dispositivo
passkey_add_failed = No se agregó la llave de acceso. Vuelve a intentarlo.
totp_heading = Aplicación de autenticación
totp_on = Los códigos de un solo uso están activados. { $n ->
    [0] No te quedan códigos de recuperación: genera otros nuevos.
    [one] Te queda un código de recuperación.
   *[other] Te quedan { $n } códigos de recuperación.
}
totp_off = Los códigos de un solo uso están desactivados.
totp_enrolled = Tu aplicación de autenticación está configurada.
recovery_new_button = Generar nuevos códigos de recuperación
passwords_off = Inicia sesión con la cuenta de tu organización: aquí el inicio de sesión con contraseña está desactivado.
upstream_failed_title = No se completó el inicio de sesión
upstream_unknown = Esa opción de inicio de sesión no existe. Vuelve atrás y elige otra.
upstream_bad_state = Este enlace de inicio de sesión expiró, ya se usó o se abrió en otro navegador. Vuelve a la página del dispositivo e inicia sesión de nuevo.
upstream_refused = No se pudo iniciar sesión con la cuenta de tu organización. Vuelve atrás e inténtalo de nuevo.
upstream_unreachable = No se pudo conectar con el inicio de sesión de tu organización. Vuelve a intentarlo en un momento.
upstream_invalid = El inicio de sesión de tu organización devolvió una respuesta que no pudimos verificar. Vuelve a intentarlo; si el problema continúa, avisa a tu administrador.
upstream_not_allowed = Esta cuenta no puede aprobar dispositivos aquí. Inicia sesión con otra cuenta o consulta a tu administrador.
upstream_done_title = Sesión iniciada
upstream_done = Iniciaste sesión. Vuelve a la aplicación para continuar.
internal_title = Algo salió mal
internal = El servidor no pudo completar este paso. Vuelve a intentarlo; si el problema continúa, avisa a tu administrador.
just_now = hace un momento
seconds_ago = { $n ->
    [one] hace un segundo
   *[other] hace { $n } segundos
}
minutes_ago = { $n ->
    [one] hace un minuto
   *[other] hace { $n } minutos
}
unknown_device = un dispositivo desconocido
scope_openid = Confirmar quién eres
scope_profile = Ver tu nombre y tu nombre de usuario
scope_email = Ver tu dirección de correo electrónico
scope_offline_access = Mantener la sesión iniciada en el dispositivo, aunque no lo estés usando
scope_other = Usar: { $scope }

## The flows API's error_description, shown by custom verification UIs.

api_not_found = Este inicio de sesión no existe o ya terminó. Vuelve a empezar en tu dispositivo.
api_invalid_session = Tu sesión terminó. Vuelve a iniciar sesión.
api_not_now = Este paso no es posible en este punto del inicio de sesión.
api_busy = Demasiados cambios a la vez. Vuelve a intentarlo.
api_sign_on_first = Por ahora, solo quien haya iniciado sesión puede escribir códigos. Inicia sesión primero y luego escribe el código.
api_invalid_request = No se pudo leer la solicitud: { $detail }
api_unsupported = La solicitud debe estar en formato JSON.
