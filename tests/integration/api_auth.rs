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

/// Production keys (SPEC §8): tokens signed with keys the test generates
/// (`openssl genpkey`), verified with the public key or a JWKS file.
mod keys {
    use std::io::Write;
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use opsledger_api::auth::{Claims, Keys};
    use opsledger_testkit::{spawn_app_with, TestApp};
    use reqwest::StatusCode;
    use serde_json::{json, Value};

    use super::b64;

    /// A key pair made by the `openssl` command line: key generation in
    /// Rust would need an RSA crate the workspace does not use directly,
    /// and an unoptimised build takes many seconds for a 2048-bit key.
    struct Pair {
        algorithm: Algorithm,
        private_pem: Vec<u8>,
        public_pem: Vec<u8>,
    }

    fn openssl(args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
        let mut child = Command::new("openssl")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the openssl command line is installed");
        if let Some(input) = input {
            child.stdin.take().unwrap().write_all(input).unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "openssl {args:?} failed");
        out.stdout
    }

    fn pair(algorithm: Algorithm) -> Pair {
        let args: &[&str] = match algorithm {
            Algorithm::RS256 => &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
            Algorithm::ES256 => &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ],
            Algorithm::EdDSA => &["genpkey", "-algorithm", "ED25519"],
            other => panic!("no key for {other:?}"),
        };
        let private_pem = openssl(args, None);
        let public_pem = openssl(&["pkey", "-pubout"], Some(&private_pem));
        Pair {
            algorithm,
            private_pem,
            public_pem,
        }
    }

    impl Pair {
        fn encoding(&self) -> EncodingKey {
            match self.algorithm {
                Algorithm::RS256 => EncodingKey::from_rsa_pem(&self.private_pem),
                Algorithm::ES256 => EncodingKey::from_ec_pem(&self.private_pem),
                _ => EncodingKey::from_ed_pem(&self.private_pem),
            }
            .unwrap()
        }

        fn sign(&self, kid: Option<&str>, claims: &Claims) -> String {
            let mut header = Header::new(self.algorithm);
            header.kid = kid.map(str::to_owned);
            jsonwebtoken::encode(&header, claims, &self.encoding()).unwrap()
        }

        fn jwk(&self, kid: &str) -> Jwk {
            let mut jwk = Jwk::from_encoding_key(&self.encoding(), self.algorithm).unwrap();
            jwk.common.key_id = Some(kid.to_owned());
            jwk
        }
    }

    fn temp_file(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("opsledger-keys-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn claims(app: &TestApp, f: impl Fn(&mut Claims)) -> Claims {
        let now = chrono::Utc::now().timestamp() as u64;
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
    }

    /// An HS256 token whose HMAC key is `secret`: the classic confusion,
    /// with the public key's PEM text as the secret.
    fn hs256(secret: &[u8], kid: Option<&str>, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    async fn status(app: &TestApp, token: &str) -> (StatusCode, String) {
        let res = app.get("/api/v1/clients", token).await;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        (status, body["detail"].as_str().unwrap_or("").to_owned())
    }

    async fn assert_401(app: &TestApp, name: &str, token: &str, reason: &str) {
        let (status, detail) = status(app, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {detail}");
        assert!(detail.contains(reason), "{name}: {detail}");
    }

    async fn public_key_tokens_verify_and_others_get_401(algorithm: Algorithm) {
        let key = pair(algorithm);
        let keys = Keys::from_pem(&key.public_pem, None).expect("the public key loads");
        let app = spawn_app_with(|c| c.jwt_keys = Some(keys)).await;
        let good = key.sign(None, &claims(&app, |_| {}));
        assert_eq!(status(&app, &good).await.0, StatusCode::OK);

        let other_kind = pair(if algorithm == Algorithm::ES256 {
            Algorithm::RS256
        } else {
            Algorithm::ES256
        });
        let same_kind = pair(algorithm);
        let payload = b64(&serde_json::to_value(claims(&app, |_| {})).unwrap());
        let now = chrono::Utc::now().timestamp() as u64;
        let cases = [
            (
                "HS256 over the public key's PEM",
                hs256(&key.public_pem, None, &claims(&app, |_| {})),
                "algorithm",
            ),
            (
                "HS256 with the development secret",
                app.token(&[opsledger_domain::access::Role::Admin]),
                "algorithm",
            ),
            (
                "alg none",
                format!("{}.{payload}.", b64(&json!({"alg": "none", "typ": "JWT"}))),
                "",
            ),
            (
                "another algorithm's key",
                other_kind.sign(None, &claims(&app, |_| {})),
                "algorithm",
            ),
            (
                "another key of the same kind",
                same_kind.sign(None, &claims(&app, |_| {})),
                "signature",
            ),
            (
                "expired",
                key.sign(
                    None,
                    &claims(&app, |c| {
                        c.exp = now - 3600;
                        c.nbf = now - 7200
                    }),
                ),
                "expired",
            ),
            (
                "not yet valid",
                key.sign(
                    None,
                    &claims(&app, |c| {
                        c.nbf = now + 3600;
                        c.exp = now + 7200
                    }),
                ),
                "not valid yet",
            ),
            (
                "wrong issuer",
                key.sign(None, &claims(&app, |c| c.iss = "evil".into())),
                "issuer",
            ),
            (
                "wrong audience",
                key.sign(None, &claims(&app, |c| c.aud = "other".into())),
                "audience",
            ),
        ];
        for (name, token, reason) in cases {
            assert_401(&app, &format!("{algorithm:?}: {name}"), &token, reason).await;
        }
    }

    #[tokio::test]
    async fn an_rs256_public_key_verifies_its_tokens_and_refuses_confusion() {
        public_key_tokens_verify_and_others_get_401(Algorithm::RS256).await;
    }

    #[tokio::test]
    async fn an_es256_public_key_verifies_its_tokens_and_refuses_confusion() {
        public_key_tokens_verify_and_others_get_401(Algorithm::ES256).await;
    }

    #[tokio::test]
    async fn an_eddsa_public_key_verifies_its_tokens_and_refuses_confusion() {
        public_key_tokens_verify_and_others_get_401(Algorithm::EdDSA).await;
    }

    #[tokio::test]
    async fn a_public_key_refuses_an_algorithm_named_otherwise() {
        let key = pair(Algorithm::RS256);
        let refused = Keys::from_pem(&key.public_pem, Some(Algorithm::ES256)).unwrap_err();
        assert!(refused.contains("RS256"), "{refused}");
        let private = Keys::from_pem(&key.private_pem, None).unwrap_err();
        assert!(private.contains("private key"), "{private}");
    }

    fn write_jwks(path: &PathBuf, keys: &[Jwk]) {
        let set = JwkSet {
            keys: keys.to_vec(),
        };
        // Written beside and renamed, as a secret manager or a deploy does,
        // so the service never reads half a file.
        let partial = path.with_extension("partial");
        std::fs::write(&partial, serde_json::to_vec(&set).unwrap()).unwrap();
        std::fs::rename(&partial, path).unwrap();
    }

    #[tokio::test]
    async fn a_jwks_file_selects_by_kid_and_rotates_without_a_restart() {
        let (rsa, ec, ed) = (
            pair(Algorithm::RS256),
            pair(Algorithm::ES256),
            pair(Algorithm::EdDSA),
        );
        let path = temp_file("jwks.json");
        write_jwks(&path, &[rsa.jwk("rsa-1"), ec.jwk("ec-1")]);
        let check = Duration::from_millis(100);
        let (keys, left_out) = Keys::from_jwks_file(&path, check).expect("the JWKS loads");
        assert!(left_out.is_empty(), "{left_out:?}");
        let app = spawn_app_with(|c| c.jwt_keys = Some(keys)).await;
        let ok = claims(&app, |_| {});

        let by_rsa = rsa.sign(Some("rsa-1"), &ok);
        assert_eq!(status(&app, &by_rsa).await.0, StatusCode::OK);
        let by_ec = ec.sign(Some("ec-1"), &ok);
        assert_eq!(status(&app, &by_ec).await.0, StatusCode::OK);

        let cases = [
            // An ES256 token naming the RS256 key: the key's alg decides.
            (
                "ES256 under the RSA key's kid",
                ec.sign(Some("rsa-1"), &ok),
                "algorithm",
            ),
            (
                "RS256 under the EC key's kid",
                rsa.sign(Some("ec-1"), &ok),
                "algorithm",
            ),
            (
                "HS256 over the RSA key's PEM",
                hs256(&rsa.public_pem, Some("rsa-1"), &ok),
                "algorithm",
            ),
            ("unknown kid", ed.sign(Some("ed-1"), &ok), "kid"),
            ("no kid", rsa.sign(None, &ok), "kid"),
            (
                "alg none",
                format!(
                    "{}.{}.",
                    b64(&json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"})),
                    b64(&serde_json::to_value(&ok).unwrap())
                ),
                "",
            ),
        ];
        for (name, token, reason) in &cases {
            assert_401(&app, name, token, reason).await;
        }

        // Rotation: the Ed25519 key arrives, the RSA key leaves.
        write_jwks(&path, &[ec.jwk("ec-1"), ed.jwk("ed-1")]);
        tokio::time::sleep(check * 3).await;
        let by_ed = ed.sign(Some("ed-1"), &ok);
        assert_eq!(
            status(&app, &by_ed).await.0,
            StatusCode::OK,
            "the added key"
        );
        assert_eq!(status(&app, &by_ec).await.0, StatusCode::OK, "the kept key");
        // Accepted (and remembered) before: refused now all the same.
        assert_401(&app, "the removed key", &by_rsa, "kid").await;

        // A broken file is logged and the keys stay as they were.
        std::fs::write(&path, b"{\"keys\": [").unwrap();
        tokio::time::sleep(check * 3).await;
        assert_eq!(
            status(&app, &by_ed).await.0,
            StatusCode::OK,
            "kept on a bad file"
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
