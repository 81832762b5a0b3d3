//! Bearer JWTs (SPEC §8): HS256 with a configured secret for development;
//! issuer, audience, expiry and not-before are always checked, and only the
//! configured algorithm is accepted, so `alg: none` and algorithm confusion
//! are refused by construction.

use std::collections::HashMap;
use std::future::{ready, Ready};
use std::sync::{Arc, RwLock};

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
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
    decoding: DecodingKey,
    encoding: EncodingKey,
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
            decoding: DecodingKey::from_secret(secret),
            encoding: EncodingKey::from_secret(secret),
            validation,
            verified: Arc::default(),
        }
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
        let now = jsonwebtoken::get_current_timestamp();
        // The same tests as the library's: expired once `exp` is more than
        // the leeway behind, immature while `nbf` is more than it ahead.
        let current =
            |v: &Verified| v.exp >= now.saturating_sub(LEEWAY_S) && v.nbf <= now + LEEWAY_S;
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
        let data = decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
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
        })
    }
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
    state.auth.verify(token.trim()).map(Caller)
}
