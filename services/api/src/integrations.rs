//! Alert ingestion endpoints: plain JSON, Alertmanager (webhook v4),
//! PagerDuty Events API v2 and Grafana alerting webhooks. Each parses its
//! body into domain signals and hands them to `ingest`. Integration payloads
//! are read tolerantly (unknown fields are ignored, as senders add fields).

use std::collections::{BTreeMap, HashSet};

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Datelike, Utc};
use opsledger_domain::access::{Actor, ALERT_SENDERS};
use opsledger_domain::alert::{clip_summary, Category, Severity, Signal};
use opsledger_domain::Metadata;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::auth::Caller;
use crate::common::metadata;
use crate::incidents;
use crate::problem::ApiError;
use crate::AppState;
use opsledger_app::ingest::{self, Ingested};

/// Alerts in one notification at most: Alertmanager truncates long groups
/// itself, and a body is at most 1 MiB anyway.
pub const ALERTS_PER_NOTIFICATION_MAX: usize = 1_000;

async fn sender<'a>(state: &AppState, caller: &'a Caller) -> Result<&'a Actor, ApiError> {
    let actor = caller.require(ALERT_SENDERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    Ok(actor)
}

fn meta_from(actor: &Actor, req: &HttpRequest, source: &str) -> Metadata {
    Metadata {
        source: source.to_owned(),
        ..metadata(actor, req)
    }
}

fn severity_or_default(raw: Option<&str>) -> Severity {
    raw.and_then(Severity::parse_loose)
        .unwrap_or(Severity::Warning)
}

fn category_or_default(raw: Option<&str>) -> Category {
    raw.and_then(Category::parse_loose)
        .unwrap_or(Category::Application)
}

// ------------------------------------------------------------ plain JSON

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlainAlert {
    pub source: String,
    pub dedup_key: String,
    #[serde(default)]
    pub group_key: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    pub summary: String,
    pub severity: String,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default = "firing")]
    pub status: String,
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
}

fn firing() -> String {
    "firing".into()
}

fn plain_signal(a: PlainAlert) -> Result<Signal, ApiError> {
    let severity = Severity::parse_loose(&a.severity).ok_or_else(|| {
        ApiError::Unprocessable(format!(
            "severity {:?} is not one of critical, error, warning, info",
            a.severity
        ))
    })?;
    let category = match &a.category {
        Some(c) => Category::parse_loose(c).ok_or_else(|| {
            ApiError::Unprocessable(format!(
                "category {c:?} is not one of application, liveness, hardware, traffic, security"
            ))
        })?,
        None => Category::Application,
    };
    let firing = match a.status.as_str() {
        "firing" | "trigger" | "triggered" | "problem" => true,
        "resolved" | "ok" => false,
        other => {
            return Err(ApiError::Unprocessable(format!(
                "status {other:?} is not firing or resolved"
            )))
        }
    };
    Ok(Signal {
        group_key: a.group_key.unwrap_or_else(|| a.dedup_key.clone()),
        source: a.source,
        dedup_key: a.dedup_key,
        service_ref: a.service,
        summary: clip_summary(&a.summary),
        severity,
        category,
        labels: a.labels,
        firing,
        starts_at: a.starts_at.unwrap_or_else(Utc::now),
        ends_at: a.ends_at,
    })
}

pub async fn alert_post(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Json<PlainAlert>,
) -> Result<HttpResponse, ApiError> {
    let actor = sender(&state, &caller).await?;
    let signal = plain_signal(body.into_inner())?;
    let meta = meta_from(actor, &req, &signal.source.clone());
    let result = ingest::ingest(state.ingestion(), actor.tenant_id, &meta, signal).await?;
    Ok(HttpResponse::Accepted().json(result))
}

// ------------------------------------------------------------ Alertmanager and Grafana

/// The Alertmanager webhook (version 4); Grafana's alerting webhook has the
/// same shape with more fields.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupNotification {
    #[serde(default)]
    pub version: Option<String>,
    pub group_key: String,
    #[serde(default)]
    pub truncated_alerts: u64,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    pub alerts: Vec<NotifiedAlert>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotifiedAlert {
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// Alertmanager's fingerprint, or one of our own from the labels when an
/// older sender leaves it out.
fn fingerprint(a: &NotifiedAlert) -> String {
    a.fingerprint
        .clone()
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            for (k, v) in &a.labels {
                h.update(k.as_bytes());
                h.update([0]);
                h.update(v.as_bytes());
                h.update([0]);
            }
            hex::encode(&h.finalize()[..8])
        })
}

