use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Transaction;
use futures_util::future::BoxFuture;
use opsledger_domain::access::Role;
use opsledger_domain::RecordedEvent;
use opsledger_store::append::append_direct;
use opsledger_store::projection::{self, catch_up_once, Projection, Step};
use opsledger_store::wake::Families;
use opsledger_store::{connect, Committer, ExpectedVersion, StoreError};
use opsledger_testkit::{fresh_database, spawn_app};
use opsledger_tests::{event, eventually, one};
use serde_json::{json, Value};
use uuid::Uuid;

/// Counts every application: a second application of any event shows.
struct Counting;

impl Projection for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["test_counts"]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            tx.execute(
                "INSERT INTO test_counts (event_id, applied) VALUES ($1, 1) \
                 ON CONFLICT (event_id) DO UPDATE SET applied = test_counts.applied + 1",
                &[&event.event_id],
            )
            .await?;
            Ok(())
        })
    }
}

async fn counting_db() -> (opsledger_testkit::TestDatabase, opsledger_store::Pool) {
    let db = fresh_database().await;
    db.superuser()
        .await
        .batch_execute(
            "CREATE TABLE test_counts (event_id uuid PRIMARY KEY, applied int NOT NULL); \
             GRANT SELECT, INSERT, UPDATE, TRUNCATE ON test_counts TO opsledger_app;",
        )
        .await
        .unwrap();
    let pool = connect(&db.config).unwrap();
    (db, pool)
}

