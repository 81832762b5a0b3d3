//! Bearer JWTs (SPEC §8): HS256 with a configured secret for development;
//! in production an RS256, ES256 or EdDSA public key, or a JWKS file whose
//! key the token's `kid` selects ([`Keys`]). Issuer, audience, expiry and
//! not-before are always checked, and a token is verified only with the one
//! algorithm of the key that verifies it (the secret's HS256, the public
//! key's, the JWKS key's own `alg`/`kty`), so `alg: none` and algorithm
//! confusion (an HMAC made with a public key's bytes, an RS256 token where
//! the key is ES256) are refused by construction. Configured keys replace
//! the secret for verification; the secret still mints development tokens.
//!
//! Keys are checked when the configuration is read, so a bad one stops the
//! service at start. A JWKS file is read again at most every few seconds on
//! a request and taken when its bytes changed; each reload starts a new
//! generation of the key set, and verified tokens are remembered per
//! generation, so a removed key's tokens are refused at once.

use std::collections::HashMap;
use std::future::{ready, Ready};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use opsledger_domain::access::{Actor, Role};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::problem::ApiError;
use crate::AppState;

/// Tokens longer than this are refused unread: a real token is under 1 KiB.
const TOKEN_LEN_MAX_BYTES: usize = 8 * 1024;
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_S: u64 = 30;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub tenant: Uuid,
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Uuid>,
    pub iss: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
}

/// Verified tokens remembered at most; then the memory starts afresh.
const VERIFIED_TOKENS_MAX: usize = 10_000;

#[derive(Clone)]
pub struct AuthConfig {
    pub issuer: String,
    pub audience: String,
    /// What verifies tokens: the secret (development) or configured keys.
    verifying: Verifying,
    /// The secret, for minting development tokens (`mint`, `sign`).
    encoding: EncodingKey,
    /// Issuer, audience, expiry and not-before; its algorithm is replaced
    /// by the verifying key's.
    validation: Validation,
    /// Tokens whose signature and claims were verified, by their exact text.
    /// A monitoring integration presents one token thousands of times a
    /// minute; a hit skips the base64, JSON and HMAC work but is still held
    /// to the token's expiry and not-before at every use. The text includes
    /// the signature, so no token that failed verification is ever a hit.
    verified: Arc<RwLock<HashMap<String, Verified>>>,
}

#[derive(Debug, Clone)]
struct Verified {
    actor: Actor,
    nbf: u64,
    exp: u64,
    /// The key set's generation that verified it: after a reload a token is
    /// verified afresh, so one whose key was removed is refused at once.
    generation: u64,
}

