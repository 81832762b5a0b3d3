//! An incident's impact on its service over time, and downtime (SPEC §6).
//!
//! An impact has a level — outage, partial, degraded — that can change over
//! the incident's life, each change an event with the instant it took
//! effect (`ImpactLevelChanged`; one dated in the past is a correction, and
//! never an edit). Its periods start when the impact began and end when it
//! is mitigated or resolved; a reopened incident starts a new period, so
//! the time between resolution and reopening is not counted.
//!
//! Downtime over a period is a sweep over a service's impact segments: at
//! every instant the worst level open wins (so overlapping incidents never
//! count twice), and time inside an announced window in force for the
//! service is planned (unplanned impact overlapping planned time counts as
//! planned only). Open impacts count up to the end of the period, or now.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::impact_level::ImpactLevel;
use crate::incident::IncidentEvent;

/// A level taking effect at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelAt {
    pub at: DateTime<Utc>,
    pub level: ImpactLevel,
}

/// A stretch of impact; `end: None` while it lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
}

/// What an incident's events say of its impact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImpactHistory {
    pub incident_id: Uuid,
    pub service_id: Option<Uuid>,
    pub periods: Vec<Period>,
    /// In the order recorded; a later record wins at the same instant.
    pub levels: Vec<LevelAt>,
}

/// One level over one stretch of time: what the downtime read model keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub start: DateTime<Utc>,
    /// `None` while the impact lasts.
    pub end: Option<DateTime<Utc>>,
    pub level: ImpactLevel,
}

impl ImpactHistory {
    /// Folds one incident event, recorded at `at` (`None` before it opens).
    pub fn evolve(
        history: Option<ImpactHistory>,
        event: &IncidentEvent,
        at: DateTime<Utc>,
    ) -> Option<ImpactHistory> {
        if let IncidentEvent::IncidentOpened {
            incident_id,
            service_id,
            severity,
            impact_start,
            impact_level,
            ..
        } = event
        {
            return Some(ImpactHistory {
                incident_id: *incident_id,
                service_id: *service_id,
                periods: vec![Period {
                    start: *impact_start,
                    end: None,
                }],
                levels: vec![LevelAt {
                    at: *impact_start,
                    level: impact_level.unwrap_or_else(|| ImpactLevel::of_severity(*severity)),
                }],
            });
        }
        let mut h = history?;
        match event {
            IncidentEvent::ImpactLevelChanged { to, at: from, .. } => h.levels.push(LevelAt {
                at: *from,
                level: *to,
            }),
            IncidentEvent::IncidentMitigated { impact_end, .. } => h.close(*impact_end),
            IncidentEvent::IncidentResolved {} => h.close(at),
            IncidentEvent::IncidentReopened { .. }
                if h.periods.last().is_none_or(|p| p.end.is_some()) =>
            {
                h.periods.push(Period {
                    start: at,
                    end: None,
                });
            }
            IncidentEvent::IncidentImpactCorrected {
                impact_start,
                impact_end,
                ..
            } => {
                // A correction states the whole impact anew.
                h.periods = vec![Period {
                    start: *impact_start,
                    end: impact_end.map(|e| e.max(*impact_start)),
                }];
            }
            _ => {}
        }
        Some(h)
    }

    fn close(&mut self, end: DateTime<Utc>) {
        if let Some(p) = self.periods.last_mut().filter(|p| p.end.is_none()) {
            p.end = Some(end.max(p.start));
        }
    }

    /// The level in force at `t`: the latest change at or before it (the
    /// later recorded at the same instant), or the earliest change when `t`
    /// precedes them all (an impact corrected to start earlier).
    pub fn level_at(&self, t: DateTime<Utc>) -> ImpactLevel {
        let mut best: Option<LevelAt> = None;
        for l in &self.levels {
            if l.at <= t && best.is_none_or(|b| l.at >= b.at) {
                best = Some(*l);
            }
        }
        best.or_else(|| self.levels.iter().copied().min_by_key(|l| l.at))
            .map_or(ImpactLevel::Outage, |l| l.level)
    }

    /// The impact as segments of one level each, in time order.
    pub fn segments(&self) -> Vec<Segment> {
        let mut out = Vec::new();
        for p in &self.periods {
            let mut cuts: Vec<DateTime<Utc>> = self
                .levels
                .iter()
                .map(|l| l.at)
                .filter(|&t| t > p.start && p.end.is_none_or(|e| t < e))
                .collect();
            cuts.sort();
            cuts.dedup();
            let mut start = p.start;
            for cut in cuts {
                push_merged(&mut out, start, Some(cut), self.level_at(start));
                start = cut;
            }
            if p.end.is_none_or(|e| e > start) {
                push_merged(&mut out, start, p.end, self.level_at(start));
            }
        }
        out
    }
}

