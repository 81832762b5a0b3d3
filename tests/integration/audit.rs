//! The audit search and the transparency log (SPEC §3.9): leaves, signed
//! checkpoints and proofs, checked here with `tlog_tiles`' verifier and the
//! verifier key the service serves, as an auditor would.

use std::time::Duration;

use opsledger_domain::access::Role;
use opsledger_domain::audit::{hash_from_base64, open_checkpoint};
use opsledger_store::audit;
use opsledger_store::projection;
use opsledger_testkit::{spawn_app_with, TestApp};
use opsledger_tests::eventually;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tlog_tiles::tlog::{check_record, check_tree, record_hash, Hash};

/// A key file's text, as `opsledger keygen` writes it.
pub fn key_file(name: &str) -> String {
    let (private, verifier) = signed_note::generate_key(&mut rand_core::OsRng, name);
    format!("{private}\n{verifier}\n")
}

/// The app with a signing key and a signer every 100 ms.
pub async fn signing_app() -> TestApp {
    spawn_app_with(|c| {
        c.audit_key = Some(key_file("audit.test"));
        c.checkpoint_interval = Duration::from_millis(100);
    })
    .await
}

async fn json_of(app: &TestApp, path: &str, token: &str) -> (StatusCode, Value) {
    let res = app.get(path, token).await;
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Registers a few clients: events of the tenant's directory streams.
async fn some_events(app: &TestApp, n: usize) -> Vec<String> {
    let admin = app.token(&[Role::Admin]);
    let mut ids = vec![];
    for i in 0..n {
        let res = app
            .post(
                "/api/v1/clients",
                &admin,
                &json!({ "name": format!("client {i} {}", uuid::Uuid::now_v7()) }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let v: Value = res.json().await.unwrap();
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    ids
}

/// The tenant's event count, and the latest checkpoint once it covers them all.
async fn checkpoint_covering_all(app: &TestApp, token: &str) -> Value {
    let su = app.db.superuser().await;
    let count: i64 = su
        .query_one(
            "SELECT count(*) FROM events WHERE tenant_id = $1",
            &[&app.tenant],
        )
        .await
        .unwrap()
        .get(0);
    eventually("a checkpoint covers every event", || async {
        let (status, v) = json_of(app, "/api/v1/audit/checkpoint", token).await;
        (status == StatusCode::OK && v["size"].as_i64() == Some(count)).then_some(v)
    })
    .await
}

fn b64(v: &Value) -> Hash {
    hash_from_base64(v.as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn checkpoints_are_signed_and_proofs_check_against_them() {
    let app = signing_app().await;
    let auditor = app.token(&[Role::Auditor]);
    let clients = some_events(&app, 3).await;
    let client_user = app.token_for(
        app.tenant,
        "client-user",
        &[Role::Client],
        Some(clients[0].parse().unwrap()),
    );
    let first = checkpoint_covering_all(&app, &auditor).await;
    // The served key opens the served checkpoint; its origin names the tenant.
    let (status, key) = json_of(&app, "/api/v1/audit/key", &client_user).await;
    assert_eq!(status, StatusCode::OK, "{key}");
    let opened = open_checkpoint(
        first["note"].as_str().unwrap().as_bytes(),
        key["verifier_key"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(opened.origin, format!("audit.test/tenants/{}", app.tenant));
    assert_eq!(opened.origin, key["origin"]);
    assert_eq!(opened.size, first["size"].as_u64().unwrap());
    assert_eq!(opened.root, b64(&first["root"]));
    let res = app
        .get("/api/v1/audit/checkpoint?format=note", &client_user)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), first["note"].as_str().unwrap());

    // An event's inclusion in the checkpointed tree.
    let su = app.db.superuser().await;
    let event: uuid::Uuid = su
        .query_one(
            "SELECT event_id FROM events WHERE stream_id = $1",
            &[&format!("client-{}", clients[1])],
        )
        .await
        .unwrap()
        .get(0);
    let (status, proof) = json_of(
        &app,
        &format!("/api/v1/audit/proof/inclusion?event={event}"),
        &auditor,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{proof}");
    assert_eq!(proof["tree_size"], first["size"]);
    assert_eq!(proof["checkpoint"], first["note"]);
    let leaf = base64_bytes(&proof["leaf"]);
    let hashes: Vec<Hash> = proof["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(b64)
        .collect();
    check_record(
        &hashes,
        opened.size,
        opened.root,
        proof["leaf_index"].as_u64().unwrap(),
        record_hash(&leaf),
    )
    .unwrap();
    // The leaf is the event: its bytes carry the event's id.
    assert!(leaf.windows(16).any(|w| w == event.as_bytes()));
    // The same as a C2SP tlog-proof file.
    let res = app
        .get(
            &format!("/api/v1/audit/proof/inclusion?event={event}&format=tlog-proof"),
            &auditor,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let file = res.text().await.unwrap();
    let (head, note) = file.split_once("\n\n").unwrap();
    let mut lines = head.lines();
    assert_eq!(lines.next(), Some("c2sp.org/tlog-proof@v1"));
    let extra = lines.next().unwrap().strip_prefix("extra ").unwrap();
    assert_eq!(base64_bytes(&json!(extra)), leaf);
    assert_eq!(
        lines.next().unwrap(),
        format!("index {}", proof["leaf_index"])
    );
    let file_hashes: Vec<Hash> = lines.map(|l| b64(&json!(l))).collect();
    assert_eq!(file_hashes, hashes);
    assert_eq!(note, first["note"].as_str().unwrap());

    // More events, a newer checkpoint, and a proof that it extends the first.
    some_events(&app, 2).await;
    let second = checkpoint_covering_all(&app, &auditor).await;
    let (from, to) = (
        first["size"].as_u64().unwrap(),
        second["size"].as_u64().unwrap(),
    );
    assert!(to > from);
    let (status, c) = json_of(
        &app,
        &format!("/api/v1/audit/proof/consistency?from={from}&to={to}"),
        &client_user,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert_eq!(b64(&c["root_from"]), opened.root);
    assert_eq!(b64(&c["root_to"]), b64(&second["root"]));
    let hashes: Vec<Hash> = c["hashes"].as_array().unwrap().iter().map(b64).collect();
    check_tree(&hashes, to, b64(&second["root"]), from, opened.root).unwrap();
    // The older checkpoint is still served by its size.
    let (status, again) = json_of(
        &app,
        &format!("/api/v1/audit/checkpoint?size={from}"),
        &auditor,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["note"], first["note"]);

    // Bad questions are problems, not failures.
    let unknown = uuid::Uuid::now_v7();
    for (path, want) in [
        (
            format!("/api/v1/audit/proof/inclusion?event={unknown}"),
            StatusCode::NOT_FOUND,
        ),
        (
            format!(
                "/api/v1/audit/proof/inclusion?event={event}&size={}",
                to + 100
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/api/v1/audit/proof/inclusion?event={event}&size=0"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/audit/proof/inclusion?event=not-a-uuid".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/api/v1/audit/proof/consistency?from={to}&to={from}"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/audit/proof/consistency?from=0".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/audit/proof/consistency?from=-1".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/audit/checkpoint?size=99999".into(),
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/v1/audit/checkpoint?format=pdf".into(),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let res = app.get(&path, &auditor).await;
        assert_eq!(res.status(), want, "{path}");
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
    }
    // Inclusion proofs show the event itself: auditors and admins only.
    let res = app
        .get(
            &format!("/api/v1/audit/proof/inclusion?event={event}"),
            &client_user,
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

fn base64_bytes(v: &Value) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}

/// The signer proves each new head consistent with the last checkpoint
/// before it signs: a tree rebuilt over an altered history is refused.
#[tokio::test]
async fn the_signer_refuses_a_head_inconsistent_with_the_last_checkpoint() {
    // Signed here only, by hand: the worker waits an hour.
    let app = spawn_app_with(|c| {
        c.audit_key = Some(key_file("audit.test"));
        c.checkpoint_interval = Duration::from_secs(3600);
    })
    .await;
    let key = app.app_state.audit_key.clone().unwrap();
    let pool = &app.app_state.pool;
    some_events(&app, 3).await;
    let log = opsledger_store::audit::AuditLog;
    let signed = eventually("the log has every event and a checkpoint", || async {
        app.app_state.committer.announce();
        if projection::lag(pool, &log).await.unwrap().behind_events > 0 {
            return None;
        }
        let round = audit::sign_due(pool, &key).await.unwrap();
        let client = pool.get().await.unwrap();
        audit::checkpoint(&client, app.tenant, None)
            .await
            .unwrap()
            .filter(|_| round.refused.is_empty())
    })
    .await;
    // A superuser rewrites an old event with the triggers off, and the tree
    // is rebuilt from the altered log.
    let su = app.db.superuser().await;
    su.batch_execute(
        "ALTER TABLE events DISABLE TRIGGER events_no_update_delete; \
         UPDATE events SET payload = '{\"name\":\"forged\"}' WHERE position = \
           (SELECT min(position) FROM events WHERE stream_id LIKE 'client-%'); \
         ALTER TABLE events ENABLE TRIGGER events_no_update_delete;",
    )
    .await
    .unwrap();
    some_events(&app, 1).await;
    projection::rebuild(pool, &log).await.unwrap();
    // The rebuild stops at the horizon; the follower takes it from there.
    eventually("the rebuilt tree has every event", || async {
        app.app_state.committer.announce();
        (projection::lag(pool, &log).await.unwrap().behind_events == 0).then_some(())
    })
    .await;
    let round = audit::sign_due(pool, &key).await.unwrap();
    assert!(round.signed.is_empty(), "{round:?}");
    assert_eq!(round.refused.len(), 1, "{round:?}");
    assert!(round.refused[0].2.contains("not an extension"), "{round:?}");
    let client = pool.get().await.unwrap();
    let latest = audit::checkpoint(&client, app.tenant, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.size, signed.size, "nothing newer was signed");
    let first = audit::refusal(&client, app.tenant).await.unwrap().unwrap();
    // Every later pass refuses again, and the refusal on record is the one
    // that began it (logged then, not every pass).
    let again = audit::sign_due(pool, &key).await.unwrap();
    assert!(
        again.signed.is_empty() && again.refused.len() == 1,
        "{again:?}"
    );
    assert_eq!(
        audit::refusal(&client, app.tenant).await.unwrap().unwrap(),
        first
    );
    // And the checkpoints themselves are append-only.
    let err = client
        .execute("DELETE FROM audit_checkpoints", &[])
        .await
        .unwrap_err();
    assert!(err.as_db_error().is_some(), "{err}");
}

#[tokio::test]
async fn the_audit_search_filters_pages_and_is_for_auditors() {
    let app = signing_app().await;
    let auditor = app.token(&[Role::Auditor]);
    let clients = some_events(&app, 5).await;
    // Everything of the tenant, newest first, two at a time.
    let mut seen = vec![];
    let mut path = "/api/v1/audit?type=ClientRegistered&limit=2".to_owned();
    loop {
        let (status, page) = json_of(&app, &path, &auditor).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for e in page["items"].as_array().unwrap() {
            assert_eq!(e["event_type"], "ClientRegistered");
            seen.push(e["position"].as_i64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/audit?type=ClientRegistered&limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seen:?}"
    );
    // Oldest first, by entity, actor and role.
    let (_, page) = json_of(
        &app,
        &format!(
            "/api/v1/audit?order=oldest&entity={}&actor=tester&role=admin&work_class=operations",
            clients[2]
        ),
        &auditor,
    )
    .await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["stream_id"], format!("client-{}", clients[2]));
    let (_, page) = json_of(&app, "/api/v1/audit?actor=somebody-else", &auditor).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 0);
    let (_, page) = json_of(
        &app,
        "/api/v1/audit?recorded_from=2000-01-01T00:00:00Z&recorded_to=2001-01-01T00:00:00Z",
        &auditor,
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 0);
    for bad in [
        "/api/v1/audit?cursor=garbage",
        "/api/v1/audit?order=sideways",
        "/api/v1/audit?role=emperor",
        "/api/v1/audit?work_class=leisure",
        "/api/v1/audit?limit=0",
        "/api/v1/audit?recorded_from=2001-01-01T00:00:00Z&recorded_to=2000-01-01T00:00:00Z",
        "/api/v1/audit?unknown=1",
    ] {
        let res = app.get(bad, &auditor).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    let client_user = app.token_for(
        app.tenant,
        "client-user",
        &[Role::Client],
        Some(clients[0].parse().unwrap()),
    );
    for (role, token) in [
        ("client", client_user),
        ("operator", app.token(&[Role::Operator])),
        ("integration", app.token(&[Role::Integration])),
        ("maintainer", app.token(&[Role::Maintainer])),
    ] {
        let res = app.get("/api/v1/audit", &token).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{role}");
    }
    let res = app.get("/api/v1/audit", &app.token(&[Role::Admin])).await;
    assert_eq!(res.status(), StatusCode::OK);
    // Another tenant's auditor sees none of it.
    let other = app.register_tenant("Other").await;
    let stranger = app.token_for(other, "s", &[Role::Auditor], None);
    let (_, page) = json_of(&app, "/api/v1/audit", &stranger).await;
    let ours = app.tenant.to_string();
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["tenant_id"] != ours.as_str()),
        "{page}"
    );
}

/// Without a key the log still grows, and the key and checkpoint answer 404.
#[tokio::test]
async fn without_a_key_nothing_is_signed_and_the_routes_say_why() {
    let app = opsledger_testkit::spawn_app().await;
    let auditor = app.token(&[Role::Auditor]);
    for path in ["/api/v1/audit/key", "/api/v1/audit/checkpoint"] {
        let res = app.get(path, &auditor).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        let v: Value = res.json().await.unwrap();
        assert!(
            v["detail"]
                .as_str()
                .unwrap()
                .contains("OPSLEDGER_AUDIT_KEY_FILE"),
            "{v}"
        );
    }
}

/// A client's incident mail carries the tenant's latest signed checkpoint,
/// which opens with the served key and is the one kept for its size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_mail_carries_the_latest_signed_checkpoint() {
    use crate::api_directory::{register_client, register_service};
    let sink = opsledger_testkit::SmtpSink::start().await;
    let config = crate::notifications::smtp(&sink);
    let app = spawn_app_with(|c| {
        c.smtp = Some(config);
        c.timer_interval = Duration::from_millis(100);
        c.audit_key = Some(key_file("audit.test"));
        c.checkpoint_interval = Duration::from_millis(100);
    })
    .await;
    let admin = app.token(&[Role::Admin]);
    let client = register_client(&app, "Evidence Ltd").await;
    let service = register_service(&app, client["id"].as_str().unwrap(), "shop").await;
    let res = app
        .post(
            "/api/v1/subscriptions",
            &admin,
            &json!({
                "service_id": service["id"], "name": "Ann", "email": "ann@example.com", "locale": "en",
                "kinds": ["incident_opened"], "min_severity": "info"
            }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    checkpoint_covering_all(&app, &admin).await;
    let res = app
        .post(
            "/api/v1/incidents",
            &app.token(&[Role::Operator]),
            &json!({ "title": "checkout down", "service_id": service["id"], "severity": "error" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let mail = sink.wait_for(1).await.remove(0);
    let body = mail.body();
    assert!(body.contains("Evidence of the record"), "{body}");
    let note = &body[body
        .find("audit.test/tenants/")
        .expect("the checkpoint's origin")..];
    let (_, key) = json_of(&app, "/api/v1/audit/key", &admin).await;
    // As a client keeps it: the mail's line ends undone, once at the end.
    let note = format!("{}\n", note.replace("\r\n", "\n").trim_end());
    let held = open_checkpoint(note.as_bytes(), key["verifier_key"].as_str().unwrap())
        .expect("the mailed checkpoint opens with the served key");
    let (status, kept) = json_of(
        &app,
        &format!("/api/v1/audit/checkpoint?size={}", held.size),
        &admin,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(b64(&kept["root"]), held.root);
    assert!(body.contains(&format!(
        "/api/v1/audit/proof/consistency?from={}",
        held.size
    )));
}
