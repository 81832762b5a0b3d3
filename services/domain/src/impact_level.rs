//! How badly a service is hit: the level of an incident's impact (SPEC §6).
//! Its own module so that incidents (which carry a level) and the impact
//! history (which folds incidents' events) need not import each other.

use serde::{Deserialize, Serialize};

use crate::alert::Severity;

/// How badly a service is hit. Ordered: `Outage` is the worst.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ImpactLevel {
    /// Some functions slow or impaired, none unavailable.
    Degraded,
    /// Some functions or some users unavailable.
    Partial,
    /// The service unavailable.
    Outage,
}

impl ImpactLevel {
    pub const ALL: [ImpactLevel; 3] = [
        ImpactLevel::Outage,
        ImpactLevel::Partial,
        ImpactLevel::Degraded,
    ];

    /// The level an incident opens with when nobody says: critical is an
    /// outage, error a partial outage, warning and info a degradation.
    pub fn of_severity(severity: Severity) -> ImpactLevel {
        match severity {
            Severity::Critical => ImpactLevel::Outage,
            Severity::Error => ImpactLevel::Partial,
            Severity::Warning | Severity::Info => ImpactLevel::Degraded,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ImpactLevel::Outage => "outage",
            ImpactLevel::Partial => "partial",
            ImpactLevel::Degraded => "degraded",
        }
    }

    /// The level named by [`ImpactLevel::as_str`].
    pub fn parse(name: &str) -> Option<ImpactLevel> {
        ImpactLevel::ALL.into_iter().find(|l| l.as_str() == name)
    }

    pub(crate) fn index(self) -> usize {
        match self {
            ImpactLevel::Outage => 0,
            ImpactLevel::Partial => 1,
            ImpactLevel::Degraded => 2,
        }
    }
}