async fn counts(pool: &opsledger_store::Pool) -> (i64, i64) {
    let c = pool.get().await.unwrap();
    let row = c
        .query_one(
            "SELECT count(*), coalesce(max(applied), 0)::int8 FROM test_counts",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// No watcher of the log's head: the follower relies on its committer's
/// word and its own fallback polls.
fn no_head() -> tokio::sync::watch::Receiver<u64> {
    tokio::sync::watch::channel(0).1
}

/// Another instance's commits reach a follower through the one watcher of
/// the log's head, not through polls of its own: with an hour between its
/// fallback polls and no committer of this process involved, only the head
/// watcher can have brought the events in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instances_commits_reach_a_follower_through_the_head_watcher() {
    let (_db, pool) = counting_db().await;
    let committer = Committer::start(pool.clone(), 1);
    let (moved, head) = tokio::sync::watch::channel(0u64);
    let watcher = tokio::spawn(projection::watch_head(
        pool.clone(),
        Duration::from_millis(20),
        moved,
    ));
    let worker = tokio::spawn(projection::follow(
        pool.clone(),
        Arc::new(Counting),
        committer.subscribe(),
        head,
        Duration::from_secs(3600),
        Families::ALL,
    ));
    let tenant = Uuid::now_v7();
    for round in 0..3 {
        // Appended as another instance would: not through this committer.
        for n in 0..5 {
            append_direct(
                &pool,
                &one(
                    tenant,
                    &format!("s{round}-{n}"),
                    ExpectedVersion::Any,
                    vec![event(n)],
                ),
            )
            .await
            .unwrap();
        }
        let want = 5 * (round + 1);
        eventually("the other instance's events are applied", || async {
            let (n, _) = counts(&pool).await;
            (n == want).then_some(())
        })
        .await;
    }
    worker.abort();
    watcher.abort();
    assert_eq!(counts(&pool).await, (15, 1), "each once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_at_any_point_resumes_without_applying_anything_twice() {
    let (_db, pool) = counting_db().await;
    let tenant = Uuid::now_v7();
    for n in 0..1200 {
        append_direct(
            &pool,
            &one(
                tenant,
                &format!("s{}", n % 7),
                ExpectedVersion::Any,
                vec![event(n)],
            ),
        )
        .await
        .unwrap();
    }
    let committer = Committer::start(pool.clone(), 1);
    // Kill the worker again and again at arbitrary moments while it works.
    for round in 0..20u64 {
        let worker = tokio::spawn(projection::follow(
            pool.clone(),
            Arc::new(Counting),
            committer.subscribe(),
            no_head(),
            Duration::from_millis(10),
            Families::ALL,
        ));
        tokio::time::sleep(Duration::from_millis(3 + (round * 7) % 23)).await;
        worker.abort();
        let _ = worker.await;
    }
    let worker = tokio::spawn(projection::follow(
        pool.clone(),
        Arc::new(Counting),
        committer.subscribe(),
        no_head(),
        Duration::from_millis(10),
        Families::ALL,
    ));
    let (n, max) = eventually("the worker catches up", || async {
        let (n, max) = counts(&pool).await;
        (n == 1200).then_some((n, max))
    })
    .await;
    worker.abort();
    assert_eq!((n, max), (1200, 1), "every event applied exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_following_one_projection_apply_each_event_once() {
    let (_db, pool) = counting_db().await;
    let committer = Committer::start(pool.clone(), 2);
    let a = tokio::spawn(projection::follow(
        pool.clone(),
        Arc::new(Counting),
        committer.subscribe(),
        no_head(),
        Duration::from_millis(5),
        Families::ALL,
    ));
    let b = tokio::spawn(projection::follow(
        pool.clone(),
        Arc::new(Counting),
        committer.subscribe(),
        no_head(),
        Duration::from_millis(5),
        Families::ALL,
    ));
    let tenant = Uuid::now_v7();
    let writes = (0..300).map(|n| {
        let c = committer.clone();
        tokio::spawn(async move {
            c.append(one(tenant, "s", ExpectedVersion::Any, vec![event(n)]))
                .await
                .unwrap()
        })
    });
    futures_util::future::join_all(writes).await;
    let (n, max) = eventually("both workers drained the store", || async {
        let (n, max) = counts(&pool).await;
        (n == 300).then_some((n, max))
    })
    .await;
    a.abort();
    b.abort();
    assert_eq!((n, max), (300, 1));
}

#[tokio::test]
async fn a_busy_projection_is_skipped_not_waited_for() {
    let (_db, pool) = counting_db().await;
    append_direct(
        &pool,
        &one(Uuid::now_v7(), "s", ExpectedVersion::Any, vec![event(1)]),
    )
    .await
    .unwrap();
    let mut holder = pool.get().await.unwrap();
    let tx = holder.transaction().await.unwrap();
    tx.execute(
        "SELECT pg_advisory_xact_lock(1869640556, hashtext('counting'))",
        &[],
    )
    .await
    .unwrap();
    let pool2 = pool.clone();
    let c = pool2.get().await.unwrap();
    c.execute(
        "INSERT INTO projection_checkpoints (name) VALUES ('counting') ON CONFLICT DO NOTHING",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(catch_up_once(&pool, &Counting).await.unwrap(), Step::Busy);
    tx.rollback().await.unwrap();
    eventually("the projection applies the event once free", || async {
        (catch_up_once(&pool, &Counting).await.unwrap() == Step::Applied(1)).then_some(())
    })
    .await;
}

async fn dump(app: &opsledger_testkit::TestApp) -> Vec<String> {
    let su = app.db.superuser().await;
    let mut rows = Vec::new();
    for table in ["proj_tenants", "proj_clients", "proj_services"] {
        for r in su
            .query(
                &format!("SELECT row_to_json(t)::text FROM {table} t ORDER BY 1"),
                &[],
            )
            .await
            .unwrap()
        {
            rows.push(r.get(0));
        }
    }
    rows
}

#[tokio::test]
async fn a_rebuilt_projection_equals_the_incrementally_built_one() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    for c in 0..3 {
        let client: Value = app
            .post(
                "/api/v1/clients",
                &admin,
                &json!({ "name": format!("Client {c}"), "locale": "ja",
            "contacts": [{ "name": "担当", "email": format!("c{c}@example.jp") }] }),
            )
            .await
            .json()
            .await
            .unwrap();
        for s in 0..4 {
            app.post(
                "/api/v1/services",
                &admin,
                &json!({ "client_id": client["id"], "name": format!("Service {c}-{s}"),
                "sla_target_pct": 99.5 + s as f64 / 10.0, "notice_period_h": 24 * s }),
            )
            .await;
        }
    }
    let operator = app.token(&[Role::Operator]);
    eventually("all services are projected", || async {
        let page: Value = app
            .get("/api/v1/services", &operator)
            .await
            .json()
            .await
            .unwrap();
        (page["items"].as_array().unwrap().len() == 12).then_some(())
    })
    .await;
    let incremental = dump(&app).await;
    assert_eq!(incremental.len(), 1 + 3 + 12);
    let replayed = projection::rebuild(
        &app.app_state.pool,
        &opsledger_store::directory::DirectoryProjection,
    )
    .await
    .unwrap();
    assert!(replayed > 0);
    // A rebuild replays what is committed below the read horizon; the worker
    // takes it from there, so compare once it has caught up again.
    let rebuilt = eventually("the rebuilt projection catches up", || async {
        let rows = dump(&app).await;
        (rows.len() == incremental.len()).then_some(rows)
    })
    .await;
    assert_eq!(rebuilt, incremental);
    let su = app.db.superuser().await;
    let events: i64 = su
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        events,
        1 + 3 * 2 + 12 * 2,
        "tenant, clients and services with their name reservations"
    );
}

#[tokio::test]
async fn lag_is_exposed_per_projection() {
    let (_db, pool) = counting_db().await;
    c_append(&pool, 5).await;
    let c = pool.get().await.unwrap();
    c.execute(
        "INSERT INTO projection_checkpoints (name) VALUES ('counting') ON CONFLICT DO NOTHING",
        &[],
    )
    .await
    .unwrap();
    let lag = projection::lag(&pool, &Counting).await.unwrap();
    assert_eq!(lag.behind_events, 5);
    assert!(lag.lag_seconds >= 0.0);
    let lag = eventually("the projection catches up", || async {
        catch_up_once(&pool, &Counting).await.unwrap();
        let lag = projection::lag(&pool, &Counting).await.unwrap();
        (lag.behind_events == 0).then_some(lag)
    })
    .await;
    assert_eq!(lag.lag_seconds, 0.0);
}

async fn c_append(pool: &opsledger_store::Pool, n: i64) {
    for i in 0..n {
        append_direct(
            pool,
            &one(Uuid::now_v7(), "s", ExpectedVersion::Any, vec![event(i)]),
        )
        .await
        .unwrap();
    }
}

/// Counts the applications of incident events only.
struct IncidentCounting;

impl Projection for IncidentCounting {
    fn name(&self) -> &'static str {
        "counting-incidents"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["test_counts"]
    }
    fn streams(&self) -> &'static [&'static str] {
        &["incident-"]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Counting.apply(tx, event)
    }
}

