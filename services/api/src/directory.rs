//! Clients and services: `/api/v1/clients`, `/api/v1/services`, and a
//! service's dependencies (`/api/v1/services/{id}/dependencies`; the rules
//! are `domain::dependency`'s, what they do to alerts `app::ingest`'s).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use opsledger_domain::access::{Actor, ClientScope, DIRECTORY_READERS, DIRECTORY_WRITERS, STAFF};
use opsledger_domain::alert::DownParent;
use opsledger_domain::directory::{self as dir};
use opsledger_domain::period::{Day, ServiceHours, TimeZoneName};
use opsledger_domain::text::{Email, Locale, Name};
use opsledger_store::directory::{self as store_dir, ClientFilter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::aggregate::{self, Asked};
use crate::auth::Caller;
use crate::common::{page_len, unprocessable, AsOfQuery, Page};
use crate::extract::IfMatch;
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::AppState;
use opsledger_app::run::{self, Prepared, Target};
use opsledger_domain::aggregate::Aggregate;
use opsledger_domain::directory::{Client, Service};

// ------------------------------------------------------------ wire types

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactBody {
    pub name: String,
    pub email: String,
    #[serde(default)]
    pub locale: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComponentBody {
    pub name: String,
    pub kind: dir::ComponentKind,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceHoursBody {
    pub days: Vec<Day>,
    pub from: String,
    pub to: String,
}

/// A service's parents, set whole.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DependenciesBody {
    /// The services it depends on (at most 20; repeats count once; empty:
    /// none). Each must be another service of the tenant, and none may
    /// depend on it, directly or not.
    pub depends_on: Vec<Uuid>,
}

/// A service's place in the dependency graph.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DependenciesView {
    pub service_id: Uuid,
    /// Its parents, as its stream records them (never behind).
    pub depends_on: Vec<Uuid>,
    /// The services that depend on it directly, from the directory read
    /// model (which may briefly lag a change); at most 1000.
    pub dependents: Vec<Uuid>,
    /// Its ancestors (parents, theirs, …) with a probe down now, direct
    /// parents first: while there is one, the service's new alerts are
    /// recorded `suppressed_by_parent`, naming the first.
    pub down_ancestors: Vec<DownParent>,
    /// The service's stream version (its `ETag`).
    pub version: i64,
}

/// Children listed at most: a platform service many depend on still
/// answers in one page.
const DEPENDENTS_MAX: i64 = 1000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Cursor: return items whose id is greater than this one (the `next_cursor` of the previous page).
    pub after: Option<Uuid>,
    /// Items per page, 1 to 200 (default 50). Values outside the range are refused with 400.
    pub limit: Option<u32>,
    /// Only this client's items. A client user who names another client gets an empty page.
    pub client_id: Option<Uuid>,
}

// ------------------------------------------------------------ helpers

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

/// Registers a directory entity with the reservation of its unique name: a
/// name already taken is a 409 that says so.
async fn register<A>(
    state: &AppState,
    r: Asked<'_>,
    target: Target,
    command: A::Command,
    context: A::Context,
    name: &Name,
) -> Result<HttpResponse, ApiError>
where
    A: Aggregate + Send + Sync + 'static,
    A::Event: Send + Sync + 'static,
{
    let prepare = async |_: &Actor, _: Option<&A>| {
        Ok(Prepared {
            context,
            view: run::versioned::<A>,
        })
    };
    aggregate::run_prepared::<A, _, _>(
        state,
        r,
        IfMatch(None),
        DIRECTORY_WRITERS,
        target,
        command,
        prepare,
    )
    .await
    .map_err(|e| match e {
        ApiError::Conflict { extra, .. }
            if extra
                .get("stream")
                .and_then(Value::as_str)
                .is_some_and(|s| s.contains("-name-")) =>
        {
            ApiError::conflict(format!(
                "a {} named {:?} already exists",
                A::NOUN,
                name.as_str()
            ))
        }
        other => other,
    })
}

// ------------------------------------------------------------ clients

pub async fn client_register(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    body: web::Json<RegisterClientBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(DIRECTORY_WRITERS)?;
    let r = Asked::of(&caller, &req, key, &*body)?;
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
    let target = Target::New {
        id,
        location: format!("/api/v1/clients/{id}"),
    };
    register::<Client>(&state, r, target, command, (), &name).await
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
    let v = aggregate::load::<Client>(&state, actor.tenant_id, id, query.as_of).await?;
    Ok(aggregate::respond(StatusCode::OK, &v))
}

// ------------------------------------------------------------ services

pub async fn service_register(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    body: web::Json<RegisterServiceBody>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(DIRECTORY_WRITERS)?;
    let r = Asked::of(&caller, &req, key, &*body)?;
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
    let client_exists = opsledger_app::directory::exists(
        state.ledger(),
        actor.tenant_id,
        &dir::client_stream(body.client_id),
    )
    .await?;
    let target = Target::New {
        id,
        location: format!("/api/v1/services/{id}"),
    };
    let context = dir::ServiceContext {
        client_exists,
        ..dir::ServiceContext::default()
    };
    let command = dir::ServiceCommand::Register(command);
    register::<Service>(&state, r, target, command, context, &name).await
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
    let mut v = aggregate::load::<Service>(&state, actor.tenant_id, id, query.as_of).await?;
    if !may_see_client(actor, v.record.client_id) {
        return Err(not_found());
    }
    // A client user sees only its own client's services among the parents
    // (a shared platform's are another client's).
    if let ClientScope::Only(own) = actor.client_scope() {
        if !v.record.depends_on.is_empty() {
            v.record.depends_on =
                store_dir::of_client(&state.pool, actor.tenant_id, own, &v.record.depends_on)
                    .await?;
        }
    }
    Ok(aggregate::respond(StatusCode::OK, &v))
}

pub async fn service_dependencies_set(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    id: web::Path<Uuid>,
    if_match: IfMatch,
    body: web::Json<DependenciesBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(DIRECTORY_WRITERS)?;
    let r = Asked::of(&caller, &req, key, &*body)?;
    let depends_on = body.into_inner().depends_on;
    let prepare = async |actor: &Actor, _: Option<&Service>| {
        let dependencies = opsledger_app::directory::dependency_context(
            state.ledger(),
            actor.tenant_id,
            &depends_on,
        )
        .await?;
        Ok(Prepared {
            context: dir::ServiceContext {
                client_exists: true,
                dependencies,
            },
            view: run::versioned::<Service>,
        })
    };
    let command = dir::ServiceCommand::SetDependencies {
        depends_on: depends_on.clone(),
    };
    aggregate::run_prepared::<Service, _, _>(
        &state,
        r,
        if_match,
        DIRECTORY_WRITERS,
        Target::Existing(id.into_inner()),
        command,
        prepare,
    )
    .await
}

pub async fn service_dependencies_get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(STAFF)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let id = id.into_inner();
    let v = aggregate::load::<Service>(&state, actor.tenant_id, id, None).await?;
    let dependents =
        store_dir::dependents(&state.pool, actor.tenant_id, id, DEPENDENTS_MAX).await?;
    let down_ancestors = {
        let client = state
            .pool
            .get()
            .await
            .map_err(opsledger_store::StoreError::from)?;
        store_dir::down_ancestors(&client, actor.tenant_id, id).await?
    };
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::ETAG, format!("\"{}\"", v.version)))
        .json(DependenciesView {
            service_id: id,
            depends_on: v.record.depends_on,
            dependents,
            down_ancestors,
            version: v.version,
        }))
}
