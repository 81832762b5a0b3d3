//! Maintenance windows (SPEC §5): plan, announce (mail to the subscribed
//! contacts of the affected services, through the outbox, in the same
//! append as the announcement), start, end, cancel; reads with recurrences
//! expanded; and the iCalendar feed of windows and scheduled changes.
//!
//! Clients see the windows that touch their own client's services, with only
//! their own services named and without internal fields (who planned it,
//! the change it serves, whether it was announced late, how many were told).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Duration, SubsecRound, Utc};
use opsledger_domain::access::{Actor, ClientScope, Role, INCIDENT_READERS};
use opsledger_domain::calendar::{self, Event};
use opsledger_domain::change::{self, Kind};
use opsledger_domain::notice::{self, NoticeKind, WindowFacts};
use opsledger_domain::notification::{self, NotificationEvent, Recipient};
use opsledger_domain::window::{self, Command, Notice, Plan, Window, WindowEvent};
use opsledger_domain::{directory as dir, NewEvent, RecordedEvent};
use opsledger_store::changes::{self as store_changes, Versioned, WindowFilter};
use opsledger_store::{roster as store_roster, ExpectedVersion, StreamAppend};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::auth::Caller;
use crate::changes::{commit, missing, services_exist};
use crate::common::{begin_command, check_if_match, metadata, page_len, stream_events};
use crate::extract::{optional_json, IfMatch};
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::AppState;

/// Who plans and runs maintenance windows.
pub const WINDOW_WRITERS: &[Role] = &[Role::Maintainer, Role::Admin];
/// Who reads windows and the calendar: staff, and clients (their own services').
pub const WINDOW_READERS: &[Role] = INCIDENT_READERS;
/// Occurrences shown with a window by default: the next ones within this.
const OCCURRENCES_AHEAD_DAYS: i64 = 90;
/// How long an announcement waits for the subscriptions read model to
/// catch up with what was committed before it: as long as scheduling waits
/// for freezes, for the same reason (a contact not told is worse than a
/// slower answer).
const ROSTER_READ_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Occurrences listed in an announcement mail at most.
const MAIL_OCCURRENCES_MAX: usize = 5;
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

#[derive(Debug, Serialize)]
pub struct Occurrence {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
pub struct WindowView {
    #[serde(flatten)]
    pub window: Window,
    pub version: i64,
    pub occurrences: Vec<Occurrence>,
}

/// What a client sees of a window.
#[derive(Debug, Serialize)]
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
) -> Result<Option<Value>, ApiError> {
    let occ = occurrences(&w, range.0, range.1);
    match visible {
        None => Ok(Some(
            serde_json::to_value(WindowView {
                window: w,
                version,
                occurrences: occ,
            })
            .map_err(internal)?,
        )),
        Some(own) => {
            let services: Vec<Uuid> = w
                .service_ids
                .iter()
                .copied()
                .filter(|s| own.contains(s))
                .collect();
            if services.is_empty() {
                return Ok(None);
            }
            Ok(Some(
                serde_json::to_value(ClientWindowView {
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
                })
                .map_err(internal)?,
            ))
        }
    }
}

fn fold(events: &[RecordedEvent]) -> Option<Window> {
    store_changes::fold_window(events)
}

// ------------------------------------------------------------ plan

#[derive(Debug, Serialize, Deserialize)]
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
    let (actor, fingerprint, replayed) =
        begin_command(&state, &caller, WINDOW_WRITERS, &key, &req, &*body).await?;
    if let Some(r) = replayed {
        return Ok(r);
    }
    let body = body.into_inner();
    let tenant = actor.tenant_id;
    let id = Uuid::now_v7();
    let events = window::decide_plan(Plan {
        window_id: id,
        service_ids: body.service_ids.clone(),
        title: body.title,
        description: body.description,
        start: body.start,
        end: body.end,
        rrule: body.rrule,
        change_id: body.change_id,
    })?;
    services_exist(&state, tenant, &body.service_ids).await?;
    if let Some(c) = body.change_id {
        let named = [(change::change_stream(c), format!("change {c}"))];
        if let Some(m) = missing(&state, tenant, &named).await? {
            return Err(ApiError::Unprocessable(m));
        }
    }
    let now = Utc::now().trunc_subsecs(6);
    let meta = metadata(actor, &req);
    let w = events
        .iter()
        .try_fold(None, |w, e| Some(window::evolve(w, e, now, &meta.actor)))
        .flatten()
        .ok_or_else(|| ApiError::Internal("planning made no window".into()))?;
    let ahead = now + Duration::days(OCCURRENCES_AHEAD_DAYS);
    let view = WindowView {
        occurrences: occurrences(&w, now.min(w.start), ahead.max(w.end)),
        window: w,
        version: 1,
    };
    let json = serde_json::to_value(&view).map_err(internal)?;
    commit(
        &state,
        tenant,
        &key,
        &fingerprint,
        vec![StreamAppend {
            stream_id: window::window_stream(id),
            expected: ExpectedVersion::NoStream,
            events: events
                .iter()
                .map(|e| NewEvent::new(e.type_name(), e.payload(), meta.clone(), now))
                .collect(),
        }],
        StatusCode::CREATED,
        Some(format!("/api/v1/maintenance-windows/{id}")),
        1,
        json,
    )
    .await
}

