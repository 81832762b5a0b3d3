//! Inquiries: a client files one about its service and follows it; the
//! teams answer, escalate and close. Every read and command goes through
//! the API's own handlers in-process as the reader, so a client sees what
//! the API shows a client (no internal fields, its own inquiries only).

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use opsledger_api::auth::Caller;
use opsledger_api::extract::{IfMatch, OrEmpty};
use opsledger_api::idempotency::IdempotencyKey;
use opsledger_api::inquiries::{AnswerBody, CloseBody, EscalateBody, OpenBody};
use opsledger_api::problem::ApiError;
use opsledger_api::AppState;
use opsledger_domain::access::{ClientScope, INQUIRY_OPENERS, INQUIRY_READERS, INQUIRY_RESPONDERS};
use opsledger_store::directory::ClientFilter;
use uuid::Uuid;

use crate::incident::Posted;
use crate::session::{csrf_ok, reader, see_other};
use crate::view;

/// The services a reader may file an inquiry about: a client's own, or
/// every service for staff filing on a client's behalf.
pub(crate) async fn services_for(
    state: &AppState,
    actor: &opsledger_domain::access::Actor,
) -> Result<Vec<opsledger_store::directory::ServiceRow>, opsledger_store::StoreError> {
    let filter = match actor.client_scope() {
        ClientScope::All => ClientFilter::All,
        ClientScope::Only(own) => ClientFilter::Only(own),
        ClientScope::Nothing => return Ok(Vec::new()),
    };
    opsledger_store::directory::list_services(&state.pool, actor.tenant_id, filter, None, 500).await
}

/// A form read into an API body type.
fn body<B: serde::de::DeserializeOwned>(posted: &Posted) -> Result<B, ApiError> {
    serde_urlencoded::from_str(&posted.encoded())
        .map_err(|e| ApiError::Unprocessable(e.to_string()))
}

/// `POST /console/inquiries`: files one; to its page.
pub async fn file(req: HttpRequest, state: web::Data<AppState>, form: web::Bytes) -> HttpResponse {
    let actor = match reader(&req, INQUIRY_OPENERS, "your roles do not file inquiries") {
        Ok(a) => a,
        Err(turned) => return turned.page(&req),
    };
    let posted = Posted::of(&form);
    if !csrf_ok(&req, &posted.csrf) {
        return view::refused(
            &req,
            "the form's CSRF token is missing or not this browser's",
        );
    }
    let opened = match body::<OpenBody>(&posted) {
        Ok(b) => {
            opsledger_api::inquiries::inquiry_open(
                state,
                Caller(actor),
                IdempotencyKey(None),
                req.clone(),
                web::Json(b),
            )
            .await
        }
        Err(e) => Err(e),
    };
    match opened {
        Ok(res) => match res
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
        {
            Some(api) => see_other(&api.replace("/api/v1/inquiries/", "/console/inquiries/")),
            None => see_other("/console/inquiries"),
        },
        Err(e) => view::api_error(&req, e),
    }
}

/// `/console/inquiries/{id}`: the inquiry, its answers, and what the reader
/// may do next.
pub async fn page(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let actor = match reader(&req, INQUIRY_READERS, "your roles do not read inquiries") {
        Ok(a) => a,
        Err(turned) => return turned.page(&req),
    };
    let Ok(id) = id.parse::<Uuid>() else {
        return view::not_found(&req);
    };
    let responder = actor.has_any(INQUIRY_RESPONDERS);
    let shown =
        opsledger_api::inquiries::inquiry_get(state, Caller(actor), web::Path::from(id)).await;
    let inquiry = match crate::answered(shown).await {
        Ok(v) => v,
        Err(e) => return view::api_error(&req, e),
    };
    let open = inquiry["status"].as_str() != Some("closed");
    view::page(
        &req,
        "inquiry.html",
        minijinja::context! {
            inquiry => inquiry,
            responder => responder && open,
            closable => open,
        },
    )
}

/// `POST /console/inquiries/{id}/{step}`: answer, escalate or close.
pub async fn act(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    form: web::Bytes,
) -> HttpResponse {
    let actor = match reader(&req, INQUIRY_READERS, "your roles do not act on inquiries") {
        Ok(a) => a,
        Err(turned) => return turned.page(&req),
    };
    let posted = Posted::of(&form);
    if !csrf_ok(&req, &posted.csrf) {
        return view::refused(
            &req,
            "the form's CSRF token is missing or not this browser's",
        );
    }
    let (id, step) = path.into_inner();
    let Ok(id) = id.parse::<Uuid>() else {
        return view::not_found(&req);
    };
    let Some(version) = posted.version else {
        return view::bad_request(
            &req,
            "the form does not say which version of the inquiry it was based on",
        );
    };
    let (caller, key, at, on) = (
        Caller(actor),
        IdempotencyKey(None),
        web::Path::from(id),
        IfMatch(Some(version)),
    );
    use opsledger_api::inquiries as api;
    let done = match step.as_str() {
        "answer" => match body::<AnswerBody>(&posted) {
            Ok(b) => {
                api::inquiry_answer(state, caller, key, req.clone(), at, on, web::Json(b)).await
            }
            Err(e) => Err(e),
        },
        "escalate" => match body::<EscalateBody>(&posted) {
            Ok(b) => {
                api::inquiry_escalate(state, caller, key, req.clone(), at, on, web::Json(b)).await
            }
            Err(e) => Err(e),
        },
        "close" => match body::<CloseBody>(&posted) {
            Ok(b) => {
                let b = OrEmpty {
                    body: b,
                    asked: serde_json::Value::Null,
                };
                api::inquiry_close(state, caller, key, req.clone(), at, on, b).await
            }
            Err(e) => Err(e),
        },
        _ => return view::not_found(&req),
    };
    match done {
        Ok(_) => see_other(&format!("/console/inquiries/{id}")),
        Err(ApiError::PreconditionFailed { detail, .. }) => view::failed(
            &req,
            StatusCode::CONFLICT,
            "Conflict",
            &format!("Someone else acted first, and your {step} was not applied: {detail}"),
        ),
        Err(e) => view::api_error(&req, e),
    }
}