/// A follower sleeps through a storm of other streams' commits and wakes for
/// a commit of its own streams: with an hour between polls, only the
/// committer's word can have brought the incident event in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_wakes_for_its_own_streams_through_an_alert_storm() {
    let (_db, pool) = counting_db().await;
    let committer = Committer::start(pool.clone(), 1);
    let followed: Vec<projection::SharedProjection> = vec![Arc::new(IncidentCounting)];
    let interest = projection::interests(&followed)[0];
    assert_ne!(interest, Families::ALL);
    let worker = tokio::spawn(projection::follow(
        pool.clone(),
        followed[0].clone(),
        committer.subscribe(),
        no_head(),
        Duration::from_secs(3600),
        interest,
    ));
    let tenant = Uuid::now_v7();
    let storm = (0..300).map(|n| {
        let c = committer.clone();
        tokio::spawn(async move {
            c.append(one(
                tenant,
                &format!("alert-{n}"),
                ExpectedVersion::NoStream,
                vec![event(n)],
            ))
            .await
            .unwrap()
        })
    });
    futures_util::future::join_all(storm).await;
    committer
        .append(one(
            tenant,
            &format!("incident-{}", Uuid::now_v7()),
            ExpectedVersion::NoStream,
            vec![event(0)],
        ))
        .await
        .unwrap();
    let applied = eventually("the incident event is applied", || async {
        let (n, max) = counts(&pool).await;
        (n > 0).then_some((n, max))
    })
    .await;
    worker.abort();
    assert_eq!(applied, (1, 1), "the incident event, once, and no alert");
}

/// A projection's lag counts only the events of its own streams: an alert
/// storm it will never read does not make it look behind, while its own
/// event does.
#[tokio::test]
async fn lag_counts_only_the_projections_own_streams() {
    let (_db, pool) = counting_db().await;
    let tenant = Uuid::now_v7();
    let c = pool.get().await.unwrap();
    c.execute(
        "INSERT INTO projection_checkpoints (name) VALUES ('counting-incidents'), ('counting') \
         ON CONFLICT DO NOTHING",
        &[],
    )
    .await
    .unwrap();
    for n in 0..5 {
        append_direct(
            &pool,
            &one(
                tenant,
                &format!("alert-{n}"),
                ExpectedVersion::NoStream,
                vec![event(n)],
            ),
        )
        .await
        .unwrap();
    }
    append_direct(
        &pool,
        &one(
            tenant,
            "incident-1",
            ExpectedVersion::NoStream,
            vec![event(9)],
        ),
    )
    .await
    .unwrap();
    let incidents = projection::lag(&pool, &IncidentCounting).await.unwrap();
    assert_eq!(incidents.behind_events, 1);
    assert!(incidents.lag_seconds >= 0.0);
    // A projection of every stream is behind by all of them.
    let every = projection::lag(&pool, &Counting).await.unwrap();
    assert_eq!(every.behind_events, 6);
    let caught_up = eventually("the incident projection catches up", || async {
        catch_up_once(&pool, &IncidentCounting).await.unwrap();
        let lag = projection::lag(&pool, &IncidentCounting).await.unwrap();
        (lag.behind_events == 0).then_some(lag)
    })
    .await;
    assert_eq!(caught_up.lag_seconds, 0.0);
    assert_eq!(counts(&pool).await.0, 1, "the incident event only");
}

/// Counts like [`Counting`], but cannot apply an event whose payload says
/// `"poison": true` until it is cured: its write fails as a NUL once
/// failed in `jsonb`.
#[derive(Default)]
struct Poisoned {
    cured: std::sync::atomic::AtomicBool,
}

impl Projection for Poisoned {
    fn name(&self) -> &'static str {
        "poisoned"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["test_counts"]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            if event.payload["poison"] == true
                && !self.cured.load(std::sync::atomic::Ordering::SeqCst)
            {
                tx.execute("SELECT '\"\\u0000\"'::jsonb", &[]).await?;
            }
            Counting.apply(tx, event).await
        })
    }
}

