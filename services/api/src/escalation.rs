//! `POST /api/v1/incidents/{id}/escalate`: escalation by hand (the worker
//! that fires due steps is `app::escalation`'s).

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate;
use crate::auth::Caller;
use crate::common::begin_command;
use crate::extract::{IfMatch, OrEmpty};
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::AppState;
use opsledger_domain::access::RESPONDERS;

#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalateBody {
    pub reason: Option<String>,
}

/// `POST /api/v1/incidents/{id}/escalate`: the next level is told now.
pub async fn incident_escalate(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<Uuid>,
    if_match: IfMatch,
    key: IdempotencyKey,
    body: OrEmpty<EscalateBody>,
) -> Result<HttpResponse, ApiError> {
    // Every field is optional, so the body may be left out altogether.
    let body = body.body;
    let asked = serde_json::json!({ "if_match": if_match.0, "body": &body });
    let (actor, fingerprint, replayed) =
        begin_command(&state, &caller, RESPONDERS, &key, &req, &asked).await?;
    if let Some(replayed) = replayed {
        return Ok(replayed);
    }
    let id = id.into_inner();
    let tenant = actor.tenant_id;
    let incident = opsledger_app::incidents::current(state.ledger(), tenant, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no incident {id}")))?;
    let command = opsledger_app::escalation::by_hand(
        state.ledger(),
        tenant,
        &incident,
        body.reason,
        Utc::now(),
    )
    .await?;
    let asked = aggregate::asked(actor, &req, if_match, key, &fingerprint);
    let ran = opsledger_app::incidents::execute(state.ledger(), asked, id, command).await?;
    aggregate::answer(ran, &fingerprint)
}
