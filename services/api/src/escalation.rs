//! Escalation (SPEC §5): the first step scheduled when an incident opens,
//! the worker that fires due steps, escalation by hand, and who a level's
//! targets are at a given moment.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use opsledger_domain::escalation::{self, Step, Target};
use opsledger_domain::incident::{Command, Status};
use opsledger_domain::{oncall, Metadata};
use opsledger_store::incidents::{self as store_incidents, TimerFired};
use opsledger_store::roster as store_roster;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate;
use crate::auth::Caller;
use crate::common::begin_command;
use crate::extract::{optional_json, IfMatch};
use crate::idempotency::IdempotencyKey;
use crate::incidents::execute_as;
use crate::problem::ApiError;
use crate::AppState;
use opsledger_domain::access::RESPONDERS;

/// Due steps one worker pass fires at most; the next pass takes the rest.
const FIRE_BATCH_MAX: i64 = 50;

/// The responders a level's targets name at `at`: its users, and whoever
/// its schedules have on call then. Unknown users and schedules name nobody.
pub(crate) async fn responders(
    state: &AppState,
    tenant: Uuid,
    targets: &[Target],
    at: DateTime<Utc>,
) -> Result<Vec<Uuid>, ApiError> {
    let mut users: Vec<Uuid> = Vec::new();
    let schedule_ids: Vec<Uuid> = targets
        .iter()
        .filter_map(|t| match t {
            Target::Schedule(id) => Some(*id),
            Target::User(_) => None,
        })
        .collect();
    for t in targets {
        if let Target::User(id) = t {
            users.push(*id);
        }
    }
    if !schedule_ids.is_empty() {
        for s in store_roster::schedules(&state.pool, tenant, &schedule_ids).await? {
            users.extend(
                oncall::on_call(&s.schedule, at)
                    .into_iter()
                    .map(|o| o.user_id),
            );
        }
    }
    let known: Vec<Uuid> = store_roster::users(&state.pool, tenant, &users)
        .await?
        .into_iter()
        .map(|u| u.id)
        .collect();
    let mut told = Vec::new();
    for u in users {
        if known.contains(&u) && !told.contains(&u) {
            told.push(u);
        }
    }
    Ok(told)
}

fn system_meta() -> Metadata {
    Metadata {
        actor: "system:escalation".into(),
        role: "system".into(),
        request_id: None,
        correlation_id: None,
        causation_id: None,
        source: "escalation".into(),
    }
}

async fn fire_one(
    state: &AppState,
    tenant: Uuid,
    id: Uuid,
    step: Step,
    now: DateTime<Utc>,
) -> Result<TimerFired, ApiError> {
    let Some(incident) = opsledger_app::incidents::current(state.ledger(), tenant, id).await?
    else {
        return Ok(TimerFired::Done);
    };
    let policy = match incident.service_id {
        Some(s) => store_roster::policy_of_service(&state.pool, tenant, s).await?,
        None => None,
    };
    let Some(level) = policy
        .as_ref()
        .and_then(|p| p.policy.levels.get(step.level as usize - 1))
    else {
        return Ok(TimerFired::Done);
    };
    let users = responders(state, tenant, &level.targets, now).await?;
    let then = policy
        .as_ref()
        .and_then(|p| escalation::after(&p.policy, step))
        .map(|(next, wait)| (next, now + wait));
    let command = Command::Escalate {
        step,
        targets: level.targets.clone(),
        users,
        by_hand: false,
        reason: None,
        then,
        now,
    };
    match execute_as(state, tenant, &system_meta(), id, command).await {
        Ok(()) => Ok(TimerFired::Done),
        // Acknowledged, resolved or rescheduled meanwhile: nothing to fire.
        Err(ApiError::Unprocessable(_)) => Ok(TimerFired::Done),
        Err(ApiError::Conflict { .. }) => Ok(TimerFired::Later),
        Err(e) => Err(e),
    }
}

/// One pass of the escalation worker: fires every due step. Instances may
/// run it at once: each takes the timers it locks and skips those another
/// holds, and firing appends with the incident's version, so a step fires
/// once. Returns how many timers it settled.
pub async fn fire_due(state: &AppState) -> Result<usize, ApiError> {
    let settled = store_incidents::fire_due_timers(&state.pool, FIRE_BATCH_MAX, |t| async move {
        let step = Step {
            level: t.level,
            round: t.round,
        };
        // The database said it is due: this clock must not say otherwise.
        let now = Utc::now().max(t.due_at);
        match fire_one(state, t.tenant_id, t.incident_id, step, now).await {
            Ok(fired) => fired,
            Err(e) => {
                tracing::warn!(incident = %t.incident_id, error = %e, "escalation step not fired; retrying");
                TimerFired::Later
            }
        }
    })
    .await?;
    Ok(settled)
}

#[derive(Debug, Default, Deserialize, Serialize)]
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
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // Every field is optional, so the body may be left out altogether.
    let body: EscalateBody = optional_json(&req, &body)?.unwrap_or_default();
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
    let policy = match incident.service_id {
        Some(s) => store_roster::policy_of_service(&state.pool, tenant, s).await?,
        None => None,
    };
    let policy = policy.map(|p| p.policy);
    let open = matches!(incident.status, Status::Triggered | Status::Acknowledged);
    if open && policy.is_none() {
        // (A closed incident gets the 409 that names its state instead.)
        return Err(ApiError::Unprocessable(
            "the incident's service has no escalation policy: there is nobody to escalate to; \
             hand it off or assign it instead"
                .into(),
        ));
    }
    let step = escalation::manual_step(policy.as_ref(), incident.escalation_level);
    let now = Utc::now();
    let targets = policy
        .as_ref()
        .and_then(|p| p.levels.get(step.level as usize - 1))
        .map(|l| l.targets.clone())
        .unwrap_or_default();
    let users = responders(&state, tenant, &targets, now).await?;
    let then = policy
        .as_ref()
        .and_then(|p| escalation::after(p, step))
        .map(|(next, wait)| (next, now + wait));
    let command = Command::Escalate {
        step,
        targets,
        users,
        by_hand: true,
        reason: body.reason,
        then,
        now,
    };
    let asked = aggregate::asked(actor, &req, if_match, key, &fingerprint);
    let ran = opsledger_app::incidents::execute(state.ledger(), asked, id, command).await?;
    aggregate::answer(ran, &fingerprint)
}
