//! The client's view: its own incidents (newest first), each opening the
//! incident page, which shows a client what is meant for clients only (no
//! internal notes, no working record, another client's incident not at all).

use actix_web::{web, HttpRequest, HttpResponse};
use opsledger_api::AppState;
use opsledger_domain::access::ClientScope;
use opsledger_store::incidents::IncidentFilter;

use crate::session::{see_other, viewer};
use crate::view;

/// Incidents the page lists at most.
const LISTED: i64 = 100;

/// `/console/client`.
pub async fn home(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(actor) = viewer(&req) else {
        return see_other("/signin");
    };
    let ClientScope::Only(client) = actor.client_scope() else {
        return view::not_found(&req);
    };
    let filter = IncidentFilter {
        client_id: Some(client),
        ..IncidentFilter::default()
    };
    match opsledger_store::incidents::list_incidents(
        &state.pool,
        actor.tenant_id,
        &filter,
        None,
        LISTED,
    )
    .await
    {
        Ok(rows) => view::page(
            &req,
            "client.html",
            minijinja::context! { incidents => rows },
        ),
        Err(e) => {
            tracing::error!(error = %e, "reading a client's incidents failed");
            view::unavailable(&req)
        }
    }
}
