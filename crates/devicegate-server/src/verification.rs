//! The verification flow as a service: load a flow by its capability, apply a step with
//! compare-and-swap retries, describe it. The flows API and the HTML pages both call this
//! module; neither holds flow logic of its own.

use devicegate_core::Timestamp;
use devicegate_core::flow::{Flow, FlowError, Refusal};
use devicegate_core::grant::DeviceGrant;
use devicegate_core::secret::{Secret, SecretKind, random_id};
use devicegate_core::user_code::UserCode;
use devicegate_proto::{FlowClient, FlowStatus, FlowView};
use devicegate_store::StoreError;

use crate::{AppState, now};

const CAS_ATTEMPTS: usize = 16;

/// Why a step was refused, for each front-end to render in its own format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("no such flow")]
    NotFound,
    #[error(transparent)]
    Flow(#[from] FlowError),
    #[error("wrong username or password")]
    InvalidCredentials,
    #[error("the flow changed too often concurrently")]
    Busy,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        StepError::Store(e)
    }
}

/// A flow as a person sees it: what is asked, by whom, for whom.
#[derive(Debug, Clone)]
pub struct Described {
    pub flow: Flow,
    pub grant: Option<DeviceGrant>,
    pub client_name: Option<String>,
    pub username: Option<String>,
}

impl Described {
    pub fn view(&self, flow_id: &str) -> FlowView {
        FlowView {
            id: flow_id.to_owned(),
            status: self.flow.status,
            expires_at: self.flow.expires_at.to_rfc3339(),
            client: self.grant.as_ref().map(|g| FlowClient {
                id: g.client_id.clone(),
                name: self
                    .client_name
                    .clone()
                    .unwrap_or_else(|| g.client_id.clone()),
            }),
            scopes: self.grant.as_ref().map(|g| g.scopes.to_vec()),
            user_code: self.grant.as_ref().map(|g| g.user_code.display()),
            username: self.username.clone(),
            result: self.flow.result,
        }
    }
}

/// Starts a flow; the returned secret is the flow's id and the only way to drive it.
pub async fn start(state: &AppState) -> Result<(Secret, Flow), StepError> {
    let secret = Secret::generate(SecretKind::FlowId);
    let flow = Flow::new(random_id(), secret.hash(), now(), state.settings.flow_ttl);
    state.store.create_flow(&flow).await?;
    Ok((secret, flow))
}

/// The flow behind a capability; `Expired` once its time is up.
pub async fn load(state: &AppState, flow_id: &str, now: Timestamp) -> Result<Flow, StepError> {
    let flow = match state
        .store
        .get_flow(&Secret::from_presented(flow_id).hash())
        .await
    {
        Ok(f) => f,
        Err(StoreError::NotFound) => return Err(StepError::NotFound),
        Err(e) => return Err(e.into()),
    };
    flow.ensure_live(now)?;
    Ok(flow)
}

pub async fn describe(state: &AppState, flow: Flow) -> Result<Described, StepError> {
    let grant = match &flow.grant_id {
        None => None,
        Some(id) => match state.store.get_grant(id).await {
            Ok(g) => Some(g),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        },
    };
    let client_name = match &grant {
        None => None,
        Some(g) => match state.store.get_client(&g.client_id).await {
            Ok(c) => Some(c.name),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        },
    };
    let username = match &flow.user_id {
        None => None,
        Some(id) => match state.store.get_user(id).await {
            Ok(u) => Some(u.username),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        },
    };
    Ok(Described {
        flow,
        grant,
        client_name,
        username,
    })
}

/// Stores a step's result; `Ok(false)` means another request changed the flow first.
async fn commit(
    state: &AppState,
    flow: &Flow,
    grant: Option<&DeviceGrant>,
) -> Result<bool, StepError> {
    match state.store.update_flow(flow, grant).await {
        Ok(()) => Ok(true),
        Err(StoreError::Conflict) => Ok(false),
        // The grant went (swept, or its client deleted) between our read and our write.
        Err(StoreError::NotFound) if grant.is_some() => Err(FlowError::CodeExpired.into()),
        Err(StoreError::NotFound) => Err(StepError::NotFound),
        Err(e) => Err(e.into()),
    }
}

/// A user code was typed. Codes are normalised (any case, dashes, spaces); anything that is
/// not a pending code counts as a wrong attempt against the flow's limit.
pub async fn verify_user_code(
    state: &AppState,
    flow_id: &str,
    input: &str,
) -> Result<Flow, StepError> {
    let code = UserCode::parse(input);
    for _ in 0..CAS_ATTEMPTS {
        let now = now();
        let flow = load(state, flow_id, now).await?;
        let found = match &code {
            None => None,
            Some(c) => match state.store.get_grant_by_user_code(c).await {
                Ok(g) => Some(g),
                Err(StoreError::NotFound) => None,
                Err(e) => return Err(e.into()),
            },
        };
        match flow.verify_user_code(found.as_ref(), now) {
            Ok((next, grant)) => {
                if commit(state, &next, Some(&grant)).await? {
                    return Ok(next);
                }
            }
            Err(Refusal { error, next: None }) => return Err(error.into()),
            Err(Refusal {
                error,
                next: Some(next),
            }) => {
                if commit(state, &next, None).await? {
                    return Err(error.into());
                }
            }
        }
    }
    Err(StepError::Busy)
}

/// Username and password. Unknown users and wrong passwords take the same path and time.
pub async fn sign_on(
    state: &AppState,
    flow_id: &str,
    username: &str,
    password: &str,
) -> Result<Flow, StepError> {
    load(state, flow_id, now())
        .await?
        .ensure_can_sign_on(now())?;
    let user = match state.store.get_user_by_username(username).await {
        Ok(u) => Some(u),
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    let phc = user.as_ref().map(|u| u.password_hash.clone());
    if !state.passwords.verify(phc, password.to_owned()).await {
        return Err(StepError::InvalidCredentials);
    }
    let user = user.ok_or(StepError::InvalidCredentials)?;
    for _ in 0..CAS_ATTEMPTS {
        let now = now();
        let next = load(state, flow_id, now).await?.sign_on(&user.id, now)?;
        if commit(state, &next, None).await? {
            return Ok(next);
        }
    }
    Err(StepError::Busy)
}

/// Approve (`accept`) or deny the grant this flow bound.
pub async fn consent(state: &AppState, flow_id: &str, accept: bool) -> Result<Flow, StepError> {
    for _ in 0..CAS_ATTEMPTS {
        let now = now();
        let flow = load(state, flow_id, now).await?;
        let Some(grant_id) = flow
            .grant_id
            .clone()
            .filter(|_| flow.status == FlowStatus::ConsentRequired)
        else {
            return Err(FlowError::WrongStatus(flow.status).into());
        };
        let grant = match state.store.get_grant(&grant_id).await {
            Ok(g) => g,
            Err(StoreError::NotFound) => return Err(FlowError::CodeExpired.into()),
            Err(e) => return Err(e.into()),
        };
        let (next, grant) = flow.consent(&grant, accept, now)?;
        if commit(state, &next, Some(&grant)).await? {
            return Ok(next);
        }
    }
    Err(StepError::Busy)
}
