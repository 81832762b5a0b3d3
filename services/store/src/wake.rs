//! Which of this process's followers a commit concerns.
//!
//! The committer tells the followers in its process what it committed, so
//! that each wakes at once for its own streams — and only for them. An alert
//! storm commits hundreds of batches a second, none of which any follower
//! reads (the alerts read model is written by the append itself): waking
//! every follower on every commit cost each a transaction per commit, only
//! to move its checkpoint past other streams' events.
//!
//! Streams are told apart by their family, the id up to its first `-`
//! (`incident-`, `alert-`, …), hashed to one of 64 bits. Two families sharing
//! a bit only wake a follower for nothing.

/// A set of stream families, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Families(u64);

impl Families {
    pub const NONE: Families = Families(0);
    pub const ALL: Families = Families(u64::MAX);

    /// The family of one stream id.
    pub fn of_stream(stream_id: &str) -> Families {
        let family = match stream_id.find('-') {
            Some(dash) => &stream_id[..=dash],
            None => stream_id,
        };
        Families(1 << (opsledger_domain::chain::fnv1a(family) % 64))
    }

    /// The families whose streams may start with one of `prefixes`. A prefix
    /// that does not name a whole family (`""`, `"inc"`) may be any of them.
    pub fn of_prefixes(prefixes: &[&str]) -> Families {
        prefixes
            .iter()
            .map(|p| match p.find('-') {
                Some(_) => Families::of_stream(p),
                None => Families::ALL,
            })
            .fold(Families::NONE, Families::union)
    }

    pub fn union(self, other: Families) -> Families {
        Families(self.0 | other.0)
    }

    fn bits(self) -> impl Iterator<Item = usize> {
        (0..64).filter(move |b| self.0 & (1 << b) != 0)
    }
}

/// What this process has committed: how many commits wrote each family, and
/// how many times every follower was asked to look (a write outside the
/// committer, a command about to read a read model).
#[derive(Debug, Clone)]
pub struct Commits {
    by_family: [u64; 64],
    nudges: u64,
}

impl Default for Commits {
    fn default() -> Self {
        Commits {
            by_family: [0; 64],
            nudges: 0,
        }
    }
}

impl Commits {
    /// Counts a commit that wrote these families.
    pub fn record(&mut self, families: Families) {
        for b in families.bits() {
            self.by_family[b] = self.by_family[b].wrapping_add(1);
        }
    }

    /// Asks every follower to look once.
    pub fn nudge(&mut self) {
        self.nudges = self.nudges.wrapping_add(1);
    }

    /// A figure that changes whenever a commit writes one of `families`.
    pub fn written(&self, families: Families) -> u64 {
        families
            .bits()
            .fold(0u64, |sum, b| sum.wrapping_add(self.by_family[b]))
    }

    pub fn nudges(&self) -> u64 {
        self.nudges
    }

    /// What a follower of `families` compares between two looks: the figure
    /// of its families, and the nudges.
    pub fn seen_by(&self, families: Families) -> (u64, u64) {
        (self.written(families), self.nudges)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_belongs_to_the_family_its_prefix_names() {
        let incidents = Families::of_prefixes(&["incident-"]);
        assert_eq!(
            Families::of_stream("incident-018f7e2a-0000-7000-8000-000000000001"),
            incidents
        );
        assert_eq!(Families::of_prefixes(&[""]), Families::ALL);
        assert_eq!(Families::of_prefixes(&["inc"]), Families::ALL);
        assert_eq!(Families::of_prefixes(&[]), Families::NONE);
        let directory = Families::of_prefixes(&["tenant-", "client-", "service-"]);
        assert_eq!(
            directory.union(Families::of_stream("service-name-orders")),
            directory
        );
    }

    #[test]
    fn commits_move_only_the_figures_of_the_families_they_wrote() {
        let incidents = Families::of_prefixes(&["incident-"]);
        let alerts = Families::of_stream("alert-3f2a");
        assert_ne!(incidents, alerts, "the families of this test share no bit");
        let mut commits = Commits::default();
        let before = commits.written(incidents);
        for _ in 0..1000 {
            commits.record(alerts);
        }
        assert_eq!(commits.written(incidents), before);
        commits.record(Families::of_stream("incident-1").union(alerts));
        assert_ne!(commits.written(incidents), before);
        assert_ne!(commits.written(Families::ALL), 0);
        assert_eq!(commits.nudges(), 0);
        commits.nudge();
        assert_eq!(commits.nudges(), 1);
    }
}
