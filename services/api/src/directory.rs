//! Clients and services: `/api/v1/clients`, `/api/v1/services`.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, SubsecRound, Utc};
use opsledger_domain::access::{Actor, ClientScope, DIRECTORY_READERS, DIRECTORY_WRITERS};
use opsledger_domain::directory::{self as dir, DirectoryEvent};
use opsledger_domain::period::{Day, ServiceHours, TimeZoneName};
use opsledger_domain::text::{Email, Locale, Name};
use opsledger_domain::{Metadata, NewEvent};
use opsledger_store::directory::{self as store_dir, ClientFilter};
use opsledger_store::{AppendOutcome, AppendRequest, ExpectedVersion, StreamAppend};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::auth::Caller;
use crate::common::{
    begin_command, metadata, page_len, stream_events, unprocessable, AsOfQuery, Page,
};
use crate::idempotency::{self, IdempotencyKey};
use crate::problem::ApiError;
use crate::AppState;

// ------------------------------------------------------------ wire types

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactBody {
    pub name: String,
    pub email: String,
    #[serde(default)]
    pub locale: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterClientBody {
    pub name: String,
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub contacts: Vec<ContactBody>,
    /// The IANA zone of its calendar periods; the tenant's if absent.
    #[serde(default)]
    pub time_zone: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentBody {
    pub name: String,
    pub kind: dir::ComponentKind,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterServiceBody {
    pub client_id: Uuid,
    pub name: String,
    #[serde(default)]
    pub components: Vec<ComponentBody>,
    pub sla_target_pct: f64,
    pub notice_period_h: u32,
    /// The hours the SLA commits to, in the client's zone; all if absent.
    #[serde(default)]
    pub sla_hours: Option<ServiceHoursBody>,
    #[serde(default)]
    pub auto_mitigate: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceHoursBody {
    pub days: Vec<Day>,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub after: Option<Uuid>,
    pub limit: Option<u32>,
    pub client_id: Option<Uuid>,
}

// ------------------------------------------------------------ helpers

fn new_event(event: &DirectoryEvent, meta: &Metadata, at: DateTime<Utc>) -> NewEvent {
    NewEvent::new(event.type_name(), event.payload(), meta.clone(), at)
}

/// What a caller may see of the clients, and whether it asked for one.
fn client_filter(actor: &Actor, asked: Option<Uuid>) -> Option<ClientFilter> {
    match (actor.client_scope(), asked) {
        (ClientScope::All, None) => Some(ClientFilter::All),
        (ClientScope::All, Some(id)) => Some(ClientFilter::Only(id)),
        (ClientScope::Only(own), None) => Some(ClientFilter::Only(own)),
        (ClientScope::Only(own), Some(id)) if id == own => Some(ClientFilter::Only(own)),
        _ => None,
    }
}

fn may_see_client(actor: &Actor, client_id: Uuid) -> bool {
    client_filter(actor, Some(client_id)).is_some()
}

fn created(location: String, version: i64, body: &Value) -> HttpResponse {
    HttpResponse::Created()
        .insert_header((header::LOCATION, location))
        .insert_header((header::ETAG, format!("\"{version}\"")))
        .json(body)
}

/// A new directory entity and the reservation of its unique name, appended
/// together: both streams must not exist yet.
struct Registration {
    kind: &'static str,
    name: Name,
    stream: String,
    events: Vec<DirectoryEvent>,
    name_stream: String,
    reservation: DirectoryEvent,
    location: String,
    view: Value,
    at: DateTime<Utc>,
}

/// Appends a registration and answers 201, or replays an idempotent retry.
async fn register(
    state: &AppState,
    actor: &Actor,
    req: &HttpRequest,
    key: &IdempotencyKey,
    fingerprint: &str,
    r: Registration,
) -> Result<HttpResponse, ApiError> {
    let meta = metadata(actor, req);
    let request = AppendRequest {
        tenant_id: actor.tenant_id,
        streams: vec![
            StreamAppend {
                stream_id: r.stream,
                expected: ExpectedVersion::NoStream,
                events: r.events.iter().map(|e| new_event(e, &meta, r.at)).collect(),
            },
            StreamAppend {
                stream_id: r.name_stream,
                expected: ExpectedVersion::NoStream,
                events: vec![new_event(&r.reservation, &meta, r.at)],
            },
        ],
        idempotency: idempotency::claim(
            key,
            fingerprint,
            StatusCode::CREATED,
            Some(&r.location),
            Some(1),
            &r.view,
        ),
    };
    let outcome = state
        .committer
        .append(request)
        .await
        .map_err(|e| match ApiError::from(e) {
            ApiError::Conflict { extra, .. }
                if extra
                    .get("stream")
                    .and_then(Value::as_str)
                    .is_some_and(|s| s.contains("-name-")) =>
            {
                ApiError::conflict(format!(
                    "a {} named {:?} already exists",
                    r.kind,
                    r.name.as_str()
                ))
            }
            other => other,
        })?;
    match outcome {
        AppendOutcome::Committed { .. } => Ok(created(r.location, 1, &r.view)),
        AppendOutcome::Duplicate {
            fingerprint: stored,
            response,
        } => idempotency::replay(&stored, &response, fingerprint),
    }
}

// ------------------------------------------------------------ clients

#[derive(Debug, Serialize)]
pub struct ClientView {
    pub id: Uuid,
    pub name: String,
    pub locale: Locale,
    /// As registered; `null`: the tenant's zone (UTC if it has none).
    pub time_zone: Option<TimeZoneName>,
    pub contacts: Vec<dir::Contact>,
    pub version: i64,
    pub registered_at: DateTime<Utc>,
}

pub async fn client_register(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    body: web::Json<RegisterClientBody>,
) -> Result<HttpResponse, ApiError> {
    let (actor, fingerprint, replayed) =
        begin_command(&state, &caller, DIRECTORY_WRITERS, &key, &req, &*body).await?;
    if let Some(replayed) = replayed {
        return Ok(replayed);
    }
    let body = body.into_inner();
    let locale = Locale::parse(body.locale.as_deref().unwrap_or("en")).map_err(unprocessable)?;
    let mut contacts = Vec::with_capacity(body.contacts.len());
    for c in body.contacts {
        contacts.push(dir::Contact {
            name: Name::parse("contact name", &c.name).map_err(unprocessable)?,
            email: Email::parse(&c.email).map_err(unprocessable)?,
            locale: match c.locale {
                Some(l) => Locale::parse(&l).map_err(unprocessable)?,
                None => locale,
            },
        });
    }
    let id = Uuid::now_v7();
    let name = Name::parse("name", &body.name).map_err(unprocessable)?;
    let time_zone = body
        .time_zone
        .as_deref()
        .map(TimeZoneName::parse)
        .transpose()
        .map_err(unprocessable)?;
    let command = dir::RegisterClient {
        client_id: id,
        name: name.clone(),
        locale,
        contacts,
        time_zone,
    };
    let events = dir::decide_register_client(&dir::ClientState::default(), command)?;
    let registered = events
        .iter()
        .fold(dir::ClientState::default(), dir::evolve_client)
        .registered
        .ok_or_else(|| ApiError::Internal("registering a client registered nothing".into()))?;
    // Truncated as the stored events are, so this response and later reads agree.
    let at = Utc::now().trunc_subsecs(6);
    let view = ClientView {
        id,
        name: name.as_str().to_owned(),
        locale: registered.locale,
        contacts: registered.contacts,
        time_zone: registered.time_zone,
        version: 1,
        registered_at: at,
    };
    let registration = Registration {
        kind: "client",
        stream: dir::client_stream(id),
        events,
        name_stream: dir::client_name_stream(&name),
        reservation: DirectoryEvent::ClientNameReserved {
            client_id: id,
            name: name.clone(),
        },
        name,
        location: format!("/api/v1/clients/{id}"),
        view: serde_json::to_value(view).map_err(|e| ApiError::Internal(Box::new(e)))?,
        at,
    };
    register(&state, actor, &req, &key, &fingerprint, registration).await
}

pub async fn client_list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(DIRECTORY_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let limit = page_len(query.limit)?;
    let Some(filter) = client_filter(actor, query.client_id) else {
        return Ok(HttpResponse::Ok().json(Page::<store_dir::ClientRow> {
            items: vec![],
            next_cursor: None,
        }));
    };
    let items =
        store_dir::list_clients(&state.pool, actor.tenant_id, filter, query.after, limit + 1)
            .await?;
    Ok(HttpResponse::Ok().json(Page::of(items, limit, |c| c.id)))
}

pub async fn client_get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
    query: web::Query<AsOfQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(DIRECTORY_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let id = id.into_inner();
    let not_found = || ApiError::NotFound(format!("no client {id}"));
    if !may_see_client(actor, id) {
        return Err(not_found());
    }
    let events = stream_events(
        &state,
        actor.tenant_id,
        &dir::client_stream(id),
        query.as_of,
    )
    .await?;
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Err(not_found());
    };
    let state_now = events
        .iter()
        .filter_map(|e| DirectoryEvent::from_stored(&e.event_type, &e.payload))
        .fold(dir::ClientState::default(), |s, e| {
            dir::evolve_client(s, &e)
        });
    let registered = state_now.registered.ok_or_else(not_found)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, format!("\"{}\"", last.stream_version)))
        .json(ClientView {
            id,
            name: registered.name.as_str().to_owned(),
            locale: registered.locale,
            contacts: registered.contacts,
            time_zone: registered.time_zone,
            version: last.stream_version,
            registered_at: first.occurred_at,
        }))
}