#[derive(Clone)]
enum Verifying {
    Secret(DecodingKey),
    Keys(Keys),
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl AuthConfig {
    pub fn hs256(secret: &[u8], issuer: &str, audience: &str) -> AuthConfig {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_S;
        AuthConfig {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            verifying: Verifying::Secret(DecodingKey::from_secret(secret)),
            encoding: EncodingKey::from_secret(secret),
            validation,
            verified: Arc::default(),
        }
    }

    /// Verifies with `keys` instead of the secret, which from now on only
    /// mints (development tokens this configuration refuses).
    pub fn verifying_with(mut self, keys: Keys) -> AuthConfig {
        self.verifying = Verifying::Keys(keys);
        self.verified = Arc::default();
        self
    }

    /// Mints a development token (the `token` command, and tests).
    pub fn mint(
        &self,
        tenant: Uuid,
        subject: &str,
        roles: &[Role],
        client_id: Option<Uuid>,
        ttl_s: u64,
    ) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: subject.to_owned(),
            tenant,
            roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
            client_id,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp: now + ttl_s,
            nbf: now,
            iat: now,
        };
        self.sign(&claims)
    }

    pub fn sign(&self, claims: &Claims) -> String {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<Actor, ApiError> {
        self.verify_until(token).map(|(actor, _)| actor)
    }

    /// The token's caller and when it expires (Unix seconds): a console
    /// session lasts as long as the token it was signed in with.
    pub fn verify_until(&self, token: &str) -> Result<(Actor, u64), ApiError> {
        if token.len() > TOKEN_LEN_MAX_BYTES {
            return Err(ApiError::Unauthorized(
                "the bearer token is too long".into(),
            ));
        }
        // First, so that a hit below is held to the key set as it is now.
        let generation = match &self.verifying {
            Verifying::Secret(_) => 0,
            Verifying::Keys(keys) => keys.refresh(&self.verified),
        };
        let now = jsonwebtoken::get_current_timestamp();
        // The same tests as the library's: expired once `exp` is more than
        // the leeway behind, immature while `nbf` is more than it ahead.
        let current = |v: &Verified| {
            v.generation == generation
                && v.exp >= now.saturating_sub(LEEWAY_S)
                && v.nbf <= now + LEEWAY_S
        };
        if let Some(hit) = self.verified.read().ok().and_then(|m| {
            m.get(token)
                .filter(|v| current(v))
                .map(|v| (v.actor.clone(), v.exp))
        }) {
            return Ok(hit);
        }
        let verified = self.verify_signed(token)?;
        let found = (verified.actor.clone(), verified.exp);
        if let Ok(mut m) = self.verified.write() {
            if m.len() >= VERIFIED_TOKENS_MAX {
                m.clear();
            }
            m.insert(token.to_owned(), verified);
        }
        Ok(found)
    }

    fn verify_signed(&self, token: &str) -> Result<Verified, ApiError> {
        let (generation, data) = match &self.verifying {
            Verifying::Secret(key) => (0, decode::<Claims>(token, key, &self.validation)),
            Verifying::Keys(keys) => {
                let (generation, key) = keys.select(token)?;
                let mut validation = self.validation.clone();
                validation.algorithms = vec![key.algorithm];
                (
                    generation,
                    decode::<Claims>(token, &key.decoding, &validation),
                )
            }
        };
        let data = data.map_err(|e| {
            ApiError::Unauthorized(match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired".into(),
                ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
                ErrorKind::InvalidIssuer => "the token's issuer is not accepted".into(),
                ErrorKind::InvalidAudience => "the token's audience is not accepted".into(),
                ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
                ErrorKind::InvalidAlgorithm => "the token's algorithm is not accepted".into(),
                ErrorKind::MissingRequiredClaim(c) => format!("the token lacks the {c} claim"),
                _ => "the bearer token is malformed".into(),
            })
        })?;
        let claims = data.claims;
        let mut roles = Vec::with_capacity(claims.roles.len());
        for r in &claims.roles {
            roles.push(
                Role::parse(r).ok_or_else(|| {
                    ApiError::Unauthorized(format!("unknown role {r:?} in token"))
                })?,
            );
        }
        // The subject is kept beside every event this caller records; a NUL
        // there could be stored by no read model (`text::json_holds_nul`).
        if claims.sub.is_empty() || claims.sub.contains('\0') {
            return Err(ApiError::Unauthorized(
                "the token's subject must be non-empty text without a NUL character".into(),
            ));
        }
        if roles.contains(&Role::Client) && claims.client_id.is_none() {
            return Err(ApiError::Unauthorized(
                "a client token must name its client_id".into(),
            ));
        }
        Ok(Verified {
            actor: Actor {
                tenant_id: claims.tenant,
                subject: claims.sub,
                roles,
                client_id: claims.client_id,
            },
            nbf: claims.nbf,
            exp: claims.exp,
            generation,
        })
    }
}

/// The algorithms a configured public key may have (SPEC §8).
pub const KEY_ALGORITHMS: &str = "RS256, ES256, EdDSA";

/// How often, at most, the JWKS file is read again to see whether it
/// changed: a rotated key is accepted within this long, a removed one
/// refused; reading a few KiB this often costs nothing.
pub const JWKS_CHECK_INTERVAL_DEFAULT_MS: u64 = 2_000;

/// Smaller RSA moduli are refused when the keys load (NIST SP 800-131A).
const RSA_MODULUS_MIN_BYTES: usize = 2048 / 8;

