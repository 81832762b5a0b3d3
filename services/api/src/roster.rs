//! Responders, escalation policies, on-call schedules, client subscriptions,
//! the teams' queues and the notification ledger.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, SubsecRound, Utc};
use opsledger_domain::access::{
    Actor, ClientScope, LEDGER_READERS, OVERRIDE_WRITERS, ROSTER_WRITERS, STAFF,
    SUBSCRIPTION_WRITERS,
};
use opsledger_domain::alert::Severity;
use opsledger_domain::escalation::{self, Level, Policy, PolicyEvent, Target};
use opsledger_domain::notice::NoticeKind;
use opsledger_domain::oncall::{self, Override, Rotation, Schedule};
use opsledger_domain::roster::{self, RosterEvent, OVERRIDES_MAX};
use opsledger_domain::text::{Email, Locale, Name};
use opsledger_domain::{NewEvent, RecordedEvent};
use opsledger_store::{
    incidents as store_inc, outbox, roster as store_roster, AppendOutcome, AppendRequest,
    ExpectedVersion, StreamAppend,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::auth::Caller;
use crate::common::{
    begin_command, metadata, page_len, require_services, stream_events, unprocessable, AsOfQuery,
    Page,
};
use crate::idempotency::{self, IdempotencyKey};
use crate::problem::ApiError;
use crate::AppState;

fn internal(e: serde_json::Error) -> ApiError {
    ApiError::Internal(Box::new(e))
}

/// Appends the first events of a new stream, as occurred `at`, and answers
/// 201 with `view`. The caller puts the same `at` (truncated to microseconds,
/// as stored) in `view`, so this answer, the read by id and the list agree.
#[allow(clippy::too_many_arguments)]
async fn create(
    state: &AppState,
    actor: &Actor,
    req: &HttpRequest,
    key: &IdempotencyKey,
    fingerprint: &str,
    stream: String,
    events: Vec<RosterOrPolicy>,
    location: String,
    view: Value,
    at: DateTime<Utc>,
) -> Result<HttpResponse, ApiError> {
    let meta = metadata(actor, req);
    let version = events.len() as i64;
    let request = AppendRequest {
        tenant_id: actor.tenant_id,
        streams: vec![StreamAppend {
            stream_id: stream,
            expected: ExpectedVersion::NoStream,
            events: events
                .iter()
                .map(|e| {
                    let (t, p) = e.parts();
                    NewEvent::new(t, p, meta.clone(), at)
                })
                .collect(),
        }],
        idempotency: idempotency::claim(
            key,
            fingerprint,
            StatusCode::CREATED,
            Some(&location),
            Some(version),
            &view,
        ),
    };
    match state.committer.append(request).await? {
        AppendOutcome::Committed { .. } => Ok(HttpResponse::Created()
            .insert_header((header::LOCATION, location))
            .insert_header((header::ETAG, format!("\"{version}\"")))
            .json(view)),
        AppendOutcome::Duplicate {
            fingerprint: stored,
            response,
        } => idempotency::replay(&stored, &response, fingerprint),
    }
}

/// A 200 with the stream version as entity tag, as the directory's and
/// incidents' reads by id answer.
fn found(version: i64, view: &impl Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, format!("\"{version}\"")))
        .json(view)
}

enum RosterOrPolicy {
    Roster(RosterEvent),
    Policy(PolicyEvent),
}

impl RosterOrPolicy {
    fn parts(&self) -> (&'static str, Value) {
        match self {
            RosterOrPolicy::Roster(e) => (e.type_name(), e.payload()),
            RosterOrPolicy::Policy(e) => (e.type_name(), e.payload()),
        }
    }
}

fn locale_of(raw: Option<&str>) -> Result<Locale, ApiError> {
    Locale::parse(raw.unwrap_or("en")).map_err(unprocessable)
}

fn locale_str(l: Locale) -> &'static str {
    match l {
        Locale::Ja => "ja",
        Locale::En => "en",
    }
}

