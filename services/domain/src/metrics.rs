//! Service metrics (SPEC §6): each a named, versioned definition, served
//! with its text, computed without I/O from what the read models hold.
//!
//! A change to how a figure is computed, or to a weight, is a new version;
//! reports name the versions they used, so an old figure can be recomputed.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::alert::{Category, Severity};
use crate::impact::{self, Buckets, ImpactLevel, Segment};
use crate::incident::Triage;

/// A named, versioned definition and what it says.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct Definition {
    pub name: &'static str,
    pub text: &'static str,
}

/// A minute of partial outage counts as this much of an outage (the weight
/// of `downtime/v1` and `availability/v1`); degraded time counts nothing.
pub const PARTIAL_WEIGHT: f64 = 0.3;
pub const DEGRADED_WEIGHT: f64 = 0.0;

pub const DOWNTIME: Definition = Definition {
    name: "downtime/v1",
    text: "Per service and period: a sweep over the service's incident impacts takes, at every instant, the worst level open (outage, partial, degraded), so overlapping incidents never count twice. Time inside an announced maintenance window in force for the service is planned; unplanned impact overlapping planned time counts as planned only. An open impact counts up to the period's end or now. Weighted downtime = outage + 0.3 × partial + 0 × degraded minutes.",
};
pub const AVAILABILITY: Definition = Definition {
    name: "availability/v1",
    text: "1 − weighted unplanned downtime / denominator, with three denominators: `calendar` (the period's minutes), `excluding_planned` (the period less the planned time of announced windows), and `sla` (the hours the service's SLA commits to within the period, less the planned time in them; every hour when the SLA names none, then equal to `excluding_planned`). Unplanned downtime for `sla` counts only inside the committed hours.",
};
pub const SLA: Definition = Definition {
    name: "sla/v1",
    text: "Met when the `sla` availability, in percent, is at least the service's SLA target; breached otherwise.",
};
pub const ERROR_BUDGET: Definition = Definition {
    name: "error-budget/v1",
    text: "Total = (1 − target / 100) × the `sla` denominator, in minutes; used = weighted unplanned downtime inside the committed hours; left = total − used (negative once overspent).",
};
pub const MTTA: Definition = Definition {
    name: "mtta/v1",
    text: "Mean time to acknowledge: the mean of (first acknowledgement − opening) over the incidents opened in the period and acknowledged, in minutes.",
};
pub const MTTR: Definition = Definition {
    name: "mttr/v1",
    text: "Mean time to restore: the mean of (impact end − impact start) over the incidents whose impact ended (mitigated, or resolved) in the period, in minutes.",
};
pub const MTBF: Definition = Definition {
    name: "mtbf/v1",
    text: "Mean time between failures: (period − unplanned outage minutes) / the number of incidents with unplanned outage in the period, in minutes; none without such an incident.",
};
pub const CHANGE_FAILURE_RATE: Definition = Definition {
    name: "change-failure-rate/v1",
    text: "Changes of the service carried out in the period (their outcome recorded then: completed, failed or rolled back) that failed, were rolled back, or caused an incident (a `caused_by` link), divided by all changes carried out in the period.",
};
pub const NOISE_RATIO: Definition = Definition {
    name: "noise-ratio/v1",
    text: "Incidents triaged as noise / incidents triaged, over the incidents opened in the period; per service, and per monitoring source (the source of the alert that opened the incident; `manual` for incidents opened by hand).",
};
pub const INCIDENT_COUNTS: Definition = Definition {
    name: "incident-counts/v1",
    text: "Incidents opened in the period, by severity and by category.",
};

/// Every definition, in the order reports list them.
pub const DEFINITIONS: &[Definition] = &[
    DOWNTIME,
    AVAILABILITY,
    SLA,
    ERROR_BUDGET,
    MTTA,
    MTTR,
    MTBF,
    CHANGE_FAILURE_RATE,
    NOISE_RATIO,
    INCIDENT_COUNTS,
];

