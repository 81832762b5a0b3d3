//! Backup schedules (SPEC §12): one per service, at
//! `/api/v1/services/{id}/backup-schedule`, set (`PUT`: defined, or
//! changed) and removed by operators and admins, read by staff, with the
//! schedules of a tenant listed at `/api/v1/backup-schedules`. A schedule's
//! record is its stream (`backup_schedule-<service id>`: definition and
//! transitions); `GET` adds `current`, the schedule assessed now against the
//! work log (the last backup performed and verified, when the next is due).
//! The rules are `domain::backup_schedule`'s, the worker
//! `app::backup_schedules`.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use opsledger_domain::access::{Actor, BACKUP_SCHEDULE_READERS, BACKUP_SCHEDULE_WRITERS};
use opsledger_domain::alert::{Category, Severity};
use opsledger_domain::backup_schedule::{
    self, Assessment, BackupFacts, BackupSchedule, Command, ScheduleSpec, Standing,
};
use opsledger_store::backup_schedules as store_schedules;
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

/// A schedule's definition, as a client sends it.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupScheduleBody {
    /// A backup is due this many seconds after the last one (or after the
    /// schedule's start): 3600 (an hour) to 34560000 (400 days).
    pub period_s: u32,
    /// Each backup must be verified (`POST /api/v1/backups/{id}/verify`,
    /// result `ok`) within this many seconds of when it was performed;
    /// same range. Default: the period.
    #[serde(default)]
    pub verify_within_s: Option<u32>,
    /// How late a backup or a verification may be before it alerts: 0 to
    /// the period. Default: a tenth of the period.
    #[serde(default)]
    pub grace_s: Option<u32>,
    /// The alert's severity. Default: `error`.
    #[serde(default)]
    pub severity: Option<Severity>,
    /// The alert's category. Default: `application`.
    #[serde(default)]
    pub category: Option<Category>,
}

impl BackupScheduleBody {
    fn spec(self) -> ScheduleSpec {
        ScheduleSpec {
            period_s: self.period_s,
            verify_within_s: self.verify_within_s.unwrap_or(self.period_s),
            grace_s: self.grace_s.unwrap_or(self.period_s / 10),
            severity: self.severity.unwrap_or(backup_schedule::SEVERITY_DEFAULT),
            category: self.category.unwrap_or(backup_schedule::CATEGORY_DEFAULT),
        }
    }
}

/// The schedule assessed at `assessed_at` against the work log's read model
/// (which may briefly lag a backup just recorded).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CurrentStanding {
    pub assessed_at: DateTime<Utc>,
    #[serde(flatten)]
    #[schema(inline)]
    pub assessment: Assessment,
    #[serde(flatten)]
    #[schema(inline)]
    pub facts: BackupFacts,
}

/// A schedule with its stream's version and where it stands now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BackupScheduleView {
    #[serde(flatten)]
    #[schema(inline)]
    pub schedule: BackupSchedule,
    pub version: i64,
    /// None once it is removed. `standing` above is what the stream
    /// records; this is the assessment now, which the workers record at
    /// their next pass when it differs.
    pub current: Option<CurrentStanding>,
}

pub async fn backup_schedule_set(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    id: web::Path<Uuid>,
    if_match: IfMatch,
    body: web::Json<BackupScheduleBody>,
) -> Result<HttpResponse, ApiError> {
    let service_id = id.into_inner();
    let actor = caller.require(BACKUP_SCHEDULE_WRITERS)?;
    // A PUT defines the schedule when the stream is empty (201, Location)
    // and changes it otherwise: a concurrent first PUT is a 409.
    let (current, _, _) =
        run::load::<BackupSchedule>(state.ledger(), actor.tenant_id, service_id, None).await?;
    let target = match current {
        None => Target::New {
            id: service_id,
            location: format!("/api/v1/services/{service_id}/backup-schedule"),
        },
        Some(_) => Target::Existing(service_id),
    };
    let r = Asked::of(&caller, &req, key, &*body)?;
    let command = Command::Set {
        service_id,
        spec: body.into_inner().spec(),
    };
    let period_min_s = state.backup_period_min_s;
    let prepare = async |actor: &Actor, _: Option<&BackupSchedule>| {
        if client_of_service(&state, actor.tenant_id, service_id)
            .await?
            .is_none()
        {
            return Err(ApiError::NotFound(format!("no service {service_id}")));
        }
        Ok(Prepared {
            context: backup_schedule::Context {
                period_min_s,
                service_known: true,
            },
            view: run::versioned::<BackupSchedule>,
        })
    };
    aggregate::run_prepared::<BackupSchedule, _, _>(
        &state,
        r,
        if_match,
        BACKUP_SCHEDULE_WRITERS,
        target,
        command,
        prepare,
    )
    .await
}

pub async fn backup_schedule_remove(
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
    let prepare = async |_: &Actor, _: Option<&BackupSchedule>| {
        Ok(Prepared {
            context: backup_schedule::Context {
                period_min_s: 0,
                service_known: true,
            },
            view: run::versioned::<BackupSchedule>,
        })
    };
    aggregate::run_prepared::<BackupSchedule, _, _>(
        &state,
        r,
        if_match,
        BACKUP_SCHEDULE_WRITERS,
        Target::Existing(id.into_inner()),
        Command::Remove,
        prepare,
    )
    .await
}

pub async fn backup_schedule_get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(BACKUP_SCHEDULE_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let service_id = id.into_inner();
    let v = aggregate::load::<BackupSchedule>(&state, actor.tenant_id, service_id, None).await?;
    let current = if v.record.removed {
        None
    } else {
        let facts = store_schedules::facts_of(&state.pool, actor.tenant_id, service_id).await?;
        let now = Utc::now();
        let s = &v.record;
        Some(CurrentStanding {
            assessed_at: now,
            assessment: backup_schedule::assess(&s.spec, s.started_at, &facts, now),
            facts,
        })
    };
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::ETAG, format!("\"{}\"", v.version)))
        .json(BackupScheduleView {
            schedule: v.record,
            version: v.version,
            current,
        }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct BackupScheduleListQuery {
    /// Only schedules that stand so, as their streams record it.
    pub standing: Option<Standing>,
    /// Removed schedules too (default false).
    pub include_removed: Option<bool>,
    /// Cursor: return items whose service id is smaller than this one (the `next_cursor` of the previous page). This list is by service id, descending.
    pub before: Option<Uuid>,
    /// Items per page, 1 to 200 (default 50). Values outside the range are refused with 400.
    pub limit: Option<u32>,
}

pub async fn backup_schedule_list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<BackupScheduleListQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(BACKUP_SCHEDULE_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let limit = page_len(query.limit)?;
    let rows = store_schedules::list_schedules(
        &state.pool,
        actor.tenant_id,
        query.standing,
        query.include_removed.unwrap_or(false),
        query.before,
        limit + 1,
    )
    .await?;
    let page = Page::of(rows, limit, |(s, _)| s.service_id);
    let items = page
        .items
        .iter()
        .map(|(s, v)| run::versioned(s, *v))
        .collect::<Vec<_>>();
    Ok(HttpResponse::Ok().json(Page {
        items,
        next_cursor: page.next_cursor,
    }))
}
