use opsledger_store::append::{append_direct, AppendOutcome};
use opsledger_store::{
    connect, AppendError, Committer, ExpectedVersion, IdempotencyClaim, StreamAppend,
};
use opsledger_testkit::fresh_database;
use opsledger_tests::{event, one};
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn appends_carry_versions_times_and_work_class() {
    let db = fresh_database().await;
    let pool = connect(&db.config).unwrap();
    let tenant = Uuid::now_v7();
    let out = append_direct(
        &pool,
        &one(
            tenant,
            "s-1",
            ExpectedVersion::NoStream,
            vec![event(1), event(2)],
        ),
    )
    .await
    .unwrap();
    assert_eq!(out.version_of("s-1"), Some(2));
    let client = pool.get().await.unwrap();
    let events = opsledger_store::read::read_stream(&client, tenant, "s-1", None).await;
    let events = events.unwrap();
    assert_eq!(
        events.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(
        events[0].work_class,
        opsledger_domain::WorkClass::Operations
    );
    assert_eq!(events[0].payload["note"], "テスト");
    assert!(events[0].recorded_at >= events[0].occurred_at);
    assert_eq!(events[0].metadata["actor"], "tester");
}

#[tokio::test]
async fn a_stale_expected_version_is_a_typed_conflict_and_appends_nothing() {
    let db = fresh_database().await;
    let pool = connect(&db.config).unwrap();
    let tenant = Uuid::now_v7();
    append_direct(
        &pool,
        &one(tenant, "s", ExpectedVersion::NoStream, vec![event(1)]),
    )
    .await
    .unwrap();
    let err = append_direct(
        &pool,
        &one(tenant, "s", ExpectedVersion::Exact(0), vec![event(2)]),
    )
    .await
    .unwrap_err();
    match err {
        AppendError::Conflict {
            stream_id, actual, ..
        } => {
            assert_eq!(stream_id, "s");
            assert_eq!(actual, 1);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let ok = append_direct(
        &pool,
        &one(tenant, "s", ExpectedVersion::Exact(1), vec![event(2)]),
    )
    .await
    .unwrap();
    assert_eq!(ok.version_of("s"), Some(2));
}

#[tokio::test]
async fn several_streams_commit_together_or_not_at_all() {
    let db = fresh_database().await;
    let pool = connect(&db.config).unwrap();
    let tenant = Uuid::now_v7();
    append_direct(
        &pool,
        &one(tenant, "taken", ExpectedVersion::NoStream, vec![event(0)]),
    )
    .await
    .unwrap();
    let mut both = one(
        tenant,
        "fresh",
        ExpectedVersion::NoStream,
        vec![event(1), event(2)],
    );
    both.streams.push(StreamAppend {
        stream_id: "taken".into(),
        expected: ExpectedVersion::NoStream,
        events: vec![event(3)],
    });
    assert!(matches!(
        append_direct(&pool, &both).await,
        Err(AppendError::Conflict { .. })
    ));
    let client = pool.get().await.unwrap();
    let fresh = opsledger_store::read::read_stream(&client, tenant, "fresh", None)
        .await
        .unwrap();
    assert!(
        fresh.is_empty(),
        "the first stream's events must not commit alone"
    );
}

#[tokio::test]
async fn a_retried_idempotency_key_returns_the_first_result_and_appends_nothing() {
    let db = fresh_database().await;
    let pool = connect(&db.config).unwrap();
    let committer = Committer::start(pool.clone(), 2);
    let tenant = Uuid::now_v7();
    let request = |n| {
        let mut r = one(tenant, "s", ExpectedVersion::Any, vec![event(n)]);
        r.idempotency = Some(IdempotencyClaim {
            key: "k-1".into(),
            fingerprint: "f".into(),
            response: opsledger_store::ClaimedAnswer::Known(json!({ "n": n })),
        });
        r
    };
    let first = committer.append(request(1)).await.unwrap();
    assert!(matches!(first, AppendOutcome::Committed { .. }));
    // Retries, one of them racing another in the same instant.
    let (a, b) = tokio::join!(committer.append(request(2)), committer.append(request(3)));
    for retry in [a.unwrap(), b.unwrap()] {
        assert_eq!(
            retry,
            AppendOutcome::Duplicate {
                fingerprint: "f".into(),
                response: json!({ "n": 1 })
            }
        );
    }
    let client = pool.get().await.unwrap();
    assert_eq!(
        opsledger_store::read::read_stream(&client, tenant, "s", None)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_conflicting_appends_have_exactly_one_winner() {
    let db = fresh_database().await;
    let pool = connect(&db.config).unwrap();
    let committer = Committer::start(pool.clone(), 2);
    let tenant = Uuid::now_v7();
    let tries = (0..32).map(|n| {
        let c = committer.clone();
        tokio::spawn(async move {
            c.append(one(
                tenant,
                "contested",
                ExpectedVersion::NoStream,
                vec![event(n)],
            ))
            .await
        })
    });
    let results = futures_util::future::join_all(tries).await;
    let wins = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Ok(Err(AppendError::Conflict { .. }))))
        .count();
    assert_eq!((wins, conflicts), (1, 31));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_keeps_every_concurrent_append() {
    let db = fresh_database().await;
    let pool = connect(&db.config).unwrap();
    let committer = Committer::start(pool.clone(), 2);
    let tenants = [Uuid::now_v7(), Uuid::now_v7()];
    let appends = (0..200i64).map(|n| {
        let c = committer.clone();
        let tenant = tenants[(n % 2) as usize];
        tokio::spawn(async move {
            c.append(one(
                tenant,
                &format!("s-{n}"),
                ExpectedVersion::NoStream,
                vec![event(n)],
            ))
            .await
        })
    });
    for r in futures_util::future::join_all(appends).await {
        r.unwrap().unwrap();
    }
    let client = pool.get().await.unwrap();
    let count: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 200);
    let report = opsledger_store::verify::verify(&client, None)
        .await
        .unwrap();
    assert_eq!(report.first_mismatch, None);
    assert_eq!(report.events, 200);
}

#[tokio::test]
async fn an_empty_or_oversized_append_is_refused() {
    let db = fresh_database().await;
    let pool = connect(&db.config).unwrap();
    let committer = Committer::start(pool.clone(), 1);
    let tenant = Uuid::now_v7();
    assert!(matches!(
        committer
            .append(one(tenant, "s", ExpectedVersion::Any, vec![]))
            .await,
        Err(AppendError::Invalid(_))
    ));
    let too_many = (0..1001).map(event).collect();
    assert!(matches!(
        committer
            .append(one(tenant, "s", ExpectedVersion::Any, too_many))
            .await,
        Err(AppendError::Invalid(_))
    ));
    assert!(matches!(
        committer
            .append(one(tenant, "", ExpectedVersion::Any, vec![event(1)]))
            .await,
        Err(AppendError::Invalid(_))
    ));
}

#[tokio::test]
async fn the_database_refuses_to_change_or_remove_events() {
    let db = fresh_database().await;
    let pool = connect(&db.config).unwrap();
    let tenant = Uuid::now_v7();
    append_direct(
        &pool,
        &one(tenant, "s", ExpectedVersion::Any, vec![event(1)]),
    )
    .await
    .unwrap();

    // As the application's role: no privilege.
    let app = pool.get().await.unwrap();
    let role: String = app
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(role, "opsledger_app");
    for sql in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let err = app.batch_execute(sql).await.expect_err(sql);
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {err}"
        );
    }
    // As the owner (a superuser here): the trigger refuses.
    let owner = db.superuser().await;
    for sql in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let err = owner.batch_execute(sql).await.expect_err(sql);
        assert!(
            err.to_string().contains("append-only") || format!("{err:?}").contains("append-only"),
            "{sql}: {err:?}"
        );
    }
    let count: i64 = owner
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
}

