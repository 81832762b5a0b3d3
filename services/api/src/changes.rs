//! Changes (SPEC §5): request, the workflow's steps, reads, the change
//! history of a service (SPEC §6); and freeze periods.
//!
//! Clients are refused changes and freezes entirely (403): a change's risk,
//! impact and rollback plan are internal, and what clients need to know of
//! one reaches them as a maintenance window.
//!
//! # Changes and maintenance windows
//!
//! Streams: `change-<id>`, `window-<id>`, `freeze-<id>`; every event names
//! its `service_ids` (the work ledger reads them), and step commands take
//! `minutes_spent`. Pure `decide`/`evolve` in `domain::{change, window,
//! freeze}`; the `changes` projection keeps `proj_changes`, `proj_windows` and
//! `proj_freezes`, each row the aggregate as the domain folds it (`state`,
//! jsonb) beside the columns queried. Folds use the events' `recorded_at`
//! (the one clock), so a command's answer equals a later read.
//!
//! - **Changes.** draft → submitted → approved | rejected → scheduled →
//!   in_progress → completed | failed | rolled_back → reviewed. Standard
//!   changes (operators may request and run them) take no approval; normal
//!   ones need a rollback plan and approval before scheduling; emergency ones
//!   may be scheduled and started first and show `approval_missing` until an
//!   approval follows (then `retroactive`). Four eyes: the domain refuses an
//!   approval or rejection by the requester (`Rejection::Forbidden`, 403).
//!   Links (`fixes`, `caused_by` an incident; `implements` a proposal) and a
//!   schedule's window are checked against the log (`read::existing_streams`).
//!   Commands run through `app::run` (fold, `If-Match` with 412 when stale,
//!   decide, append with the version decided on); an invalid transition is
//!   a 409 naming `current_state`. Clients are refused changes and freezes
//!   (403).
//! - **Freezes and conflicts.** Scheduling (and starting) reads the read
//!   model (`app::changes::context`): a freeze of one of the change's
//!   services overlapping the schedule refuses a normal change (409 with
//!   `freeze_id`, `Rejection::Frozen`, a domain rule) and is recorded on
//!   standard and emergency ones (`freezes`). Other scheduled or running changes to a shared service
//!   with overlapping schedules are *accepted and reported*: their ids go into
//!   `ChangeScheduled.conflicts` and the answer. Both read the read model,
//!   after waiting (at most 5 s, `app::changes::await_read_model`, which
//!   wakes the followers first) until its
//!   checkpoint has passed every transaction id assigned before the request:
//!   a freeze or schedule recorded earlier, on any instance, is seen. Two
//!   schedules racing each other can still both miss the other; the history
//!   shows both either way.
//! - **Windows.** planned → announced → started → ended | cancelled, for some
//!   services, optionally serving a change and recurring by an RFC 5545 RRULE
//!   (DAILY or coarser, expanded in UTC by the `rrule` crate; each occurrence
//!   as long as the first; reads list occurrences in a range). Announcing is
//!   refused (422 naming the service, its notice period and the latest
//!   instant) when later than the longest notice period of its services before
//!   the next occurrence, unless the window serves an emergency change: then
//!   `late: true`. The announcement and one `NotificationRequested`
//!   (`window_announced`) per active subscription address of its services go
//!   in one append, rendered from `templates/notice/window_announced.*` in the
//!   contact's language with that client's services only (after waiting, as
//!   scheduling does, for the roster projection, so a subscription made just
//!   before counts); the outbox sender delivers them as any other. Cancelling
//!   an announced window tells the contacts subscribed then, the same way
//!   (`window_cancelled`). `store::changes::windows_in_force` lists a
//!   service's announced or started windows (ingestion keeps them a second,
//!   see "Alerts and incidents"); `Window::covers` says whether one covers an
//!   instant.
//! - **History and calendar.** `/changes/history?service=` lists every change
//!   to a service from `proj_changes` with approvals, schedule, outcome,
//!   linked incidents and serving windows, oldest first, paged by keyset on
//!   (requested_at, change_id) with the last change's id as `after`. `/calendar.ics` writes windows
//!   (with their RRULE) and scheduled changes as VEVENTs by hand
//!   (`domain::calendar`: TEXT escaped, CRLF lines folded at 75 octets);
//!   tests read it back with the `ical` parser. Clients get their own
//!   services' windows only, without internal fields.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use opsledger_domain::access::{Actor, Role, STAFF};
use opsledger_domain::change::{
    self, Category, Change, Command, Kind, Link, Request, Risk, Status,
};
use opsledger_domain::directory as dir;
use opsledger_domain::freeze::{self, Freeze};
use opsledger_store::changes::{self as store_changes, ChangeFilter, Versioned};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::aggregate::{self, Asked};
use crate::auth::Caller;
use crate::common::{begin_command, page_len, AsOfQuery, Page};
use crate::extract::{IfMatch, OrEmpty};
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::AppState;
use opsledger_app::changes::Lookup;
use opsledger_app::run::{self, Prepared, Target};

