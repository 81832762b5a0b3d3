//! S1: every bad token is a 401 problem; nothing about it reaches a handler.

use opsledger_api::auth::{AuthConfig, Claims};
use opsledger_domain::access::Role;
use opsledger_testkit::spawn_app;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn b64(v: &Value) -> String {
    use std::fmt::Write;
    // base64url without padding, written out to avoid a dependency for one test.
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = serde_json::to_vec(v).unwrap();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            let _ = out.write_char(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn bad_tokens_get_401_with_a_reason() {
    let app = spawn_app().await;
    let now = chrono::Utc::now().timestamp() as u64;
    let claims = |f: &dyn Fn(&mut Claims)| {
        let mut c = Claims {
            sub: "u".into(),
            tenant: app.tenant,
            roles: vec!["admin".into()],
            client_id: None,
            iss: "opsledger".into(),
            aud: "opsledger".into(),
            exp: now + 600,
            nbf: now,
            iat: now,
        };
        f(&mut c);
        c
    };
    let good = app.auth.sign(&claims(&|_| {}));
    let wrong_key = AuthConfig::hs256(b"another secret entirely", "opsledger", "opsledger");
    let payload = b64(&serde_json::to_value(claims(&|_| {})).unwrap());
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no header", None, "Authorization"),
        ("not bearer", Some(format!("Basic {good}")), "Bearer"),
        ("garbage", Some("Bearer not.a.token".into()), "malformed"),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                app.auth.sign(&claims(&|c| {
                    c.exp = now - 3600;
                    c.nbf = now - 7200
                }))
            )),
            "expired",
        ),
        (
            "not yet valid",
            Some(format!(
                "Bearer {}",
                app.auth.sign(&claims(&|c| {
                    c.nbf = now + 3600;
                    c.exp = now + 7200
                }))
            )),
            "not valid yet",
        ),
        (
            "wrong issuer",
            Some(format!(
                "Bearer {}",
                app.auth.sign(&claims(&|c| c.iss = "evil".into()))
            )),
            "issuer",
        ),
        (
            "wrong audience",
            Some(format!(
                "Bearer {}",
                app.auth.sign(&claims(&|c| c.aud = "other".into()))
            )),
            "audience",
        ),
        (
            "wrong key",
            Some(format!("Bearer {}", wrong_key.sign(&claims(&|_| {})))),
            "signature",
        ),
        (
            "alg none",
            Some(format!(
                "Bearer {}.{payload}.",
                b64(&json!({"alg": "none", "typ": "JWT"}))
            )),
            "",
        ),
        // Algorithm confusion: an RS256/ES256 header over an HMAC made with what an
        // attacker might guess is the key; only HS256 is accepted.
        (
            "alg confusion RS256",
            Some(format!(
                "Bearer {}.{payload}.{}",
                b64(&json!({"alg": "RS256", "typ": "JWT"})),
                good.rsplit('.').next().unwrap()
            )),
            "",
        ),
        (
            "alg confusion ES256",
            Some(format!(
                "Bearer {}.{payload}.{}",
                b64(&json!({"alg": "ES256", "typ": "JWT"})),
                good.rsplit('.').next().unwrap()
            )),
            "",
        ),
        (
            "unknown role",
            Some(format!(
                "Bearer {}",
                app.auth.sign(&claims(&|c| c.roles = vec!["root".into()]))
            )),
            "role",
        ),
        (
            "client without client_id",
            Some(format!(
                "Bearer {}",
                app.auth.sign(&claims(&|c| c.roles = vec!["client".into()]))
            )),
            "client_id",
        ),
        (
            "huge",
            Some(format!("Bearer {}", "a".repeat(20_000))),
            "too long",
        ),
    ];
    for (name, header, reason) in cases {
        let mut req = app.http.get(app.url("/api/v1/clients"));
        if let Some(h) = header {
            req = req.header("authorization", h);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{name}"
        );
        let problem: Value = res.json().await.unwrap();
        assert!(
            problem["detail"].as_str().unwrap().contains(reason),
            "{name}: {problem}"
        );
    }
    let ok = app
        .http
        .get(app.url("/api/v1/clients"))
        .bearer_auth(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let _ = Role::Admin;
}
