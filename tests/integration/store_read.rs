use std::collections::HashSet;
use std::time::Duration;

use opsledger_store::append::{append_direct, write_batch};
use opsledger_store::read::read_after;
use opsledger_store::{connect, Committer, Cursor, ExpectedVersion};
use opsledger_testkit::fresh_database;
use opsledger_tests::{event, eventually, one};
use uuid::Uuid;

#[tokio::test]
async fn late_commit_is_not_skipped() {
    let db = fresh_database().await;
    let pool = connect(&db.config).unwrap();
    let tenant_a = Uuid::now_v7();
    let tenant_b = Uuid::now_v7();

    // A takes a lower position and holds its transaction open…
    let mut slow = pool.get().await.unwrap();
    let slow_tx = slow.transaction().await.unwrap();
    let slow_request = one(tenant_a, "slow", ExpectedVersion::Any, vec![event(1)]);
    write_batch(&slow_tx, &[&slow_request])
        .await
        .unwrap()
        .pop()
        .unwrap()
        .unwrap();

    // …while B takes a higher one and commits first.
    let fast = append_direct(
        &pool,
        &one(tenant_b, "fast", ExpectedVersion::Any, vec![event(2)]),
    )
    .await
    .unwrap();
    let opsledger_store::AppendOutcome::Committed {
        last_position: fast_position,
        ..
    } = fast
    else {
        panic!()
    };

    let reader = pool.get().await.unwrap();
    let seen = read_after(&reader, Cursor::START, 100).await.unwrap();
    assert!(
        seen.is_empty(),
        "B must not be handed out while A, below it, may still commit: {seen:?}"
    );

    slow_tx.commit().await.unwrap();
    // Other tests' transactions on the shared cluster may hold the horizon
    // back for a moment: the reader waits for them, it never skips.
    let seen = eventually("both events are readable", || async {
        let seen = read_after(&reader, Cursor::START, 100).await.unwrap();
        (seen.len() == 2).then_some(seen)
    })
    .await;
    let streams: Vec<&str> = seen.iter().map(|e| e.stream_id.as_str()).collect();
    assert_eq!(streams, vec!["slow", "fast"]);
    assert!(seen[0].position < fast_position);
}

