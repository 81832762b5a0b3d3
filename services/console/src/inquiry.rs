//! Inquiries: a client files one about its service and follows it; the
//! teams answer, escalate and close. Every read and command goes through
//! the API's own handlers in-process as the reader, so a client sees what
//! the API shows a client (no internal fields, its own inquiries only).

use actix_web::{web, HttpRequest, HttpResponse};
use opsledger_api::auth::Caller;
use opsledger_api::extract::IfMatch;
use opsledger_api::idempotency::IdempotencyKey;
use opsledger_api::AppState;
use opsledger_domain::access::{ClientScope, INQUIRY_OPENERS, INQUIRY_READERS, INQUIRY_RESPONDERS};
use opsledger_store::directory::ClientFilter;
use uuid::Uuid;

use crate::form::{refused_step, to_created, Posted};
use crate::session::{reader, see_other};
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
/// `POST /console/inquiries`: files one; to its page.
pub async fn file(req: HttpRequest, state: web::Data<AppState>, form: web::Bytes) -> HttpResponse {
    let actor = match reader(&req, INQUIRY_OPENERS, "your roles do not file inquiries") {
        Ok(a) => a,
        Err(turned) => return turned.page(&req),
    };
    let posted = match Posted::checked(&req, &form) {
        Ok(p) => p,
        Err(unfit) => return unfit.page(&req),
    };
    let opened = async {
        let (caller, key) = (Caller(actor), IdempotencyKey(None));
        opsledger_api::inquiries::inquiry_open(state, caller, key, req.clone(), posted.json()?)
            .await
    };
    match opened.await {
        Ok(res) => to_created(&res, "inquiries", "inquiries"),
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
    let (id, step) = path.into_inner();
    let (posted, id, version) = match Posted::on_record(&req, &form, &id) {
        Ok(on) => on,
        Err(unfit) => return unfit.page(&req),
    };
    if !matches!(step.as_str(), "answer" | "escalate" | "close") {
        return view::not_found(&req);
    }
    let (caller, key, at, on) = (
        Caller(actor),
        IdempotencyKey(None),
        web::Path::from(id),
        IfMatch(Some(version)),
    );
    let r = req.clone();
    use opsledger_api::inquiries as api;
    let done = async {
        match step.as_str() {
            "answer" => api::inquiry_answer(state, caller, key, r, at, on, posted.json()?).await,
            "escalate" => {
                api::inquiry_escalate(state, caller, key, r, at, on, posted.json()?).await
            }
            _ => api::inquiry_close(state, caller, key, r, at, on, posted.or_empty()?).await,
        }
    };
    match done.await {
        Ok(_) => see_other(&format!("/console/inquiries/{id}")),
        Err(e) => refused_step(&req, &step, e),
    }
}