/// Who requests and carries out normal and emergency changes.
pub const CHANGE_MAINTAINERS: &[Role] = &[Role::Maintainer, Role::Admin];
/// Who requests and carries out standard (pre-approved) changes.
pub const STANDARD_CHANGERS: &[Role] = &[Role::Operator, Role::Maintainer, Role::Admin];
/// Who approves or rejects changes (never their requester).
pub const CHANGE_APPROVERS: &[Role] = &[Role::Approver, Role::Admin];
/// Who reviews a normal or emergency change once it is over.
pub const CHANGE_REVIEWERS: &[Role] = &[Role::Maintainer, Role::Approver, Role::Admin];
/// Who declares and lifts freezes: the system owners and maintenance.
pub const FREEZE_WRITERS: &[Role] = &[Role::Maintainer, Role::Approver, Role::Admin];
/// Anyone who may give some change command; the command itself narrows it.
const ANY_CHANGER: &[Role] = &[
    Role::Operator,
    Role::Maintainer,
    Role::Approver,
    Role::Admin,
];
/// Windows of a service read, at most, to link a page of its change history
/// to the windows that serve its changes.
const HISTORY_WINDOWS_MAX: i64 = 1_000;

// ------------------------------------------------------------ views

#[derive(Debug, Serialize)]
pub struct ChangeView {
    #[serde(flatten)]
    pub change: Change,
    pub version: i64,
}

/// Which of `streams` do not exist in the tenant's log (named by `what`).
pub(crate) async fn missing(
    state: &AppState,
    tenant: Uuid,
    named: &[(String, String)],
) -> Result<Option<String>, ApiError> {
    if named.is_empty() {
        return Ok(None);
    }
    let streams: Vec<String> = named.iter().map(|(s, _)| s.clone()).collect();
    let client = state
        .pool
        .get()
        .await
        .map_err(opsledger_store::StoreError::from)?;
    let known = opsledger_store::read::existing_streams(&client, tenant, &streams).await?;
    Ok(named
        .iter()
        .find(|(s, _)| !known.contains(s))
        .map(|(_, what)| format!("{what} does not exist")))
}

pub(crate) async fn services_exist(
    state: &AppState,
    tenant: Uuid,
    services: &[Uuid],
) -> Result<(), ApiError> {
    let named: Vec<(String, String)> = services
        .iter()
        .map(|s| (dir::service_stream(*s), format!("service {s}")))
        .collect();
    match missing(state, tenant, &named).await? {
        Some(m) => Err(ApiError::Unprocessable(m)),
        None => Ok(()),
    }
}

async fn links_exist(state: &AppState, tenant: Uuid, links: &[Link]) -> Result<(), ApiError> {
    let mut named = Vec::new();
    for l in links {
        let stream = l.target_stream()?;
        let what = match (l.incident_id, l.proposal_id) {
            (Some(i), _) => format!("incident {i}"),
            (_, Some(p)) => format!("proposal {p}"),
            _ => "the link's target".to_owned(),
        };
        named.push((stream, what));
    }
    match missing(state, tenant, &named).await? {
        Some(m) => Err(ApiError::Unprocessable(m)),
        None => Ok(()),
    }
}

fn roles_for(kind: Kind) -> &'static [Role] {
    match kind {
        Kind::Standard => STANDARD_CHANGERS,
        Kind::Normal | Kind::Emergency => CHANGE_MAINTAINERS,
    }
}

fn require_any(actor: &Actor, roles: &[Role], what: &str) -> Result<(), ApiError> {
    if actor.has_any(roles) {
        Ok(())
    } else {
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        Err(ApiError::Forbidden(format!(
            "{what} needs one of the roles {}",
            names.join(", ")
        )))
    }
}