fn group_signals(source: &str, n: &GroupNotification) -> Result<Vec<Signal>, ApiError> {
    if n.alerts.len() > ALERTS_PER_NOTIFICATION_MAX {
        return Err(ApiError::PayloadTooLarge(format!(
            "at most {ALERTS_PER_NOTIFICATION_MAX} alerts per notification"
        )));
    }
    n.alerts
        .iter()
        .map(|a| {
            let firing = match a.status.as_str() {
                "firing" => true,
                "resolved" => false,
                other => {
                    return Err(ApiError::Unprocessable(format!(
                        "alert status {other:?} is not firing or resolved"
                    )))
                }
            };
            let label = |k: &str| {
                a.labels
                    .get(k)
                    .or_else(|| n.common_labels.get(k))
                    .map(String::as_str)
            };
            let summary = a
                .annotations
                .get("summary")
                .or_else(|| a.annotations.get("description"))
                .or_else(|| a.labels.get("alertname"))
                .cloned()
                .unwrap_or_else(|| "alert".to_owned());
            Ok(Signal {
                source: source.to_owned(),
                dedup_key: fingerprint(a),
                group_key: n.group_key.clone(),
                service_ref: label("service").map(str::to_owned),
                summary: clip_summary(&summary),
                severity: severity_or_default(label("severity")),
                category: category_or_default(label("category")),
                labels: a.labels.clone(),
                firing,
                starts_at: a.starts_at,
                // Firing alerts carry the zero time: no end announced.
                ends_at: a.ends_at.filter(|e| e.year() > 1),
            })
        })
        .collect()
}

async fn group_notification(
    state: &AppState,
    caller: &Caller,
    req: &HttpRequest,
    source: &str,
    n: GroupNotification,
) -> Result<HttpResponse, ApiError> {
    let actor = sender(state, caller).await?;
    let signals = group_signals(source, &n)?;
    let meta = meta_from(actor, req, source);
    let present: HashSet<String> = signals.iter().map(|s| s.dedup_key.clone()).collect();
    let mut results: Vec<Ingested> = Vec::with_capacity(signals.len());
    for s in signals {
        results.push(ingest::ingest(state.ingestion(), actor.tenant_id, &meta, s).await?);
    }
    // A notification carries every unmuted alert of its group, unless it was
    // truncated: only then can absence be trusted.
    let expired = if n.truncated_alerts == 0 {
        ingest::expire_missing_from_group(
            state.ingestion(),
            actor.tenant_id,
            &meta,
            source,
            &n.group_key,
            &present,
        )
        .await?
    } else {
        Vec::new()
    };
    Ok(HttpResponse::Ok().json(GroupResult { results, expired }))
}

/// What became of each alert of a group notification.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = GroupNotificationResult)]
pub struct GroupResult {
    /// One per alert of the notification, in its order.
    pub results: Vec<Ingested>,
    /// Firing cycles (`alert_id`) of this source and group that the
    /// notification no longer carries, now expired. Empty when the
    /// notification was truncated (`truncatedAlerts` > 0).
    pub expired: Vec<Uuid>,
}

pub async fn alertmanager_post(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Json<GroupNotification>,
) -> Result<HttpResponse, ApiError> {
    group_notification(&state, &caller, &req, "alertmanager", body.into_inner()).await
}

pub async fn grafana_post(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Json<GroupNotification>,
) -> Result<HttpResponse, ApiError> {
    group_notification(&state, &caller, &req, "grafana", body.into_inner()).await
}

