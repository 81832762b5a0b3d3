//! The reader's change notices (SPEC §9): the steps of changes that concern
//! them — their own changes approved, rejected, scheduled, started,
//! completed or failed; changes awaiting their approval — as they were
//! mailed through the outbox, newest first, each linking to its change.

use actix_web::{web, HttpRequest, HttpResponse};
use opsledger_api::AppState;

use crate::session::reader;
use crate::{view, STAFF};

/// Notices the page lists at most.
const LISTED: i64 = 100;

#[derive(Debug, Default, serde::Deserialize)]
pub struct NoticesQuery {
    /// The notices asked by then.
    pub as_of: Option<String>,
}

/// `/console/notices`.
pub async fn page(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<NoticesQuery>,
) -> HttpResponse {
    let actor = match reader(&req, STAFF, "change notices are the teams' own") {
        Ok(a) => a,
        Err(turned) => return turned.page(&req),
    };
    let as_of = match view::instant(query.as_of.as_deref()) {
        Ok(at) => at,
        Err(why) => return view::bad_request(&req, &why),
    };
    match opsledger_store::outbox::change_notices_for(
        &state.pool,
        actor.tenant_id,
        &actor.subject,
        LISTED,
    )
    .await
    {
        Ok(mut notices) => {
            if let Some(at) = as_of {
                notices.retain(|n| n.requested_at <= at);
            }
            view::page(
                &req,
                "notices.html",
                minijinja::context! { notices => notices, as_of => as_of },
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "reading change notices failed");
            view::unavailable(&req)
        }
    }
}
