# devicegate's words in Brazilian Portuguese (pt-BR); served to every pt-* browser.
# Terms: device = dispositivo, code = código, passkey = chave de acesso, sign in = entrar / login,
# sign out (a device) = desconectar, approve / deny = aprovar / negar,
# authenticator app = app autenticador, recovery code = código de recuperação.

enter_title = Conectar um dispositivo
enter_help = Digite o código exibido no seu dispositivo.
code_label = Código
continue_button = Continuar
signin_title = Entrar
signin_help = Entre para continuar conectando seu dispositivo.
username_label = Nome de usuário
password_label = Senha
signin_button = Entrar
consent_title = Permitir este dispositivo?
consent_asks = quer usar sua conta.
consent_scopes = Ele poderá:
consent_code_label = Código
consent_code_help = Confira se este é o código exibido na tela do seu dispositivo.
consent_origin = Solicitado { $ago } a partir de { $ip }
consent_warning_title = Só continue se foi você quem iniciou isto.
consent_warning = Só aprove um dispositivo que esteja na sua frente e no qual você acabou de começar a entrar. Se alguém enviou este link ou este código para você, negue: essa pessoa está tentando invadir sua conta.
approve_button = Aprovar
deny_button = Negar
approved_title = Dispositivo conectado
denied_title = Solicitação negada
done_help = Você já pode voltar ao seu dispositivo.
signed_in_as = Você entrou como
sign_out = Sair
start_again = Começar de novo
wrong_code = Esse código não está correto. Confira o código no seu dispositivo e tente novamente.
attempts_left = { $n ->
    [one] Resta uma tentativa.
   *[other] Restam { $n } tentativas.
}
expired_code_title = Este código expirou
expired_code = Os códigos valem por poucos minutos. Comece de novo no seu dispositivo para receber um novo código.
used_code_title = Este código já foi usado
used_code = Cada código só pode ser aprovado ou negado uma vez. Comece de novo no seu dispositivo para receber um novo código.
claimed_code = Este código está sendo aprovado em outro navegador. Conclua por lá ou comece de novo no seu dispositivo.
too_many_title = Muitas tentativas
too_many = Por segurança, isto foi pausado. { $secs ->
    [one] Tente novamente em um segundo.
   *[other] Tente novamente em { $secs } segundos.
}
flow_failed = Esse foi o quinto código errado nesta tentativa, então ela foi encerrada. Confira o código exibido no seu dispositivo e digite-o novamente.
sign_in_first = Muitos códigos errados foram tentados recentemente, então só é possível digitar códigos depois de entrar. Entre e depois digite o código exibido no seu dispositivo.
expired_flow_title = Esta página expirou
expired_flow = Passou muito tempo desde que você começou. Comece de novo.
dead_link_title = Este link não é mais válido
dead_link = Um link de login só funciona no primeiro navegador que o abrir. Comece de novo no seu dispositivo.
bad_credentials = Nome de usuário ou senha incorretos.
session_lost_title = Tente novamente
session_lost = Sua sessão expirou ou este navegador bloqueia cookies. Recarregue a página e tente novamente.
bad_form_title = Não foi possível ler este formulário
bad_form = O navegador enviou mais do que esta página pede. Comece de novo.
unavailable_title = Temporariamente indisponível
unavailable = O serviço está ocupado. Tente novamente em instantes.
continue_with = Continuar com { $name }
factor_title = Segunda etapa
totp_code_label = Código do app autenticador
totp_verify_button = Verificar
totp_confirm_button = Confirmar e continuar
totp_enroll_button = Configurar um app autenticador
totp_enroll_help = Escaneie este código com seu app autenticador (ou digite a chave abaixo) e depois digite o código de seis dígitos exibido nele.
totp_required_help = Esta organização exige uma segunda etapa no login. Configure um app autenticador para continuar.
recovery_code_label = Ou um código de recuperação
recovery_code_button = Usar código de recuperação
recovery_codes_help = Guarde estes códigos de recuperação em um lugar seguro. Se você perder o app, cada um deles pode ser usado uma vez no lugar de um código do app. Eles só são mostrados agora.
wrong_factor = Esse código não está correto ou já foi usado. Tente o próximo código que o app mostrar.
link_title = Configure como você entra
link_help = Seu administrador enviou este link para você configurar uma chave de acesso para { $name }. Ele só funciona uma vez.
link_button = Continuar
link_dead = Este link expirou ou já foi usado. Peça um novo ao seu administrador.
devices_title = Seus dispositivos
devices_help = Dispositivos que você aprovou e que ainda podem usar sua conta. Desconecte os que você não usa mais, perdeu ou não reconhece.
devices_none = Nenhum dispositivo tem acesso à sua conta.
device_facts = Aprovado em { $approved } · { $active } · a partir de { $ip }
device_never_refreshed = sem atividade desde então
device_active = última atividade em { $date }
device_sign_out_button = Desconectar este dispositivo
device_confirm = Desconectar { $name }? Ele perde o acesso na hora e precisará ser aprovado de novo para entrar.
device_confirm_button = Desconectar
device_keep = Manter
device_signed_out = O dispositivo foi desconectado.
device_gone = Esse dispositivo não está mais conectado.
proximity_same_address = Você está na mesma conexão que este dispositivo ({ $ip }).
proximity_same_network = Você está na mesma rede que este dispositivo ({ $ip }).
proximity_elsewhere = Este dispositivo está em outro lugar: a solicitação veio de { $ip }, e você está em { $you }.
proximity_warning = Você não está perto deste dispositivo. Se você não acabou de iniciar isto em um dispositivo na sua frente, negue: alguém pode estar tentando invadir sua conta.
# Shown when the operator put a GeoIP database in place. { $place } is place_city or a country name.
# Written as "label: place" so country names need no article (no Brasil, na França, em Portugal).
geo_device_in = Localização deste dispositivo: { $place }.
geo_you_in = Sua localização: { $place }.
geo_unknown = Não é possível saber onde você está.
# How a city and its country are written together, e.g. "Lisboa, Portugal".
place_city = { $city }, { $country }
proximity_refused = Este dispositivo só pode ser aprovado a partir da rede em que ele está. Vá até o dispositivo e aprove por lá, ou negue.
confirm_code_label = O código acima é o mesmo do dispositivo que está na minha frente, e quero dar a esse dispositivo acesso à minha conta.
confirm_code_missing = Este código veio em um link. Compare-o com o do dispositivo na sua frente, marque a caixa e depois aprove; se o código não estiver lá, negue.
from_link_warning = Este código veio em um link. Só aprove se o mesmo código estiver em um dispositivo na sua frente: aprovar dá a esse dispositivo acesso à sua conta.
passkeys_off = As chaves de acesso não estão disponíveis neste servidor.
passkey_button = Entrar com uma chave de acesso
passkey_or = ou
passkey_failed = Não foi possível entrar com essa chave de acesso. Tente novamente ou use outra forma.
passkey_factor_button = Usar uma chave de acesso
passkey_factor_help = Confirme que é você com sua chave de acesso (o bloqueio de tela do seu dispositivo ou uma chave de segurança).
no_script_passkeys = As chaves de acesso precisam de JavaScript neste navegador.
account_title = Configurações de segurança
account_signin_help = Entre para ver e alterar suas formas de login.
account_signin_button = Entrar
account_link = Configurações de segurança
account_stale = Para alterar estas configurações, entre novamente.
account_reauth_button = Entrar novamente
passkeys_heading = Chaves de acesso
passkeys_help = Com uma chave de acesso, você entra usando o bloqueio de tela do seu dispositivo ou uma chave de segurança: não é preciso digitar nada, e nenhum site falso consegue reutilizá-la.
passkeys_none = Você ainda não tem chaves de acesso.
passkey_name_label = Nome da nova chave de acesso
passkey_name_placeholder = ex.: notebook do trabalho
passkey_add_button = Adicionar chave de acesso
passkey_added = Chave de acesso adicionada.
passkey_rename_button = Renomear
passkey_remove_button = Remover
passkey_removed = Chave de acesso removida.
passkey_renamed = Chave de acesso renomeada.
passkey_created = Adicionada em { $date }
passkey_used = último uso em { $date }
passkey_never_used = nunca usada
passkey_synced = sincronizada entre seus dispositivos
passkey_device_bound = somente em um dispositivo
passkey_add_failed = A chave de acesso não foi adicionada. Tente novamente.
totp_heading = App autenticador
totp_on = Os códigos de uso único estão ativados. { $n ->
    [0] Não há mais códigos de recuperação: gere novos.
    [one] Resta um código de recuperação.
   *[other] Restam { $n } códigos de recuperação.
}
totp_off = Os códigos de uso único estão desativados.
totp_enrolled = Seu app autenticador está configurado.
recovery_new_button = Gerar novos códigos de recuperação
passwords_off = Entre com a conta da sua organização: o login com senha está desativado aqui.
upstream_failed_title = O login não foi concluído
upstream_unknown = Essa opção de login não existe. Volte e escolha outra.
upstream_bad_state = Este link de login expirou, já foi usado ou foi aberto em outro navegador. Volte à página do dispositivo e entre novamente.
upstream_refused = Não foi possível entrar pelo login da sua organização. Volte e tente novamente.
upstream_unreachable = Não foi possível acessar o login da sua organização. Tente novamente em instantes.
upstream_invalid = O login da sua organização enviou uma resposta que não conseguimos verificar. Tente novamente; se acontecer de novo, avise seu administrador.
upstream_not_allowed = Esta conta não tem permissão para aprovar dispositivos aqui. Entre com outra conta ou fale com seu administrador.
upstream_done_title = Login concluído
upstream_done = Você entrou. Volte ao app para continuar.
internal_title = Algo deu errado
internal = O servidor não conseguiu concluir esta etapa. Tente novamente; se acontecer de novo, avise seu administrador.
just_now = agora mesmo
seconds_ago = { $n ->
    [one] há um segundo
   *[other] há { $n } segundos
}
minutes_ago = { $n ->
    [one] há um minuto
   *[other] há { $n } minutos
}
unknown_device = um dispositivo desconhecido
scope_openid = Confirmar quem você é
scope_profile = Ver seu nome e nome de usuário
scope_email = Ver seu endereço de e-mail
scope_offline_access = Manter o login no dispositivo, mesmo quando você não estiver usando
scope_other = Usar: { $scope }

## The flows API's error_description, shown by custom verification UIs.

api_not_found = Este login não existe ou foi encerrado. Comece de novo no seu dispositivo.
api_invalid_session = Sua sessão foi encerrada. Entre novamente.
api_not_now = Esta etapa não é possível neste ponto do login.
api_busy = Muitas alterações ao mesmo tempo. Tente novamente.
api_sign_on_first = A digitação de códigos está pausada para quem não entrou. Entre primeiro e depois digite o código.
api_invalid_request = Não foi possível ler a solicitação: { $detail }
api_unsupported = A solicitação precisa ser em JSON.
