//! Service dependencies (issue 18): a service may depend on others, its
//! parents. While a parent — or a parent's parent, transitively — has a
//! probe that is down, a firing alert of the child is recorded with the
//! decision `suppressed_by_parent` naming that ancestor and its probe, and
//! opens no incident of its own (`alert::decide_receipt`); the parent's own
//! probe alert opens the parent's incident as usual.
//!
//! A service's parents are set whole (`ServiceDependenciesSet` on its
//! stream). The graph must stay acyclic: a cycle would let two services
//! hold each other's alerts back for ever. To check that without a race,
//! every change is also recorded on one stream per tenant
//! ([`GRAPH_STREAM`], `DependencyGraphChanged`), folded into the
//! [`DependencyGraph`] the change was decided on and appended at the
//! version it was read at: two concurrent changes that together would close
//! a cycle cannot both commit (the same guard the name reservations give
//! names). Dependencies change rarely, so one stream per tenant is no
//! bottleneck.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Rejection;

/// Parents one service may name at most: real services rest on a handful
/// (a database, a network, an identity provider); more is a mistake, and
/// the ancestor walk at ingestion stays small.
pub const PARENTS_MAX: usize = 20;

/// The tenant's one stream of dependency changes, which serialises them.
pub const GRAPH_STREAM: &str = "dependency-graph";

/// The events of [`GRAPH_STREAM`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum GraphEvent {
    /// `service_id` now depends on exactly `depends_on`.
    DependencyGraphChanged {
        service_id: Uuid,
        depends_on: Vec<Uuid>,
    },
}

impl GraphEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            GraphEvent::DependencyGraphChanged { .. } => "DependencyGraphChanged",
        }
    }
    pub fn payload(&self) -> serde_json::Value {
        crate::event::untagged_payload(self)
    }
    pub fn from_stored(event_type: &str, payload: &serde_json::Value) -> Option<GraphEvent> {
        crate::event::from_tagged(event_type, payload)
    }
}

/// Every service's parents in a tenant, as [`GRAPH_STREAM`] records them,
/// and the stream's version they were read at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DependencyGraph {
    pub parents: BTreeMap<Uuid, Vec<Uuid>>,
    pub version: i64,
}

impl DependencyGraph {
    /// Folds the graph stream's events (the last change of a service wins).
    pub fn fold<'a>(
        events: impl IntoIterator<Item = &'a GraphEvent>,
        version: i64,
    ) -> DependencyGraph {
        let mut parents = BTreeMap::new();
        for e in events {
            let GraphEvent::DependencyGraphChanged {
                service_id,
                depends_on,
            } = e;
            if depends_on.is_empty() {
                parents.remove(service_id);
            } else {
                parents.insert(*service_id, depends_on.clone());
            }
        }
        DependencyGraph { parents, version }
    }

    /// The cycle `service` would close by depending on `proposed`, as the
    /// path `service → parent → … → service`; `None` when there is none.
    /// Depth first from each proposed parent along the recorded edges (the
    /// service's own edges are the proposed ones, so they never count).
    pub fn cycle_through(&self, service: Uuid, proposed: &[Uuid]) -> Option<Vec<Uuid>> {
        let mut visited = BTreeSet::new();
        for &parent in proposed {
            let mut path = vec![service];
            if self.reaches(parent, service, &mut visited, &mut path) {
                return Some(path);
            }
        }
        None
    }

    /// Whether `target` is `from` or an ancestor of it; `path` ends with
    /// the way there when it is.
    fn reaches(
        &self,
        from: Uuid,
        target: Uuid,
        visited: &mut BTreeSet<Uuid>,
        path: &mut Vec<Uuid>,
    ) -> bool {
        path.push(from);
        if from == target {
            return true;
        }
        if visited.insert(from) {
            for &next in self.parents.get(&from).map(Vec::as_slice).unwrap_or(&[]) {
                if self.reaches(next, target, visited, path) {
                    return true;
                }
            }
        }
        path.pop();
        false
    }
}

/// What setting a service's parents needs from beyond its stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DependencyContext {
    /// The tenant's graph, as read from [`GRAPH_STREAM`].
    pub graph: DependencyGraph,
    /// Named parents that are not services of this tenant.
    pub unknown: Vec<Uuid>,
}