// ------------------------------------------------------------ users

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    pub name: String,
    pub email: String,
    pub locale: Option<String>,
}

pub async fn user_register(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    body: web::Json<UserBody>,
) -> Result<HttpResponse, ApiError> {
    let (actor, fingerprint, replayed) =
        begin_command(&state, &caller, ROSTER_WRITERS, &key, &req, &*body).await?;
    if let Some(r) = replayed {
        return Ok(r);
    }
    let name = Name::parse("name", &body.name).map_err(unprocessable)?;
    let email = Email::parse(&body.email).map_err(unprocessable)?;
    let locale = locale_of(body.locale.as_deref())?;
    let id = Uuid::now_v7();
    let at = Utc::now().trunc_subsecs(6);
    let view = serde_json::to_value(user_view(id, &name, &email, locale, at)).map_err(internal)?;
    let event = RosterEvent::UserRegistered {
        user_id: id,
        name,
        email,
        locale,
    };
    create(
        &state,
        actor,
        &req,
        &key,
        &fingerprint,
        roster::user_stream(id),
        vec![RosterOrPolicy::Roster(event)],
        format!("/api/v1/users/{id}"),
        view,
        at,
    )
    .await
}

/// A responder as every answer shows one: the list's row.
fn user_view(
    id: Uuid,
    name: &Name,
    email: &Email,
    locale: Locale,
    registered_at: DateTime<Utc>,
) -> store_roster::UserRow {
    store_roster::UserRow {
        id,
        name: name.as_str().to_owned(),
        email: email.as_str().to_owned(),
        locale: locale_str(locale).to_owned(),
        registered_at,
    }
}

/// `GET /api/v1/users/{id}`: one responder, folded from its stream.
pub async fn user_get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
    query: web::Query<AsOfQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(STAFF)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let id = id.into_inner();
    let events = stream_events(
        &state,
        actor.tenant_id,
        &roster::user_stream(id),
        query.as_of,
    )
    .await?;
    let registered =
        events.iter().find_map(
            |e| match RosterEvent::from_stored(&e.event_type, &e.payload) {
                Some(RosterEvent::UserRegistered {
                    name,
                    email,
                    locale,
                    ..
                }) => Some(user_view(id, &name, &email, locale, e.occurred_at)),
                _ => None,
            },
        );
    match (registered, events.last()) {
        (Some(view), Some(last)) => Ok(found(last.stream_version, &view)),
        _ => Err(ApiError::NotFound(format!("no user {id}"))),
    }
}

/// A page of a roster list: the id of the last item of the previous page,
/// and how many items.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterPageQuery {
    pub after: Option<Uuid>,
    pub limit: Option<u32>,
}

pub async fn user_list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<RosterPageQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(STAFF)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let limit = page_len(query.limit)?;
    let items =
        store_roster::list_users(&state.pool, actor.tenant_id, query.after, limit + 1).await?;
    Ok(HttpResponse::Ok().json(Page::of(items, limit, |u| u.id)))
}

// ------------------------------------------------------------ policies

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    pub name: String,
    pub levels: Vec<Level>,
    #[serde(default)]
    pub service_ids: Vec<Uuid>,
}

async fn exists(state: &AppState, tenant: Uuid, stream: &str) -> Result<bool, ApiError> {
    Ok(!stream_events(state, tenant, stream, None).await?.is_empty())
}