// ------------------------------------------------------------ services

#[derive(Debug, Serialize)]
pub struct ServiceView {
    pub id: Uuid,
    pub client_id: Uuid,
    pub name: String,
    pub components: Vec<dir::Component>,
    pub sla_target_pct: f64,
    pub notice_period_h: u32,
    pub sla_hours: Option<ServiceHours>,
    pub auto_mitigate: bool,
    pub version: i64,
    pub registered_at: DateTime<Utc>,
}

pub async fn service_register(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    body: web::Json<RegisterServiceBody>,
) -> Result<HttpResponse, ApiError> {
    let (actor, fingerprint, replayed) =
        begin_command(&state, &caller, DIRECTORY_WRITERS, &key, &req, &*body).await?;
    if let Some(replayed) = replayed {
        return Ok(replayed);
    }
    let body = body.into_inner();
    let mut components = Vec::with_capacity(body.components.len());
    for c in body.components {
        components.push(dir::Component {
            name: Name::parse("component name", &c.name).map_err(unprocessable)?,
            kind: c.kind,
        });
    }
    let id = Uuid::now_v7();
    let name = Name::parse("name", &body.name).map_err(unprocessable)?;
    let command = dir::RegisterService {
        service_id: id,
        client_id: body.client_id,
        name: name.clone(),
        components,
        sla_target_pct: dir::SlaTarget::parse(body.sla_target_pct).map_err(unprocessable)?,
        notice_period_h: body.notice_period_h,
        sla_hours: body
            .sla_hours
            .as_ref()
            .map(|h| ServiceHours::parse(h.days.clone(), &h.from, &h.to))
            .transpose()
            .map_err(unprocessable)?,
        auto_mitigate: body.auto_mitigate,
    };
    let client_exists = {
        let client = state
            .pool
            .get()
            .await
            .map_err(opsledger_store::StoreError::from)?;
        let stream = dir::client_stream(body.client_id);
        store_dir::stream_version(&client, actor.tenant_id, &stream).await? > 0
    };
    let events =
        dir::decide_register_service(&dir::ServiceState::default(), client_exists, command)?;
    let after = events
        .iter()
        .fold(dir::ServiceState::default(), dir::evolve_service);
    let at = Utc::now().trunc_subsecs(6);
    let view = ServiceView {
        id,
        client_id: body.client_id,
        name: name.as_str().to_owned(),
        components: after.components,
        sla_target_pct: after.sla_target_pct.map(|s| s.pct()).unwrap_or_default(),
        notice_period_h: after.notice_period_h.unwrap_or_default(),
        sla_hours: after.sla_hours,
        auto_mitigate: after.auto_mitigate,
        version: 1,
        registered_at: at,
    };
    let registration = Registration {
        kind: "service",
        stream: dir::service_stream(id),
        events,
        name_stream: dir::service_name_stream(&name),
        reservation: DirectoryEvent::ServiceNameReserved {
            service_id: id,
            name: name.clone(),
        },
        name,
        location: format!("/api/v1/services/{id}"),
        view: serde_json::to_value(view).map_err(|e| ApiError::Internal(Box::new(e)))?,
        at,
    };
    register(&state, actor, &req, &key, &fingerprint, registration).await
}

