//! What every handler module shares: the command prologue, metadata of the
//! caller, stream reads, paging, and the `as_of` query.

use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use opsledger_domain::access::{Actor, Role};
use opsledger_domain::{Metadata, RecordedEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::idempotency::{self, IdempotencyKey};
use crate::problem::{ApiError, RequestId};
use crate::{AppState, PAGE_LEN_DEFAULT, PAGE_LEN_MAX};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AsOfQuery {
    /// Read the record as it stood at this instant (RFC 3339): its events
    /// recorded up to then, folded. Absent: as it stands now.
    pub as_of: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    #[schema(inline)]
    pub items: Vec<T>,
    /// The cursor of the next page (`after` for directory lists, `before`
    /// for the newest-first lists); absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<Uuid>,
}

impl<T> Page<T> {
    /// A page from up to `limit + 1` items: the extra one, dropped, tells
    /// that another page follows, so the last page never links to an empty one.
    pub(crate) fn of(mut items: Vec<T>, limit: i64, id: impl Fn(&T) -> Uuid) -> Page<T> {
        let more = items.len() as i64 > limit;
        items.truncate(limit as usize);
        let next_cursor = if more { items.last().map(id) } else { None };
        Page { items, next_cursor }
    }
}

/// A whole list, unpaged (the list is bounded by what it lists).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Items<T> {
    #[schema(inline)]
    pub items: Vec<T>,
}

pub(crate) fn metadata(actor: &Actor, req: &HttpRequest) -> Metadata {
    use actix_web::HttpMessage;
    Metadata {
        actor: actor.subject.clone(),
        role: actor.primary_role().as_str().to_owned(),
        request_id: req.extensions().get::<RequestId>().map(|r| r.0.clone()),
        correlation_id: None,
        causation_id: None,
        source: "api".into(),
    }
}

pub(crate) fn unprocessable(e: String) -> ApiError {
    ApiError::Unprocessable(e)
}

pub(crate) fn page_len(limit: Option<u32>) -> Result<i64, ApiError> {
    match limit.unwrap_or(PAGE_LEN_DEFAULT) {
        0 => Err(ApiError::BadRequest("limit must be at least 1".into())),
        n if n > PAGE_LEN_MAX => Err(ApiError::BadRequest(format!(
            "limit must be at most {PAGE_LEN_MAX}"
        ))),
        n => Ok(n as i64),
    }
}

/// The common start of a command: role, tenant, and an answer for a retry.
pub(crate) async fn begin_command<'a>(
    state: &AppState,
    caller: &'a Caller,
    roles: &[Role],
    key: &IdempotencyKey,
    req: &HttpRequest,
    body: &impl Serialize,
) -> Result<(&'a Actor, String, Option<HttpResponse>), ApiError> {
    let actor = caller.require(roles)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let fingerprint = idempotency::fingerprint(req, body);
    let replayed = idempotency::replay_if_seen(state, actor.tenant_id, key, &fingerprint).await?;
    Ok((actor, fingerprint, replayed))
}

pub(crate) async fn stream_events(
    state: &AppState,
    tenant: Uuid,
    stream: &str,
    as_of: Option<DateTime<Utc>>,
) -> Result<Vec<RecordedEvent>, ApiError> {
    let client = state
        .pool
        .get()
        .await
        .map_err(opsledger_store::StoreError::from)?;
    Ok(opsledger_store::read::read_stream(&client, tenant, stream, as_of).await?)
}

/// 422 naming the first of `services` that was never registered in this
/// tenant: a command that names a service checks it against the log, so a
/// service registered a moment ago counts.
pub(crate) async fn require_services(
    state: &AppState,
    tenant: Uuid,
    services: &[Uuid],
) -> Result<(), ApiError> {
    for s in services {
        existing_service(state, tenant, *s).await?;
    }
    Ok(())
}

/// The client that owns a service (see `app::directory`).
pub(crate) async fn client_of_service(
    state: &AppState,
    tenant: Uuid,
    service: Uuid,
) -> Result<Option<Uuid>, ApiError> {
    Ok(opsledger_app::directory::client_of_service(state.ledger(), tenant, service).await?)
}

/// The client owning a service that must exist: 422 otherwise.
pub(crate) async fn existing_service(
    state: &AppState,
    tenant: Uuid,
    service: Uuid,
) -> Result<Uuid, ApiError> {
    client_of_service(state, tenant, service)
        .await?
        .ok_or_else(|| ApiError::Unprocessable(format!("service {service} does not exist")))
}

/// Waits, at most `wait`, until `projection` has applied every event
/// committed before this call (see `app::changes::await_read_model`).
pub async fn await_read_model(
    state: &AppState,
    projection: &str,
    wait: std::time::Duration,
) -> Result<bool, ApiError> {
    Ok(opsledger_app::changes::await_read_model(state.ledger(), projection, wait).await?)
}