// ------------------------------------------------------------ steps

enum Step {
    Announce,
    Start,
    End(EndBody),
    Cancel(CancelBody),
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndBody {
    #[serde(default)]
    pub minutes_spent: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    pub reason: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyBody {}

/// A service's name, client and notice period, from its own stream.
async fn service_facts(
    state: &AppState,
    tenant: Uuid,
    service: Uuid,
) -> Result<Option<(String, Uuid, u32)>, ApiError> {
    let events = stream_events(state, tenant, &dir::service_stream(service), None).await?;
    Ok(events.iter().find_map(|e| {
        match dir::DirectoryEvent::from_stored(&e.event_type, &e.payload) {
            Some(dir::DirectoryEvent::ServiceRegistered {
                name,
                client_id,
                notice_period_h,
                ..
            }) => Some((name.as_str().to_owned(), client_id, notice_period_h)),
            _ => None,
        }
    }))
}

/// Whether the change a window serves is an emergency change.
async fn serves_emergency(
    state: &AppState,
    tenant: Uuid,
    change_id: Option<Uuid>,
) -> Result<bool, ApiError> {
    let Some(c) = change_id else { return Ok(false) };
    let events = stream_events(state, tenant, &change::change_stream(c), None).await?;
    Ok(store_changes::fold_change(&events).is_some_and(|c| c.kind == Kind::Emergency))
}

/// The services of a window that exist: id, name, client, notice period.
async fn services_of(
    state: &AppState,
    tenant: Uuid,
    w: &Window,
) -> Result<Vec<(Uuid, String, Uuid, u32)>, ApiError> {
    let mut out = Vec::new();
    for s in &w.service_ids {
        if let Some((name, client, hours)) = service_facts(state, tenant, *s).await? {
            out.push((*s, name, client, hours));
        }
    }
    Ok(out)
}

/// Every active subscription to one service, page by page: an announcement
/// goes to all of them, however many there are.
async fn all_subscriptions(
    state: &AppState,
    tenant: Uuid,
    client: Uuid,
    service: Uuid,
) -> Result<Vec<store_roster::SubscriptionRow>, ApiError> {
    const PAGE: i64 = 500;
    let mut all: Vec<store_roster::SubscriptionRow> = Vec::new();
    loop {
        let after = all.last().map(|s| s.id);
        let page = store_roster::list_subscriptions(
            &state.pool,
            tenant,
            Some(client),
            Some(service),
            after,
            PAGE,
        )
        .await?;
        let last = (page.len() as i64) < PAGE;
        all.extend(page);
        if last {
            return Ok(all);
        }
    }
}

/// The subscribed contacts of these services, each address once, with the
/// names of its own client's services among them.
async fn recipients_of(
    state: &AppState,
    tenant: Uuid,
    w: &Window,
    services: &[(Uuid, String, Uuid, u32)],
) -> Result<Vec<(Recipient, Vec<String>)>, ApiError> {
    // Subscriptions made before this request count.
    if !crate::common::await_read_model(
        state,
        opsledger_store::roster::PROJECTION,
        ROSTER_READ_WAIT,
    )
    .await?
    {
        tracing::warn!(window = %w.id, "telling contacts from a roster projection that is behind");
    }
    let mut recipients: Vec<(Recipient, Vec<String>)> = Vec::new();
    for (service, name, client, _) in services {
        for sub in all_subscriptions(state, tenant, *client, *service).await? {
            match recipients
                .iter_mut()
                .find(|(r, _)| r.email.eq_ignore_ascii_case(&sub.email))
            {
                Some((_, names)) => {
                    if !names.contains(name) {
                        names.push(name.clone());
                    }
                }
                None => recipients.push((
                    Recipient {
                        name: sub.name,
                        email: sub.email,
                        locale: sub.locale,
                        user_id: None,
                        subscription_id: Some(sub.id),
                        client_id: Some(sub.client_id),
                    },
                    vec![name.clone()],
                )),
            }
        }
    }
    Ok(recipients)
}

/// One notification request per recipient, caused by `cause` (the window's
/// new event), to go in the same append: each told once, in its language,
/// of its own client's services only.
fn notices(
    kind: NoticeKind,
    w: &Window,
    recipients: Vec<(Recipient, Vec<String>)>,
    cause: &NewEvent,
    now: DateTime<Utc>,
    checkpoint: Option<&str>,
) -> Vec<StreamAppend> {
    let next: Vec<(DateTime<Utc>, DateTime<Utc>)> = w
        .occurrences(now, now + Duration::days(3660))
        .into_iter()
        .take(MAIL_OCCURRENCES_MAX)
        .collect();
    let notifier = opsledger_domain::Metadata {
        actor: "system:notifier".into(),
        role: "system".into(),
        request_id: cause.metadata.request_id.clone(),
        correlation_id: None,
        causation_id: Some(cause.event_id),
        source: "api".into(),
    };
    recipients
        .into_iter()
        .map(|(recipient, services)| {
            let message = notice::render_window(
                kind,
                &recipient.locale,
                &WindowFacts {
                    window_id: w.id,
                    title: w.title.clone(),
                    description: w.description.clone(),
                    services,
                    occurrences: next.clone(),
                    rrule: w.rrule.clone(),
                    recipient_name: recipient.name.clone(),
                },
            )
            .with_checkpoint(checkpoint);
            let id = notification::notification_id(cause.event_id, &recipient.email);
            let requested = NotificationEvent::NotificationRequested {
                notification_id: id,
                kind,
                cause_event_id: cause.event_id,
                incident_id: None,
                recipient,
                message,
            };
            StreamAppend {
                stream_id: notification::notification_stream(id),
                expected: ExpectedVersion::NoStream,
                events: vec![NewEvent::new(
                    requested.type_name(),
                    requested.payload(),
                    notifier.clone(),
                    now,
                )],
            }
        })
        .collect()
}

/// The announcement and, in the same append, the mails that carry it.
async fn announcement(
    state: &AppState,
    tenant: Uuid,
    w: &Window,
    now: DateTime<Utc>,
    meta: &opsledger_domain::Metadata,
) -> Result<(Vec<WindowEvent>, Vec<StreamAppend>, NewEvent), ApiError> {
    let services = services_of(state, tenant, w).await?;
    let recipients = recipients_of(state, tenant, w, &services).await?;
    let emergency = serves_emergency(state, tenant, w.change_id).await?;
    let decided = window::decide(
        w,
        Command::Announce {
            now,
            notices: services
                .iter()
                .map(|(service_id, _, _, hours)| Notice {
                    service_id: *service_id,
                    notice_period_h: *hours,
                })
                .collect(),
            emergency,
            recipients: recipients.len() as u32,
        },
    )?;
    let announced = NewEvent::new(
        decided[0].type_name(),
        decided[0].payload(),
        meta.clone(),
        now,
    );
    let checkpoint = crate::audit::latest_checkpoint(state, tenant).await?;
    let streams = notices(
        NoticeKind::WindowAnnounced,
        w,
        recipients,
        &announced,
        now,
        checkpoint.as_deref(),
    );
    Ok((decided, streams, announced))
}

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
    let what = serde_json::json!({ "if_match": if_match.0, "body": asked });
    let (actor, fingerprint, replayed) =
        begin_command(&state, &caller, WINDOW_WRITERS, &key, &req, &what).await?;
    if let Some(r) = replayed {
        return Ok(r);
    }
    let tenant = actor.tenant_id;
    let stream = window::window_stream(id);
    let events = stream_events(&state, tenant, &stream, None).await?;
    let w =
        fold(&events).ok_or_else(|| ApiError::NotFound(format!("no maintenance window {id}")))?;
    let version = events.last().map_or(0, |e| e.stream_version);
    check_if_match(if_match.0, version, "window", w.status.as_str())?;
    let now = Utc::now().trunc_subsecs(6);
    let meta = metadata(actor, &req);
    let with_state =
        |r: opsledger_domain::Rejection| ApiError::from(r).naming_state(w.status.as_str());
    let (new_events, decided, others) = match step {
        Step::Announce => {
            if w.status != window::Status::Planned {
                return Err(with_state(opsledger_domain::Rejection::InvalidState {
                    entity: "maintenance window",
                    command: "announce".into(),
                    state: w.status.as_str().into(),
                }));
            }
            let (decided, others, announced) = announcement(&state, tenant, &w, now, &meta).await?;
            (vec![announced], decided, others)
        }
        other => {
            let command = match other {
                Step::Start => Command::Start,
                Step::End(b) => Command::End {
                    minutes_spent: b.minutes_spent,
                },
                Step::Cancel(b) => Command::Cancel { reason: b.reason },
                Step::Announce => unreachable!("handled above"),
            };
            let cancels_announced =
                matches!(command, Command::Cancel { .. }) && w.status == window::Status::Announced;
            let decided = window::decide(&w, command).map_err(with_state)?;
            let new: Vec<NewEvent> = decided
                .iter()
                .map(|e| NewEvent::new(e.type_name(), e.payload(), meta.clone(), now))
                .collect();
            // Those told of an announced window are told it is called off.
            let others = match (cancels_announced, new.first()) {
                (true, Some(cancelled)) => {
                    let services = services_of(&state, tenant, &w).await?;
                    let recipients = recipients_of(&state, tenant, &w, &services).await?;
                    let checkpoint = crate::audit::latest_checkpoint(&state, tenant).await?;
                    notices(
                        NoticeKind::WindowCancelled,
                        &w,
                        recipients,
                        cancelled,
                        now,
                        checkpoint.as_deref(),
                    )
                }
                _ => Vec::new(),
            };
            (new, decided, others)
        }
    };
    let after = decided
        .iter()
        .try_fold(w, |w, e| window::evolve(Some(w), e, now, &meta.actor))
        .ok_or_else(|| ApiError::Internal("the window vanished".into()))?;
    let new_version = version + decided.len() as i64;
    let ahead = now + Duration::days(OCCURRENCES_AHEAD_DAYS);
    let view = WindowView {
        occurrences: occurrences(&after, now.min(after.start), ahead.max(after.end)),
        window: after,
        version: new_version,
    };
    let json = serde_json::to_value(&view).map_err(internal)?;
    let mut streams = vec![StreamAppend {
        stream_id: stream,
        expected: ExpectedVersion::Exact(version),
        events: new_events,
    }];
    streams.extend(others);
    commit(
        &state,
        tenant,
        &key,
        &fingerprint,
        streams,
        StatusCode::OK,
        None,
        new_version,
        json,
    )
    .await
}

fn body_of<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    bytes: &[u8],
) -> Result<(T, Value), ApiError> {
    let raw: Option<Value> = optional_json(req, bytes)?;
    let raw = raw.unwrap_or_else(|| Value::Object(Default::default()));
    let parsed = serde_json::from_value(raw.clone())
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid: {e}")))?;
    Ok((parsed, raw))
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
            bytes: web::Bytes,
        ) -> Result<HttpResponse, ApiError> {
            let ($b, raw): ($body, Value) = body_of(&r, &bytes)?;
            step(s, c, r, id.into_inner(), m, k, raw, $make).await
        }
    };
}

