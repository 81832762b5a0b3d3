//! What waits on the workers, as `/metrics` reads it at every scrape: the
//! notifications not yet sent (the outbox) and the escalation steps due and
//! not yet fired.
//!
//! A scrape must stay cheap however large the database grows: each count
//! walks only a partial or range index of the rows that wait (never the
//! history of sent notifications or fired timers), and stops at
//! [`projection::LAG_COUNT_CAP`], so a scrape costs a few milliseconds even
//! during a long SMTP outage. Past the cap both figures are lower bounds.

use crate::projection;
use crate::{Pool, StoreError};

/// Items waiting, and how long the oldest of them has waited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backlog {
    /// Counted up to [`projection::LAG_COUNT_CAP`].
    pub waiting: i64,
    /// 0 when nothing waits.
    pub oldest_age_seconds: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backlogs {
    /// Notifications requested or failed and to be tried again, by how long
    /// ago they were requested.
    pub outbox: Backlog,
    /// Escalation timers whose time has come, by how long ago it came: the
    /// escalation worker fires them every `OPSLEDGER_TIMER_INTERVAL_MS`, so
    /// a count that stays up means no instance fires them.
    pub escalation_due: Backlog,
}

/// Both backlogs in one statement. The outbox's rows come off the partial
/// index of pending notifications (`proj_notifications_due`), the timers'
/// off `escalation_timers_due` in due order.
pub async fn backlogs(pool: &Pool) -> Result<Backlogs, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT o.n, extract(epoch FROM now() - o.oldest)::float8, \
                    t.n, extract(epoch FROM now() - t.oldest)::float8 \
             FROM (SELECT count(*) AS n, min(requested_at) AS oldest \
                   FROM (SELECT requested_at FROM proj_notifications \
                         WHERE status IN ('requested', 'failed') LIMIT $1) p) o, \
                  (SELECT count(*) AS n, min(due_at) AS oldest \
                   FROM (SELECT due_at FROM escalation_timers \
                         WHERE due_at <= now() ORDER BY due_at LIMIT $1) d) t",
            &[&projection::LAG_COUNT_CAP],
        )
        .await?;
    let backlog = |n: usize| Backlog {
        waiting: row.get(n),
        oldest_age_seconds: row.get::<_, Option<f64>>(n + 1).unwrap_or(0.0).max(0.0),
    };
    Ok(Backlogs {
        outbox: backlog(0),
        escalation_due: backlog(2),
    })
}