/// A follower that fails on one event applies those before it (a batch is
/// retried one event at a time to find it), stops there, and names it to
/// every instance through its checkpoint row, until it can go on.
#[tokio::test]
async fn a_follower_stuck_on_an_event_applies_those_before_it_and_names_it() {
    let (_db, pool) = counting_db().await;
    let tenant = Uuid::now_v7();
    let mut events: Vec<_> = (1..=5).map(event).collect();
    events[2] = opsledger_domain::NewEvent::new(
        "TenantRegistered",
        json!({ "poison": true }),
        opsledger_tests::meta(),
        chrono::Utc::now(),
    );
    let poison_id = events[2].event_id;
    append_direct(&pool, &one(tenant, "s-1", ExpectedVersion::Any, events))
        .await
        .unwrap();
    let committer = Committer::start(pool.clone(), 1);
    let poisoned = Arc::new(Poisoned::default());
    let worker = tokio::spawn(projection::follow(
        pool.clone(),
        poisoned.clone(),
        committer.subscribe(),
        no_head(),
        Duration::from_millis(10),
        Families::ALL,
    ));
    let stuck = eventually("the follower names the event it cannot apply", || async {
        projection::stuck(&pool).await.unwrap().into_iter().next()
    })
    .await;
    assert_eq!(
        counts(&pool).await,
        (2, 1),
        "the two events before it, once"
    );
    let position: i64 = pool
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT position FROM events WHERE event_id = $1",
            &[&poison_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stuck.name, "poisoned");
    assert_eq!(stuck.position, position);
    assert!(
        stuck.event.contains("s-1 v3 (TenantRegistered)"),
        "{}",
        stuck.event
    );
    assert!(stuck.error.contains("Unicode"), "{}", stuck.error);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(counts(&pool).await, (2, 1), "nothing past it");
    // Once it can apply the event (a fixed release, say), it goes on and the
    // failure is cleared.
    poisoned
        .cured
        .store(true, std::sync::atomic::Ordering::SeqCst);
    eventually("the cured projection goes on", || async {
        (counts(&pool).await == (5, 1)).then_some(())
    })
    .await;
    worker.abort();
    assert!(projection::stuck(&pool).await.unwrap().is_empty());
}

/// An event in the log that a read model cannot hold (here a NUL, written
/// by hand past every check) stops that projection: `/readyz` and
/// `/metrics` say which one, since when, on which event and why.
#[tokio::test]
async fn readiness_and_metrics_name_a_stalled_projection_its_event_and_its_error() {
    let app = opsledger_testkit::spawn_app_with(|c| {
        c.projection_stall_after = Duration::from_secs(1);
    })
    .await;
    let admin = app.token(&[Role::Admin, Role::Maintainer]);
    let created = |path: &'static str, body: Value| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let res = app.post(path, &admin, &body).await;
            assert_eq!(res.status(), 201, "{path}");
            res.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let client = created("/api/v1/clients", json!({ "name": "C" })).await;
    let service = created(
        "/api/v1/services",
        json!({ "client_id": client, "name": "s", "sla_target_pct": 99.0, "notice_period_h": 1 }),
    )
    .await;
    let change = created(
        "/api/v1/changes",
        json!({
            "kind": "standard", "category": "configuration", "title": "t", "risk": "low",
            "impact": "i", "description": "POISON-ME", "service_ids": [service]
        }),
    )
    .await;
    let ready: Value = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready, json!({ "status": "ready", "projections": [] }));
    // The same change again under another id, with a NUL in its description.
    let poisoned = Uuid::now_v7();
    app.db
        .superuser()
        .await
        .execute(
            "INSERT INTO events (event_id, tenant_id, stream_id, stream_version, event_type, \
               schema_version, work_class, payload, metadata, occurred_at, recorded_at, \
               chain_lane, prev_hash, hash) \
             SELECT gen_random_uuid(), tenant_id, 'change-' || $2, 1, event_type, schema_version, \
               work_class, replace(replace(payload::text, $1, $2), 'POISON-ME', $3)::json, \
               metadata, occurred_at, recorded_at, chain_lane, prev_hash, hash \
             FROM events WHERE stream_id = 'change-' || $1 AND stream_version = 1",
            &[&change, &poisoned.to_string(), &"a\\u0000b"],
        )
        .await
        .unwrap();
    app.app_state.committer.announce();
    let ready = eventually("readiness names the stalled projection", || async {
        let v: Value = app
            .http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let changes = v["projections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "changes")
            .cloned()?;
        (changes["stalled"] == true && changes["failing"].is_object()).then_some((v, changes))
    })
    .await;
    let (whole, changes) = ready;
    assert_eq!(whole["status"], "degraded");
    let failing = &changes["failing"];
    let event = failing["event"].as_str().unwrap();
    assert!(
        event.contains(&format!("change-{poisoned} v1 (ChangeRequested)")),
        "{event}"
    );
    assert!(
        failing["error"].as_str().unwrap().contains("Unicode"),
        "{failing}"
    );
    assert!(changes["behind_events"].as_i64().unwrap() >= 1);
    assert!(
        !whole["projections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "directory"),
        "{whole}"
    );
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("opsledger_projection_stalled{projection=\"changes\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("opsledger_projection_stalled{projection=\"directory\"} 0"));
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("opsledger_projection_failing_seconds{")
                && l.contains("projection=\"changes\"")
        })
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(
        line.contains(&format!("change-{poisoned} v1 (ChangeRequested)")),
        "{line}"
    );
}