#[tokio::test]
async fn a_rolled_back_append_leaves_a_hole_that_does_not_stall_readers() {
    let db = fresh_database().await;
    let pool = connect(&db.config).unwrap();
    let tenant = Uuid::now_v7();
    {
        let mut c = pool.get().await.unwrap();
        let tx = c.transaction().await.unwrap();
        let r = one(tenant, "gone", ExpectedVersion::Any, vec![event(1)]);
        write_batch(&tx, &[&r]).await.unwrap();
        tx.rollback().await.unwrap();
    }
    append_direct(
        &pool,
        &one(tenant, "kept", ExpectedVersion::Any, vec![event(2)]),
    )
    .await
    .unwrap();
    let reader = pool.get().await.unwrap();
    let seen = eventually("the kept event is readable", || async {
        let seen = read_after(&reader, Cursor::START, 100).await.unwrap();
        (!seen.is_empty()).then_some(seen)
    })
    .await;
    assert_eq!(
        seen.iter()
            .map(|e| e.stream_id.as_str())
            .collect::<Vec<_>>(),
        vec!["kept"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_sees_every_event_of_concurrent_writers_exactly_once() {
    let db = fresh_database().await;
    let pool = connect(&db.config).unwrap();
    let committer = Committer::start(pool.clone(), 2);
    const WRITERS: i64 = 8;
    const APPENDS: i64 = 60;

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let committer = committer.clone();
            let pool = pool.clone();
            tokio::spawn(async move {
                let tenant = Uuid::now_v7();
                for n in 0..APPENDS {
                    let request = one(
                        tenant,
                        &format!("w{w}"),
                        ExpectedVersion::Exact(n),
                        vec![event(n)],
                    );
                    if n % 3 == 0 {
                        // Some writers hold their transaction open a while after
                        // inserting, so commits land out of position order.
                        let mut c = pool.get().await.unwrap();
                        let tx = c.transaction().await.unwrap();
                        write_batch(&tx, &[&request])
                            .await
                            .unwrap()
                            .pop()
                            .unwrap()
                            .unwrap();
                        tokio::time::sleep(Duration::from_millis(3)).await;
                        tx.commit().await.unwrap();
                    } else {
                        committer.append(request).await.unwrap();
                    }
                }
            })
        })
        .collect();

    let follower = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut cursor = Cursor::START;
            let mut seen = Vec::new();
            while seen.len() < (WRITERS * APPENDS) as usize {
                let client = pool.get().await.unwrap();
                let batch = read_after(&client, cursor, 7).await.unwrap();
                if let Some(last) = batch.last() {
                    cursor = Cursor::after(last);
                }
                seen.extend(
                    batch
                        .into_iter()
                        .map(|e| (e.event_id, e.stream_id, e.stream_version)),
                );
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    let seen = tokio::time::timeout(Duration::from_secs(30), follower)
        .await
        .expect("the follower caught up")
        .unwrap();
    let unique: HashSet<_> = seen.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(unique.len(), seen.len(), "an event was handed out twice");
    assert_eq!(
        seen.len(),
        (WRITERS * APPENDS) as usize,
        "an event was skipped"
    );
    // Within each stream the follower saw versions in order.
    for w in 0..WRITERS {
        let versions: Vec<i64> = seen
            .iter()
            .filter(|(_, s, _)| *s == format!("w{w}"))
            .map(|(_, _, v)| *v)
            .collect();
        assert_eq!(versions, (1..=APPENDS).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn a_stream_can_be_read_as_of_a_past_instant() {
    let db = fresh_database().await;
    let pool = connect(&db.config).unwrap();
    let tenant = Uuid::now_v7();
    append_direct(
        &pool,
        &one(tenant, "s", ExpectedVersion::Any, vec![event(1)]),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    append_direct(
        &pool,
        &one(tenant, "s", ExpectedVersion::Any, vec![event(2)]),
    )
    .await
    .unwrap();
    let client = pool.get().await.unwrap();
    let then = opsledger_store::read::read_stream(&client, tenant, "s", Some(between))
        .await
        .unwrap();
    assert_eq!(then.len(), 1);
    let now = opsledger_store::read::read_stream(&client, tenant, "s", None)
        .await
        .unwrap();
    assert_eq!(now.len(), 2);
}

/// The global order is kept in two partial indexes, the monitoring streams'
/// and the others', each event in one: a reader of every stream gets both
/// kinds merged in order, page by page, and a late commit in either is
/// never skipped.
#[tokio::test]
async fn a_reader_of_every_stream_merges_monitoring_and_other_streams_in_order() {
    let db = fresh_database().await;
    let pool = connect(&db.config).unwrap();
    let tenant = Uuid::now_v7();

    // An alert receipt takes a low position and commits last (another
    // tenant's, so that it holds no strand the others need).
    let mut slow = pool.get().await.unwrap();
    let slow_tx = slow.transaction().await.unwrap();
    let late = one(
        Uuid::now_v7(),
        "alert-late",
        ExpectedVersion::Any,
        vec![event(0)],
    );
    write_batch(&slow_tx, &[&late]).await.unwrap();
    let streams = ["alert-a", "incident-b", "group-c", "change-d", "alert-e"];
    for round in 0..3 {
        for s in streams {
            append_direct(
                &pool,
                &one(tenant, s, ExpectedVersion::Any, vec![event(round)]),
            )
            .await
            .unwrap();
        }
    }
    let reader = pool.get().await.unwrap();
    assert!(
        read_after(&reader, Cursor::START, 100)
            .await
            .unwrap()
            .is_empty(),
        "nothing is handed out above an open transaction"
    );
    slow_tx.commit().await.unwrap();

    let mut expected = vec!["alert-late".to_owned()];
    for _ in 0..3 {
        expected.extend(streams.iter().map(|s| (*s).to_owned()));
    }
    let seen = eventually("every event is below the horizon", || async {
        let (mut cursor, mut seen) = (Cursor::START, Vec::new());
        loop {
            let page = read_after(&reader, cursor, 4).await.unwrap();
            let Some(last) = page.last() else { break };
            cursor = Cursor::after(last);
            seen.extend(page);
        }
        (seen.len() == expected.len()).then_some(seen)
    })
    .await;
    let order: Vec<String> = seen.iter().map(|e| e.stream_id.clone()).collect();
    assert_eq!(order, expected);
    assert!(seen
        .windows(2)
        .all(|w| Cursor::after(&w[0]) < Cursor::after(&w[1])));
}

/// Each read goes through the index (or both) that holds its streams: with
/// sequential scans priced out, a predicate the planner cannot match to an
/// index would show as a scan of the table.
#[tokio::test]
async fn follower_reads_use_the_partial_indexes() {
    let db = fresh_database().await;
    let client = db.superuser().await;
    client
        .batch_execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
        .await
        .unwrap();
    for (prefixes, uses) in [
        (&["incident-"][..], &["events_followed_tx_position"][..]),
        (
            &[""][..],
            &[
                "events_followed_tx_position",
                "events_monitoring_tx_position",
            ][..],
        ),
        (
            &["alert-", "incident-"][..],
            &[
                "events_followed_tx_position",
                "events_monitoring_tx_position",
            ][..],
        ),
    ] {
        let sql = opsledger_store::read::follow_statement(prefixes);
        client.batch_execute("DEALLOCATE ALL").await.unwrap();
        client
            .batch_execute(&format!("PREPARE follow AS {sql}"))
            .await
            .unwrap();
        let plan: Vec<String> = client
            .query(
                "EXPLAIN EXECUTE follow(0, 0, 10, '{incident-%}', 9223372036854775807, 9223372036854775807)",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let plan = plan.join("\n");
        assert!(
            !plan.contains("Seq Scan on events"),
            "{prefixes:?}:\n{plan}"
        );
        for index in uses {
            assert!(
                plan.contains(index),
                "{prefixes:?} should use {index}:\n{plan}"
            );
        }
        if uses.len() == 1 {
            assert!(!plan.contains("events_monitoring_tx_position"), "{plan}");
        }
    }
}