// ------------------------------------------------------------ request

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestBody {
    pub kind: Kind,
    pub category: Category,
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    pub risk: Risk,
    pub impact: String,
    #[serde(default)]
    pub rollback_plan: Option<String>,
    pub service_ids: Vec<Uuid>,
    #[serde(default)]
    pub links: Vec<Link>,
}

pub async fn change_request(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    body: web::Json<RequestBody>,
) -> Result<HttpResponse, ApiError> {
    let (actor, fingerprint, replayed) =
        begin_command(&state, &caller, STANDARD_CHANGERS, &key, &req, &*body).await?;
    if let Some(r) = replayed {
        return Ok(r);
    }
    let body = body.into_inner();
    require_any(
        actor,
        roles_for(body.kind),
        &format!("a {} change", body.kind.as_str()),
    )?;
    let id = Uuid::now_v7();
    let tenant = actor.tenant_id;
    services_exist(&state, tenant, &body.service_ids).await?;
    links_exist(&state, tenant, &body.links).await?;
    let command = Command::Request(Request {
        change_id: id,
        service_ids: body.service_ids,
        kind: body.kind,
        category: body.category,
        title: body.title,
        description: body.description,
        risk: body.risk,
        impact: body.impact,
        rollback_plan: body.rollback_plan,
        links: body.links,
    });
    let target = Target::New {
        id,
        location: format!("/api/v1/changes/{id}"),
    };
    let asked = aggregate::asked(actor, &req, IfMatch(None), key, &fingerprint);
    let ran =
        run::run::<Change, _, _, ApiError>(state.ledger(), asked, target, command, async |_| {
            Ok(Prepared {
                context: change::Context::default(),
                view: run::versioned::<Change>,
            })
        })
        .await?;
    aggregate::answer(ran, &fingerprint)
}

// ------------------------------------------------------------ steps

/// A step as asked, before what it needs from elsewhere is looked up.
enum Step {
    Submit(MinutesBody),
    Approve(ApproveBody),
    Reject(ReasonBody),
    Schedule(ScheduleBody),
    Start(MinutesBody),
    Complete(CompleteBody),
    Fail(ReasonBody),
    RollBack(ReasonBody),
    Review(ReviewBody),
    Link(Link),
}

#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MinutesBody {
    #[serde(default)]
    pub minutes_spent: Option<u32>,
}

#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub minutes_spent: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    pub reason: String,
    #[serde(default)]
    pub minutes_spent: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[serde(default)]
    pub window_id: Option<Uuid>,
    #[serde(default)]
    pub minutes_spent: Option<u32>,
}

#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteBody {
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub minutes_spent: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewBody {
    pub summary: String,
    #[serde(default)]
    pub minutes_spent: Option<u32>,
}

impl Step {
    fn name(&self) -> &'static str {
        match self {
            Step::Submit(_) => "submitting a change",
            Step::Approve(_) => "approving a change",
            Step::Reject(_) => "rejecting a change",
            Step::Schedule(_) => "scheduling a change",
            Step::Start(_) => "starting a change",
            Step::Complete(_) => "completing a change",
            Step::Fail(_) => "failing a change",
            Step::RollBack(_) => "rolling back a change",
            Step::Review(_) => "reviewing a change",
            Step::Link(_) => "linking a change",
        }
    }
}

impl Step {
    /// The command it asks for, given by `by`, and what deciding it looks up.
    fn command(self, by: String) -> (Command, Lookup) {
        match self {
            Step::Submit(b) => (
                Command::Submit {
                    minutes_spent: b.minutes_spent,
                },
                Lookup::Nothing,
            ),
            Step::Approve(b) => (
                Command::Approve {
                    by,
                    comment: b.comment,
                    minutes_spent: b.minutes_spent,
                },
                Lookup::Nothing,
            ),
            Step::Reject(b) => (
                Command::Reject {
                    by,
                    reason: b.reason,
                    minutes_spent: b.minutes_spent,
                },
                Lookup::Nothing,
            ),
            Step::Schedule(b) => (
                Command::Schedule {
                    start: b.start,
                    end: b.end,
                    window_id: b.window_id,
                    minutes_spent: b.minutes_spent,
                },
                Lookup::Schedule(b.start, b.end),
            ),
            Step::Start(b) => (
                Command::Start {
                    minutes_spent: b.minutes_spent,
                },
                Lookup::Start,
            ),
            Step::Complete(b) => (
                Command::Complete {
                    note: b.note,
                    minutes_spent: b.minutes_spent,
                },
                Lookup::Nothing,
            ),
            Step::Fail(b) => (
                Command::Fail {
                    reason: b.reason,
                    minutes_spent: b.minutes_spent,
                },
                Lookup::Nothing,
            ),
            Step::RollBack(b) => (
                Command::RollBack {
                    reason: b.reason,
                    minutes_spent: b.minutes_spent,
                },
                Lookup::Nothing,
            ),
            Step::Review(b) => (
                Command::Review {
                    summary: b.summary,
                    minutes_spent: b.minutes_spent,
                },
                Lookup::Nothing,
            ),
            Step::Link(link) => (Command::Link { link }, Lookup::Nothing),
        }
    }
}