/// What a metric needs to know of an incident.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentFacts {
    pub id: Uuid,
    pub opened_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub impact_start: DateTime<Utc>,
    pub impact_end: Option<DateTime<Utc>>,
    pub severity: Severity,
    pub category: Category,
    pub triage: Option<Triage>,
    /// The monitoring source of the alert that opened it; `None` by hand.
    pub source: Option<String>,
}

/// What a metric needs to know of a change.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeFacts {
    pub id: Uuid,
    /// `completed`, `failed` or `rolled_back` once known.
    pub outcome: Option<&'static str>,
    pub finished_at: Option<DateTime<Utc>>,
    pub caused_incident: bool,
}

/// One service over one period.
#[derive(Debug, Clone)]
pub struct ServiceInput<'a> {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub sla_target_pct: f64,
    /// The committed hours inside the period; `None`: every hour.
    pub committed: Option<Vec<(DateTime<Utc>, DateTime<Utc>)>>,
    /// Impact segments, each with its incident.
    pub segments: &'a [(Uuid, Segment)],
    pub planned: &'a [(DateTime<Utc>, DateTime<Utc>)],
    pub incidents: &'a [IncidentFacts],
    pub changes: &'a [ChangeFacts],
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Availability {
    pub definition: &'static str,
    pub calendar: Option<f64>,
    pub excluding_planned: Option<f64>,
    pub sla: Option<f64>,
    /// The denominators, in minutes.
    pub period_minutes: f64,
    pub planned_minutes: f64,
    pub committed_minutes: f64,
    pub committed_planned_minutes: f64,
    /// The numerators: weighted unplanned downtime, overall and inside the
    /// committed hours.
    pub weighted_unplanned_minutes: f64,
    pub committed_weighted_unplanned_minutes: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SlaResult {
    pub definition: &'static str,
    pub target_pct: f64,
    /// `None` when no hour was committed in the period.
    pub met: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ErrorBudget {
    pub definition: &'static str,
    pub total_minutes: f64,
    pub used_minutes: f64,
    pub left_minutes: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Mean {
    pub definition: &'static str,
    /// `None` without any incident to average over.
    pub minutes: Option<f64>,
    pub incidents: Vec<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Ratio {
    pub definition: &'static str,
    /// `None` when the denominator is zero.
    pub ratio: Option<f64>,
    pub numerator: usize,
    pub denominator: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ChangeFailureRate {
    #[serde(flatten)]
    pub ratio: Ratio,
    pub failed: Vec<Uuid>,
    pub carried_out: Vec<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Counts {
    pub definition: &'static str,
    pub by_severity: BTreeMap<&'static str, usize>,
    pub by_category: BTreeMap<&'static str, usize>,
    pub incidents: Vec<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ServiceMetrics {
    pub availability: Availability,
    pub sla: SlaResult,
    pub error_budget: ErrorBudget,
    pub mtta: Mean,
    pub mttr: Mean,
    pub mtbf: Mean,
    pub change_failure_rate: ChangeFailureRate,
    pub noise_ratio: Ratio,
    pub incidents: Counts,
}

fn minutes(d: Duration) -> f64 {
    d.num_milliseconds() as f64 / 60_000.0
}

/// The total length of the union of `spans`, clipped to `[from, to)`.
fn union_minutes(
    spans: &[(DateTime<Utc>, DateTime<Utc>)],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> f64 {
    let mut clipped: Vec<_> = spans
        .iter()
        .map(|&(s, e)| (s.max(from), e.min(to)))
        .filter(|(s, e)| s < e)
        .collect();
    clipped.sort();
    let mut total = Duration::zero();
    let mut current: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
    for (s, e) in clipped {
        match &mut current {
            Some((_, ce)) if s <= *ce => *ce = (*ce).max(e),
            _ => {
                if let Some((cs, ce)) = current {
                    total += ce - cs;
                }
                current = Some((s, e));
            }
        }
    }
    if let Some((cs, ce)) = current {
        total += ce - cs;
    }
    minutes(total)
}

/// Weighted unplanned downtime, in minutes, of one sweep.
pub fn weighted_unplanned(b: &Buckets) -> f64 {
    b.minutes(ImpactLevel::Outage, false)
        + PARTIAL_WEIGHT * b.minutes(ImpactLevel::Partial, false)
        + DEGRADED_WEIGHT * b.minutes(ImpactLevel::Degraded, false)
}

fn within(t: DateTime<Utc>, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
    from <= t && t < to
}

fn mean(definition: &'static str, samples: Vec<(Uuid, f64)>) -> Mean {
    let n = samples.len();
    Mean {
        definition,
        minutes: (n > 0).then(|| samples.iter().map(|s| s.1).sum::<f64>() / n as f64),
        incidents: samples.into_iter().map(|s| s.0).collect(),
    }
}

fn ratio(definition: &'static str, numerator: usize, denominator: usize) -> Ratio {
    Ratio {
        definition,
        ratio: (denominator > 0).then(|| numerator as f64 / denominator as f64),
        numerator,
        denominator,
    }
}

/// Every figure of one service over one period.
pub fn service_metrics(input: &ServiceInput<'_>) -> ServiceMetrics {
    let (from, to, now) = (input.from, input.to, input.now);
    let segments: Vec<Segment> = input.segments.iter().map(|(_, s)| *s).collect();
    let whole = impact::sweep(&segments, input.planned, from, to, now);
    let period_minutes = minutes(to - from);
    let planned_minutes = union_minutes(input.planned, from, to);
    let weighted = weighted_unplanned(&whole);
    let committed = input.committed.clone().unwrap_or_else(|| vec![(from, to)]);
    let committed_minutes = union_minutes(&committed, from, to);
    let committed_planned: Vec<_> = committed
        .iter()
        .flat_map(|&(cs, ce)| {
            input
                .planned
                .iter()
                .map(move |&(ps, pe)| (ps.max(cs), pe.min(ce)))
                .filter(|(s, e)| s < e)
        })
        .collect();
    let committed_planned_minutes = union_minutes(&committed_planned, from, to);
    let committed_weighted: f64 = committed
        .iter()
        .map(|&(cs, ce)| {
            weighted_unplanned(&impact::sweep(
                &segments,
                input.planned,
                cs.max(from),
                ce.min(to),
                now,
            ))
        })
        .sum();
    let share = |down: f64, of: f64| (of > 0.0).then(|| 1.0 - down / of);
    let sla_base = committed_minutes - committed_planned_minutes;
    let availability = Availability {
        definition: AVAILABILITY.name,
        calendar: share(weighted, period_minutes),
        excluding_planned: share(weighted, period_minutes - planned_minutes),
        sla: share(committed_weighted, sla_base),
        period_minutes,
        planned_minutes,
        committed_minutes,
        committed_planned_minutes,
        weighted_unplanned_minutes: weighted,
        committed_weighted_unplanned_minutes: committed_weighted,
    };
    let sla = SlaResult {
        definition: SLA.name,
        target_pct: input.sla_target_pct,
        met: availability
            .sla
            .map(|a| a * 100.0 >= input.sla_target_pct - 1e-9),
    };
    let total = (1.0 - input.sla_target_pct / 100.0) * sla_base.max(0.0);
    let error_budget = ErrorBudget {
        definition: ERROR_BUDGET.name,
        total_minutes: total,
        used_minutes: committed_weighted,
        left_minutes: total - committed_weighted,
    };
    let opened: Vec<&IncidentFacts> = input
        .incidents
        .iter()
        .filter(|i| within(i.opened_at, from, to))
        .collect();
    let mtta = mean(
        MTTA.name,
        opened
            .iter()
            .filter_map(|i| i.acknowledged_at.map(|a| (i.id, minutes(a - i.opened_at))))
            .collect(),
    );
    let mttr = mean(
        MTTR.name,
        input
            .incidents
            .iter()
            .filter_map(|i| {
                i.impact_end
                    .filter(|e| within(*e, from, to))
                    .map(|e| (i.id, minutes(e - i.impact_start).max(0.0)))
            })
            .collect(),
    );
    // Incidents with unplanned outage in the period: each counted once.
    let mut failures: Vec<Uuid> = Vec::new();
    for (incident, _) in input.segments {
        if failures.contains(incident) {
            continue;
        }
        let own: Vec<Segment> = input
            .segments
            .iter()
            .filter(|(i, s)| i == incident && s.level == ImpactLevel::Outage)
            .map(|(_, s)| *s)
            .collect();
        if impact::sweep(&own, input.planned, from, to, now).seconds(ImpactLevel::Outage, false) > 0
        {
            failures.push(*incident);
        }
    }
    let up = period_minutes - whole.minutes(ImpactLevel::Outage, false);
    let mtbf = Mean {
        definition: MTBF.name,
        minutes: (!failures.is_empty()).then(|| up / failures.len() as f64),
        incidents: failures,
    };
    let carried_out: Vec<&ChangeFacts> = input
        .changes
        .iter()
        .filter(|c| c.outcome.is_some() && c.finished_at.is_some_and(|f| within(f, from, to)))
        .collect();
    let failed: Vec<Uuid> = carried_out
        .iter()
        .filter(|c| c.outcome != Some("completed") || c.caused_incident)
        .map(|c| c.id)
        .collect();
    let change_failure_rate = ChangeFailureRate {
        ratio: ratio(CHANGE_FAILURE_RATE.name, failed.len(), carried_out.len()),
        failed,
        carried_out: carried_out.iter().map(|c| c.id).collect(),
    };
    let triaged: Vec<&&IncidentFacts> = opened.iter().filter(|i| i.triage.is_some()).collect();
    let noise = triaged
        .iter()
        .filter(|i| i.triage == Some(Triage::Noise))
        .count();
    let noise_ratio = ratio(NOISE_RATIO.name, noise, triaged.len());
    let mut by_severity = BTreeMap::new();
    let mut by_category = BTreeMap::new();
    for i in &opened {
        *by_severity.entry(i.severity.as_str()).or_insert(0) += 1;
        *by_category.entry(i.category.as_str()).or_insert(0) += 1;
    }
    ServiceMetrics {
        availability,
        sla,
        error_budget,
        mtta,
        mttr,
        mtbf,
        change_failure_rate,
        noise_ratio,
        incidents: Counts {
            definition: INCIDENT_COUNTS.name,
            by_severity,
            by_category,
            incidents: opened.iter().map(|i| i.id).collect(),
        },
    }
}

/// Noise ratio per monitoring source over these incidents (opened in
/// `[from, to)`): `manual` for incidents opened by hand.
pub fn noise_by_source(
    incidents: &[IncidentFacts],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> BTreeMap<String, Ratio> {
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for i in incidents.iter().filter(|i| within(i.opened_at, from, to)) {
        let Some(t) = i.triage else { continue };
        let source = i.source.clone().unwrap_or_else(|| "manual".into());
        let c = counts.entry(source).or_default();
        c.1 += 1;
        if t == Triage::Noise {
            c.0 += 1;
        }
    }
    counts
        .into_iter()
        .map(|(s, (n, d))| (s, ratio(NOISE_RATIO.name, n, d)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(m: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 3, 1, 0, 0, 0).unwrap() + Duration::minutes(m)
    }

    fn incident(id: u128, opened: i64, ack: Option<i64>, end: Option<i64>) -> IncidentFacts {
        IncidentFacts {
            id: Uuid::from_u128(id),
            opened_at: t(opened),
            acknowledged_at: ack.map(t),
            impact_start: t(opened),
            impact_end: end.map(t),
            severity: Severity::Critical,
            category: Category::Application,
            triage: None,
            source: None,
        }
    }

    fn seg(id: u128, s: i64, e: i64, level: ImpactLevel) -> (Uuid, Segment) {
        (
            Uuid::from_u128(id),
            Segment {
                start: t(s),
                end: Some(t(e)),
                level,
            },
        )
    }

    #[test]
    fn availability_budget_and_means_over_a_day() {
        let day = 24 * 60;
        let segments = [
            seg(1, 60, 120, ImpactLevel::Outage),
            seg(2, 600, 700, ImpactLevel::Partial),
            seg(3, 1000, 1030, ImpactLevel::Outage),
        ];
        let planned = [(t(1000), t(1060))];
        let incidents = [
            incident(1, 60, Some(65), Some(120)),
            incident(2, 600, Some(620), Some(700)),
            incident(3, 1000, None, Some(1030)),
        ];
        let input = ServiceInput {
            from: t(0),
            to: t(day),
            now: t(day + 10),
            sla_target_pct: 99.0,
            committed: None,
            segments: &segments,
            planned: &planned,
            incidents: &incidents,
            changes: &[],
        };
        let m = service_metrics(&input);
        // 60 outage + 0.3 × 100 partial = 90 weighted unplanned minutes.
        assert_eq!(m.availability.weighted_unplanned_minutes, 90.0);
        assert_eq!(m.availability.calendar, Some(1.0 - 90.0 / 1440.0));
        assert_eq!(m.availability.excluding_planned, Some(1.0 - 90.0 / 1380.0));
        assert_eq!(m.availability.sla, m.availability.excluding_planned);
        assert_eq!(m.sla.met, Some(false), "93.5 % < 99 %");
        assert!((m.error_budget.total_minutes - 13.8).abs() < 1e-9);
        assert!((m.error_budget.left_minutes - (13.8 - 90.0)).abs() < 1e-9);
        assert_eq!(m.mtta.minutes, Some(12.5));
        assert_eq!(m.mttr.minutes, Some((60.0 + 100.0 + 30.0) / 3.0));
        // Incident 3's outage was all planned: one unplanned failure.
        assert_eq!(m.mtbf.incidents, vec![Uuid::from_u128(1)]);
        assert_eq!(m.mtbf.minutes, Some(1440.0 - 60.0));
        assert_eq!(m.incidents.by_severity["critical"], 3);
    }

    #[test]
    fn the_sla_counts_only_committed_hours() {
        let segments = [
            seg(1, 60, 120, ImpactLevel::Outage),
            seg(2, 600, 660, ImpactLevel::Outage),
        ];
        // Committed 09:00–18:00 (540..1080): the night outage does not count.
        let input = ServiceInput {
            from: t(0),
            to: t(1440),
            now: t(2000),
            sla_target_pct: 95.0,
            committed: Some(vec![(t(540), t(1080))]),
            segments: &segments,
            planned: &[],
            incidents: &[],
            changes: &[],
        };
        let m = service_metrics(&input);
        assert_eq!(m.availability.committed_minutes, 540.0);
        assert_eq!(m.availability.sla, Some(1.0 - 60.0 / 540.0));
        assert_eq!(m.availability.calendar, Some(1.0 - 120.0 / 1440.0));
        assert!((m.error_budget.total_minutes - 27.0).abs() < 1e-9);
        assert_eq!(m.sla.met, Some(false));
    }

    #[test]
    fn change_failures_and_noise() {
        let change = |id: u128, outcome: Option<&'static str>, at: i64, caused: bool| ChangeFacts {
            id: Uuid::from_u128(id),
            outcome,
            finished_at: Some(t(at)),
            caused_incident: caused,
        };
        let changes = [
            change(1, Some("completed"), 10, false),
            change(2, Some("completed"), 20, true),
            change(3, Some("rolled_back"), 30, false),
            change(4, Some("failed"), 5000, false),
            change(5, None, 40, false),
        ];
        let mut incidents = vec![
            incident(1, 10, None, None),
            incident(2, 20, None, None),
            incident(3, 30, None, None),
        ];
        incidents[0].triage = Some(Triage::Noise);
        incidents[0].source = Some("prometheus".into());
        incidents[1].triage = Some(Triage::Actionable);
        incidents[1].source = Some("prometheus".into());
        let input = ServiceInput {
            from: t(0),
            to: t(1440),
            now: t(2000),
            sla_target_pct: 99.0,
            committed: None,
            segments: &[],
            planned: &[],
            incidents: &incidents,
            changes: &changes,
        };
        let m = service_metrics(&input);
        assert_eq!(m.change_failure_rate.ratio.numerator, 2);
        assert_eq!(m.change_failure_rate.ratio.denominator, 3);
        assert_eq!(m.noise_ratio.ratio, Some(0.5));
        let by_source = noise_by_source(&incidents, t(0), t(1440));
        assert_eq!(by_source["prometheus"].ratio, Some(0.5));
        assert!(!by_source.contains_key("manual"), "untriaged");
    }
}
