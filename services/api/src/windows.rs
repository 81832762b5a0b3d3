//! Maintenance windows (SPEC §5): plan, announce (mail to the subscribed
//! contacts of the affected services, through the outbox, in the same
//! append as the announcement), start, end, cancel; reads with recurrences
//! expanded; and the iCalendar feed of windows and scheduled changes.
//!
//! Clients see the windows that touch their own client's services, with only
//! their own services named and without internal fields (who planned it,
//! the change it serves, whether it was announced late, how many were told).

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Duration, SubsecRound, Utc};
use opsledger_domain::access::{Actor, ClientScope, Role, INCIDENT_READERS};
use opsledger_domain::calendar::{self, Event};
use opsledger_domain::change::{self};
use opsledger_domain::window::{self, Plan, Step, Window};
use opsledger_store::changes::{self as store_changes, Versioned, WindowFilter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::aggregate::{self, Asked};
use crate::auth::Caller;
use crate::changes::{missing, services_exist};
use crate::common::page_len;
use crate::common::Page;
use crate::extract::{IfMatch, OrEmpty};
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::AppState;
use opsledger_app::run::{Prepared, Target};
use opsledger_app::windows::Lookup;

/// Who plans and runs maintenance windows.
pub const WINDOW_WRITERS: &[Role] = &[Role::Maintainer, Role::Admin];
/// Who reads windows and the calendar: staff, and clients (their own services').
pub const WINDOW_READERS: &[Role] = INCIDENT_READERS;
/// Occurrences shown with a window by default: the next ones within this.
const OCCURRENCES_AHEAD_DAYS: i64 = 90;
/// Windows and changes in one calendar at most.
const CALENDAR_ITEMS_MAX: i64 = 1_000;
/// Services of one client considered when scoping windows to it.
const CLIENT_SERVICES_MAX: i64 = 1_000;
/// How far back the calendar reaches.
const CALENDAR_PAST_DAYS: i64 = 90;

fn internal(e: serde_json::Error) -> ApiError {
    ApiError::Internal(Box::new(e))
}

// ------------------------------------------------------------ views

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Occurrence {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WindowView {
    #[serde(flatten)]
    pub window: Window,
    pub version: i64,
    pub occurrences: Vec<Occurrence>,
}

/// What a client sees of a window: nothing more (which tells it apart
/// from the staff's view in the document).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientWindowView {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub service_ids: Vec<Uuid>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub rrule: Option<String>,
    pub status: window::Status,
    pub announced_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub occurrences: Vec<Occurrence>,
}

fn occurrences(w: &Window, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Occurrence> {
    w.occurrences(from, to)
        .into_iter()
        .map(|(start, end)| Occurrence { start, end })
        .collect()
}

/// The services of a client, from the directory read model.
async fn client_services(
    state: &AppState,
    tenant: Uuid,
    client: Uuid,
) -> Result<Vec<Uuid>, ApiError> {
    let page = opsledger_store::directory::list_services(
        &state.pool,
        tenant,
        opsledger_store::directory::ClientFilter::Only(client),
        None,
        CLIENT_SERVICES_MAX,
    )
    .await?;
    Ok(page.iter().map(|s| s.id).collect())
}

/// The services a caller may see windows of: all (`None`), or its client's.
async fn visible_services(state: &AppState, actor: &Actor) -> Result<Option<Vec<Uuid>>, ApiError> {
    match actor.client_scope() {
        ClientScope::All => Ok(None),
        ClientScope::Only(client) => {
            Ok(Some(client_services(state, actor.tenant_id, client).await?))
        }
        ClientScope::Nothing => Ok(Some(Vec::new())),
    }
}

/// A window as the caller may see it, or `None` when it may not.
fn view_for(
    visible: Option<&[Uuid]>,
    w: Window,
    version: i64,
    range: (DateTime<Utc>, DateTime<Utc>),
) -> Option<Shown> {
    let occ = occurrences(&w, range.0, range.1);
    match visible {
        None => Some(Shown::Staff(WindowView {
            window: w,
            version,
            occurrences: occ,
        })),
        Some(own) => {
            let services: Vec<Uuid> = w
                .service_ids
                .iter()
                .copied()
                .filter(|s| own.contains(s))
                .collect();
            if services.is_empty() {
                return None;
            }
            Some(Shown::Client(ClientWindowView {
                id: w.id,
                title: w.title,
                description: w.description,
                service_ids: services,
                start: w.start,
                end: w.end,
                rrule: w.rrule,
                status: w.status,
                announced_at: w.announced_at,
                started_at: w.started_at,
                ended_at: w.ended_at,
                cancelled_at: w.cancelled_at,
                version,
                occurrences: occ,
            }))
        }
    }
}

/// A window as staff (with the change it serves) or a client sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Shown {
    Staff(WindowView),
    Client(ClientWindowView),
}

// ------------------------------------------------------------ plan

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    pub service_ids: Vec<Uuid>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[serde(default)]
    pub rrule: Option<String>,
    #[serde(default)]
    pub change_id: Option<Uuid>,
}