/// A step: role (by the change's kind), the records it names, then the one
/// command path (If-Match, freezes and overlaps looked up, decide, append).
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
    let name = step.name();
    let deciding = matches!(step, Step::Approve(_) | Step::Reject(_));
    let reviewing = matches!(step, Step::Review(_));
    let window = match &step {
        Step::Schedule(b) => b.window_id,
        _ => None,
    };
    let link = match &step {
        Step::Link(l) => Some(*l),
        _ => None,
    };
    let (command, lookup) = step.command(caller.0.subject.clone());
    let r = Asked {
        caller: &caller,
        req: &req,
        key,
        body: asked,
    };
    let target = Target::Existing(id);
    let admit = |actor: &Actor, change: Option<&Change>| {
        let roles = roles_of_step(deciding, reviewing, change.map(|c| c.kind));
        require_any(actor, roles, name)
    };
    let prepare = async |actor: &Actor, change: Option<&Change>| {
        let change = change.ok_or_else(|| ApiError::NotFound(format!("no change {id}")))?;
        let tenant = actor.tenant_id;
        if let Some(w) = window {
            let named = [(
                opsledger_domain::window::window_stream(w),
                format!("maintenance window {w}"),
            )];
            if let Some(m) = missing(&state, tenant, &named).await? {
                return Err(ApiError::Unprocessable(m));
            }
        }
        if let Some(link) = link {
            links_exist(&state, tenant, &[link]).await?;
        }
        Ok(Prepared {
            context: opsledger_app::changes::context(state.ledger(), tenant, change, lookup)
                .await?,
            view: run::versioned::<Change>,
        })
    };
    aggregate::run_command::<Change, _, _, _>(
        &state,
        r,
        if_match,
        ANY_CHANGER,
        target,
        command,
        admit,
        prepare,
    )
    .await
}

/// Who may take a step: approvals and rejections the approvers; the review
/// after the fact, for a standard change anyone who changes (the system
/// owners' as much as the doers'), else the reviewers; the rest by kind.
fn roles_of_step(deciding: bool, reviewing: bool, kind: Option<Kind>) -> &'static [Role] {
    match (deciding, reviewing, kind) {
        (true, _, _) => CHANGE_APPROVERS,
        (_, true, Some(Kind::Standard)) => ANY_CHANGER,
        (_, true, _) => CHANGE_REVIEWERS,
        (_, _, kind) => roles_for(kind.unwrap_or(Kind::Normal)),
    }
}

/// The roles the step named `name` (the last segment of its route) takes on
/// a change of `kind`: what the console asks before offering it.
pub fn step_roles(name: &str, kind: Kind) -> &'static [Role] {
    roles_of_step(
        matches!(name, "approve" | "reject"),
        name == "review",
        Some(kind),
    )
}

/// A step as a console form asks for it: `name` is the last segment of its
/// API route, `fields` the form's fields (URL-encoded, empty ones left
/// out), read into the same body type the route reads JSON into, and run
/// on the same command path on `version`. `Ok(None)`: no such step.
pub async fn console_step(
    state: web::Data<AppState>,
    actor: Actor,
    req: HttpRequest,
    id: Uuid,
    version: i64,
    name: &str,
    fields: &str,
) -> Result<Option<HttpResponse>, ApiError> {
    let asked = Step::of(name, fields)?;
    let Some(asked) = asked else { return Ok(None) };
    let caller = Caller(actor);
    step(
        state,
        caller,
        req,
        id,
        IfMatch(Some(version)),
        IdempotencyKey(None),
        Value::Null,
        asked,
    )
    .await
    .map(Some)
}

