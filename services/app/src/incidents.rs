//! Commands on an incident, from a person (the API) or the service itself
//! (escalation timers, auto-mitigation, PagerDuty's acknowledge): what
//! deciding needs is looked up here, the rules are `domain::incident`'s.

use chrono::{SubsecRound, Utc};
use opsledger_domain::alert::{self, GroupEvent};
use opsledger_domain::incident::{Command, Context, GroupFacts, Incident, Status};
use opsledger_store::StoreError;
use serde::Serialize;
use uuid::Uuid;

use crate::run::{self, Asked, Prepared, Ran, RunError, Target};
use crate::Ledger;

/// An incident as answered: with the client owning its service, its
/// version, and how many alerts opened or joined it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IncidentView {
    #[serde(flatten)]
    pub incident: Incident,
    pub client_id: Option<Uuid>,
    pub version: i64,
    /// Alerts that opened or joined it (from the alerts read model).
    pub alert_count: i64,
}

/// Runs `command` on incident `id`; `Command::Open` opens it (answered at
/// `/api/v1/incidents/{id}`).
pub async fn execute(
    ledger: Ledger<'_>,
    asked: Asked,
    id: Uuid,
    command: Command,
) -> Result<Ran, RunError> {
    let tenant = asked.tenant;
    let now = Utc::now().trunc_subsecs(6);
    let (target, opening) = match &command {
        Command::Open {
            service_id,
            impact_start,
            ..
        } => (
            Target::New {
                id,
                location: format!("/api/v1/incidents/{id}"),
            },
            Some((*service_id, impact_start.unwrap_or(now).min(now))),
        ),
        _ => (Target::Existing(id), None),
    };
    run::run::<Incident, _, _, RunError>(ledger, asked, target, command, async |i| {
        let service_id = match (i, opening) {
            (Some(i), _) => i.service_id,
            (None, Some((service_id, _))) => service_id,
            (None, None) => {
                return Err(RunError::NotFound {
                    noun: "incident",
                    id,
                })
            }
        };
        // An opening pages from the first step; so does a reopening, which
        // also takes its group back.
        let reopenable = i.is_some_and(|i| i.status == Status::Resolved);
        let has_policy =
            (reopenable || i.is_none()) && has_policy(ledger, tenant, service_id).await?;
        let group = match (reopenable, i.and_then(|i| i.group_key.as_ref()), service_id) {
            (true, Some(key), Some(s)) => Some(group_facts(ledger, tenant, s, key).await?),
            _ => None,
        };
        let planned_window = match opening {
            Some((Some(s), impact_start)) => {
                let client = ledger.pool.get().await.map_err(StoreError::from)?;
                opsledger_store::changes::window_covering(&client, tenant, s, impact_start).await?
            }
            _ => None,
        };
        let client_id = match service_id {
            Some(s) => crate::directory::client_of_service(ledger, tenant, s).await?,
            None => None,
        };
        let alert_count = match i {
            Some(i) => {
                opsledger_store::incidents::alert_count(ledger.pool, tenant, i.id, None).await?
            }
            None => 0,
        };
        Ok(Prepared {
            context: Context {
                new_id: Uuid::now_v7(),
                now,
                has_policy,
                group,
                planned_window,
            },
            view: move |incident: &Incident, version| {
                serde_json::to_value(IncidentView {
                    incident: incident.clone(),
                    client_id,
                    version,
                    alert_count,
                })
                .unwrap_or_default()
            },
        })
    })
    .await
}

async fn group_facts(
    ledger: Ledger<'_>,
    tenant: Uuid,
    service: Uuid,
    group_key: &str,
) -> Result<GroupFacts, StoreError> {
    let client = ledger.pool.get().await.map_err(StoreError::from)?;
    let stream = alert::group_stream(service, group_key);
    let events = opsledger_store::read::read_stream(&client, tenant, &stream, None).await?;
    let parsed: Vec<GroupEvent> = events
        .iter()
        .filter_map(|e| GroupEvent::from_stored(&e.event_type, &e.payload))
        .collect();
    Ok(GroupFacts {
        version: events.last().map_or(0, |e| e.stream_version),
        bound: alert::bound_incident(&parsed),
    })
}

/// The incident as its stored events leave it, if there is one.
pub async fn current(
    ledger: Ledger<'_>,
    tenant: Uuid,
    id: Uuid,
) -> Result<Option<Incident>, StoreError> {
    Ok(run::load::<Incident>(ledger, tenant, id, None).await?.0)
}