/// Checks a service's new parents: at most [`PARENTS_MAX`], not itself,
/// services of the tenant, no cycle. Returns them sorted, without repeats
/// (the order a person listed them in means nothing).
pub fn checked_parents(
    service: Uuid,
    depends_on: &[Uuid],
    ctx: &DependencyContext,
) -> Result<Vec<Uuid>, Rejection> {
    let parents: Vec<Uuid> = depends_on
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if parents.len() > PARENTS_MAX {
        return Err(Rejection::Invalid(format!(
            "a service depends on at most {PARENTS_MAX} services, not {}",
            parents.len()
        )));
    }
    if parents.contains(&service) {
        return Err(Rejection::Invalid(format!(
            "service {service} cannot depend on itself"
        )));
    }
    if !ctx.unknown.is_empty() {
        let names: Vec<String> = ctx.unknown.iter().map(Uuid::to_string).collect();
        return Err(Rejection::Invalid(format!(
            "depends_on names what is not a service of this tenant: {}",
            names.join(", ")
        )));
    }
    if let Some(cycle) = ctx.graph.cycle_through(service, &parents) {
        let path: Vec<String> = cycle.iter().map(Uuid::to_string).collect();
        return Err(Rejection::Invalid(format!(
            "these dependencies would make a cycle: {}",
            path.join(" → ")
        )));
    }
    Ok(parents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn graph(edges: &[(u128, &[u128])]) -> DependencyGraph {
        let events: Vec<GraphEvent> = edges
            .iter()
            .map(|(s, ps)| GraphEvent::DependencyGraphChanged {
                service_id: id(*s),
                depends_on: ps.iter().map(|p| id(*p)).collect(),
            })
            .collect();
        DependencyGraph::fold(&events, events.len() as i64)
    }

    fn ctx(edges: &[(u128, &[u128])]) -> DependencyContext {
        DependencyContext {
            graph: graph(edges),
            unknown: vec![],
        }
    }

    #[test]
    fn parents_are_sorted_without_repeats() {
        let got = checked_parents(id(1), &[id(3), id(2), id(3)], &ctx(&[])).unwrap();
        assert_eq!(got, [id(2), id(3)]);
        assert!(checked_parents(id(1), &[], &ctx(&[])).unwrap().is_empty());
    }

    #[test]
    fn a_service_cannot_depend_on_itself() {
        let err = checked_parents(id(1), &[id(2), id(1)], &ctx(&[])).unwrap_err();
        assert!(matches!(err, Rejection::Invalid(m) if m.contains("itself")));
    }

    #[test]
    fn unknown_parents_are_named() {
        let c = DependencyContext {
            graph: DependencyGraph::default(),
            unknown: vec![id(7)],
        };
        let err = checked_parents(id(1), &[id(7)], &c).unwrap_err();
        assert!(matches!(err, Rejection::Invalid(m) if m.contains(&id(7).to_string())));
    }

    #[test]
    fn too_many_parents_are_refused() {
        let many: Vec<Uuid> = (10..10 + PARENTS_MAX as u128 + 1).map(id).collect();
        assert!(checked_parents(id(1), &many, &ctx(&[])).is_err());
        assert!(checked_parents(id(1), &many[..PARENTS_MAX], &ctx(&[])).is_ok());
    }

    #[test]
    fn a_cycle_is_refused_and_named_from_the_service_back_to_it() {
        // 2 depends on 3, 3 on 1: 1 depending on 2 closes 1 → 2 → 3 → 1.
        let c = ctx(&[(2, &[3]), (3, &[1])]);
        let err = checked_parents(id(1), &[id(2)], &c).unwrap_err();
        let Rejection::Invalid(m) = err else { panic!() };
        let expected = format!("{} → {} → {} → {}", id(1), id(2), id(3), id(1));
        assert!(m.ends_with(&expected), "{m}");
        // A two-service cycle too.
        let c = ctx(&[(2, &[1])]);
        assert!(checked_parents(id(1), &[id(2)], &c).is_err());
    }

    #[test]
    fn a_diamond_is_no_cycle_and_a_dropped_edge_no_longer_counts() {
        // 4 depends on 2 and 3, both on 1: 5 may depend on 4 and on 1.
        let c = ctx(&[(4, &[2, 3]), (2, &[1]), (3, &[1])]);
        assert!(checked_parents(id(5), &[id(4), id(1)], &c).is_ok());
        // While 1 depends on 2, 2 may not depend on 1; once 1's parents
        // are set anew without 2, it may.
        let c = ctx(&[(1, &[2])]);
        assert!(checked_parents(id(2), &[id(1)], &c).is_err());
        let c = ctx(&[(1, &[2]), (1, &[])]);
        assert!(checked_parents(id(2), &[id(1)], &c).is_ok());
    }

    #[test]
    fn the_last_change_of_a_service_wins_and_an_empty_one_clears_it() {
        let g = graph(&[(1, &[2]), (1, &[3]), (4, &[5]), (4, &[])]);
        assert_eq!(g.parents.get(&id(1)), Some(&vec![id(3)]));
        assert_eq!(g.parents.get(&id(4)), None);
        assert_eq!(g.version, 4);
    }

    #[test]
    fn graph_events_round_trip_and_are_catalogued() {
        let e = GraphEvent::DependencyGraphChanged {
            service_id: id(1),
            depends_on: vec![id(2)],
        };
        assert_eq!(
            GraphEvent::from_stored(e.type_name(), &e.payload()),
            Some(e.clone())
        );
        assert!(crate::catalogue::lookup(e.type_name()).is_some());
    }
}