pub async fn service_list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(DIRECTORY_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let limit = page_len(query.limit)?;
    let Some(filter) = client_filter(actor, query.client_id) else {
        return Ok(HttpResponse::Ok().json(Page::<store_dir::ServiceRow> {
            items: vec![],
            next_cursor: None,
        }));
    };
    let items =
        store_dir::list_services(&state.pool, actor.tenant_id, filter, query.after, limit + 1)
            .await?;
    Ok(HttpResponse::Ok().json(Page::of(items, limit, |s| s.id)))
}

pub async fn service_get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
    query: web::Query<AsOfQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(DIRECTORY_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let id = id.into_inner();
    let not_found = || ApiError::NotFound(format!("no service {id}"));
    let events = stream_events(
        &state,
        actor.tenant_id,
        &dir::service_stream(id),
        query.as_of,
    )
    .await?;
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Err(not_found());
    };
    let service = events
        .iter()
        .filter_map(|e| DirectoryEvent::from_stored(&e.event_type, &e.payload))
        .fold(dir::ServiceState::default(), |s, e| {
            dir::evolve_service(s, &e)
        });
    let client_id = service.client_id.ok_or_else(not_found)?;
    if !may_see_client(actor, client_id) {
        return Err(not_found());
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, format!("\"{}\"", last.stream_version)))
        .json(ServiceView {
            id,
            client_id,
            name: service
                .name
                .map(|n| n.as_str().to_owned())
                .unwrap_or_default(),
            components: service.components,
            sla_target_pct: service.sla_target_pct.map(|s| s.pct()).unwrap_or_default(),
            notice_period_h: service.notice_period_h.unwrap_or_default(),
            sla_hours: service.sla_hours,
            auto_mitigate: service.auto_mitigate,
            version: last.stream_version,
            registered_at: first.occurred_at,
        }))
}