// ------------------------------------------------------------ PagerDuty Events v2

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PagerDutyEvent {
    pub routing_key: String,
    pub event_action: String,
    #[serde(default)]
    pub dedup_key: Option<String>,
    #[serde(default)]
    pub payload: Option<PagerDutyPayload>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PagerDutyPayload {
    pub summary: String,
    pub source: String,
    pub severity: String,
    #[serde(default)]
    pub timestamp: Option<DateTime<Utc>>,
    #[serde(default)]
    pub component: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub class: Option<String>,
    #[serde(default)]
    pub custom_details: Option<Value>,
}

fn pd_invalid(message: &str) -> ApiError {
    ApiError::BadRequest(format!("invalid event: {message}"))
}

pub async fn pagerduty_post(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Json<PagerDutyEvent>,
) -> Result<HttpResponse, ApiError> {
    let actor = sender(&state, &caller).await?;
    let event = body.into_inner();
    if event.routing_key.trim().is_empty() {
        return Err(pd_invalid("routing_key is required"));
    }
    let meta = meta_from(actor, &req, "pagerduty");
    let dedup_key = match event.event_action.as_str() {
        "trigger" => {
            let p = event
                .payload
                .ok_or_else(|| pd_invalid("a trigger needs a payload"))?;
            let severity = Severity::parse_loose(&p.severity)
                .filter(|_| ["critical", "error", "warning", "info"].contains(&p.severity.as_str()))
                .ok_or_else(|| {
                    pd_invalid("payload.severity must be critical, error, warning or info")
                })?;
            let detail = |k: &str| {
                p.custom_details
                    .as_ref()
                    .and_then(|d| d.get(k))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            let dedup_key = event
                .dedup_key
                .clone()
                .unwrap_or_else(|| Uuid::now_v7().simple().to_string());
            let mut labels = BTreeMap::new();
            labels.insert("source".to_owned(), p.source.clone());
            if let Some(c) = &p.component {
                labels.insert("component".to_owned(), c.clone());
            }
            let signal = Signal {
                source: "pagerduty".into(),
                group_key: p
                    .group
                    .clone()
                    .unwrap_or_else(|| format!("pagerduty:{}", event.routing_key)),
                service_ref: Some(event.routing_key.clone())
                    .filter(|_| detail("service").is_none())
                    .or(detail("service")),
                summary: clip_summary(&p.summary),
                severity,
                category: category_or_default(p.class.as_deref().or(detail("category").as_deref())),
                labels,
                firing: true,
                starts_at: p.timestamp.unwrap_or_else(Utc::now),
                ends_at: None,
                dedup_key: dedup_key.clone(),
            };
            ingest::ingest(state.ingestion(), actor.tenant_id, &meta, signal).await?;
            dedup_key
        }
        "acknowledge" | "resolve" => {
            let dedup_key = event
                .dedup_key
                .clone()
                .filter(|k| !k.is_empty())
                .ok_or_else(|| pd_invalid("dedup_key is required"))?;
            if event.event_action == "acknowledge" {
                if let Some(incident_id) =
                    ingest::incident_of_key(state.ingestion(), actor.tenant_id, &dedup_key).await?
                {
                    incidents::acknowledge_if_triggered(
                        &state,
                        actor.tenant_id,
                        &meta,
                        incident_id,
                    )
                    .await?;
                }
            } else {
                let signal = Signal {
                    source: "pagerduty".into(),
                    dedup_key: dedup_key.clone(),
                    group_key: format!("pagerduty:{}", event.routing_key),
                    service_ref: Some(event.routing_key.clone()),
                    summary: "resolved".into(),
                    severity: Severity::Info,
                    category: Category::Application,
                    labels: BTreeMap::new(),
                    firing: false,
                    starts_at: Utc::now(),
                    ends_at: None,
                };
                ingest::ingest(state.ingestion(), actor.tenant_id, &meta, signal).await?;
            }
            dedup_key
        }
        other => {
            return Err(pd_invalid(&format!(
                "event_action {other:?} is not trigger, acknowledge or resolve"
            )))
        }
    };
    Ok(HttpResponse::Accepted().json(PagerDutyAccepted {
        status: "success",
        message: "Event processed",
        dedup_key,
    }))
}

/// The answer PagerDuty's Events API v2 gives, so its clients need no change.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PagerDutyAccepted {
    /// Always `success`.
    pub status: &'static str,
    /// Always `Event processed`.
    pub message: &'static str,
    /// The event's `dedup_key`, or a new one for a trigger without it.
    pub dedup_key: String,
}