/// Requests a change as a console form asks for it (no idempotency key:
/// the form is answered with a redirect, and a browser's retry asks again).
pub async fn console_request(
    state: web::Data<AppState>,
    actor: Actor,
    req: HttpRequest,
    body: RequestBody,
) -> Result<HttpResponse, ApiError> {
    change_request(
        state,
        Caller(actor),
        IdempotencyKey(None),
        req,
        web::Json(body),
    )
    .await
}

impl Step {
    /// The step named `name`, its body read from a form's `fields`.
    fn of(name: &str, fields: &str) -> Result<Option<Step>, ApiError> {
        fn body<B: serde::de::DeserializeOwned>(fields: &str) -> Result<B, ApiError> {
            serde_urlencoded::from_str(fields).map_err(|e| ApiError::Unprocessable(e.to_string()))
        }
        Ok(Some(match name {
            "submit" => Step::Submit(body(fields)?),
            "approve" => Step::Approve(body(fields)?),
            "reject" => Step::Reject(body(fields)?),
            "schedule" => Step::Schedule(body(fields)?),
            "start" => Step::Start(body(fields)?),
            "complete" => Step::Complete(body(fields)?),
            "fail" => Step::Fail(body(fields)?),
            "rollback" => Step::RollBack(body(fields)?),
            "review" => Step::Review(body(fields)?),
            _ => return Ok(None),
        }))
    }
}

macro_rules! step_handler {
    ($name:ident, $body:ty, $variant:ident) => {
        pub async fn $name(
            s: web::Data<AppState>,
            c: Caller,
            r: HttpRequest,
            id: web::Path<Uuid>,
            m: IfMatch,
            k: IdempotencyKey,
            b: OrEmpty<$body>,
        ) -> Result<HttpResponse, ApiError> {
            let step_of = Step::$variant(b.body);
            step(s, c, r, id.into_inner(), m, k, b.asked, step_of).await
        }
    };
}

step_handler!(change_submit, MinutesBody, Submit);
step_handler!(change_approve, ApproveBody, Approve);
step_handler!(change_reject, ReasonBody, Reject);
step_handler!(change_schedule, ScheduleBody, Schedule);
step_handler!(change_start, MinutesBody, Start);
step_handler!(change_complete, CompleteBody, Complete);
step_handler!(change_fail, ReasonBody, Fail);
step_handler!(change_rollback, ReasonBody, RollBack);
step_handler!(change_review, ReviewBody, Review);
step_handler!(change_link, Link, Link);

// ------------------------------------------------------------ reads

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ChangeListQuery {
    /// Only items of this service.
    pub service_id: Option<Uuid>,
    /// Only changes in this status.
    pub status: Option<Status>,
    /// Only changes of this kind.
    pub kind: Option<Kind>,
    /// Only emergency changes that started without approval (true) or the others (false).
    pub approval_missing: Option<bool>,
    /// Cursor: return items whose id is smaller (older) than this one (the `next_cursor` of the previous page). These lists are newest first.
    pub before: Option<Uuid>,
    /// Items per page, 1 to 200 (default 50). Values outside the range are refused with 400.
    pub limit: Option<u32>,
}

pub async fn change_list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ChangeListQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(STAFF)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let limit = page_len(query.limit)?;
    let filter = ChangeFilter {
        service_id: query.service_id,
        status: query.status.map(|s| s.as_str().to_owned()),
        kind: query.kind.map(|k| k.as_str().to_owned()),
        approval_missing: query.approval_missing,
    };
    let items = store_changes::list_changes(
        &state.pool,
        actor.tenant_id,
        &filter,
        query.before,
        limit + 1,
    )
    .await?;
    Ok(HttpResponse::Ok().json(Page::of(items, limit, |c| c.item.id)))
}

pub async fn change_get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
    query: web::Query<AsOfQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(STAFF)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let id = id.into_inner();
    let v = aggregate::load::<Change>(&state, actor.tenant_id, id, query.as_of).await?;
    Ok(aggregate::respond(StatusCode::OK, &v))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// The service.
    pub service: Uuid,
    /// Cursor: return items whose id is greater than this one (the `next_cursor` of the previous page).
    pub after: Option<Uuid>,
    /// Items per page, 1 to 200 (default 50). Values outside the range are refused with 400.
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct HistoryWindow {
    id: Uuid,
    title: String,
    status: &'static str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    rrule: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct HistoryEntry {
    #[serde(flatten)]
    change: Change,
    version: i64,
    /// The incidents it fixes or caused.
    incidents: Vec<Link>,
    /// The maintenance windows that serve it.
    windows: Vec<HistoryWindow>,
}