pub async fn policy_define(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    body: web::Json<PolicyBody>,
) -> Result<HttpResponse, ApiError> {
    let (actor, fingerprint, replayed) =
        begin_command(&state, &caller, ROSTER_WRITERS, &key, &req, &*body).await?;
    if let Some(r) = replayed {
        return Ok(r);
    }
    let body = body.into_inner();
    let policy = Policy {
        name: body.name.trim().to_owned(),
        levels: body.levels,
        service_ids: body.service_ids,
    };
    escalation::validate(&policy)?;
    let tenant = actor.tenant_id;
    require_services(&state, tenant, &policy.service_ids).await?;
    for level in &policy.levels {
        for t in &level.targets {
            let (stream, what) = match t {
                Target::User(id) => (roster::user_stream(*id), format!("user {id}")),
                Target::Schedule(id) => (roster::schedule_stream(*id), format!("schedule {id}")),
            };
            if !exists(&state, tenant, &stream).await? {
                return Err(ApiError::Unprocessable(format!("{what} does not exist")));
            }
        }
    }
    let id = Uuid::now_v7();
    let at = Utc::now().trunc_subsecs(6);
    let view = serde_json::to_value(store_roster::PolicyRow {
        id,
        policy: policy.clone(),
        version: 1,
        defined_at: at,
    })
    .map_err(internal)?;
    create(
        &state,
        actor,
        &req,
        &key,
        &fingerprint,
        escalation::policy_stream(id),
        vec![RosterOrPolicy::Policy(
            PolicyEvent::EscalationPolicyDefined {
                policy_id: id,
                policy,
            },
        )],
        format!("/api/v1/escalation-policies/{id}"),
        view,
        at,
    )
    .await
}

pub async fn policy_list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<RosterPageQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(STAFF)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let limit = page_len(query.limit)?;
    let items =
        store_roster::list_policies(&state.pool, actor.tenant_id, query.after, limit + 1).await?;
    Ok(HttpResponse::Ok().json(Page::of(items, limit, |p| p.id)))
}

/// `GET /api/v1/escalation-policies/{id}`: one policy, folded from its
/// stream; the latest definition is the one in force.
pub async fn policy_get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
    query: web::Query<AsOfQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(STAFF)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let id = id.into_inner();
    let stream = escalation::policy_stream(id);
    let events = stream_events(&state, actor.tenant_id, &stream, query.as_of).await?;
    let defined = events.iter().rev().find_map(|e| {
        match PolicyEvent::from_stored(&e.event_type, &e.payload) {
            Some(PolicyEvent::EscalationPolicyDefined { policy, .. }) => {
                Some((policy, e.occurred_at))
            }
            _ => None,
        }
    });
    match (defined, events.last()) {
        (Some((policy, defined_at)), Some(last)) => {
            let view = store_roster::PolicyRow {
                id,
                policy,
                version: last.stream_version,
                defined_at,
            };
            Ok(found(last.stream_version, &view))
        }
        _ => Err(ApiError::NotFound(format!("no escalation policy {id}"))),
    }
}

// ------------------------------------------------------------ schedules

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    pub name: String,
    pub time_zone: String,
    pub rotations: Vec<Rotation>,
}

#[derive(Debug, Serialize)]
struct ScheduleView {
    id: Uuid,
    name: String,
    #[serde(flatten)]
    schedule: Schedule,
    version: i64,
}

/// The users a schedule or override names must exist; asked of the log, so
/// that a user registered a moment ago counts.
async fn users_exist(state: &AppState, tenant: Uuid, ids: &[Uuid]) -> Result<(), ApiError> {
    let streams: Vec<String> = ids.iter().map(|id| roster::user_stream(*id)).collect();
    let client = state
        .pool
        .get()
        .await
        .map_err(opsledger_store::StoreError::from)?;
    let known = opsledger_store::read::existing_streams(&client, tenant, &streams).await?;
    match ids
        .iter()
        .find(|id| !known.contains(&roster::user_stream(**id)))
    {
        Some(missing) => Err(ApiError::Unprocessable(format!(
            "user {missing} does not exist"
        ))),
        None => Ok(()),
    }
}

