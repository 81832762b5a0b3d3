//! Responders, escalation policies, on-call schedules, client subscriptions,
//! the teams' queues and the notification ledger.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use opsledger_domain::access::{
    Actor, ClientScope, Role, LEDGER_READERS, OVERRIDE_WRITERS, ROSTER_WRITERS, STAFF,
    SUBSCRIPTION_WRITERS,
};
use opsledger_domain::alert::Severity;
use opsledger_domain::escalation::{self, Level, Policy, Target};
use opsledger_domain::notice::NoticeKind;
use opsledger_domain::oncall::{self, Override, Rotation, Schedule};
use opsledger_domain::roster::{self};
use opsledger_domain::text::{Email, Locale, Name};
use opsledger_store::{incidents as store_inc, outbox, roster as store_roster};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::aggregate::{self, Asked};
use crate::auth::Caller;
use crate::common::{page_len, require_services, unprocessable, AsOfQuery, Page};
use crate::extract::IfMatch;
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::AppState;
use opsledger_app::run::{self, Prepared, Target as Record};
use opsledger_domain::aggregate::Aggregate;
use opsledger_domain::escalation::{DefinePolicy, DefinedPolicy};
use opsledger_domain::roster::{
    OnCallSchedule, RegisterUser, ScheduleCommand, Subscription, SubscriptionCommand,
    SubscriptionContext, User,
};

/// Runs a roster command: `check` looks up, once the tenant is known,
/// whether the records the command names exist (and what deciding needs).
async fn define<A, P>(
    state: &AppState,
    r: Asked<'_>,
    roles: &[opsledger_domain::access::Role],
    target: Record,
    command: A::Command,
    view: fn(&A, i64) -> Value,
    check: P,
) -> Result<HttpResponse, ApiError>
where
    A: Aggregate + Send + Sync + 'static,
    A::Event: Send + Sync + 'static,
    P: AsyncFnOnce(&Actor) -> Result<A::Context, ApiError>,
{
    let prepare = async |actor: &Actor, _: Option<&A>| {
        Ok(Prepared {
            context: check(actor).await?,
            view,
        })
    };
    aggregate::run_prepared::<A, _, _>(state, r, IfMatch(None), roles, target, command, prepare)
        .await
}

/// A responder or a subscription as answered and listed: without a version
/// (the entity tag carries it).
fn unversioned<A: Serialize>(record: &A, _: i64) -> Value {
    serde_json::to_value(record).unwrap_or_default()
}

fn locale_of(raw: Option<&str>) -> Result<Locale, ApiError> {
    Locale::parse(raw.unwrap_or("en")).map_err(unprocessable)
}

// ------------------------------------------------------------ users

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    pub name: String,
    pub email: String,
    pub locale: Option<String>,
    /// Staff roles the responder holds, as far as being told goes: one with
    /// `approver` is asked to approve changes that await approval. They
    /// grant nothing (a token's roles do). Default none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Role>,
}

pub async fn user_register(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    body: web::Json<UserBody>,
) -> Result<HttpResponse, ApiError> {
    let r = Asked::of(&caller, &req, key, &*body)?;
    let command = RegisterUser {
        user_id: Uuid::now_v7(),
        name: Name::parse("name", &body.name).map_err(unprocessable)?,
        email: Email::parse(&body.email).map_err(unprocessable)?,
        locale: locale_of(body.locale.as_deref())?,
        roles: body.roles.clone(),
    };
    let id = command.user_id;
    let target = Record::New {
        id,
        location: format!("/api/v1/users/{id}"),
    };
    define::<User, _>(
        &state,
        r,
        ROSTER_WRITERS,
        target,
        command,
        unversioned::<User>,
        async |_| Ok(()),
    )
    .await
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
    let v = aggregate::load::<User>(&state, actor.tenant_id, id.into_inner(), query.as_of).await?;
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::ETAG, format!("\"{}\"", v.version)))
        .json(unversioned(&v.record, v.version)))
}

/// A page of a roster list: the id of the last item of the previous page,
/// and how many items.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RosterPageQuery {
    /// Cursor: return items whose id is greater than this one (the `next_cursor` of the previous page).
    pub after: Option<Uuid>,
    /// Items per page, 1 to 200 (default 50). Values outside the range are refused with 400.
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

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    pub name: String,
    pub levels: Vec<Level>,
    #[serde(default)]
    pub service_ids: Vec<Uuid>,
}

async fn exists(state: &AppState, tenant: Uuid, stream: &str) -> Result<bool, ApiError> {
    Ok(opsledger_app::directory::exists(state.ledger(), tenant, stream).await?)
}

