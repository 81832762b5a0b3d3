//! A runbook execution: its steps, who did each and who confirmed those
//! that need a second person (double-check: the domain refuses a confirmation
//! by whoever did the step), and finishing it. Through the API's handlers
//! in-process as the reader.

use actix_web::{web, HttpRequest, HttpResponse};
use opsledger_api::auth::Caller;
use opsledger_api::extract::IfMatch;
use opsledger_api::idempotency::IdempotencyKey;
use opsledger_api::AppState;
use uuid::Uuid;

use crate::form::{refused_step, to_created, Posted};
use crate::session::{reader, see_other};
use crate::{view, STAFF};

/// `POST /console/executions`: starts the runbook the form names; to the
/// execution's page.
pub async fn start(req: HttpRequest, state: web::Data<AppState>, form: web::Bytes) -> HttpResponse {
    let actor = match reader(
        &req,
        opsledger_domain::access::OPERATIONS_WORKERS,
        "your roles do not run runbooks",
    ) {
        Ok(a) => a,
        Err(turned) => return turned.page(&req),
    };
    let mut posted = match Posted::checked(&req, &form) {
        Ok(p) => p,
        Err(unfit) => return unfit.page(&req),
    };
    let Some(runbook) = posted
        .take("runbook_id")
        .and_then(|r| r.parse::<Uuid>().ok())
    else {
        return view::bad_request(&req, "choose a runbook");
    };
    let started = async {
        opsledger_api::runbooks::execution_start(
            state,
            Caller(actor),
            IdempotencyKey(None),
            req.clone(),
            web::Path::from(runbook),
            posted.or_empty()?,
        )
        .await
    };
    match started.await {
        Ok(res) => to_created(&res, "executions", "executions"),
        Err(e) => view::api_error(&req, e),
    }
}

/// `/console/executions/{id}`.
pub async fn page(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let actor = match reader(&req, STAFF, "runbook executions are the teams' own") {
        Ok(a) => a,
        Err(turned) => return turned.page(&req),
    };
    let Ok(id) = id.parse::<Uuid>() else {
        return view::not_found(&req);
    };
    let me = actor.subject.clone();
    let may_run = actor.has_any(opsledger_domain::access::OPERATIONS_WORKERS);
    let shown =
        opsledger_api::runbooks::execution_get(state, Caller(actor), web::Path::from(id)).await;
    let execution = match crate::answered(shown).await {
        Ok(v) => v,
        Err(e) => return view::api_error(&req, e),
    };
    let running = execution["status"].as_str() == Some("in_progress");
    // The step waiting for a second person, and whether that may be the reader.
    let awaiting = execution["awaiting_confirmation"].as_u64();
    let did_it = awaiting.and_then(|n| {
        execution["steps"]
            .as_array()?
            .iter()
            .find(|s| s["step"].as_u64() == Some(n))
            .map(|s| s["completed_by"].as_str() == Some(me.as_str()))
    });
    view::page(
        &req,
        "execution.html",
        minijinja::context! {
            execution => execution,
            running => running && may_run,
            awaiting => awaiting,
            may_confirm => did_it == Some(false),
        },
    )
}

/// `POST /console/executions/{id}/{step}`: complete or confirm the step
/// the form names, or finish.
pub async fn act(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    form: web::Bytes,
) -> HttpResponse {
    let actor = match reader(&req, STAFF, "runbook executions are the teams' own") {
        Ok(a) => a,
        Err(turned) => return turned.page(&req),
    };
    let (id, what) = path.into_inner();
    let (mut posted, id, version) = match Posted::on_record(&req, &form, &id) {
        Ok(on) => on,
        Err(unfit) => return unfit.page(&req),
    };
    // The step's number travels with the form, beside the body's fields.
    let step = posted.take("step").and_then(|s| s.parse::<u32>().ok());
    match (what.as_str(), step) {
        ("complete" | "confirm", Some(_)) | ("finish", _) => {}
        ("complete" | "confirm", None) => {
            return view::bad_request(&req, "the form does not say which step")
        }
        _ => return view::not_found(&req),
    }
    let (caller, key, on) = (Caller(actor), IdempotencyKey(None), IfMatch(Some(version)));
    let r = req.clone();
    use opsledger_api::runbooks as api;
    let done = async {
        match (what.as_str(), step) {
            ("complete", Some(n)) => {
                let at = web::Path::from((id, n));
                api::step_complete(state, caller, key, r, at, on, posted.or_empty()?).await
            }
            ("confirm", Some(n)) => {
                let at = web::Path::from((id, n));
                api::step_confirm(state, caller, key, r, at, on, posted.or_empty()?).await
            }
            _ => {
                let at = web::Path::from(id);
                api::execution_finish(state, caller, key, r, at, on, posted.json()?).await
            }
        }
    };
    match done.await {
        Ok(_) => see_other(&format!("/console/executions/{id}")),
        Err(e) => refused_step(&req, &what, e),
    }
}