pub async fn schedule_define(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    body: web::Json<ScheduleBody>,
) -> Result<HttpResponse, ApiError> {
    let (actor, fingerprint, replayed) =
        begin_command(&state, &caller, ROSTER_WRITERS, &key, &req, &*body).await?;
    if let Some(r) = replayed {
        return Ok(r);
    }
    let body = body.into_inner();
    let name = Name::parse("name", &body.name).map_err(unprocessable)?;
    let schedule = Schedule {
        time_zone: body.time_zone,
        rotations: body.rotations,
        overrides: Vec::new(),
    };
    oncall::validate(&schedule).map_err(unprocessable)?;
    let users: Vec<Uuid> = schedule
        .rotations
        .iter()
        .flat_map(|r| r.users.iter().copied())
        .collect();
    users_exist(&state, actor.tenant_id, &users).await?;
    let id = Uuid::now_v7();
    let at = Utc::now().trunc_subsecs(6);
    let view = serde_json::to_value(ScheduleView {
        id,
        name: name.as_str().to_owned(),
        schedule: schedule.clone(),
        version: 1,
    })
    .map_err(internal)?;
    create(
        &state,
        actor,
        &req,
        &key,
        &fingerprint,
        roster::schedule_stream(id),
        vec![RosterOrPolicy::Roster(RosterEvent::ScheduleDefined {
            schedule_id: id,
            name,
            schedule,
        })],
        format!("/api/v1/schedules/{id}"),
        view,
        at,
    )
    .await
}

/// `GET /api/v1/schedules`: the tenant's schedules by name, from the read
/// model, shaped as the answer to their definition and the read by id.
pub async fn schedule_list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<RosterPageQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(STAFF)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let limit = page_len(query.limit)?;
    let items =
        store_roster::list_schedules(&state.pool, actor.tenant_id, query.after, limit + 1).await?;
    Ok(HttpResponse::Ok().json(Page::of(items, limit, |s| s.id)))
}

/// A schedule folded from its stream: definition plus overrides in order.
fn fold_schedule(events: &[RecordedEvent]) -> Option<(String, Schedule)> {
    events.iter().fold(None, |s, e| {
        match (s, RosterEvent::from_stored(&e.event_type, &e.payload)) {
            (_, Some(RosterEvent::ScheduleDefined { name, schedule, .. })) => {
                Some((name.as_str().to_owned(), schedule))
            }
            (Some((n, mut s)), Some(RosterEvent::OverrideAdded { added, .. })) => {
                s.overrides.push(added);
                Some((n, s))
            }
            (s, _) => s,
        }
    })
}

async fn load_schedule(
    state: &AppState,
    tenant: Uuid,
    id: Uuid,
) -> Result<(String, Schedule, i64), ApiError> {
    let events = stream_events(state, tenant, &roster::schedule_stream(id), None).await?;
    let (name, schedule) =
        fold_schedule(&events).ok_or_else(|| ApiError::NotFound(format!("no schedule {id}")))?;
    Ok((
        name,
        schedule,
        events.last().map_or(0, |e| e.stream_version),
    ))
}