pub async fn window_plan(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    body: web::Json<PlanBody>,
) -> Result<HttpResponse, ApiError> {
    let r = Asked::of(&caller, &req, key, &*body)?;
    let body = body.into_inner();
    let id = Uuid::now_v7();
    let (services, change_id) = (body.service_ids.clone(), body.change_id);
    let step = Step::Plan(Plan {
        window_id: id,
        service_ids: body.service_ids,
        title: body.title,
        description: body.description,
        start: body.start,
        end: body.end,
        rrule: body.rrule,
        change_id: body.change_id,
    });
    let prepare = async |actor: &Actor, _: Option<&Window>| {
        let tenant = actor.tenant_id;
        services_exist(&state, tenant, &services).await?;
        if let Some(c) = change_id {
            let named = [(change::change_stream(c), format!("change {c}"))];
            if let Some(m) = missing(&state, tenant, &named).await? {
                return Err(ApiError::Unprocessable(m));
            }
        }
        Ok(Prepared {
            context: window::Context::at(Utc::now()),
            view: command_view,
        })
    };
    let target = Target::New {
        id,
        location: format!("/api/v1/maintenance-windows/{id}"),
    };
    let no_check = |_: &Actor, _: Option<&Window>| Ok(());
    aggregate::run_command::<Window, _, _, _>(
        &state,
        r,
        IfMatch(None),
        WINDOW_WRITERS,
        target,
        step,
        no_check,
        prepare,
    )
    .await
}

/// A window as a command answers it: with its occurrences from now (or its
/// start) for 90 days.
fn command_view(w: &Window, version: i64) -> Value {
    let now = Utc::now();
    let ahead = now + Duration::days(OCCURRENCES_AHEAD_DAYS);
    serde_json::to_value(WindowView {
        occurrences: occurrences(w, now.min(w.start), ahead.max(w.end)),
        window: w.clone(),
        version,
    })
    .unwrap_or_default()
}

// ------------------------------------------------------------ steps

#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndBody {
    #[serde(default)]
    pub minutes_spent: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    pub reason: String,
}

#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyBody {}

/// A step: the one command path, with the contacts told of an announcement
/// (or of the cancellation of an announced window) looked up first.
#[allow(clippy::too_many_arguments)]
async fn step(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    id: Uuid,
    if_match: IfMatch,
    key: IdempotencyKey,
    asked: Value,
    step: Step,
) -> Result<HttpResponse, ApiError> {
    let lookup = match step {
        Step::Announce => Lookup::Announce,
        Step::Cancel { .. } => Lookup::Cancel,
        _ => Lookup::Nothing,
    };
    let r = Asked {
        caller: &caller,
        req: &req,
        key,
        body: asked,
    };
    let prepare = async |actor: &Actor, w: Option<&Window>| {
        let w = w.ok_or_else(|| ApiError::NotFound(format!("no maintenance window {id}")))?;
        let now = Utc::now().trunc_subsecs(6);
        Ok(Prepared {
            context: opsledger_app::windows::context(
                state.ledger(),
                actor.tenant_id,
                w,
                lookup,
                now,
            )
            .await?,
            view: command_view,
        })
    };
    let no_check = |_: &Actor, _: Option<&Window>| Ok(());
    aggregate::run_command::<Window, _, _, _>(
        &state,
        r,
        if_match,
        WINDOW_WRITERS,
        Target::Existing(id),
        step,
        no_check,
        prepare,
    )
    .await
}

