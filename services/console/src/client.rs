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

#[derive(Debug, Default, serde::Deserialize)]
pub struct HomeQuery {
    pub as_of: Option<String>,
}

/// `/console/client`.
pub async fn home(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<HomeQuery>,
) -> HttpResponse {
    let Some(actor) = viewer(&req) else {
        return see_other("/signin");
    };
    let ClientScope::Only(client) = actor.client_scope() else {
        return view::not_found(&req);
    };
    let as_of = match view::instant(query.as_of.as_deref()) {
        Ok(at) => at,
        Err(why) => return view::bad_request(&req, &why),
    };
    let filter = IncidentFilter {
        client_id: Some(client),
        ..IncidentFilter::default()
    };
    let tenant = actor.tenant_id;
    let listed = match opsledger_store::incidents::list_incidents(
        &state.pool,
        tenant,
        &filter,
        None,
        LISTED,
    )
    .await
    {
        Ok(rows) => match as_of {
            None => Ok(minijinja::Value::from_serialize(&rows)),
            Some(at) => {
                let ids: Vec<uuid::Uuid> = rows.iter().map(|r| r.incident.id).collect();
                opsledger_app::history::states_at::<opsledger_domain::incident::Incident>(
                    state.ledger(),
                    tenant,
                    &ids,
                    at,
                )
                .await
                .map(|then| {
                    let then: Vec<_> = then.into_iter().map(|(_, i, _)| i).collect();
                    minijinja::Value::from_serialize(&then)
                })
            }
        },
        Err(e) => Err(e),
    };
    let services = opsledger_store::directory::list_services(
        &state.pool,
        tenant,
        opsledger_store::directory::ClientFilter::Only(client),
        None,
        500,
    )
    .await;
    match (listed, services) {
        (Ok(incidents), Ok(services)) => view::page(
            &req,
            "client.html",
            minijinja::context! { incidents => incidents, services => services, as_of => as_of },
        ),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "reading a client's incidents failed");
            view::unavailable(&req)
        }
    }
}
