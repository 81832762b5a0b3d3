//! Threshold rules on pushed samples (SPEC §12). `POST /api/v1/samples`
//! takes a batch from monitoring (integration tokens, like alerts) and the
//! staff who run it; the batch is checked whole and kept whole, or refused
//! with nothing kept. Rules are defined, changed and removed by operators
//! and admins, read by staff; a rule's record is its stream
//! (`threshold-rule-<id>`: definition and transitions), and
//! `GET /api/v1/threshold-rules/{id}` adds the series it matches, assessed
//! now from their samples. The rules are `domain::threshold`'s, the worker
//! `app::thresholds`.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use opsledger_domain::access::{
    Actor, SAMPLE_SENDERS, THRESHOLD_RULE_READERS, THRESHOLD_RULE_WRITERS,
};
use opsledger_domain::alert::{Category, Severity};
use opsledger_domain::threshold::{self, Command, Comparison, Condition, RuleSpec, ThresholdRule};
use opsledger_store::thresholds::{self as store_thresholds, NewSample};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::aggregate::{self, Asked};
use crate::auth::Caller;
use crate::common::{client_of_service, page_len, Page};
use crate::extract::IfMatch;
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::AppState;
use opsledger_app::run::{self, Prepared, Target};

/// Series a rule's record shows at most.
pub const SERIES_SHOWN_MAX: usize = 100;

