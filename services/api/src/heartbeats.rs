//! Heartbeats (SPEC §12): created, changed, rotated and removed by
//! operators and admins, read by staff, pinged by the jobs themselves.
//!
//! The ping routes (`POST /api/v1/heartbeats/{token}`, `/start`, `/fail`)
//! take no `Authorization`: the token in the URL is the credential. It is
//! 256 random bits from the operating system, shown once (by create and by
//! rotate, which take no `Idempotency-Key` so no stored answer holds it) and
//! kept only as its SHA-256. An unknown token is 404. A ping's body may be
//! anything; its first 1 KiB is kept. The rules are `domain::heartbeat`'s,
//! the ping path and the worker `app::heartbeats`.

use actix_web::{web, HttpRequest, HttpResponse};
use opsledger_domain::access::{Actor, HEARTBEAT_READERS, HEARTBEAT_WRITERS};
use opsledger_domain::alert::Category;
use opsledger_domain::heartbeat::{
    self, Command, Heartbeat, HeartbeatSpec, Ping, PingKind, Schedule, Status,
};
use opsledger_store::heartbeats::{self as store_hb, RunState};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::aggregate::{self, Asked};
use crate::auth::Caller;
use crate::common::{client_of_service, page_len, Page};
use crate::extract::IfMatch;
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::AppState;
use opsledger_app::run::{self, Prepared, Target};

/// Random bytes in a ping token: 256 bits, beyond guessing.
const TOKEN_LEN_BYTES: usize = 32;

/// A heartbeat's definition, as a client sends it.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBody {
    pub name: String,
    pub service_id: Uuid,
    pub schedule: Schedule,
    /// Seconds after a scheduled run before it counts as missed (0 to
    /// 604800). Default 0.
    #[serde(default)]
    pub grace_s: u32,
    /// The category of its alerts. Default `application`.
    #[serde(default)]
    pub category: Option<Category>,
}

impl HeartbeatBody {
    fn spec(self) -> HeartbeatSpec {
        HeartbeatSpec {
            name: self.name,
            service_id: self.service_id,
            schedule: self.schedule,
            grace_s: self.grace_s,
            category: self.category.unwrap_or(Category::Application),
        }
    }
}

/// A heartbeat with its stream's version and what its pings last left.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HeartbeatView {
    #[serde(flatten)]
    #[schema(inline)]
    pub heartbeat: Heartbeat,
    pub version: i64,
    /// None once it is removed, and until its record reaches the workers.
    pub run: Option<RunState>,
}

/// A heartbeat as created or rotated: with its ping token, shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HeartbeatWithToken {
    #[serde(flatten)]
    #[schema(inline)]
    pub heartbeat: Heartbeat,
    pub version: i64,
    /// The ping token (64 hex digits). Not shown again.
    pub token: String,
    /// The path to ping: POST it (add `/start` or `/fail`).
    pub ping_path: String,
}

fn new_token() -> String {
    let mut bytes = [0u8; TOKEN_LEN_BYTES];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn with_token(token: String) -> impl Fn(&Heartbeat, i64) -> Value + Send + Sync + 'static {
    move |h: &Heartbeat, version: i64| {
        serde_json::to_value(HeartbeatWithToken {
            heartbeat: h.clone(),
            version,
            token: token.clone(),
            ping_path: format!("/api/v1/heartbeats/{token}"),
        })
        .unwrap_or(Value::Null)
    }
}

async fn run_command<V>(
    state: &AppState,
    r: Asked<'_>,
    if_match: IfMatch,
    target: Target,
    command: Command,
    view: V,
) -> Result<HttpResponse, ApiError>
where
    V: Fn(&Heartbeat, i64) -> Value + Send + Sync + 'static,
{
    let service = match &command {
        Command::Create { spec, .. } | Command::Change { spec } => Some(spec.service_id),
        _ => None,
    };
    let prepare = async |actor: &Actor, _: Option<&Heartbeat>| {
        let service_known = match service {
            Some(s) => client_of_service(state, actor.tenant_id, s)
                .await?
                .is_some(),
            None => true,
        };
        Ok(Prepared {
            context: heartbeat::Context { service_known },
            view,
        })
    };
    aggregate::run_prepared::<Heartbeat, _, _>(
        state,
        r,
        if_match,
        HEARTBEAT_WRITERS,
        target,
        command,
        prepare,
    )
    .await
}

pub async fn heartbeat_create(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Json<HeartbeatBody>,
) -> Result<HttpResponse, ApiError> {
    let r = Asked::of(&caller, &req, IdempotencyKey(None), &*body)?;
    let id = Uuid::now_v7();
    let token = new_token();
    let command = Command::Create {
        heartbeat_id: id,
        spec: body.into_inner().spec(),
        token_sha256: heartbeat::token_hash(&token),
    };
    let target = Target::New {
        id,
        location: format!("/api/v1/heartbeats/{id}"),
    };
    run_command(&state, r, IfMatch(None), target, command, with_token(token)).await
}

