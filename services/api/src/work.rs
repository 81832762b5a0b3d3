//! `GET /api/v1/work`: the work ledger (SPEC §6) — operations and maintenance
//! work apart, per team, service, client and period: counts, minutes spent
//! where recorded, and the items behind every figure.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use opsledger_domain::access::{ClientScope, Role};
use opsledger_domain::WorkClass;
use opsledger_store::work::{WorkItem, WorkQuery, WorkTotal};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::common::page_len;
use crate::problem::ApiError;
use crate::AppState;

/// Staff and auditors read the whole ledger; a client reads the work done on
/// its own services.
const WORK_READERS: &[Role] = &[
    Role::Operator,
    Role::Maintainer,
    Role::Approver,
    Role::Auditor,
    Role::Admin,
    Role::Client,
];

const TEAMS: &[&str] = &["operations", "maintenance", "approvers", "administration"];

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WorkParams {
    /// `operations` or `maintenance`.
    pub class: Option<String>,
    /// Only work of this team; another value is 400.
    pub team: Option<String>,
    /// Only items of this service.
    pub service_id: Option<Uuid>,
    /// Only work on this client's services. A client user sees only its own client's (naming another is 404).
    pub client_id: Option<Uuid>,
    /// Only facts that occurred at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only facts that occurred before this instant; not before `since` (otherwise 400).
    pub until: Option<DateTime<Utc>>,
    /// The cursor: `next_cursor` of the previous page of items.
    pub after: Option<i64>,
    /// Items per page, 1 to 200 (default 50). Values outside the range are refused with 400.
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClassSummary {
    pub count: i64,
    pub minutes_spent: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkLedger {
    pub operations: ClassSummary,
    pub maintenance: ClassSummary,
    /// By class, team and event type.
    pub totals: Vec<WorkTotal>,
    /// The facts behind the figures, oldest first, a page at a time.
    pub items: Vec<WorkItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<i64>,
}

pub async fn work_ledger(
    state: web::Data<AppState>,
    caller: Caller,
    params: web::Query<WorkParams>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(WORK_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let p = params.into_inner();
    if let Some(c) = &p.class {
        if WorkClass::parse(c).is_none() {
            return Err(ApiError::BadRequest(format!(
                "class must be operations or maintenance, not {c:?}"
            )));
        }
    }
    if let Some(t) = &p.team {
        if !TEAMS.contains(&t.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "team must be one of {}, not {t:?}",
                TEAMS.join(", ")
            )));
        }
    }
    if let (Some(since), Some(until)) = (p.since, p.until) {
        if until < since {
            return Err(ApiError::BadRequest(
                "until must not be before since".into(),
            ));
        }
    }
    let client = match actor.client_scope() {
        ClientScope::All => p.client_id,
        ClientScope::Only(own) if p.client_id.is_none_or(|c| c == own) => Some(own),
        // Another client's ledger does not exist for this caller.
        ClientScope::Only(_) | ClientScope::Nothing => {
            return Err(ApiError::NotFound("no such client".into()))
        }
    };
    let limit = page_len(p.limit)?;
    let q = WorkQuery {
        class: p.class,
        team: p.team,
        service: p.service_id,
        client,
        since: p.since,
        until: p.until,
    };
    let (totals, mut items) =
        opsledger_store::work::work_ledger(&state.pool, actor.tenant_id, &q, p.after, limit + 1)
            .await?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|i| i.position)
    } else {
        None
    };
    let summary = |class: WorkClass| ClassSummary {
        count: totals
            .iter()
            .filter(|t| t.work_class == class.as_str())
            .map(|t| t.count)
            .sum(),
        minutes_spent: totals
            .iter()
            .filter(|t| t.work_class == class.as_str())
            .map(|t| t.minutes_spent)
            .sum(),
    };
    Ok(HttpResponse::Ok().json(WorkLedger {
        operations: summary(WorkClass::Operations),
        maintenance: summary(WorkClass::Maintenance),
        totals,
        items,
        next_cursor,
    }))
}
