//! Probes (SPEC §12): defined, changed and removed by operators and admins,
//! read by staff. A probe's record is its stream (`probe-<id>`: definition
//! and transitions); `GET /api/v1/probes/{id}` adds what the workers last
//! saw (`run`: the latest result and latency, the streak, when it is due).
//! The rules are `domain::probe`'s, the worker `app::probes`.

use actix_web::{web, HttpRequest, HttpResponse};
use opsledger_domain::access::{Actor, PROBE_READERS, PROBE_WRITERS};
use opsledger_domain::probe::{self, Check, Command, Probe, ProbeSpec};
use opsledger_store::probes::{self as store_probes, RunState};
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

/// A probe's definition, as a client sends it.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProbeBody {
    pub name: String,
    pub service_id: Uuid,
    /// The part of the service it watches (a host, an endpoint).
    #[serde(default)]
    pub component: Option<String>,
    pub check: Check,
    /// Seconds between checks: 10 to 86400.
    pub interval_s: u32,
    /// Default: 10 000, or the interval when shorter.
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    /// Consecutive failures that take it down. Default 3.
    #[serde(default)]
    pub failure_threshold: Option<u32>,
    /// Consecutive successes that bring it up. Default 2.
    #[serde(default)]
    pub success_threshold: Option<u32>,
}

impl ProbeBody {
    fn spec(self) -> ProbeSpec {
        ProbeSpec {
            name: self.name,
            service_id: self.service_id,
            component: self.component,
            check: self.check,
            interval_s: self.interval_s,
            timeout_ms: self.timeout_ms.unwrap_or_else(|| {
                probe::TIMEOUT_DEFAULT_MS.min(self.interval_s.saturating_mul(1000))
            }),
            failure_threshold: self
                .failure_threshold
                .unwrap_or(probe::FAILURE_THRESHOLD_DEFAULT),
            success_threshold: self
                .success_threshold
                .unwrap_or(probe::SUCCESS_THRESHOLD_DEFAULT),
        }
    }
}

/// A probe with its stream's version and what the workers last saw of it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProbeView {
    #[serde(flatten)]
    #[schema(inline)]
    pub probe: Probe,
    pub version: i64,
    /// None until the workers have seen it, and once it is removed.
    pub run: Option<RunState>,
}

async fn run_command(
    state: &AppState,
    r: Asked<'_>,
    if_match: IfMatch,
    target: Target,
    command: Command,
) -> Result<HttpResponse, ApiError> {
    let service = match &command {
        Command::Define { spec, .. } | Command::Change { spec } => Some(spec.service_id),
        _ => None,
    };
    let interval_min_s = state.probe_interval_min_s;
    let prepare = async |actor: &Actor, _: Option<&Probe>| {
        let service_known = match service {
            Some(s) => client_of_service(state, actor.tenant_id, s)
                .await?
                .is_some(),
            None => true,
        };
        Ok(Prepared {
            context: probe::Context {
                interval_min_s,
                service_known,
            },
            view: run::versioned::<Probe>,
        })
    };
    aggregate::run_prepared::<Probe, _, _>(
        state,
        r,
        if_match,
        PROBE_WRITERS,
        target,
        command,
        prepare,
    )
    .await
}

pub async fn probe_define(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    body: web::Json<ProbeBody>,
) -> Result<HttpResponse, ApiError> {
    let r = Asked::of(&caller, &req, key, &*body)?;
    let id = Uuid::now_v7();
    let command = Command::Define {
        probe_id: id,
        spec: body.into_inner().spec(),
    };
    let target = Target::New {
        id,
        location: format!("/api/v1/probes/{id}"),
    };
    run_command(&state, r, IfMatch(None), target, command).await
}

pub async fn probe_change(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    id: web::Path<Uuid>,
    if_match: IfMatch,
    body: web::Json<ProbeBody>,
) -> Result<HttpResponse, ApiError> {
    let r = Asked::of(&caller, &req, key, &*body)?;
    let command = Command::Change {
        spec: body.into_inner().spec(),
    };
    run_command(
        &state,
        r,
        if_match,
        Target::Existing(id.into_inner()),
        command,
    )
    .await
}

pub async fn probe_remove(
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
    run_command(
        &state,
        r,
        if_match,
        Target::Existing(id.into_inner()),
        Command::Remove,
    )
    .await
}

pub async fn probe_get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(PROBE_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let id = id.into_inner();
    let v = aggregate::load::<Probe>(&state, actor.tenant_id, id, None).await?;
    let run = if v.record.removed {
        None
    } else {
        store_probes::run_state(&state.pool, actor.tenant_id, id).await?
    };
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::ETAG, format!("\"{}\"", v.version)))
        .json(ProbeView {
            probe: v.record,
            version: v.version,
            run,
        }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ProbeListQuery {
    /// Only probes of this service.
    pub service_id: Option<Uuid>,
    /// Removed probes too (default false).
    pub include_removed: Option<bool>,
    /// Cursor: return items whose id is smaller (older) than this one (the `next_cursor` of the previous page). These lists are newest first.
    pub before: Option<Uuid>,
    /// Items per page, 1 to 200 (default 50). Values outside the range are refused with 400.
    pub limit: Option<u32>,
}

pub async fn probe_list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ProbeListQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(PROBE_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let limit = page_len(query.limit)?;
    let rows = store_probes::list_probes(
        &state.pool,
        actor.tenant_id,
        query.service_id,
        query.include_removed.unwrap_or(false),
        query.before,
        limit + 1,
    )
    .await?;
    let page = Page::of(rows, limit, |(p, _)| p.id);
    let items = page
        .items
        .iter()
        .map(|(p, v)| run::versioned(p, *v))
        .collect::<Vec<_>>();
    Ok(HttpResponse::Ok().json(Page {
        items,
        next_cursor: page.next_cursor,
    }))
}