pub async fn heartbeat_change(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    id: web::Path<Uuid>,
    if_match: IfMatch,
    body: web::Json<HeartbeatBody>,
) -> Result<HttpResponse, ApiError> {
    let r = Asked::of(&caller, &req, key, &*body)?;
    let command = Command::Change {
        spec: body.into_inner().spec(),
    };
    let target = Target::Existing(id.into_inner());
    run_command(
        &state,
        r,
        if_match,
        target,
        command,
        run::versioned::<Heartbeat>,
    )
    .await
}

pub async fn heartbeat_rotate(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<Uuid>,
    if_match: IfMatch,
) -> Result<HttpResponse, ApiError> {
    let r = Asked {
        caller: &caller,
        req: &req,
        key: IdempotencyKey(None),
        body: Value::Null,
    };
    let token = new_token();
    let command = Command::Rotate {
        token_sha256: heartbeat::token_hash(&token),
    };
    let target = Target::Existing(id.into_inner());
    run_command(&state, r, if_match, target, command, with_token(token)).await
}

pub async fn heartbeat_remove(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<Uuid>,
    if_match: IfMatch,
) -> Result<HttpResponse, ApiError> {
    let r = Asked {
        caller: &caller,
        req: &req,
        key: IdempotencyKey(None),
        body: Value::Null,
    };
    let target = Target::Existing(id.into_inner());
    run_command(
        &state,
        r,
        if_match,
        target,
        Command::Remove,
        run::versioned::<Heartbeat>,
    )
    .await
}

pub async fn heartbeat_get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(HEARTBEAT_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let id = id.into_inner();
    let v = aggregate::load::<Heartbeat>(&state, actor.tenant_id, id, None).await?;
    let run = if v.record.removed {
        None
    } else {
        store_hb::run_state(&state.pool, actor.tenant_id, id).await?
    };
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::ETAG, format!("\"{}\"", v.version)))
        .json(HeartbeatView {
            heartbeat: v.record,
            version: v.version,
            run,
        }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatListQuery {
    /// Only heartbeats of this service.
    pub service_id: Option<Uuid>,
    /// Removed heartbeats too (default false).
    pub include_removed: Option<bool>,
    /// Cursor: return items whose id is smaller (older) than this one (the `next_cursor` of the previous page). These lists are newest first.
    pub before: Option<Uuid>,
    /// Items per page, 1 to 200 (default 50). Values outside the range are refused with 400.
    pub limit: Option<u32>,
}

pub async fn heartbeat_list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<HeartbeatListQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(HEARTBEAT_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let limit = page_len(query.limit)?;
    let rows = store_hb::list_heartbeats(
        &state.pool,
        actor.tenant_id,
        query.service_id,
        query.include_removed.unwrap_or(false),
        query.before,
        limit + 1,
    )
    .await?;
    let page = Page::of(rows, limit, |(h, _)| h.id);
    let items = page
        .items
        .iter()
        .map(|(h, v)| run::versioned(h, *v))
        .collect::<Vec<_>>();
    Ok(HttpResponse::Ok().json(Page {
        items,
        next_cursor: page.next_cursor,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PingQuery {
    /// The job's exit code: anything but 0 makes a ping a failure.
    pub exit_code: Option<i32>,
    /// The job's own id for this run (at most 200 characters kept).
    pub run_id: Option<String>,
}

/// What a ping is answered with.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PingAnswer {
    /// The heartbeat's status after the ping.
    pub status: Status,
}

async fn take_ping(
    state: web::Data<AppState>,
    token: web::Path<String>,
    query: web::Query<PingQuery>,
    body: web::Bytes,
    kind: PingKind,
) -> Result<HttpResponse, ApiError> {
    let token = token.into_inner();
    let ping = Ping::new(
        kind,
        chrono::Utc::now(),
        query.exit_code,
        query.run_id.as_deref(),
        &body,
    );
    match opsledger_app::heartbeats::ping(state.ingestion(), &token, ping).await? {
        Some(status) => Ok(HttpResponse::Ok().json(PingAnswer { status })),
        None => Err(ApiError::NotFound("no heartbeat has this token".into())),
    }
}

pub async fn heartbeat_ping(
    state: web::Data<AppState>,
    token: web::Path<String>,
    query: web::Query<PingQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    take_ping(state, token, query, body, PingKind::Success).await
}

pub async fn heartbeat_ping_start(
    state: web::Data<AppState>,
    token: web::Path<String>,
    query: web::Query<PingQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    take_ping(state, token, query, body, PingKind::Start).await
}

pub async fn heartbeat_ping_fail(
    state: web::Data<AppState>,
    token: web::Path<String>,
    query: web::Query<PingQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    take_ping(state, token, query, body, PingKind::Fail).await
}