/// An algorithm a public key may be configured with, by its JWA name.
pub fn key_algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "RS256" => Some(Algorithm::RS256),
        "ES256" => Some(Algorithm::ES256),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

/// A public key and the one algorithm tokens it verifies must name.
struct Key {
    decoding: DecodingKey,
    algorithm: Algorithm,
}

/// Public keys that verify tokens instead of the development secret: one
/// PEM key, or a JWKS file whose keys the token's `kid` selects and which is
/// read again when it changes (at most every check interval), so keys
/// rotate without a restart.
#[derive(Clone)]
pub struct Keys(Arc<Source>);

enum Source {
    Single(Arc<Key>),
    Jwks(Jwks),
}

struct Jwks {
    path: PathBuf,
    check_interval: Duration,
    started: Instant,
    /// Milliseconds after `started` when the file is next read; whoever
    /// moves it reads the file, everyone else goes on with the keys held.
    next_check_ms: AtomicU64,
    current: RwLock<KeySet>,
}

struct KeySet {
    /// The file's bytes these keys were read from.
    text: Vec<u8>,
    keys: KeysByKid,
    /// Starts at 1 and grows at each reload that changed the keys.
    generation: u64,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Keys {
    /// A PEM public key (`-----BEGIN PUBLIC KEY-----`, or PKCS#1 `RSA
    /// PUBLIC KEY`); its algorithm is its kind's unless `named`, which must
    /// then match it. The error says what is wrong, not where it came from.
    pub fn from_pem(pem: &[u8], named: Option<Algorithm>) -> Result<Keys, String> {
        let text = std::str::from_utf8(pem).map_err(|_| "is not PEM text".to_owned())?;
        if text.contains("PRIVATE KEY") {
            return Err(
                "holds a private key; give its public key (`openssl pkey -pubout`)".to_owned(),
            );
        }
        let (algorithm, decoding) = DecodingKey::from_rsa_pem(pem)
            .map(|k| (Algorithm::RS256, k))
            .or_else(|_| DecodingKey::from_ec_pem(pem).map(|k| (Algorithm::ES256, k)))
            .or_else(|_| DecodingKey::from_ed_pem(pem).map(|k| (Algorithm::EdDSA, k)))
            .map_err(|_| "is not an RSA, EC (P-256) or Ed25519 public key in PEM".to_owned())?;
        if let Some(named) = named.filter(|n| *n != algorithm) {
            return Err(format!("holds an {algorithm:?} key, not an {named:?} one"));
        }
        let key = checked(decoding, algorithm)?;
        Ok(Keys(Arc::new(Source::Single(Arc::new(key)))))
    }

    /// A JWKS file, read now and then again when it changed; also what was
    /// left out of it (encryption keys, other algorithms, keys without a
    /// `kid`), for the log.
    pub fn from_jwks_file(
        path: &Path,
        check_interval: Duration,
    ) -> Result<(Keys, Vec<String>), String> {
        let text = std::fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
        let (keys, left_out) = parse_jwks(&text)?;
        let jwks = Jwks {
            path: path.to_owned(),
            check_interval,
            started: Instant::now(),
            next_check_ms: AtomicU64::new(check_interval.as_millis() as u64),
            current: RwLock::new(KeySet {
                text,
                keys,
                generation: 1,
            }),
        };
        Ok((Keys(Arc::new(Source::Jwks(jwks))), left_out))
    }

    /// What verifies tokens, for the log at start.
    pub fn describe(&self) -> String {
        match &*self.0 {
            Source::Single(key) => format!("an {:?} public key", key.algorithm),
            Source::Jwks(jwks) => {
                let set = jwks.current.read().unwrap_or_else(|e| e.into_inner());
                let mut kids: Vec<&str> = set.keys.keys().map(String::as_str).collect();
                kids.sort_unstable();
                format!(
                    "the JWKS file {} (kid {})",
                    jwks.path.display(),
                    kids.join(", ")
                )
            }
        }
    }

    /// Reads the JWKS file again when its check is due; the key set's
    /// generation now.
    fn refresh(&self, verified: &RwLock<HashMap<String, Verified>>) -> u64 {
        let Source::Jwks(jwks) = &*self.0 else {
            return 0;
        };
        let now_ms = jwks.started.elapsed().as_millis() as u64;
        let next_ms = jwks.next_check_ms.load(Ordering::Relaxed);
        let step_ms = jwks.check_interval.as_millis() as u64;
        if now_ms >= next_ms
            && jwks
                .next_check_ms
                .compare_exchange(
                    next_ms,
                    now_ms + step_ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            jwks.reload(verified);
        }
        jwks.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .generation
    }

    /// The key that verifies `token`, and the generation it belongs to.
    fn select(&self, token: &str) -> Result<(u64, Arc<Key>), ApiError> {
        let jwks = match &*self.0 {
            Source::Single(key) => return Ok((0, key.clone())),
            Source::Jwks(jwks) => jwks,
        };
        let header = decode_header(token)
            .map_err(|_| ApiError::Unauthorized("the bearer token is malformed".into()))?;
        let kid = header
            .kid
            .ok_or_else(|| ApiError::Unauthorized("the token names no key (kid header)".into()))?;
        let set = jwks.current.read().unwrap_or_else(|e| e.into_inner());
        let key =
            set.keys.get(&kid).cloned().ok_or_else(|| {
                ApiError::Unauthorized("the token's key (kid) is not known".into())
            })?;
        Ok((set.generation, key))
    }
}

impl Jwks {
    /// Takes the file's keys if its bytes changed and it still parses; a
    /// file that cannot be read or parsed now leaves the keys as they were
    /// (the service is running; refusing every token would be worse) and is
    /// logged.
    fn reload(&self, verified: &RwLock<HashMap<String, Verified>>) {
        let path = self.path.display();
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(e) => {
                tracing::error!(%path, error = %e, "cannot read the JWKS file; keeping its keys");
                return;
            }
        };
        if self.current.read().is_ok_and(|set| set.text == text) {
            return;
        }
        match parse_jwks(&text) {
            Ok((keys, left_out)) => {
                for note in left_out {
                    tracing::warn!(%path, "JWKS: {note}");
                }
                let mut set = self.current.write().unwrap_or_else(|e| e.into_inner());
                set.generation += 1;
                set.text = text;
                set.keys = keys;
                tracing::info!(%path, keys = set.keys.len(), generation = set.generation, "reloaded the JWKS file");
                drop(set);
                // Entries of older generations are never hits; this frees them.
                if let Ok(mut m) = verified.write() {
                    m.clear();
                }
            }
            Err(e) => {
                tracing::error!(%path, error = %e, "the JWKS file changed but {e}; keeping its keys");
            }
        }
    }
}