macro_rules! window_step {
    ($name:ident, $body:ty, |$b:ident| $make:expr) => {
        pub async fn $name(
            s: web::Data<AppState>,
            c: Caller,
            r: HttpRequest,
            id: web::Path<Uuid>,
            m: IfMatch,
            k: IdempotencyKey,
            asked: OrEmpty<$body>,
        ) -> Result<HttpResponse, ApiError> {
            let $b = asked.body;
            step(s, c, r, id.into_inner(), m, k, asked.asked, $make).await
        }
    };
}

window_step!(window_announce, EmptyBody, |_b| Step::Announce);
window_step!(window_start, EmptyBody, |_b| Step::Start);
window_step!(window_end, EndBody, |b| Step::End {
    minutes_spent: b.minutes_spent
});
window_step!(window_cancel, CancelBody, |b| Step::Cancel {
    reason: b.reason
});

// ------------------------------------------------------------ reads

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WindowQuery {
    /// Occurrences from this instant (default: now).
    pub from: Option<DateTime<Utc>>,
    /// Occurrences until this instant (default: 90 days after `from`).
    pub to: Option<DateTime<Utc>>,
}

fn range(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let from = from.unwrap_or_else(Utc::now);
    let to = to.unwrap_or(from + Duration::days(OCCURRENCES_AHEAD_DAYS));
    if to <= from {
        return Err(ApiError::BadRequest("`to` must be after `from`".into()));
    }
    Ok((from, to))
}

pub async fn window_get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
    query: web::Query<WindowQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(WINDOW_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let id = id.into_inner();
    let not_found = || ApiError::NotFound(format!("no maintenance window {id}"));
    let v = aggregate::load::<Window>(&state, actor.tenant_id, id, None).await?;
    let (w, version) = (v.record, v.version);
    let mut r = range(query.from, query.to)?;
    if query.from.is_none() {
        // A one-off window in the past still shows its one occurrence.
        r.0 = r.0.min(w.start);
    }
    let visible = visible_services(&state, actor).await?;
    let json = view_for(visible.as_deref(), w, version, r).ok_or_else(not_found)?;
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::ETAG, format!("\"{version}\"")))
        .json(json))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WindowListQuery {
    /// Only items of this service.
    pub service_id: Option<Uuid>,
    /// Only windows in this status.
    pub status: Option<window::Status>,
    /// Only windows serving this change (staff only).
    pub change_id: Option<Uuid>,
    /// Occurrences from this instant (default: now, or the window's start if earlier).
    pub from: Option<DateTime<Utc>>,
    /// Occurrences until this instant (default: 90 days after `from`).
    pub to: Option<DateTime<Utc>>,
    /// Cursor: return items whose id is smaller (older) than this one (the `next_cursor` of the previous page). These lists are newest first.
    pub before: Option<Uuid>,
    /// Items per page, 1 to 200 (default 50). Values outside the range are refused with 400.
    pub limit: Option<u32>,
}

