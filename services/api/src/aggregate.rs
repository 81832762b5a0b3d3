//! The HTTP face of the one command path (`opsledger_app::run`): who may
//! ask (roles, tenant), an answer for a retried `Idempotency-Key`, the
//! request as a command run, and its outcome as a response (`ETag`,
//! `Location`, 201 or 200), or as a problem. Reads of a single record load
//! it the same way, for the same fold.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use opsledger_app::run::{self, Prepared, Ran, Target};
use opsledger_domain::access::{Actor, Role};
use opsledger_domain::aggregate::Aggregate;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::auth::Caller;
use crate::common::{begin_command, metadata};
use crate::extract::IfMatch;
use crate::idempotency::{self, IdempotencyKey};
use crate::problem::ApiError;
use crate::AppState;

/// A record with the version of its stream: what reads and commands answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Versioned<A: Serialize> {
    #[serde(flatten)]
    #[schema(inline)]
    pub record: A,
    pub version: i64,
}

/// The record as it stands (or stood at `as_of`); 404 when there is none.
pub async fn load<A: Aggregate>(
    state: &AppState,
    tenant: Uuid,
    id: Uuid,
    as_of: Option<DateTime<Utc>>,
) -> Result<Versioned<A>, ApiError> {
    let (record, version, _) = run::load::<A>(state.ledger(), tenant, id, as_of).await?;
    let record = record.ok_or_else(|| ApiError::NotFound(format!("no {} {id}", A::NOUN)))?;
    Ok(Versioned { record, version })
}

pub fn respond<A: Serialize>(status: StatusCode, v: &Versioned<A>) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::ETAG, format!("\"{}\"", v.version)))
        .json(v)
}

/// Who asked, and what: the request as idempotency keys see it.
pub struct Asked<'a> {
    pub caller: &'a Caller,
    pub req: &'a HttpRequest,
    pub key: IdempotencyKey,
    /// The body, for the key's fingerprint.
    pub body: serde_json::Value,
}

impl<'a> Asked<'a> {
    /// What `caller` asked with `body` (any serializable form of it).
    pub fn of(
        caller: &'a Caller,
        req: &'a HttpRequest,
        key: IdempotencyKey,
        body: &impl Serialize,
    ) -> Result<Asked<'a>, ApiError> {
        Ok(Asked {
            caller,
            req,
            key,
            body: serde_json::to_value(body).map_err(|e| ApiError::Internal(Box::new(e)))?,
        })
    }
}

/// Runs a command that needs nothing from beyond its record, answered with
/// the record and its version.
pub async fn command<A>(
    state: &AppState,
    r: Asked<'_>,
    if_match: IfMatch,
    roles: &[Role],
    target: Target,
    command: A::Command,
) -> Result<HttpResponse, ApiError>
where
    A: Aggregate<Context = ()> + Send + Sync + 'static,
    A::Event: Send + Sync + 'static,
{
    let prepare = async |_: &Actor, _: Option<&A>| {
        Ok(Prepared {
            context: (),
            view: run::versioned::<A>,
        })
    };
    run_prepared::<A, _, _>(state, r, if_match, roles, target, command, prepare).await
}

/// Runs a command through the one path with nothing to admit beyond
/// `roles`: see [`run_command`].
pub async fn run_prepared<A, V, P>(
    state: &AppState,
    r: Asked<'_>,
    if_match: IfMatch,
    roles: &[Role],
    target: Target,
    command: A::Command,
    prepare: P,
) -> Result<HttpResponse, ApiError>
where
    A: Aggregate + Send + Sync + 'static,
    A::Event: Send + Sync + 'static,
    V: Fn(&A, i64) -> Value + Send + Sync + 'static,
    P: AsyncFnOnce(&Actor, Option<&A>) -> Result<Prepared<A::Context, V>, ApiError>,
{
    let admit = |_: &Actor, _: Option<&A>| Ok(());
    run_command::<A, V, _, P>(state, r, if_match, roles, target, command, admit, prepare).await
}

/// Runs a command through the one path: `roles` may give it, and `admit`
/// says whether the caller may give it to the record as it stands; `prepare`
/// gets the caller and the record, and looks up what deciding needs and how
/// the answer shows the record.
#[allow(clippy::too_many_arguments)]
pub async fn run_command<A, V, D, P>(
    state: &AppState,
    r: Asked<'_>,
    if_match: IfMatch,
    roles: &[Role],
    target: Target,
    command: A::Command,
    admit: D,
    prepare: P,
) -> Result<HttpResponse, ApiError>
where
    A: Aggregate + Send + Sync + 'static,
    A::Event: Send + Sync + 'static,
    V: Fn(&A, i64) -> Value + Send + Sync + 'static,
    D: FnOnce(&Actor, Option<&A>) -> Result<(), ApiError>,
    P: AsyncFnOnce(&Actor, Option<&A>) -> Result<Prepared<A::Context, V>, ApiError>,
{
    let what = serde_json::json!({ "if_match": if_match.0, "body": r.body });
    let (actor, fingerprint, replayed) =
        begin_command(state, r.caller, roles, &r.key, r.req, &what).await?;
    if let Some(replayed) = replayed {
        return Ok(replayed);
    }
    let asked = asked(actor, r.req, if_match, r.key, &fingerprint);
    let plan = run::Plan {
        command,
        admit: |current: Option<&A>| admit(actor, current),
        prepare: async |current: Option<&A>| prepare(actor, current).await,
    };
    let ran = run::run_plan::<A, V, _, _, ApiError>(state.ledger(), asked, target, plan).await?;
    answer(ran, &fingerprint)
}

/// The request as the command path sees it.
pub fn asked(
    actor: &Actor,
    req: &HttpRequest,
    if_match: IfMatch,
    key: IdempotencyKey,
    fingerprint: &str,
) -> run::Asked {
    run::Asked {
        tenant: actor.tenant_id,
        meta: metadata(actor, req),
        if_match: if_match.0,
        key: key.0.map(|key| run::Key {
            key,
            fingerprint: fingerprint.to_owned(),
        }),
    }
}

/// A command's outcome as its response.
pub fn answer(ran: Ran, fingerprint: &str) -> Result<HttpResponse, ApiError> {
    match ran {
        Ran::Done {
            location,
            version,
            body,
        } => {
            let mut res = HttpResponse::build(if location.is_some() {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            });
            res.insert_header((header::ETAG, format!("\"{version}\"")));
            if let Some(location) = location {
                res.insert_header((header::LOCATION, location));
            }
            Ok(res.json(body))
        }
        Ran::Replayed {
            fingerprint: stored,
            response,
        } => idempotency::replay(&stored, &response, fingerprint),
    }
}
