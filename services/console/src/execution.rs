//! A runbook execution: its steps, who did each and who confirmed those
//! that need a second person (double-check: the domain refuses a confirmation
//! by whoever did the step), and finishing it. Through the API's handlers
//! in-process as the reader.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use opsledger_api::auth::Caller;
use opsledger_api::extract::{IfMatch, OrEmpty};
use opsledger_api::idempotency::IdempotencyKey;
use opsledger_api::problem::ApiError;
use opsledger_api::runbooks::{CompleteBody, ConfirmBody, FinishBody};
use opsledger_api::AppState;
use uuid::Uuid;

use crate::incident::Posted;
use crate::session::{csrf_ok, reader, see_other};
use crate::{view, STAFF};

fn body<B: serde::de::DeserializeOwned>(posted: &Posted) -> Result<B, ApiError> {
    serde_urlencoded::from_str(&posted.encoded())
        .map_err(|e| ApiError::Unprocessable(e.to_string()))
}

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
    let mut posted = Posted::of(&form);
    if !csrf_ok(&req, &posted.csrf) {
        return view::refused(
            &req,
            "the form's CSRF token is missing or not this browser's",
        );
    }
    let runbook = posted
        .fields
        .iter()
        .position(|(k, _)| k == "runbook_id")
        .map(|at| posted.fields.remove(at).1)
        .and_then(|r| r.parse::<Uuid>().ok());
    let Some(runbook) = runbook else {
        return view::bad_request(&req, "choose a runbook");
    };
    let started = match body::<opsledger_api::runbooks::StartBody>(&posted) {
        Ok(b) => {
            let b = OrEmpty {
                body: b,
                asked: serde_json::Value::Null,
            };
            opsledger_api::runbooks::execution_start(
                state,
                Caller(actor),
                IdempotencyKey(None),
                req.clone(),
                web::Path::from(runbook),
                b,
            )
            .await
        }
        Err(e) => Err(e),
    };
    match started {
        Ok(res) => match res
            .headers()
            .get(actix_web::http::header::LOCATION)
            .and_then(|l| l.to_str().ok())
        {
            Some(api) => see_other(&api.replace("/api/v1/executions/", "/console/executions/")),
            None => see_other("/console/executions"),
        },
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
    let mut posted = Posted::of(&form);
    if !csrf_ok(&req, &posted.csrf) {
        return view::refused(
            &req,
            "the form's CSRF token is missing or not this browser's",
        );
    }
    let (id, what) = path.into_inner();
    let Ok(id) = id.parse::<Uuid>() else {
        return view::not_found(&req);
    };
    let Some(version) = posted.version else {
        return view::bad_request(
            &req,
            "the form does not say which version of the execution it was based on",
        );
    };
    // The step's number travels with the form, beside the body's fields.
    let step = posted
        .fields
        .iter()
        .position(|(k, _)| k == "step")
        .map(|at| posted.fields.remove(at).1);
    let step = step.and_then(|s| s.parse::<u32>().ok());
    let (caller, key, on) = (Caller(actor), IdempotencyKey(None), IfMatch(Some(version)));
    use opsledger_api::runbooks as api;
    let done = match (what.as_str(), step) {
        ("complete", Some(n)) => match body::<CompleteBody>(&posted) {
            Ok(b) => {
                let b = OrEmpty {
                    body: b,
                    asked: serde_json::Value::Null,
                };
                api::step_complete(
                    state,
                    caller,
                    key,
                    req.clone(),
                    web::Path::from((id, n)),
                    on,
                    b,
                )
                .await
            }
            Err(e) => Err(e),
        },
        ("confirm", Some(n)) => match body::<ConfirmBody>(&posted) {
            Ok(b) => {
                let b = OrEmpty {
                    body: b,
                    asked: serde_json::Value::Null,
                };
                api::step_confirm(
                    state,
                    caller,
                    key,
                    req.clone(),
                    web::Path::from((id, n)),
                    on,
                    b,
                )
                .await
            }
            Err(e) => Err(e),
        },
        ("finish", _) => match body::<FinishBody>(&posted) {
            Ok(b) => {
                api::execution_finish(
                    state,
                    caller,
                    key,
                    req.clone(),
                    web::Path::from(id),
                    on,
                    web::Json(b),
                )
                .await
            }
            Err(e) => Err(e),
        },
        ("complete" | "confirm", None) => {
            return view::bad_request(&req, "the form does not say which step")
        }
        _ => return view::not_found(&req),
    };
    match done {
        Ok(_) => see_other(&format!("/console/executions/{id}")),
        Err(ApiError::PreconditionFailed { detail, .. }) => view::failed(
            &req,
            StatusCode::CONFLICT,
            "Conflict",
            &format!("Someone else acted first, and your {what} was not applied: {detail}"),
        ),
        Err(e) => view::api_error(&req, e),
    }
}