// ------------------------------------------------------------ rebuilds
//
// Every projection rebuilt from the log equals the one built as the events
// came (SPEC §3.7). A day of work through the API touches every read model:
// as it happens, followers apply a few events a batch; a rebuild applies
// them thousands a batch, so these tests also hold a batch's fold equal to
// applying its events one by one.

/// Calls a route and returns its answer; panics unless it is a 2xx.
async fn ok(app: &opsledger_testkit::TestApp, path: &str, token: &str, body: Value) -> Value {
    let res = app.post(path, token, &body).await;
    let status = res.status();
    let text = res.text().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .or_else(|| v["incident_id"].as_str())
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_owned()
}

/// Waits until every follower (but the `held` ones) has applied everything
/// and the escalation worker has fired every step due.
async fn settled(app: &opsledger_testkit::TestApp, held: &[&str]) {
    app.app_state.committer.announce();
    eventually("every projection has caught up", || async {
        for p in opsledger_store::projections() {
            if p.inline() || held.contains(&p.name()) {
                continue;
            }
            if projection::lag(&app.app_state.pool, p.as_ref())
                .await
                .unwrap()
                .behind_events
                > 0
            {
                app.app_state.committer.announce();
                return None;
            }
        }
        let due: i64 = app
            .db
            .superuser()
            .await
            .query_one(
                "SELECT count(*) FROM escalation_timers WHERE due_at <= now()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (due == 0).then_some(())
    })
    .await;
}

/// An app whose escalation worker fires due steps at once.
async fn busy_app() -> opsledger_testkit::TestApp {
    opsledger_testkit::spawn_app_with(|c| c.timer_interval = Duration::from_millis(50)).await
}

/// A day of work touching every read model: the directory, the roster
/// (responders, a schedule and its overrides, a policy, subscriptions, one
/// cancelled), an alert storm opening an incident of the shop that is
/// worked, handed off, fixed and resolved, an incident of the blog opened
/// by hand, escalated by hand and fixed by a change, a proposal that
/// followed the first carried out by that change and verified, the same
/// failure of the shop again and another failure of the blog (recurrences
/// by fingerprint and by service, a lapsed verification), notifications, a
/// window, a freeze, and operations work. Nothing recurs before the
/// proposal is verified: the detector reads proposals as they are when it
/// gets there, so one held back would see the verification early.
async fn busy_day(app: &opsledger_testkit::TestApp, held: &[&str]) {
    let admin = app.token(&[Role::Admin]);
    let monitoring = app.token(&[Role::Integration]);
    let operator = app.token_for(app.tenant, "olga", &[Role::Operator], None);
    let maintainer = app.token_for(app.tenant, "mia", &[Role::Maintainer], None);
    let approver = app.token_for(app.tenant, "arno", &[Role::Approver], None);
    let client = crate::api_directory::register_client(app, "Client R").await;
    let cid = id(&client);
    let shop = id(&crate::api_directory::register_service(app, &cid, "shop").await);
    let blog = id(&crate::api_directory::register_service(app, &cid, "blog").await);

    let u1 = id(&ok(
        app,
        "/api/v1/users",
        &admin,
        json!({
        "name": "鈴木 一郎", "email": "ichiro@example.jp", "locale": "ja" }),
    )
    .await);
    let u2 = id(&ok(
        app,
        "/api/v1/users",
        &admin,
        json!({
        "name": "Jane Roe", "email": "jane@example.test", "locale": "en" }),
    )
    .await);
    let schedule = id(&ok(
        app,
        "/api/v1/schedules",
        &admin,
        json!({
        "name": "Ops", "time_zone": "Asia/Tokyo",
        "rotations": [{ "users": [u1, u2], "shift_hours": 12, "start_date": "2026-01-01",
                        "handoff_time": "09:00:00" }] }),
    )
    .await);
    for day in ["2026-06-01", "2026-06-03"] {
        ok(app, &format!("/api/v1/schedules/{schedule}/overrides"), &operator, json!({
            "user_id": u2, "start": format!("{day}T00:00:00Z"), "end": format!("{day}T12:00:00Z") }))
        .await;
    }
    ok(app, "/api/v1/escalation-policies", &admin, json!({
        "name": "Shop", "service_ids": [shop, blog],
        "levels": [{ "targets": [{ "type": "user", "id": u1 }], "timeout_minutes": 5 },
                   { "targets": [{ "type": "schedule", "id": schedule }], "timeout_minutes": 10 }] }))
    .await;
    for email in ["sato@example.jp", "SATO@example.jp"] {
        ok(
            app,
            "/api/v1/subscriptions",
            &admin,
            json!({
            "service_id": shop, "name": "佐藤", "email": email, "locale": "ja",
            "kinds": ["incident_opened", "incident_mitigated", "incident_resolved"],
            "min_severity": "info" }),
        )
        .await;
    }
    let unused = id(&ok(
        app,
        "/api/v1/subscriptions",
        &admin,
        json!({
        "service_id": blog, "name": "Blog", "email": "blog@example.test", "locale": "en",
        "kinds": ["incident_opened"], "min_severity": "critical" }),
    )
    .await);
    let res = app
        .http
        .delete(app.url(&format!("/api/v1/subscriptions/{unused}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    // Opening reads the policy from its read model.
    settled(app, held).await;

    // A storm: three alerts of one group open an incident; one repeats.
    let alert = |key: &str, status: &str| {
        json!({ "source": "prometheus", "dedup_key": key, "group_key": "disk", "service": "shop",
                "summary": "Disk almost full on db1", "severity": "critical", "status": status })
    };
    let a = id(&ok(
        app,
        "/api/v1/alerts",
        &monitoring,
        alert("disk-db1", "firing"),
    )
    .await);
    for key in ["disk-db2", "disk-db3", "disk-db1"] {
        ok(app, "/api/v1/alerts", &monitoring, alert(key, "firing")).await;
    }
    // The first step fires before anyone acknowledges, on every run.
    settled(app, held).await;
    let path = format!("/api/v1/incidents/{a}");
    ok(app, &format!("{path}/acknowledge"), &operator, json!(null)).await;
    ok(
        app,
        &format!("{path}/notes"),
        &operator,
        json!({ "text": "db1 は容量不足", "visibility": "internal" }),
    )
    .await;
    ok(
        app,
        &format!("{path}/actions"),
        &operator,
        json!({ "kind": "inspection", "description": "df -h", "minutes_spent": 5 }),
    )
    .await;
    ok(
        app,
        &format!("{path}/impact-level"),
        &operator,
        json!({ "level": "partial", "reason": "reads still work" }),
    )
    .await;
    ok(
        app,
        &format!("{path}/handoff"),
        &operator,
        json!({ "reason": "needs a fix" }),
    )
    .await;
    ok(
        app,
        &format!("{path}/assign"),
        &maintainer,
        json!({ "assignee": "mia" }),
    )
    .await;
    ok(
        app,
        &format!("{path}/actions"),
        &maintainer,
        json!({ "kind": "fix", "description": "Log rotation", "minutes_spent": 30 }),
    )
    .await;
    ok(app, &format!("{path}/mitigate"), &maintainer, json!({})).await;
    ok(app, &format!("{path}/resolve"), &operator, json!(null)).await;
    for key in ["disk-db1", "disk-db2", "disk-db3"] {
        ok(app, "/api/v1/alerts", &monitoring, alert(key, "resolved")).await;
    }

    // By hand, escalated by hand too, and fixed by a change.
    let b = id(&ok(
        app,
        "/api/v1/incidents",
        &operator,
        json!({
        "title": "Slow blog", "service_id": blog, "severity": "warning" }),
    )
    .await);
    settled(app, held).await;
    ok(
        app,
        &format!("/api/v1/incidents/{b}/escalate"),
        &operator,
        json!({ "reason": "customers call" }),
    )
    .await;
    let change = id(&ok(
        app,
        "/api/v1/changes",
        &maintainer,
        json!({
        "kind": "emergency", "category": "fix", "title": "Cap the pool", "risk": "low",
        "impact": "none", "service_ids": [blog],
        "links": [{ "relation": "fixes", "incident_id": b }] }),
    )
    .await);
    ok(
        app,
        &format!("/api/v1/changes/{change}/start"),
        &maintainer,
        json!({}),
    )
    .await;
    ok(
        app,
        &format!("/api/v1/changes/{change}/complete"),
        &maintainer,
        json!({ "note": "done", "minutes_spent": 20 }),
    )
    .await;
    ok(
        app,
        &format!("/api/v1/incidents/{b}/resolve"),
        &operator,
        json!(null),
    )
    .await;

    // A proposal that followed A, carried out by the change and verified.
    let proposal = id(&ok(
        app,
        "/api/v1/proposals",
        &maintainer,
        json!({
        "title": "Alert on disk growth", "description": "Page a week ahead", "incident_id": a }),
    )
    .await);
    let ppath = format!("/api/v1/proposals/{proposal}");
    ok(
        app,
        &format!("{ppath}/approve"),
        &approver,
        json!({ "comment": "yes" }),
    )
    .await;
    ok(
        app,
        &format!("{ppath}/implement"),
        &maintainer,
        json!({ "change_id": change }),
    )
    .await;
    ok(
        app,
        &format!("{ppath}/verify"),
        &approver,
        json!({ "note": "fires early" }),
    )
    .await;
    ok(
        app,
        "/api/v1/proposals",
        &maintainer,
        json!({
        "title": "Bigger disks", "description": "Someday", "service_ids": [blog] }),
    )
    .await;
    // Recurrence decides on the read models.
    settled(app, held).await;

    // The same failure again, and another on the same service.
    let c = id(&ok(
        app,
        "/api/v1/alerts",
        &monitoring,
        alert("disk-db1", "firing"),
    )
    .await);
    ok(
        app,
        "/api/v1/incidents",
        &operator,
        json!({
        "title": "Blog errors", "service_id": blog, "severity": "error" }),
    )
    .await;
    settled(app, held).await;
    ok(
        app,
        &format!("/api/v1/incidents/{c}/acknowledge"),
        &operator,
        json!(null),
    )
    .await;

    // Planned work, and operations work.
    let window = id(&ok(
        app,
        "/api/v1/maintenance-windows",
        &maintainer,
        json!({
        "title": "Patch", "service_ids": [shop], "start": "2030-04-01T00:00:00Z",
        "end": "2030-04-01T02:00:00Z" }),
    )
    .await);
    ok(
        app,
        &format!("/api/v1/maintenance-windows/{window}/announce"),
        &maintainer,
        json!({}),
    )
    .await;
    let freeze = id(&ok(
        app,
        "/api/v1/freezes",
        &approver,
        json!({
        "service_ids": [shop], "start": "2030-05-01T00:00:00Z", "end": "2030-05-02T00:00:00Z",
        "reason": "sale" }),
    )
    .await);
    ok(
        app,
        &format!("/api/v1/freezes/{freeze}/lift"),
        &approver,
        json!({}),
    )
    .await;
    ok(
        app,
        "/api/v1/worklog",
        &operator,
        json!({
        "service_id": shop, "kind": "patch_check", "summary": "ok", "minutes_spent": 3 }),
    )
    .await;
    let backup = id(&ok(
        app,
        "/api/v1/backups",
        &operator,
        json!({
        "service_id": shop, "what": "db", "location": "nas" }),
    )
    .await);
    ok(
        app,
        &format!("/api/v1/backups/{backup}/verify"),
        &operator,
        json!({ "result": "ok", "how": "restored" }),
    )
    .await;
    let client_token = app.token_for(app.tenant, "c", &[Role::Client], Some(cid.parse().unwrap()));
    let inquiry = id(&ok(
        app,
        "/api/v1/inquiries",
        &client_token,
        json!({
        "service_id": shop, "kind": "question", "subject": "s", "body": "b" }),
    )
    .await);
    ok(
        app,
        &format!("/api/v1/inquiries/{inquiry}/answer"),
        &operator,
        json!({ "answer": "a", "minutes_spent": 2 }),
    )
    .await;
    settled(app, held).await;
}

/// A projection's tables, every row as JSON, in key order.
async fn dump_tables(app: &opsledger_testkit::TestApp, tables: &[&str]) -> Vec<String> {
    let su = app.db.superuser().await;
    let mut rows = Vec::new();
    for table in tables {
        let lines: Vec<String> = su
            .query(
                &format!("SELECT row_to_json(t)::text FROM {table} t ORDER BY 1"),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        rows.push(format!("{table}: {} rows", lines.len()));
        rows.extend(lines);
    }
    rows
}

/// Runs the day, rebuilds `p` and compares its tables, each of which the
/// day must have filled.
async fn rebuilt_equals_incremental(p: &dyn Projection) {
    let app = busy_app().await;
    busy_day(&app, &[]).await;
    let tables = p.tables();
    let incremental = dump_tables(&app, tables).await;
    for table in tables {
        assert!(
            !incremental.contains(&format!("{table}: 0 rows")),
            "the day leaves {table} empty: {incremental:#?}"
        );
    }
    let events: i64 = app
        .db
        .superuser()
        .await
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    let replayed = projection::rebuild(&app.app_state.pool, p).await.unwrap();
    assert!(replayed > 0);
    // A rebuild replays what is below the read horizon; the follower goes
    // on from there.
    settled(&app, &[]).await;
    assert_eq!(dump_tables(&app, tables).await, incremental);
    let after: i64 = app
        .db
        .superuser()
        .await
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(after, events, "a rebuild appends nothing");
}

#[tokio::test]
async fn the_incidents_projection_rebuilt_equals_the_incremental_one() {
    rebuilt_equals_incremental(&opsledger_store::incidents::IncidentProjection).await;
}

#[tokio::test]
async fn the_roster_projection_rebuilt_equals_the_incremental_one() {
    rebuilt_equals_incremental(&opsledger_store::roster::RosterProjection).await;
}

#[tokio::test]
async fn the_notifications_projection_rebuilt_equals_the_incremental_one() {
    rebuilt_equals_incremental(&opsledger_store::outbox::NotificationProjection).await;
}

#[tokio::test]
async fn the_proposals_projection_rebuilt_equals_the_incremental_one() {
    rebuilt_equals_incremental(&opsledger_store::work::ProposalProjection).await;
}

#[tokio::test]
async fn the_work_ledger_rebuilt_equals_the_incremental_one() {
    rebuilt_equals_incremental(&opsledger_store::work::WorkProjection).await;
}

#[tokio::test]
async fn the_operations_and_change_projections_rebuilt_equal_the_incremental_ones_after_a_day() {
    // Each has a test of its own elsewhere; this day's traffic mixes them
    // with everything else, and the downtime and directory models too.
    let app = busy_app().await;
    busy_day(&app, &[]).await;
    for p in opsledger_store::projections() {
        if p.tables().is_empty() {
            continue;
        }
        let before = dump_tables(&app, p.tables()).await;
        projection::rebuild(&app.app_state.pool, p.as_ref())
            .await
            .unwrap();
        settled(&app, &[]).await;
        assert_eq!(dump_tables(&app, p.tables()).await, before, "{}", p.name());
    }
}

/// What the appending projections appended (the notifier's requests for
/// incident facts; recurrences and the lapses they cause), in terms that do
/// not depend on generated ids: incidents by the order they opened,
/// proposals by title. (A window's announcement asks for its mails itself.)
async fn appended_by_followers(app: &opsledger_testkit::TestApp) -> Vec<String> {
    let su = app.db.superuser().await;
    let opened: Vec<String> = su
        .query(
            "SELECT payload->>'incident_id' FROM events WHERE event_type = 'IncidentOpened' \
             ORDER BY position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let label = |id: &str| match opened.iter().position(|o| o == id) {
        Some(n) => format!("incident#{}", n + 1),
        None => format!("unknown incident {id}"),
    };
    let mut out = Vec::new();
    for r in su
        .query(
            "SELECT n.payload->>'incident_id', n.payload->>'kind', n.payload->'recipient'->>'email', \
               c.event_type, n.metadata->>'actor' \
             FROM events n JOIN events c ON c.event_id = (n.payload->>'cause_event_id')::uuid \
             WHERE n.event_type = 'NotificationRequested' AND c.stream_id LIKE 'incident-%'",
            &[],
        )
        .await
        .unwrap()
    {
        let incident: Option<String> = r.get(0);
        out.push(format!(
            "notify {} of {} ({}, after {}) by {}",
            r.get::<_, String>(2),
            incident.as_deref().map_or("no incident".into(), label),
            r.get::<_, String>(1),
            r.get::<_, String>(3),
            r.get::<_, String>(4)
        ));
    }
    for r in su
        .query(
            "SELECT substr(stream_id, 10), payload->>'earlier_incident_id', payload->>'matched_by', \
               payload->'fix'->>'kind' FROM events WHERE event_type = 'RecurrenceDetected'",
            &[],
        )
        .await
        .unwrap()
    {
        out.push(format!(
            "{} recurs {} by {} (fix: {})",
            label(r.get(0)),
            label(r.get(1)),
            r.get::<_, String>(2),
            r.get::<_, String>(3)
        ));
    }
    for r in su
        .query(
            "SELECT p.payload->>'title', l.payload->>'incident_id', l.payload->>'earlier_incident_id' \
             FROM events l JOIN events p ON p.stream_id = l.stream_id AND p.stream_version = 1 \
             WHERE l.event_type = 'ProposalVerificationLapsed'",
            &[],
        )
        .await
        .unwrap()
    {
        out.push(format!(
            "{:?} lapsed by {} (after {})",
            r.get::<_, String>(0),
            label(r.get(1)),
            label(r.get(2))
        ));
    }
    out.sort();
    out
}

/// The notifier and the recurrence detector keep no tables: what they
/// build is what they append. Held back (their lock taken) through the
/// whole day and then let go, each applies the day in one batch, and must
/// append what it appends taking the events as they come; a rebuild
/// afterwards appends nothing more.
#[tokio::test]
async fn the_appending_projections_append_the_same_in_one_batch_as_event_by_event() {
    let (free, held) = tokio::join!(busy_app(), busy_app());
    let holder = held.db.superuser().await;
    for name in ["notifier", "recurrence"] {
        holder
            .execute(
                "SELECT pg_advisory_lock(1869640556, hashtext($1))",
                &[&name],
            )
            .await
            .unwrap();
    }
    let holding = ["notifier", "recurrence"];
    tokio::join!(busy_day(&free, &[]), busy_day(&held, &holding));
    let before_release = appended_by_followers(&held).await;
    assert!(
        before_release.is_empty(),
        "held back, they appended: {before_release:?}"
    );
    holder
        .batch_execute("SELECT pg_advisory_unlock_all()")
        .await
        .unwrap();
    settled(&held, &[]).await;
    let expected = appended_by_followers(&free).await;
    assert!(
        expected
            .iter()
            .any(|l| l.contains("recurs incident#1 by fingerprint")),
        "{expected:#?}"
    );
    assert!(
        expected.iter().any(|l| l.contains("by service")),
        "{expected:#?}"
    );
    assert!(
        expected.iter().any(|l| l.contains("lapsed")),
        "{expected:#?}"
    );
    assert!(
        expected
            .iter()
            .any(|l| l.starts_with("notify ichiro@example.jp") && l.contains("incident_escalated")),
        "{expected:#?}"
    );
    assert_eq!(appended_by_followers(&held).await, expected);
    for app in [&free, &held] {
        let before = appended_by_followers(app).await;
        for p in [
            &opsledger_store::notifier::Notifier as &dyn Projection,
            &opsledger_store::work::Recurrence,
        ] {
            projection::rebuild(&app.app_state.pool, p).await.unwrap();
        }
        settled(app, &[]).await;
        assert_eq!(
            appended_by_followers(app).await,
            before,
            "a rebuild appends nothing"
        );
    }
}