type KeysByKid = HashMap<String, Arc<Key>>;

/// A JWKS document's signing keys by `kid`, and notes on what was left out.
fn parse_jwks(text: &[u8]) -> Result<(KeysByKid, Vec<String>), String> {
    let set: JwkSet =
        serde_json::from_slice(text).map_err(|e| format!("is not a JWKS document: {e}"))?;
    let mut keys = HashMap::new();
    let mut left_out = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let Some(kid) = jwk.common.key_id.clone() else {
            left_out.push(format!("key {i} has no kid and is left out"));
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            left_out.push(format!("key {kid:?} is for encryption and is left out"));
            continue;
        }
        let alg = jwk.common.key_algorithm;
        let algorithm = match (&jwk.algorithm, alg) {
            // A secret has no place in a file of public keys, and would let
            // HS256 tokens in: the whole file is refused.
            (AlgorithmParameters::OctetKey(_), _) => {
                return Err(format!(
                    "holds a symmetric (kty oct) key {kid:?}; it must hold public keys only"
                ))
            }
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(p), None | Some(KeyAlgorithm::ES256))
                if p.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            (AlgorithmParameters::OctetKeyPair(p), None | Some(KeyAlgorithm::EdDSA))
                if p.curve == EllipticCurve::Ed25519 =>
            {
                Algorithm::EdDSA
            }
            _ => {
                left_out.push(format!(
                    "key {kid:?} is not an {KEY_ALGORITHMS} key and is left out"
                ));
                continue;
            }
        };
        let decoding =
            DecodingKey::from_jwk(jwk).map_err(|e| format!("key {kid:?} is malformed: {e}"))?;
        let key = checked(decoding, algorithm).map_err(|e| format!("key {kid:?} {e}"))?;
        if keys.insert(kid.clone(), Arc::new(key)).is_some() {
            return Err(format!("holds two keys with kid {kid:?}"));
        }
    }
    if keys.is_empty() {
        return Err(format!("holds no {KEY_ALGORITHMS} signing key with a kid"));
    }
    Ok((keys, left_out))
}

