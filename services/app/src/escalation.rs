//! Escalation (SPEC §5): the worker that fires due steps, the step a hand
//! escalation takes, and who a level's targets are at a given moment. The
//! rules (what a step pages, what follows it) are `domain::escalation`'s and
//! `domain::incident`'s.

use chrono::{DateTime, Utc};
use opsledger_domain::escalation::{self, Step, Target};
use opsledger_domain::incident::{Command, Incident, Status};
use opsledger_domain::{oncall, Metadata};
use opsledger_store::incidents::{self as store_incidents, TimerFired};
use opsledger_store::roster as store_roster;
use uuid::Uuid;

use crate::run::{Asked, RunError};
use crate::Ledger;

/// Due steps one worker pass fires at most; the next pass takes the rest.
const FIRE_BATCH_MAX: i64 = 50;

/// The responders a level's targets name at `at`: its users, and whoever
/// its schedules have on call then. Unknown users and schedules name nobody.
pub(crate) async fn responders(
    ledger: Ledger<'_>,
    tenant: Uuid,
    targets: &[Target],
    at: DateTime<Utc>,
) -> Result<Vec<Uuid>, RunError> {
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
        for s in store_roster::schedules(ledger.pool, tenant, &schedule_ids).await? {
            users.extend(
                oncall::on_call(&s.schedule, at)
                    .into_iter()
                    .map(|o| o.user_id),
            );
        }
    }
    let known: Vec<Uuid> = store_roster::users(ledger.pool, tenant, &users)
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
    ledger: Ledger<'_>,
    tenant: Uuid,
    id: Uuid,
    step: Step,
    now: DateTime<Utc>,
) -> Result<TimerFired, RunError> {
    let Some(incident) = crate::incidents::current(ledger, tenant, id).await? else {
        return Ok(TimerFired::Done);
    };
    let policy = match incident.service_id {
        Some(s) => store_roster::policy_of_service(ledger.pool, tenant, s).await?,
        None => None,
    };
    let Some(level) = policy
        .as_ref()
        .and_then(|p| p.policy.levels.get(step.level as usize - 1))
    else {
        return Ok(TimerFired::Done);
    };
    let users = responders(ledger, tenant, &level.targets, now).await?;
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
    let asked = Asked {
        tenant,
        meta: system_meta(),
        if_match: None,
        key: None,
    };
    match crate::incidents::execute(ledger, asked, id, command).await {
        Ok(_) => Ok(TimerFired::Done),
        Err(e) if e.is_conflict() => Ok(TimerFired::Later),
        // Acknowledged, resolved or rescheduled meanwhile: nothing to fire.
        Err(RunError::Rejected { .. }) => Ok(TimerFired::Done),
        Err(e) => Err(e),
    }
}

/// One pass of the escalation worker: fires every due step. Instances may
/// run it at once: each takes the timers it locks and skips those another
/// holds, and firing appends with the incident's version, so a step fires
/// once. Returns how many timers it settled.
pub async fn fire_due(ledger: Ledger<'_>) -> Result<usize, RunError> {
    let settled = store_incidents::fire_due_timers(ledger.pool, FIRE_BATCH_MAX, |t| {
        let span = tracing::info_span!(
            target: opsledger_store::SPAN_TARGET,
            "escalation step",
            tenant = %t.tenant_id,
            incident = %t.incident_id,
            level = t.level,
            round = t.round,
            outcome = tracing::field::Empty,
        );
        let fire = async move {
            let step = Step {
                level: t.level,
                round: t.round,
            };
            // The database said it is due: this clock must not say otherwise.
            let now = Utc::now().max(t.due_at);
            let fired = match fire_one(ledger, t.tenant_id, t.incident_id, step, now).await {
                Ok(fired) => fired,
                Err(e) => {
                    tracing::warn!(incident = %t.incident_id, error = %e, "escalation step not fired; retrying");
                    TimerFired::Later
                }
            };
            let outcome = match fired {
                TimerFired::Done => "settled",
                TimerFired::Later => "later",
            };
            tracing::Span::current().record("outcome", outcome);
            fired
        };
        tracing::Instrument::instrument(fire, span)
    })
    .await?;
    Ok(settled)
}

/// The step escalating `incident` by hand takes now, as a command: the
/// next level of its service's policy, told at once.
pub async fn by_hand(
    ledger: Ledger<'_>,
    tenant: Uuid,
    incident: &Incident,
    reason: Option<String>,
    now: DateTime<Utc>,
) -> Result<Command, RunError> {
    let policy = match incident.service_id {
        Some(s) => store_roster::policy_of_service(ledger.pool, tenant, s).await?,
        None => None,
    };
    let policy = policy.map(|p| p.policy);
    let open = matches!(incident.status, Status::Triggered | Status::Acknowledged);
    if open && policy.is_none() {
        // (A closed incident gets the 409 that names its state instead.)
        return Err(RunError::Invalid(
            "the incident's service has no escalation policy: there is nobody to escalate to; \
             hand it off or assign it instead"
                .into(),
        ));
    }
    let step = escalation::manual_step(policy.as_ref(), incident.escalation_level);
    let targets = policy
        .as_ref()
        .and_then(|p| p.levels.get(step.level as usize - 1))
        .map(|l| l.targets.clone())
        .unwrap_or_default();
    let users = responders(ledger, tenant, &targets, now).await?;
    let then = policy
        .as_ref()
        .and_then(|p| escalation::after(p, step))
        .map(|(next, wait)| (next, now + wait));
    Ok(Command::Escalate {
        step,
        targets,
        users,
        by_hand: true,
        reason,
        then,
        now,
    })
}