window_step!(window_announce, EmptyBody, |_b| Step::Announce);
window_step!(window_start, EmptyBody, |_b| Step::Start);
window_step!(window_end, EndBody, |b| Step::End(b));
window_step!(window_cancel, CancelBody, |b| Step::Cancel(b));

// ------------------------------------------------------------ reads

#[derive(Debug, Deserialize)]
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
    let events = stream_events(&state, actor.tenant_id, &window::window_stream(id), None).await?;
    let w = fold(&events).ok_or_else(not_found)?;
    let version = events.last().map_or(0, |e| e.stream_version);
    let mut r = range(query.from, query.to)?;
    if query.from.is_none() {
        // A one-off window in the past still shows its one occurrence.
        r.0 = r.0.min(w.start);
    }
    let visible = visible_services(&state, actor).await?;
    let json = view_for(visible.as_deref(), w, version, r)?.ok_or_else(not_found)?;
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::ETAG, format!("\"{version}\"")))
        .json(json))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowListQuery {
    pub service_id: Option<Uuid>,
    pub status: Option<window::Status>,
    pub change_id: Option<Uuid>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub before: Option<Uuid>,
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
            return Ok(HttpResponse::Ok().json(serde_json::json!({ "items": [] })))
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
        if let Some(v) = view_for(visible.as_deref(), item, version, (from, r.1))? {
            items.push(v);
        }
    }
    let mut page = serde_json::json!({ "items": items });
    if let (true, Some(id)) = (more, last) {
        page["next_cursor"] = id.to_string().into();
    }
    Ok(HttpResponse::Ok().json(page))
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