/// `decoding` as a key for `algorithm`, refused now if it could never
/// verify a token (the library would find out only at the first token, and
/// reads an Ed25519 key's first 32 bytes without checking there are 32).
fn checked(decoding: DecodingKey, algorithm: Algorithm) -> Result<Key, String> {
    let malformed =
        |e: jsonwebtoken::errors::Error| format!("is not a usable {algorithm:?} key: {e}");
    let decoding = match algorithm {
        Algorithm::RS256 => {
            // Parses a DER key (the library would only at verification) into
            // its modulus and exponent.
            let jwk =
                jsonwebtoken::jwk::Jwk::from_decoding_key(&decoding, None).map_err(malformed)?;
            let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
                return Err(format!("is not a usable {algorithm:?} key"));
            };
            let key = DecodingKey::from_rsa_components(&rsa.n, &rsa.e).map_err(malformed)?;
            if let jsonwebtoken::DecodingKeyKind::RsaModulusExponent { n, .. } = key.kind() {
                let bytes = n.iter().skip_while(|b| **b == 0).count();
                if bytes < RSA_MODULUS_MIN_BYTES {
                    return Err(format!(
                        "is an RSA key of {} bits; at least 2048 are needed",
                        bytes * 8
                    ));
                }
            }
            key
        }
        Algorithm::EdDSA if !matches!(decoding.try_get_as_bytes(), Ok(b) if b.len() == 32) => {
            return Err("is not a 32-byte Ed25519 key".to_owned());
        }
        _ => decoding,
    };
    // A key the verifier cannot be built from is an error here; a signature
    // that does not verify is only `false`.
    jsonwebtoken::crypto::verify("AA", b"probe", &decoding, algorithm).map_err(malformed)?;
    Ok(Key {
        decoding,
        algorithm,
    })
}

/// The authenticated caller. Extracting it is what makes a route private.
#[derive(Debug, Clone)]
pub struct Caller(pub Actor);

impl Caller {
    /// 403 unless the caller holds one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<&Actor, ApiError> {
        if self.0.has_any(roles) {
            Ok(&self.0)
        } else {
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(ApiError::Forbidden(format!(
                "this needs one of the roles: {}",
                names.join(", ")
            )))
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // The route's role gate (`contract::admit`) verified the token already.
        use actix_web::HttpMessage;
        if let Some(caller) = req.extensions_mut().remove::<Caller>() {
            return ready(Ok(caller));
        }
        ready(authenticate(req))
    }
}

pub(crate) fn authenticate(req: &HttpRequest) -> Result<Caller, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal("application state missing".into()))?;
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::Unauthorized("an Authorization: Bearer token is required".into())
        })?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::Unauthorized("the Authorization header is not text".into()))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| ApiError::Unauthorized("the Authorization scheme must be Bearer".into()))?;
    let caller = state.auth.verify(token.trim()).map(Caller)?;
    traced_tenant(&caller.0);
    Ok(caller)
}

/// Records the caller's tenant on the request's span (`tenant`), once it is
/// known; nothing when traces are off.
pub fn traced_tenant(actor: &Actor) {
    tracing::Span::current().record("tenant", tracing::field::display(actor.tenant_id));
}