#[tokio::test]
async fn a_stream_without_events_asserts_its_version() {
    let db = fresh_database().await;
    let pool = connect(&db.config).unwrap();
    let tenant = Uuid::now_v7();
    append_direct(
        &pool,
        &one(tenant, "guard", ExpectedVersion::Any, vec![event(0)]),
    )
    .await
    .unwrap();
    let guarded = |expected| {
        let mut r = one(tenant, "guarded", ExpectedVersion::Any, vec![event(1)]);
        r.streams.push(StreamAppend {
            stream_id: "guard".into(),
            expected,
            events: vec![],
        });
        r
    };
    assert!(matches!(
        append_direct(&pool, &guarded(ExpectedVersion::Exact(0))).await,
        Err(AppendError::Conflict { .. })
    ));
    let ok = append_direct(&pool, &guarded(ExpectedVersion::Exact(1)))
        .await
        .unwrap();
    assert_eq!(
        (ok.version_of("guarded"), ok.version_of("guard")),
        (Some(1), Some(1))
    );
}

#[tokio::test]
async fn an_asserted_stream_stays_put_until_the_commit_yet_asserters_do_not_queue() {
    use opsledger_store::append::write_batch;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let db = fresh_database().await;
    let pool = connect(&db.config).unwrap();
    let tenant = Uuid::now_v7();
    append_direct(
        &pool,
        &one(tenant, "group", ExpectedVersion::Any, vec![event(0)]),
    )
    .await
    .unwrap();
    let asserting = |stream: &str| {
        let mut r = one(tenant, stream, ExpectedVersion::Any, vec![event(1)]);
        r.streams.push(StreamAppend {
            stream_id: "group".into(),
            expected: ExpectedVersion::Exact(1),
            events: vec![],
        });
        r
    };

    // An append asserting the group, its transaction held open.
    let mut holder = pool.get().await.unwrap();
    let tx = holder.transaction().await.unwrap();
    let first = asserting("alert-1");
    let outcomes = write_batch(&tx, &[&first]).await.unwrap();
    assert!(outcomes[0].is_ok(), "{outcomes:?}");

    // Another assertion of the same stream commits meanwhile: asserters share.
    let second = append_direct(&pool, &asserting("alert-2")).await.unwrap();
    assert_eq!(second.version_of("group"), Some(1));

    // A writer of the asserted stream waits for the open assertion to commit.
    let committed = Arc::new(AtomicBool::new(false));
    let writer = {
        let (pool, committed) = (pool.clone(), committed.clone());
        tokio::spawn(async move {
            let outcome = append_direct(
                &pool,
                &one(tenant, "group", ExpectedVersion::Exact(1), vec![event(2)]),
            )
            .await;
            (outcome, committed.load(Ordering::SeqCst))
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!writer.is_finished(), "the writer waits for the assertion");
    committed.store(true, Ordering::SeqCst);
    tx.commit().await.unwrap();
    let (outcome, after_commit) = writer.await.unwrap();
    assert!(after_commit, "the writer went on only after the commit");
    assert_eq!(outcome.unwrap().version_of("group"), Some(2));
}

/// New tenants' first appends create their strands' heads while other
/// batches lock theirs: nothing may deadlock or fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_appends_of_many_tenants_through_many_committers_all_commit() {
    let db = fresh_database().await;
    let pool = connect(&db.config).unwrap();
    let committer = Committer::start(pool.clone(), 8);
    let tenants: Vec<Uuid> = (0..8).map(|_| Uuid::now_v7()).collect();
    let appends = (0..400i64).map(|n| {
        let c = committer.clone();
        let tenant = tenants[(n % 8) as usize];
        tokio::spawn(async move {
            // Two streams, usually on two strands, written together.
            let mut request = one(
                tenant,
                &format!("a-{n}"),
                ExpectedVersion::NoStream,
                vec![event(n)],
            );
            request.streams.push(StreamAppend {
                stream_id: format!("b-{n}"),
                expected: ExpectedVersion::NoStream,
                events: vec![event(n)],
            });
            c.append(request).await
        })
    });
    for r in futures_util::future::join_all(appends).await {
        r.unwrap().unwrap();
    }
    let client = pool.get().await.unwrap();
    let report = opsledger_store::verify::verify(&client, None)
        .await
        .unwrap();
    assert_eq!(report.first_mismatch, None);
    assert_eq!(report.events, 800);
}

/// Two service instances write one tenant's strands in turn: each one's
/// predictions go stale whenever the other writes, the database refuses them,
/// and every append still commits once, on one verifiable chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_tenant_keep_one_chain() {
    use std::sync::atomic::Ordering;
    let db = fresh_database().await;
    let pool = connect(&db.config).unwrap();
    let instances = [
        Committer::start(pool.clone(), 1),
        Committer::start(pool.clone(), 1),
    ];
    let tenant = Uuid::now_v7();
    const STREAMS: i64 = 24;
    const ROUNDS: i64 = 6;
    for round in 0..ROUNDS {
        // Both instances at once, each on its own streams, which share strands.
        let appends = (0..STREAMS).flat_map(|s| {
            instances.iter().enumerate().map(move |(i, c)| {
                let c = c.clone();
                tokio::spawn(async move {
                    c.append(one(
                        tenant,
                        &format!("i{i}-s{s}"),
                        ExpectedVersion::Exact(round),
                        vec![event(round)],
                    ))
                    .await
                })
            })
        });
        for r in futures_util::future::join_all(appends).await {
            r.unwrap().unwrap();
        }
    }
    let client = pool.get().await.unwrap();
    let report = opsledger_store::verify::verify(&client, None)
        .await
        .unwrap();
    assert_eq!(report.first_mismatch, None);
    assert_eq!(report.events, (2 * STREAMS * ROUNDS) as u64);
    let max_version: i64 = client
        .query_one("SELECT max(stream_version) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(max_version, ROUNDS);
    // Each instance alone, twice: the first append learns the heads the
    // other one moved, the second is predicted from them. (Whether a
    // concurrent round above took the predicted path depends on how the
    // machine schedules the two; a loaded one can make every round collide.)
    for (i, c) in instances.iter().enumerate() {
        for round in ROUNDS..ROUNDS + 2 {
            c.append(one(
                tenant,
                &format!("i{i}-s0"),
                ExpectedVersion::Exact(round),
                vec![event(round)],
            ))
            .await
            .unwrap();
        }
    }
    let report = opsledger_store::verify::verify(&client, None)
        .await
        .unwrap();
    assert_eq!(report.first_mismatch, None);
    assert_eq!(report.events, (2 * STREAMS * ROUNDS + 4) as u64);
    for c in &instances {
        let (predicted, locked) = (
            c.paths().predicted.batches.load(Ordering::Relaxed),
            c.paths().locked.batches.load(Ordering::Relaxed),
        );
        assert!(
            predicted > 0,
            "the predicted path was taken ({predicted}/{locked})"
        );
        assert!(
            locked > 0,
            "stale predictions fell back ({predicted}/{locked})"
        );
    }
}

/// On the predicted path, the first append with a key claims it; a retry
/// finds it claimed (the database refuses the prediction, the locked path
/// answers) and a conflicting expectation is still a conflict.
#[tokio::test]
async fn predicted_appends_keep_keys_and_conflicts() {
    let db = fresh_database().await;
    let pool = connect(&db.config).unwrap();
    let committer = Committer::start(pool.clone(), 1);
    let tenant = Uuid::now_v7();
    // Teaches the committer the strand's head.
    committer
        .append(one(tenant, "s", ExpectedVersion::NoStream, vec![event(0)]))
        .await
        .unwrap();
    let keyed = |n, expected| {
        let mut r = one(tenant, "s", expected, vec![event(n)]);
        r.idempotency = Some(IdempotencyClaim {
            key: "k".into(),
            fingerprint: "f".into(),
            response: opsledger_store::ClaimedAnswer::Known(json!({ "n": n })),
        });
        r
    };
    let first = committer
        .append(keyed(1, ExpectedVersion::Exact(1)))
        .await
        .unwrap();
    assert_eq!(first.version_of("s"), Some(2));
    let retry = committer
        .append(keyed(2, ExpectedVersion::Exact(2)))
        .await
        .unwrap();
    assert_eq!(
        retry,
        AppendOutcome::Duplicate {
            fingerprint: "f".into(),
            response: json!({ "n": 1 })
        }
    );
    let stale = committer
        .append(one(tenant, "s", ExpectedVersion::Exact(1), vec![event(3)]))
        .await
        .unwrap_err();
    assert!(
        matches!(stale, AppendError::Conflict { actual: 2, .. }),
        "{stale:?}"
    );
    let client = pool.get().await.unwrap();
    let stored = opsledger_store::read::read_stream(&client, tenant, "s", None)
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    assert!(
        committer
            .paths()
            .predicted
            .batches
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
}

/// The append path is the last line of defence against a NUL, whatever
/// built the event: one in a payload, its metadata or a stream id is
/// refused before anything is written; six harmless characters (`\\u0000`,
/// an escaped backslash) are stored as they are.
#[tokio::test]
async fn an_event_holding_a_nul_is_refused_by_the_append_path_itself() {
    let db = fresh_database().await;
    let pool = connect(&db.config).unwrap();
    let committer = Committer::start(pool.clone(), 1);
    let tenant = Uuid::now_v7();
    let with = |payload: serde_json::Value, actor: &str| {
        let mut meta = opsledger_tests::meta();
        meta.actor = actor.to_owned();
        opsledger_domain::NewEvent::new("TenantRegistered", payload, meta, chrono::Utc::now())
    };
    let refused = [
        (
            "payload",
            "s-1",
            with(json!({ "name": "a\u{0}b" }), "tester"),
        ),
        (
            "nested key",
            "s-1",
            with(json!({ "labels": { "e\u{0}": "v" } }), "tester"),
        ),
        ("actor", "s-1", with(json!({ "name": "x" }), "ni\u{0}l")),
        (
            "stream id",
            "s-\u{0}",
            with(json!({ "name": "x" }), "tester"),
        ),
    ];
    for (what, stream, event) in refused {
        for via_committer in [true, false] {
            let request = one(tenant, stream, ExpectedVersion::Any, vec![event.clone()]);
            let result = if via_committer {
                committer.append(request).await
            } else {
                append_direct(&pool, &request).await
            };
            match result {
                Err(AppendError::Invalid(message)) => {
                    assert!(message.contains("NUL"), "{what}: {message}")
                }
                other => panic!("{what}: {other:?}"),
            }
        }
    }
    let stored: i64 = pool
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM events WHERE tenant_id = $1",
            &[&tenant],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 0);
    let harmless = with(json!({ "name": "\\u0000" }), "tester");
    assert_eq!(harmless.payload, r#"{"name":"\\u0000"}"#);
    committer
        .append(one(tenant, "s-2", ExpectedVersion::Any, vec![harmless]))
        .await
        .unwrap();
}