/// A page of a service's change history.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct History {
    service_id: Uuid,
    #[serde(flatten)]
    page: Page<HistoryEntry>,
}

pub async fn change_history(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(STAFF)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let tenant = actor.tenant_id;
    let service = query.service;
    if crate::common::client_of_service(&state, tenant, service)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound(format!("no service {service}")));
    }
    let limit = page_len(query.limit)?;
    let changes =
        store_changes::change_history(&state.pool, tenant, service, query.after, limit + 1).await?;
    let windows = store_changes::list_windows(
        &state.pool,
        tenant,
        &store_changes::WindowFilter {
            service_id: Some(service),
            ..Default::default()
        },
        None,
        HISTORY_WINDOWS_MAX,
    )
    .await?;
    let items: Vec<HistoryEntry> = changes
        .into_iter()
        .map(|Versioned { item, version }| HistoryEntry {
            incidents: item
                .links
                .iter()
                .filter(|l| l.incident_id.is_some())
                .copied()
                .collect(),
            windows: windows
                .iter()
                .filter(|w| {
                    w.item.change_id == Some(item.id)
                        || item.schedule.as_ref().and_then(|s| s.window_id) == Some(w.item.id)
                })
                .map(|w| HistoryWindow {
                    id: w.item.id,
                    title: w.item.title.clone(),
                    status: w.item.status.as_str(),
                    start: w.item.start,
                    end: w.item.end,
                    rrule: w.item.rrule.clone(),
                })
                .collect(),
            change: item,
            version,
        })
        .collect();
    Ok(HttpResponse::Ok().json(History {
        service_id: service,
        page: Page::of(items, limit, |e| e.change.id),
    }))
}

// ------------------------------------------------------------ freezes

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FreezeBody {
    pub service_ids: Vec<Uuid>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub reason: String,
}

pub async fn freeze_declare(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    body: web::Json<FreezeBody>,
) -> Result<HttpResponse, ApiError> {
    let r = Asked::of(&caller, &req, key, &*body)?;
    let body = body.into_inner();
    let id = Uuid::now_v7();
    let command = freeze::Command::Declare {
        freeze_id: id,
        service_ids: body.service_ids.clone(),
        start: body.start,
        end: body.end,
        reason: body.reason,
    };
    let target = Target::New {
        id,
        location: format!("/api/v1/freezes/{id}"),
    };
    let services = body.service_ids;
    let prepare = async |actor: &Actor, _: Option<&Freeze>| {
        services_exist(&state, actor.tenant_id, &services).await?;
        Ok(Prepared {
            context: (),
            view: run::versioned::<Freeze>,
        })
    };
    aggregate::run_prepared::<Freeze, _, _>(
        &state,
        r,
        IfMatch(None),
        FREEZE_WRITERS,
        target,
        command,
        prepare,
    )
    .await
}

#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LiftBody {
    #[serde(default)]
    pub reason: Option<String>,
}

pub async fn freeze_lift(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<Uuid>,
    if_match: IfMatch,
    key: IdempotencyKey,
    lift: OrEmpty<LiftBody>,
) -> Result<HttpResponse, ApiError> {
    let (body, raw) = (lift.body, lift.asked);
    let r = Asked {
        caller: &caller,
        req: &req,
        key,
        body: raw,
    };
    let command = freeze::Command::Lift {
        reason: body.reason,
    };
    let target = Target::Existing(id.into_inner());
    aggregate::command::<Freeze>(&state, r, if_match, FREEZE_WRITERS, target, command).await
}

pub async fn freeze_get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(STAFF)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let v = aggregate::load::<Freeze>(&state, actor.tenant_id, id.into_inner(), None).await?;
    Ok(aggregate::respond(StatusCode::OK, &v))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FreezeListQuery {
    /// Only items of this service.
    pub service_id: Option<Uuid>,
    /// Items per page, 1 to 200 (default 50). Values outside the range are refused with 400.
    pub limit: Option<u32>,
}

pub async fn freeze_list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<FreezeListQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(STAFF)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let limit = page_len(query.limit)?;
    let items =
        store_changes::list_freezes(&state.pool, actor.tenant_id, query.service_id, limit).await?;
    Ok(HttpResponse::Ok().json(crate::common::Items { items }))
}