pub async fn window_list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<WindowListQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(WINDOW_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let limit = page_len(query.limit)?;
    let r = range(query.from, query.to)?;
    let client_id = match actor.client_scope() {
        ClientScope::All => None,
        ClientScope::Only(c) => Some(c),
        ClientScope::Nothing => {
            return Ok(HttpResponse::Ok().json(Page::<Shown> {
                items: Vec::new(),
                next_cursor: None,
            }))
        }
    };
    let filter = WindowFilter {
        service_id: query.service_id,
        client_id,
        status: query.status.map(|s| s.as_str().to_owned()),
        // Clients do not see which change a window serves.
        change_id: query.change_id.filter(|_| client_id.is_none()),
    };
    let rows = store_changes::list_windows(
        &state.pool,
        actor.tenant_id,
        &filter,
        query.before,
        limit + 1,
    )
    .await?;
    let more = rows.len() as i64 > limit;
    let visible = visible_services(&state, actor).await?;
    let mut items = Vec::new();
    let mut last = None;
    for Versioned { item, version } in rows.into_iter().take(limit as usize) {
        last = Some(item.id);
        let from = if query.from.is_none() {
            r.0.min(item.start)
        } else {
            r.0
        };
        if let Some(v) = view_for(visible.as_deref(), item, version, (from, r.1)) {
            items.push(v);
        }
    }
    let next_cursor = if more { last } else { None };
    Ok(HttpResponse::Ok().json(Page { items, next_cursor }))
}

// ------------------------------------------------------------ calendar

pub async fn calendar_ics(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(WINDOW_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let tenant = actor.tenant_id;
    let now = Utc::now().trunc_subsecs(6);
    let since = now - Duration::days(CALENDAR_PAST_DAYS);
    let client_id = match actor.client_scope() {
        ClientScope::All => None,
        ClientScope::Only(c) => Some(c),
        ClientScope::Nothing => {
            return Err(ApiError::Forbidden("no calendar for this token".into()))
        }
    };
    let windows = store_changes::list_windows(
        &state.pool,
        tenant,
        &WindowFilter {
            client_id,
            ..Default::default()
        },
        None,
        CALENDAR_ITEMS_MAX,
    )
    .await?;
    let mut events = Vec::new();
    for Versioned { item: w, version } in windows {
        // Windows long over are left out; a recurring one stays while it recurs.
        let current = match &w.rrule {
            None => w.end > since,
            Some(_) => !w.occurrences(since, now + Duration::days(3660)).is_empty(),
        };
        if !current {
            continue;
        }
        let status = match w.status {
            window::Status::Planned => "TENTATIVE",
            window::Status::Cancelled => "CANCELLED",
            _ => "CONFIRMED",
        };
        let last_modified = [w.announced_at, w.started_at, w.ended_at, w.cancelled_at]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(w.planned_at);
        events.push(Event {
            uid: Event::uid_of("window", w.id),
            start: w.start,
            end: w.end,
            summary: w.title.clone(),
            description: w.description.clone(),
            rrule: w.rrule.clone(),
            status,
            categories: vec!["maintenance window".into()],
            last_modified,
            sequence: version - 1,
        });
    }
    if client_id.is_none() {
        for Versioned { item: c, version } in
            store_changes::scheduled_changes(&state.pool, tenant, since, CALENDAR_ITEMS_MAX).await?
        {
            let Some(s) = &c.schedule else { continue };
            let name = |v: Value| v.as_str().unwrap_or_default().to_owned();
            let mut description = format!(
                "{} change ({}, risk {}), {}.\nImpact: {}",
                c.kind.as_str(),
                name(serde_json::to_value(c.category).map_err(internal)?),
                name(serde_json::to_value(c.risk).map_err(internal)?),
                c.status.as_str(),
                c.impact
            );
            if c.approval_missing {
                description.push_str("\nAPPROVAL MISSING");
            }
            events.push(Event {
                uid: Event::uid_of("change", c.id),
                start: s.start,
                end: s.end,
                summary: format!("Change: {}", c.title),
                description: Some(description),
                rrule: None,
                status: "CONFIRMED",
                categories: vec!["change".into(), c.kind.as_str().into()],
                last_modified: c
                    .finished_at
                    .or(c.started_at)
                    .unwrap_or(c.requested_at)
                    .max(c.approvals.last().map_or(c.requested_at, |a| a.at)),
                sequence: version - 1,
            });
        }
    }
    let text = calendar::render("opsledger maintenance", &events, now);
    Ok(HttpResponse::Ok()
        .content_type("text/calendar; charset=utf-8")
        .body(text))
}