pub async fn policy_define(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    body: web::Json<PolicyBody>,
) -> Result<HttpResponse, ApiError> {
    let r = Asked::of(&caller, &req, key, &*body)?;
    let body = body.into_inner();
    let policy = Policy {
        name: body.name,
        levels: body.levels,
        service_ids: body.service_ids,
    };
    let id = Uuid::now_v7();
    let target = Record::New {
        id,
        location: format!("/api/v1/escalation-policies/{id}"),
    };
    let named = policy.clone();
    let check = async |actor: &Actor| {
        let tenant = actor.tenant_id;
        // Checked in the domain first: an invalid policy is refused for
        // what it says before what it names is looked up.
        escalation::validate(&named)?;
        require_services(&state, tenant, &named.service_ids).await?;
        for level in &named.levels {
            for t in &level.targets {
                let (stream, what) = match t {
                    Target::User(id) => (roster::user_stream(*id), format!("user {id}")),
                    Target::Schedule(id) => {
                        (roster::schedule_stream(*id), format!("schedule {id}"))
                    }
                };
                if !exists(&state, tenant, &stream).await? {
                    return Err(ApiError::Unprocessable(format!("{what} does not exist")));
                }
            }
        }
        Ok(())
    };
    let command = DefinePolicy {
        policy_id: id,
        policy,
    };
    define::<DefinedPolicy, _>(
        &state,
        r,
        ROSTER_WRITERS,
        target,
        command,
        run::versioned::<DefinedPolicy>,
        check,
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
    let v = aggregate::load::<DefinedPolicy>(&state, actor.tenant_id, id, query.as_of).await?;
    Ok(aggregate::respond(StatusCode::OK, &v))
}

// ------------------------------------------------------------ schedules

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    pub name: String,
    pub time_zone: String,
    pub rotations: Vec<Rotation>,
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
    let r = Asked::of(&caller, &req, key, &*body)?;
    let body = body.into_inner();
    let name = Name::parse("name", &body.name).map_err(unprocessable)?;
    let schedule = Schedule {
        time_zone: body.time_zone,
        rotations: body.rotations,
        overrides: Vec::new(),
    };
    let users: Vec<Uuid> = schedule
        .rotations
        .iter()
        .flat_map(|r| r.users.iter().copied())
        .collect();
    let id = Uuid::now_v7();
    let target = Record::New {
        id,
        location: format!("/api/v1/schedules/{id}"),
    };
    let command = ScheduleCommand::Define {
        schedule_id: id,
        name,
        schedule: schedule.clone(),
    };
    let check = async |actor: &Actor| {
        // Checked in the domain first: an invalid schedule is refused for
        // what it says before who it names is looked up.
        oncall::validate(&schedule).map_err(unprocessable)?;
        users_exist(&state, actor.tenant_id, &users).await
    };
    define::<OnCallSchedule, _>(
        &state,
        r,
        ROSTER_WRITERS,
        target,
        command,
        run::versioned::<OnCallSchedule>,
        check,
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

async fn load_schedule(
    state: &AppState,
    tenant: Uuid,
    id: Uuid,
) -> Result<aggregate::Versioned<OnCallSchedule>, ApiError> {
    aggregate::load::<OnCallSchedule>(state, tenant, id, None).await
}

pub async fn schedule_get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(STAFF)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let v = load_schedule(&state, actor.tenant_id, id.into_inner()).await?;
    Ok(aggregate::respond(StatusCode::OK, &v))
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
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
    let r = Asked::of(&caller, &req, key, &*body)?;
    let user_id = body.user_id;
    let command = ScheduleCommand::AddOverride(Override {
        override_id: Uuid::now_v7(),
        user_id,
        start: body.start,
        end: body.end,
    });
    // Answered 201 with the override; the entity tag is the schedule's, as
    // the override is part of it.
    let target = Record::Revision {
        id: id.into_inner(),
        location: |id, _| format!("/api/v1/schedules/{id}"),
    };
    let prepare = async |actor: &Actor, _: Option<&OnCallSchedule>| {
        users_exist(&state, actor.tenant_id, &[user_id]).await?;
        Ok(Prepared {
            context: (),
            view: |s: &OnCallSchedule, _| {
                serde_json::to_value(s.schedule.overrides.last()).unwrap_or_default()
            },
        })
    };
    aggregate::run_prepared::<OnCallSchedule, _, _>(
        &state,
        r,
        IfMatch(None),
        OVERRIDE_WRITERS,
        target,
        command,
        prepare,
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OnCallQuery {
    /// The instant to answer for (RFC 3339; URL-encode a `+` offset); now when absent.
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OnCallEntry {
    user_id: Uuid,
    name: Option<String>,
    email: Option<String>,
    rotation: Option<usize>,
    override_id: Option<Uuid>,
    shift_start: DateTime<Utc>,
    shift_end: DateTime<Utc>,
}

/// Who is on call in a schedule at an instant.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OnCall)]
pub struct OnCallAnswer {
    pub schedule_id: Uuid,
    /// The instant answered for.
    pub at: DateTime<Utc>,
    pub time_zone: String,
    pub on_call: Vec<OnCallEntry>,
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
    let schedule = load_schedule(&state, actor.tenant_id, id)
        .await?
        .record
        .schedule;
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
    Ok(HttpResponse::Ok().json(OnCallAnswer {
        schedule_id: id,
        at,
        time_zone: schedule.time_zone,
        on_call: entries,
    }))
}

// ------------------------------------------------------------ subscriptions

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
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
    let r = Asked::of(&caller, &req, key, &*body)?;
    let body = body.into_inner();
    let service_id = body.service_id;
    let id = Uuid::now_v7();
    let command = SubscriptionCommand::Create {
        subscription_id: id,
        service_id,
        name: Name::parse("name", &body.name).map_err(unprocessable)?,
        email: Email::parse(&body.email).map_err(unprocessable)?,
        locale: locale_of(body.locale.as_deref())?,
        kinds: body.kinds,
        min_severity: body.min_severity,
    };
    let target = Record::New {
        id,
        location: format!("/api/v1/subscriptions/{id}"),
    };
    let check = async |actor: &Actor| {
        let client_id = crate::common::client_of_service(&state, actor.tenant_id, service_id)
            .await?
            .filter(|c| may_manage(actor, *c));
        Ok(SubscriptionContext { client_id })
    };
    define::<Subscription, _>(
        &state,
        r,
        SUBSCRIPTION_WRITERS,
        target,
        command,
        unversioned::<Subscription>,
        check,
    )
    .await
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
    let v = aggregate::load::<Subscription>(&state, actor.tenant_id, id, query.as_of).await?;
    if !may_manage(actor, v.record.client_id) {
        return Err(ApiError::NotFound(format!("no subscription {id}")));
    }
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::ETAG, format!("\"{}\"", v.version)))
        .json(unversioned(&v.record, v.version)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionQuery {
    /// Only this client's items. A client user who names another client gets an empty list.
    pub client_id: Option<Uuid>,
    /// Only items of this service.
    pub service_id: Option<Uuid>,
    /// Cursor: return items whose id is greater than this one (the `next_cursor` of the previous page).
    pub after: Option<Uuid>,
    /// Items per page, 1 to 200 (default 50). Values outside the range are refused with 400.
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
    let r = Asked {
        caller: &caller,
        req: &req,
        key: IdempotencyKey(None),
        body: Value::Null,
    };
    // Another client's subscription does not exist for a client user.
    let admit = |actor: &Actor, s: Option<&Subscription>| match s {
        Some(s) if !may_manage(actor, s.client_id) => {
            Err(ApiError::NotFound(format!("no subscription {}", s.id)))
        }
        _ => Ok(()),
    };
    let prepare = async |_: &Actor, _: Option<&Subscription>| {
        Ok(Prepared {
            context: SubscriptionContext::default(),
            view: run::versioned::<Subscription>,
        })
    };
    aggregate::run_command::<Subscription, _, _, _>(
        &state,
        r,
        IfMatch(None),
        SUBSCRIPTION_WRITERS,
        Record::Existing(id.into_inner()),
        SubscriptionCommand::Cancel,
        admit,
        prepare,
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

// ------------------------------------------------------------ queues and the ledger

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct QueueQuery {
    /// Items per page, 1 to 200 (default 50). Values outside the range are refused with 400.
    pub limit: Option<u32>,
}

async fn queue(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<QueueQuery>,
    team: &'static str,
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
    let mut items: Vec<QueueItem> = incidents
        .into_iter()
        .map(QueueItem::Incident)
        .chain(inquiries.into_iter().map(QueueItem::Inquiry))
        .collect();
    items.sort_by_key(|i| i.order());
    items.truncate(limit as usize);
    Ok(HttpResponse::Ok().json(Queue { team, items }))
}

/// A team's queue: open incidents and waiting inquiries, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Queue {
    /// `operations` or `maintenance`.
    pub team: &'static str,
    /// Oldest first, at most `limit`; there is no next page.
    pub items: Vec<QueueItem>,
}

/// One item of a queue; `kind` says which.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(discriminator(property_name = "kind", mapping(
    ("incident" = "#/components/schemas/IncidentQueueItem"),
    ("inquiry" = "#/components/schemas/InquiryQueueItem"),
)))]
pub enum QueueItem {
    Incident(store_inc::QueueItem),
    Inquiry(opsledger_store::operations::InquiryQueueItem),
}

impl QueueItem {
    fn order(&self) -> (DateTime<Utc>, Uuid) {
        match self {
            QueueItem::Incident(i) => (i.opened_at, i.id),
            QueueItem::Inquiry(i) => (i.opened_at, i.id),
        }
    }
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct NotificationQuery {
    /// Only items about this incident.
    pub incident_id: Option<Uuid>,
    /// Only this client's items. A client user who names another client gets an empty list.
    pub client_id: Option<Uuid>,
    /// Items per page, 1 to 200 (default 50). Values outside the range are refused with 400.
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
    Ok(HttpResponse::Ok().json(crate::common::Items { items }))
}