pub async fn schedule_get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(STAFF)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let id = id.into_inner();
    let (name, schedule, version) = load_schedule(&state, actor.tenant_id, id).await?;
    Ok(found(
        version,
        &ScheduleView {
            id,
            name,
            schedule,
            version,
        },
    ))
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideBody {
    pub user_id: Uuid,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

pub async fn override_add(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    id: web::Path<Uuid>,
    body: web::Json<OverrideBody>,
) -> Result<HttpResponse, ApiError> {
    let (actor, fingerprint, replayed) =
        begin_command(&state, &caller, OVERRIDE_WRITERS, &key, &req, &*body).await?;
    if let Some(r) = replayed {
        return Ok(r);
    }
    let id = id.into_inner();
    let tenant = actor.tenant_id;
    let (_, mut schedule, version) = load_schedule(&state, tenant, id).await?;
    if schedule.overrides.len() >= OVERRIDES_MAX {
        return Err(ApiError::Unprocessable(format!(
            "a schedule keeps at most {OVERRIDES_MAX} overrides; define it anew"
        )));
    }
    users_exist(&state, tenant, &[body.user_id]).await?;
    let added = Override {
        override_id: Uuid::now_v7(),
        user_id: body.user_id,
        start: body.start,
        end: body.end,
    };
    schedule.overrides.push(added.clone());
    oncall::validate(&schedule).map_err(unprocessable)?;
    let view = serde_json::to_value(&added).map_err(internal)?;
    let event = RosterEvent::OverrideAdded {
        schedule_id: id,
        added,
    };
    let meta = metadata(actor, &req);
    let location = format!("/api/v1/schedules/{id}");
    let request = AppendRequest {
        tenant_id: tenant,
        streams: vec![StreamAppend {
            stream_id: roster::schedule_stream(id),
            expected: ExpectedVersion::Exact(version),
            events: vec![NewEvent::new(
                event.type_name(),
                event.payload(),
                meta,
                Utc::now(),
            )],
        }],
        idempotency: idempotency::claim(
            &key,
            &fingerprint,
            StatusCode::CREATED,
            Some(&location),
            Some(version + 1),
            &view,
        ),
    };
    match state.committer.append(request).await? {
        // The entity tag is the schedule's: the override is part of it.
        AppendOutcome::Committed { .. } => Ok(HttpResponse::Created()
            .insert_header((header::LOCATION, location))
            .insert_header((header::ETAG, format!("\"{}\"", version + 1)))
            .json(view)),
        AppendOutcome::Duplicate {
            fingerprint: stored,
            response,
        } => idempotency::replay(&stored, &response, &fingerprint),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnCallQuery {
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
struct OnCallEntry {
    user_id: Uuid,
    name: Option<String>,
    email: Option<String>,
    rotation: Option<usize>,
    override_id: Option<Uuid>,
    shift_start: DateTime<Utc>,
    shift_end: DateTime<Utc>,
}

pub async fn schedule_oncall(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
    query: web::Query<OnCallQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(STAFF)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let id = id.into_inner();
    let (_, schedule, _) = load_schedule(&state, actor.tenant_id, id).await?;
    let at = query.at.unwrap_or_else(Utc::now);
    let on_call = oncall::on_call(&schedule, at);
    let ids: Vec<Uuid> = on_call.iter().map(|o| o.user_id).collect();
    let users = store_roster::users(&state.pool, actor.tenant_id, &ids).await?;
    let entries: Vec<OnCallEntry> = on_call
        .into_iter()
        .map(|o| {
            let user = users.iter().find(|u| u.id == o.user_id);
            OnCallEntry {
                user_id: o.user_id,
                name: user.map(|u| u.name.clone()),
                email: user.map(|u| u.email.clone()),
                rotation: o.rotation,
                override_id: o.override_id,
                shift_start: o.shift_start,
                shift_end: o.shift_end,
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "schedule_id": id, "at": at, "time_zone": schedule.time_zone, "on_call": entries,
    })))
}

// ------------------------------------------------------------ subscriptions

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionBody {
    pub service_id: Uuid,
    pub name: String,
    pub email: String,
    pub locale: Option<String>,
    pub kinds: Vec<NoticeKind>,
    pub min_severity: Severity,
}

/// The client a caller manages subscriptions for, given the service's client.
fn may_manage(actor: &Actor, client_of_service: Uuid) -> bool {
    match actor.client_scope() {
        ClientScope::All => true,
        ClientScope::Only(own) => own == client_of_service,
        ClientScope::Nothing => false,
    }
}

pub async fn subscription_create(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    body: web::Json<SubscriptionBody>,
) -> Result<HttpResponse, ApiError> {
    let (actor, fingerprint, replayed) =
        begin_command(&state, &caller, SUBSCRIPTION_WRITERS, &key, &req, &*body).await?;
    if let Some(r) = replayed {
        return Ok(r);
    }
    let body = body.into_inner();
    let tenant = actor.tenant_id;
    let client_id = crate::common::client_of_service(&state, tenant, body.service_id)
        .await?
        .filter(|c| may_manage(actor, *c))
        .ok_or_else(|| {
            ApiError::Unprocessable(format!("service {} does not exist", body.service_id))
        })?;
    let name = Name::parse("name", &body.name).map_err(unprocessable)?;
    let email = Email::parse(&body.email).map_err(unprocessable)?;
    let locale = locale_of(body.locale.as_deref())?;
    // Escalations go to responders, and every subscription of a service is
    // told of its maintenance windows: neither is chosen here.
    if body.kinds.is_empty()
        || body.kinds.contains(&NoticeKind::IncidentEscalated)
        || body.kinds.iter().any(|k| NoticeKind::WINDOW.contains(k))
    {
        return Err(ApiError::Unprocessable(
            "kinds: one or more of incident_opened, incident_mitigated, incident_resolved, monthly_report".into(),
        ));
    }
    let id = Uuid::now_v7();
    let at = Utc::now().trunc_subsecs(6);
    let event = RosterEvent::SubscriptionCreated {
        subscription_id: id,
        client_id,
        service_id: body.service_id,
        name,
        email,
        locale,
        kinds: body.kinds,
        min_severity: body.min_severity,
    };
    let view = subscription_view(id, &event, true, at)
        .ok_or_else(|| ApiError::Internal("a subscription created nothing".into()))?;
    let view = serde_json::to_value(view).map_err(internal)?;
    create(
        &state,
        actor,
        &req,
        &key,
        &fingerprint,
        roster::subscription_stream(id),
        vec![RosterOrPolicy::Roster(event)],
        format!("/api/v1/subscriptions/{id}"),
        view,
        at,
    )
    .await
}

/// A subscription as every answer shows one (the list's row), from the
/// event that created it.
fn subscription_view(
    id: Uuid,
    created: &RosterEvent,
    active: bool,
    created_at: DateTime<Utc>,
) -> Option<store_roster::SubscriptionRow> {
    let RosterEvent::SubscriptionCreated {
        client_id,
        service_id,
        name,
        email,
        locale,
        kinds,
        min_severity,
        ..
    } = created
    else {
        return None;
    };
    Some(store_roster::SubscriptionRow {
        id,
        client_id: *client_id,
        service_id: *service_id,
        name: name.as_str().to_owned(),
        email: email.as_str().to_owned(),
        locale: locale_str(*locale).to_owned(),
        kinds: kinds.iter().map(|k| k.as_str().to_owned()).collect(),
        min_severity: min_severity.as_str().to_owned(),
        active,
        created_at,
    })
}

/// `GET /api/v1/subscriptions/{id}`: one subscription, folded from its
/// stream; a cancelled one is shown with `active: false`. A client user
/// sees only its own client's: another's is 404, as for cancelling.
pub async fn subscription_get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
    query: web::Query<AsOfQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(LEDGER_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let id = id.into_inner();
    let stream = roster::subscription_stream(id);
    let events = stream_events(&state, actor.tenant_id, &stream, query.as_of).await?;
    let mut view = None;
    for e in &events {
        match RosterEvent::from_stored(&e.event_type, &e.payload) {
            Some(created @ RosterEvent::SubscriptionCreated { .. }) => {
                view = subscription_view(id, &created, true, e.occurred_at);
            }
            Some(RosterEvent::SubscriptionCancelled { .. }) => {
                if let Some(v) = view.as_mut() {
                    v.active = false;
                }
            }
            _ => {}
        }
    }
    match (view, events.last()) {
        (Some(view), Some(last)) if may_manage(actor, view.client_id) => {
            Ok(found(last.stream_version, &view))
        }
        _ => Err(ApiError::NotFound(format!("no subscription {id}"))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionQuery {
    pub client_id: Option<Uuid>,
    pub service_id: Option<Uuid>,
    pub after: Option<Uuid>,
    pub limit: Option<u32>,
}

/// The client filter a caller's scope allows, or `None` when it sees nothing.
fn scoped_client(actor: &Actor, asked: Option<Uuid>) -> Option<Option<Uuid>> {
    match actor.client_scope() {
        ClientScope::All => Some(asked),
        ClientScope::Only(own) if asked.is_none_or(|c| c == own) => Some(Some(own)),
        _ => None,
    }
}

pub async fn subscription_list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<SubscriptionQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(LEDGER_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let limit = page_len(query.limit)?;
    let items = match scoped_client(actor, query.client_id) {
        Some(client) => {
            store_roster::list_subscriptions(
                &state.pool,
                actor.tenant_id,
                client,
                query.service_id,
                query.after,
                limit + 1,
            )
            .await?
        }
        None => Vec::new(),
    };
    Ok(HttpResponse::Ok().json(Page::of(items, limit, |s| s.id)))
}

pub async fn subscription_cancel(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(SUBSCRIPTION_WRITERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let id = id.into_inner();
    let stream = roster::subscription_stream(id);
    let events = stream_events(&state, actor.tenant_id, &stream, None).await?;
    let not_found = || ApiError::NotFound(format!("no subscription {id}"));
    let mut client = None;
    let mut active = false;
    for e in &events {
        match RosterEvent::from_stored(&e.event_type, &e.payload) {
            Some(RosterEvent::SubscriptionCreated { client_id, .. }) => {
                client = Some(client_id);
                active = true;
            }
            Some(RosterEvent::SubscriptionCancelled { .. }) => active = false,
            _ => {}
        }
    }
    let client = client
        .filter(|c| may_manage(actor, *c))
        .ok_or_else(not_found)?;
    let _ = client;
    if !active {
        return Ok(HttpResponse::NoContent().finish());
    }
    let event = RosterEvent::SubscriptionCancelled {
        subscription_id: id,
    };
    state
        .committer
        .append(AppendRequest {
            tenant_id: actor.tenant_id,
            streams: vec![StreamAppend {
                stream_id: stream,
                expected: ExpectedVersion::Exact(events.last().map_or(0, |e| e.stream_version)),
                events: vec![NewEvent::new(
                    event.type_name(),
                    event.payload(),
                    metadata(actor, &req),
                    Utc::now(),
                )],
            }],
            idempotency: None,
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

// ------------------------------------------------------------ queues and the ledger

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueQuery {
    pub limit: Option<u32>,
}

async fn queue(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<QueueQuery>,
    team: &str,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(STAFF)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let limit = page_len(query.limit)?;
    let incidents = store_inc::queue(&state.pool, actor.tenant_id, team, limit).await?;
    let inquiries =
        opsledger_store::operations::inquiry_queue(&state.pool, actor.tenant_id, team, limit)
            .await?;
    // Both lists are oldest first and at most `limit` long, so the first
    // `limit` of their merge are the queue's first `limit`.
    let mut items: Vec<(DateTime<Utc>, Uuid, Value)> = Vec::new();
    for i in incidents {
        items.push((
            i.opened_at,
            i.id,
            serde_json::to_value(&i).map_err(internal)?,
        ));
    }
    for i in inquiries {
        items.push((
            i.opened_at,
            i.id,
            serde_json::to_value(&i).map_err(internal)?,
        ));
    }
    items.sort_by_key(|(at, id, _)| (*at, *id));
    items.truncate(limit as usize);
    let items: Vec<Value> = items.into_iter().map(|(_, _, v)| v).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "team": team, "items": items })))
}

pub async fn queue_operations(
    s: web::Data<AppState>,
    c: Caller,
    q: web::Query<QueueQuery>,
) -> Result<HttpResponse, ApiError> {
    queue(s, c, q, "operations").await
}

pub async fn queue_maintenance(
    s: web::Data<AppState>,
    c: Caller,
    q: web::Query<QueueQuery>,
) -> Result<HttpResponse, ApiError> {
    queue(s, c, q, "maintenance").await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationQuery {
    pub incident_id: Option<Uuid>,
    pub client_id: Option<Uuid>,
    pub limit: Option<u32>,
}

pub async fn notification_list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<NotificationQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(LEDGER_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let limit = page_len(query.limit)?;
    let items = match scoped_client(actor, query.client_id) {
        Some(client) => {
            outbox::list_notifications(
                &state.pool,
                actor.tenant_id,
                query.incident_id,
                client,
                limit,
            )
            .await?
        }
        None => Vec::new(),
    };
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items })))
}