/// Appends a segment, joined to the one before when it continues it at the
/// same level.
fn push_merged(
    out: &mut Vec<Segment>,
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    level: ImpactLevel,
) {
    if let Some(last) = out.last_mut() {
        if last.level == level && last.end == Some(start) {
            last.end = end;
            return;
        }
    }
    out.push(Segment { start, end, level });
}

/// Seconds of impact in a period: per level, planned and unplanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Buckets {
    /// Indexed by level (outage, partial, degraded), then [unplanned, planned].
    seconds: [[i64; 2]; 3],
}

impl Buckets {
    pub fn seconds(&self, level: ImpactLevel, planned: bool) -> i64 {
        self.seconds[level.index()][usize::from(planned)]
    }

    pub fn minutes(&self, level: ImpactLevel, planned: bool) -> f64 {
        self.seconds(level, planned) as f64 / 60.0
    }

    fn add(&mut self, level: ImpactLevel, planned: bool, seconds: i64) {
        self.seconds[level.index()][usize::from(planned)] += seconds;
    }
}

/// The downtime of one service in `[from, to)`: a sweep over its impact
/// `segments` (open ones end at `now`, or at `to` if earlier) and the
/// `planned` intervals of its windows in force. At each instant the worst
/// open level counts, once, in the planned bucket if a window covers it.
pub fn sweep(
    segments: &[Segment],
    planned: &[(DateTime<Utc>, DateTime<Utc>)],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Buckets {
    // (instant, what changes there): +1/-1 for a level or for planned time.
    #[derive(Clone, Copy)]
    enum Edge {
        Level(usize, i32),
        Planned(i32),
    }
    let clip = |s: DateTime<Utc>, e: DateTime<Utc>| {
        let (s, e) = (s.max(from), e.min(to));
        (s < e).then_some((s, e))
    };
    let mut edges: Vec<(DateTime<Utc>, Edge)> = Vec::new();
    for seg in segments {
        let end = seg.end.unwrap_or(now);
        if let Some((s, e)) = clip(seg.start, end) {
            edges.push((s, Edge::Level(seg.level.index(), 1)));
            edges.push((e, Edge::Level(seg.level.index(), -1)));
        }
    }
    for &(s, e) in planned {
        if let Some((s, e)) = clip(s, e) {
            edges.push((s, Edge::Planned(1)));
            edges.push((e, Edge::Planned(-1)));
        }
    }
    edges.sort_by_key(|(t, _)| *t);
    let mut open = [0i32; 3];
    let mut planned_open = 0i32;
    let mut buckets = Buckets::default();
    let mut i = 0;
    while i < edges.len() {
        let t = edges[i].0;
        while i < edges.len() && edges[i].0 == t {
            match edges[i].1 {
                Edge::Level(l, d) => open[l] += d,
                Edge::Planned(d) => planned_open += d,
            }
            i += 1;
        }
        let Some(&(next, _)) = edges.get(i) else {
            break;
        };
        if let Some(worst) = ImpactLevel::ALL.into_iter().find(|l| open[l.index()] > 0) {
            let span = (next - t).num_microseconds().unwrap_or(i64::MAX) / 1_000_000;
            buckets.add(worst, planned_open > 0, span);
        }
    }
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Severity;
    use chrono::{Duration, TimeZone};

    fn t(minute: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap() + Duration::minutes(minute)
    }

    fn seg(s: i64, e: Option<i64>, level: ImpactLevel) -> Segment {
        Segment {
            start: t(s),
            end: e.map(t),
            level,
        }
    }

    fn opened(level: Option<ImpactLevel>) -> IncidentEvent {
        IncidentEvent::IncidentOpened {
            incident_id: Uuid::nil(),
            service_id: None,
            title: "t".into(),
            severity: Severity::Critical,
            category: crate::alert::Category::Application,
            group_key: None,
            impact_start: t(0),
            planned_window: None,
            impact_level: level,
        }
    }

    fn fold(events: &[(IncidentEvent, i64)]) -> ImpactHistory {
        events
            .iter()
            .fold(None, |h, (e, at)| ImpactHistory::evolve(h, e, t(*at)))
            .unwrap()
    }

    #[test]
    fn the_level_comes_from_severity_unless_given() {
        assert_eq!(
            fold(&[(opened(None), 0)]).segments(),
            vec![seg(0, None, ImpactLevel::Outage)]
        );
        assert_eq!(
            fold(&[(opened(Some(ImpactLevel::Degraded)), 0)]).segments(),
            vec![seg(0, None, ImpactLevel::Degraded)]
        );
    }

    #[test]
    fn level_changes_cut_segments_and_a_backdated_one_corrects_the_past() {
        let h = fold(&[
            (opened(Some(ImpactLevel::Outage)), 0),
            (
                IncidentEvent::ImpactLevelChanged {
                    from: ImpactLevel::Outage,
                    to: ImpactLevel::Partial,
                    at: t(30),
                    reason: None,
                },
                31,
            ),
            (
                IncidentEvent::IncidentMitigated {
                    impact_end: t(90),
                    cause: None,
                },
                95,
            ),
            // Recorded after the fact: from minute 10 it was only degraded.
            (
                IncidentEvent::ImpactLevelChanged {
                    from: ImpactLevel::Outage,
                    to: ImpactLevel::Degraded,
                    at: t(10),
                    reason: Some("it was slow, not down".into()),
                },
                200,
            ),
        ]);
        assert_eq!(
            h.segments(),
            vec![
                seg(0, Some(10), ImpactLevel::Outage),
                seg(10, Some(30), ImpactLevel::Degraded),
                seg(30, Some(90), ImpactLevel::Partial),
            ]
        );
    }

    #[test]
    fn a_reopened_incident_starts_a_new_period_and_a_correction_restates_it() {
        let resolved = IncidentEvent::IncidentResolved {};
        let reopened = IncidentEvent::IncidentReopened { reason: "r".into() };
        let h = fold(&[
            (opened(None), 0),
            (resolved.clone(), 20),
            (reopened, 50),
            (resolved, 60),
        ]);
        assert_eq!(
            h.segments(),
            vec![
                seg(0, Some(20), ImpactLevel::Outage),
                seg(50, Some(60), ImpactLevel::Outage)
            ]
        );
        let corrected = ImpactHistory::evolve(
            Some(h),
            &IncidentEvent::IncidentImpactCorrected {
                impact_start: t(-5),
                impact_end: Some(t(40)),
                reason: "r".into(),
            },
            t(100),
        )
        .unwrap();
        assert_eq!(
            corrected.segments(),
            vec![seg(-5, Some(40), ImpactLevel::Outage)]
        );
    }

    #[test]
    fn the_worst_level_wins_and_overlaps_count_once_and_planned_time_is_planned_only() {
        let segments = [
            seg(0, Some(60), ImpactLevel::Partial),
            seg(30, Some(90), ImpactLevel::Outage),
            seg(80, Some(120), ImpactLevel::Degraded),
            seg(100, None, ImpactLevel::Degraded),
        ];
        let planned = [(t(50), t(70))];
        let b = sweep(&segments, &planned, t(0), t(150), t(140));
        // outage 30..90: planned 50..70 (20), unplanned 40
        assert_eq!(b.seconds(ImpactLevel::Outage, false), 40 * 60);
        assert_eq!(b.seconds(ImpactLevel::Outage, true), 20 * 60);
        // partial 0..30 unplanned
        assert_eq!(b.seconds(ImpactLevel::Partial, false), 30 * 60);
        assert_eq!(b.seconds(ImpactLevel::Partial, true), 0);
        // degraded 90..140 (the open one ends now)
        assert_eq!(b.seconds(ImpactLevel::Degraded, false), 50 * 60);
        // the period cuts an impact
        let b = sweep(&segments, &planned, t(20), t(40), t(140));
        assert_eq!(b.seconds(ImpactLevel::Partial, false), 10 * 60);
        assert_eq!(b.seconds(ImpactLevel::Outage, false), 10 * 60);
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        fn level() -> impl Strategy<Value = ImpactLevel> {
            prop_oneof![
                Just(ImpactLevel::Outage),
                Just(ImpactLevel::Partial),
                Just(ImpactLevel::Degraded)
            ]
        }

        fn segment() -> impl Strategy<Value = (i64, Option<i64>, ImpactLevel)> {
            (0i64..300, prop::option::weighted(0.8, 0i64..120), level())
                .prop_map(|(s, len, l)| (s, len.map(|n| s + n), l))
        }

        proptest! {
            /// The sweep agrees with a minute-by-minute count over random
            /// overlapping impacts, windows, periods and instants of `now`.
            #[test]
            fn the_sweep_equals_a_minute_by_minute_count(
                segments in prop::collection::vec(segment(), 0..12),
                windows in prop::collection::vec((0i64..300, 0i64..90), 0..4),
                from in 0i64..200,
                len in 0i64..300,
                now in 0i64..500,
            ) {
                let to = from + len;
                let segs: Vec<Segment> =
                    segments.iter().map(|&(s, e, l)| seg(s, e, l)).collect();
                let planned: Vec<_> =
                    windows.iter().map(|&(s, n)| (t(s), t(s + n))).collect();
                let b = sweep(&segs, &planned, t(from), t(to), t(now));
                let mut brute = Buckets::default();
                for m in from..to {
                    let worst = segments
                        .iter()
                        .filter(|&&(s, e, _)| s <= m && m < e.unwrap_or(now))
                        .map(|&(_, _, l)| l)
                        .max();
                    let covered = windows.iter().any(|&(s, n)| s <= m && m < s + n);
                    if let Some(l) = worst {
                        brute.add(l, covered, 60);
                    }
                }
                prop_assert_eq!(b, brute);
            }
        }
    }
}