/// One sample, as a machine pushes it.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleBody {
    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`, at most 200 bytes.
    pub metric: String,
    /// At most 32; names `[a-zA-Z_][a-zA-Z0-9_]*` (100 bytes), values 1 to
    /// 512 bytes without control characters.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    /// When it was measured (default: when it is received); at most 5
    /// minutes ahead and 3 h 10 min behind the service's clock.
    #[serde(default)]
    pub time: Option<DateTime<Utc>>,
}

/// A batch of samples: 1 to 1000.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SamplesBody {
    pub samples: Vec<SampleBody>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SamplesAccepted {
    /// Samples kept: all of the batch.
    pub accepted: u64,
}

pub async fn samples_post(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<SamplesBody>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(SAMPLE_SENDERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let samples = &body.samples;
    if samples.len() > threshold::BATCH_MAX {
        return Err(ApiError::PayloadTooLarge(format!(
            "{} samples; at most {} are accepted in one batch",
            samples.len(),
            threshold::BATCH_MAX
        )));
    }
    if samples.is_empty() {
        return Err(ApiError::Unprocessable(format!(
            "samples must hold 1 to {} samples",
            threshold::BATCH_MAX
        )));
    }
    let now = Utc::now();
    let mut checked = Vec::with_capacity(samples.len());
    for (i, s) in samples.iter().enumerate() {
        let at = s.time.unwrap_or(now);
        threshold::check_sample(&s.metric, &s.labels, s.value, at, now)
            .map_err(|e| ApiError::Unprocessable(format!("samples[{i}]: {e}")))?;
        checked.push(NewSample {
            metric: &s.metric,
            labels: &s.labels,
            value: s.value,
            at,
        });
    }
    let accepted = store_thresholds::insert_samples(&state.pool, actor.tenant_id, &checked).await?;
    Ok(HttpResponse::Accepted().json(SamplesAccepted { accepted }))
}

/// A rule's definition, as a client sends it.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleBody {
    pub name: String,
    /// The service the rule's alerts are about.
    pub service_id: Uuid,
    /// The part of the service it watches (a rack, a link).
    #[serde(default)]
    pub component: Option<String>,
    pub metric: String,
    /// Labels a sample must carry, with exactly these values (default:
    /// none, every series of the metric).
    #[serde(default)]
    pub matchers: BTreeMap<String, String>,
    pub comparison: Comparison,
    pub threshold: f64,
    /// How long the condition must hold before the series fires: 0 to
    /// 3600 seconds (default 0: at once).
    #[serde(default)]
    pub for_s: u32,
    /// A series silent this long is stale (cleared, and a run with such a
    /// gap starts again): 1 to 3600 seconds (default 300).
    #[serde(default)]
    pub stale_after_s: Option<u32>,
    /// `hardware` or `traffic`.
    pub category: Category,
    /// Default: warning.
    #[serde(default)]
    pub severity: Option<Severity>,
}

impl RuleBody {
    fn spec(self) -> RuleSpec {
        RuleSpec {
            name: self.name,
            service_id: self.service_id,
            component: self.component,
            metric: self.metric,
            matchers: self.matchers,
            comparison: self.comparison,
            threshold: self.threshold,
            for_s: self.for_s,
            stale_after_s: self.stale_after_s.unwrap_or(threshold::STALE_DEFAULT_S),
            category: self.category,
            severity: self.severity.unwrap_or(threshold::SEVERITY_DEFAULT),
        }
    }
}

/// One series a rule matches, as its samples say now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SeriesView {
    pub labels: BTreeMap<String, String>,
    pub condition: Condition,
    /// The first sample of the run that meets the condition (pending or
    /// breached).
    pub since: Option<DateTime<Utc>>,
    pub last_value: f64,
    pub last_at: DateTime<Utc>,
}

/// A rule with its stream's version and the series it matches now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ThresholdRuleView {
    #[serde(flatten)]
    #[schema(inline)]
    pub rule: ThresholdRule,
    pub version: i64,
    /// The series with samples in the rule's window, assessed now (at most
    /// 100; none once removed). The workers act on this within an
    /// evaluation interval; `firing` is what the stream records.
    pub series: Vec<SeriesView>,
}

async fn run_command(
    state: &AppState,
    r: Asked<'_>,
    if_match: IfMatch,
    target: Target,
    command: Command,
) -> Result<HttpResponse, ApiError> {
    let service = match &command {
        Command::Define { spec, .. } | Command::Change { spec } => Some(spec.service_id),
        _ => None,
    };
    let prepare = async |actor: &Actor, _: Option<&ThresholdRule>| {
        let service_known = match service {
            Some(s) => client_of_service(state, actor.tenant_id, s)
                .await?
                .is_some(),
            None => true,
        };
        Ok(Prepared {
            context: threshold::Context { service_known },
            view: run::versioned::<ThresholdRule>,
        })
    };
    aggregate::run_prepared::<ThresholdRule, _, _>(
        state,
        r,
        if_match,
        THRESHOLD_RULE_WRITERS,
        target,
        command,
        prepare,
    )
    .await
}

pub async fn rule_define(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    body: web::Json<RuleBody>,
) -> Result<HttpResponse, ApiError> {
    let r = Asked::of(&caller, &req, key, &*body)?;
    let id = Uuid::now_v7();
    let command = Command::Define {
        rule_id: id,
        spec: body.into_inner().spec(),
    };
    let target = Target::New {
        id,
        location: format!("/api/v1/threshold-rules/{id}"),
    };
    run_command(&state, r, IfMatch(None), target, command).await
}

pub async fn rule_change(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    id: web::Path<Uuid>,
    if_match: IfMatch,
    body: web::Json<RuleBody>,
) -> Result<HttpResponse, ApiError> {
    let r = Asked::of(&caller, &req, key, &*body)?;
    let command = Command::Change {
        spec: body.into_inner().spec(),
    };
    run_command(
        &state,
        r,
        if_match,
        Target::Existing(id.into_inner()),
        command,
    )
    .await
}

pub async fn rule_remove(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<Uuid>,
    if_match: IfMatch,
) -> Result<HttpResponse, ApiError> {
    let r = Asked {
        caller: &caller,
        req: &req,
        key: IdempotencyKey(None),
        body: Value::Null,
    };
    run_command(
        &state,
        r,
        if_match,
        Target::Existing(id.into_inner()),
        Command::Remove,
    )
    .await
}

pub async fn rule_get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(THRESHOLD_RULE_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let id = id.into_inner();
    let v = aggregate::load::<ThresholdRule>(&state, actor.tenant_id, id, None).await?;
    let series = if v.record.removed {
        Vec::new()
    } else {
        opsledger_app::thresholds::series_now(&state.pool, actor.tenant_id, &v.record, Utc::now())
            .await?
            .into_values()
            .take(SERIES_SHOWN_MAX)
            .map(|s| SeriesView {
                labels: s.labels,
                condition: s.assessment.condition,
                since: s.assessment.since,
                last_value: s.assessment.last.value,
                last_at: s.assessment.last.at,
            })
            .collect()
    };
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::ETAG, format!("\"{}\"", v.version)))
        .json(ThresholdRuleView {
            rule: v.record,
            version: v.version,
            series,
        }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RuleListQuery {
    /// Only rules of this service.
    pub service_id: Option<Uuid>,
    /// Removed rules too (default false).
    pub include_removed: Option<bool>,
    /// Cursor: return items whose id is smaller (older) than this one (the `next_cursor` of the previous page). These lists are newest first.
    pub before: Option<Uuid>,
    /// Items per page, 1 to 200 (default 50). Values outside the range are refused with 400.
    pub limit: Option<u32>,
}

pub async fn rule_list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<RuleListQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(THRESHOLD_RULE_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let limit = page_len(query.limit)?;
    let rows = store_thresholds::list_rules(
        &state.pool,
        actor.tenant_id,
        query.service_id,
        query.include_removed.unwrap_or(false),
        query.before,
        limit + 1,
    )
    .await?;
    let page = Page::of(rows, limit, |(r, _)| r.id);
    let items = page
        .items
        .iter()
        .map(|(r, v)| run::versioned(r, *v))
        .collect::<Vec<_>>();
    Ok(HttpResponse::Ok().json(Page {
        items,
        next_cursor: page.next_cursor,
    }))
}