/// Whether a refusal says the incident had moved on (acknowledged,
/// resolved, …) rather than that the stream moved under the command.
pub fn refused_by_state(e: &RunError) -> bool {
    matches!(e, RunError::Rejected { state: Some(_), rejection, .. }
        if matches!(rejection, opsledger_domain::Rejection::InvalidTransition { .. }))
}

/// Whether the service has an escalation policy (an incident of no
/// service pages nobody).
pub async fn has_policy(
    ledger: Ledger<'_>,
    tenant: Uuid,
    service: Option<Uuid>,
) -> Result<bool, StoreError> {
    Ok(match service {
        Some(s) => opsledger_store::roster::policy_of_service(ledger.pool, tenant, s)
            .await?
            .is_some(),
        None => false,
    })
}

/// One event of an incident's timeline: its own, or a receipt of an alert
/// attached to it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    pub position: i64,
    pub stream: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub work_class: opsledger_domain::WorkClass,
    pub occurred_at: chrono::DateTime<Utc>,
    pub recorded_at: chrono::DateTime<Utc>,
    pub actor: Option<String>,
    pub role: Option<String>,
    pub source: Option<String>,
    pub data: serde_json::Value,
}

/// An incident's timeline, oldest first: its own events (`events`, its
/// stream as read) and the receipts of the alerts attached to it
/// (`attached`: just the firing cycle each is in, of a stream that holds a
/// year of them). A client's (`client_view`) leaves out internal notes and
/// the maintenance team's working record (findings quote logs; fixes name
/// internals).
pub async fn timeline(
    ledger: Ledger<'_>,
    tenant: Uuid,
    events: Vec<opsledger_domain::RecordedEvent>,
    attached: Vec<opsledger_store::incidents::AttachedAlert>,
    client_view: bool,
) -> Result<Vec<TimelineEntry>, StoreError> {
    use opsledger_domain::alert::AlertEvent;
    use opsledger_domain::incident::{IncidentEvent, Visibility};
    let alert_ids: std::collections::HashSet<Uuid> = attached.iter().map(|a| a.alert_id).collect();
    let ranges: Vec<opsledger_store::read::StreamRange> = attached
        .iter()
        .map(|a| {
            let (first, last) = a.versions.unwrap_or((1, i64::MAX));
            opsledger_store::read::StreamRange {
                tenant_id: tenant,
                stream_id: alert::alert_stream(&a.dedup_key),
                first,
                last,
            }
        })
        .collect();
    let alert_events = {
        let client = ledger.pool.get().await.map_err(StoreError::from)?;
        opsledger_store::read::read_ranges(&client, &ranges).await?
    };
    let mut all: Vec<opsledger_domain::RecordedEvent> = alert_events
        .into_iter()
        .filter(
            |e| match AlertEvent::from_stored(&e.event_type, &e.payload) {
                Some(AlertEvent::AlertReceived { alert_id, .. })
                | Some(AlertEvent::AlertResolved { alert_id, .. }) => alert_ids.contains(&alert_id),
                None => false,
            },
        )
        .collect();
    all.extend(events.into_iter().filter(|e| {
        !(client_view
            && matches!(
                IncidentEvent::from_stored(&e.event_type, &e.payload),
                Some(
                    IncidentEvent::NoteAdded {
                        visibility: Visibility::Internal,
                        ..
                    } | IncidentEvent::FindingRecorded { .. }
                        | IncidentEvent::MaintenanceActionRecorded { .. }
                )
            ))
    }));
    all.sort_by_key(|e| (e.recorded_at, e.position));
    // Two cycles of one fingerprint whose versions are not kept (rows older
    // than the read model's versions) read their stream twice.
    all.dedup_by_key(|e| e.position);
    Ok(all
        .into_iter()
        .map(|e| TimelineEntry {
            position: e.position,
            stream: e.stream_id,
            event_type: e.event_type,
            work_class: e.work_class,
            occurred_at: e.occurred_at,
            recorded_at: e.recorded_at,
            actor: e.metadata["actor"].as_str().map(str::to_owned),
            role: e.metadata["role"].as_str().map(str::to_owned),
            source: e.metadata["source"].as_str().map(str::to_owned),
            data: e.payload,
        })
        .collect())
}
