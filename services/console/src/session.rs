//! Signing in and out. The session is a cookie holding the bearer token a
//! user signed in with (the development `opsledger token` works), verified
//! as the API verifies it and kept HttpOnly and SameSite=Strict, so the
//! console knows exactly the identities the API knows and expires with the
//! token.
//!
//! OIDC plugs in here: a callback that checks the provider's ID token (JWKS
//! signature, issuer, audience, expiry), maps its claims to tenant, roles and
//! client, and sets this same cookie with a token `AuthConfig` accepts.
//! Nothing after sign-in changes.

use actix_web::cookie::time::Duration;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use opsledger_api::AppState;
use opsledger_domain::access::Actor;
use serde::Deserialize;
use uuid::Uuid;

use crate::view;

/// The cookie holding the bearer token.
pub const SESSION: &str = "opsledger_session";
/// The cookie every form's CSRF token must equal (double submit).
pub const CSRF: &str = "opsledger_csrf";

/// The signed-in user; `None` sends the browser to sign in.
pub fn viewer(req: &HttpRequest) -> Option<Actor> {
    let state = req.app_data::<web::Data<AppState>>()?;
    let actor = req
        .cookie(SESSION)
        .and_then(|c| state.auth.verify(c.value()).ok())?;
    opsledger_api::auth::traced_tenant(&actor);
    Some(actor)
}

/// Why a page is not shown to a browser.
pub enum Turned {
    /// Nobody is signed in: to the sign-in page.
    SignIn,
    /// The reader's roles do not reach the page.
    Refused(&'static str),
}

impl Turned {
    pub fn page(self, req: &HttpRequest) -> HttpResponse {
        match self {
            Turned::SignIn => see_other("/signin"),
            Turned::Refused(why) => view::refused(req, why),
        }
    }
}

/// The signed-in reader, if one of `roles` is theirs.
pub fn reader(
    req: &HttpRequest,
    roles: &[opsledger_domain::access::Role],
    why: &'static str,
) -> Result<Actor, Turned> {
    match viewer(req) {
        None => Err(Turned::SignIn),
        Some(a) if !a.has_any(roles) => Err(Turned::Refused(why)),
        Some(a) => Ok(a),
    }
}

/// The CSRF token of this browser: its cookie's, or a new one to set.
pub fn csrf_token(req: &HttpRequest) -> (String, Option<Cookie<'static>>) {
    match req.cookie(CSRF) {
        Some(c) if c.value().len() == 32 => (c.value().to_owned(), None),
        _ => {
            let token = Uuid::new_v4().simple().to_string();
            (token.clone(), Some(cookie(req, CSRF, token, None)))
        }
    }
}

/// Whether a form's token is this browser's.
pub fn csrf_ok(req: &HttpRequest, sent: &str) -> bool {
    req.cookie(CSRF)
        .is_some_and(|c| !sent.is_empty() && c.value() == sent)
}

/// The sign-in page (`view::page` gives this browser its CSRF token).
pub async fn signin_form(req: HttpRequest) -> HttpResponse {
    view::page(
        &req,
        "signin.html",
        minijinja::context! { error => Option::<String>::None },
    )
}

#[derive(Debug, Deserialize)]
pub struct SignIn {
    pub token: String,
    pub csrf: String,
}

pub async fn signin(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<SignIn>,
) -> HttpResponse {
    if !csrf_ok(&req, &form.csrf) {
        return view::refused(
            &req,
            "the form's CSRF token is missing or not this browser's",
        );
    }
    let token = form.token.trim();
    match state.auth.verify_until(token) {
        Ok((_, expires)) => {
            let left = expires.saturating_sub(now_s());
            let mut res = see_other("/");
            let _ = res.add_cookie(&cookie(
                &req,
                SESSION,
                token.to_owned(),
                Some(Duration::seconds(left as i64)),
            ));
            res
        }
        Err(e) if !view::wants_html(&req) => view::failed(
            &req,
            actix_web::http::StatusCode::UNAUTHORIZED,
            "Unauthorized",
            &e.to_string(),
        ),
        Err(e) => {
            let mut res = view::page(
                &req,
                "signin.html",
                minijinja::context! { error => e.to_string() },
            );
            *res.status_mut() = actix_web::http::StatusCode::UNAUTHORIZED;
            res
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct SignOut {
    pub csrf: String,
}

pub async fn signout(req: HttpRequest, form: web::Form<SignOut>) -> HttpResponse {
    if !csrf_ok(&req, &form.csrf) {
        return view::refused(
            &req,
            "the form's CSRF token is missing or not this browser's",
        );
    }
    let mut res = see_other("/signin");
    let mut gone = cookie(&req, SESSION, String::new(), None);
    gone.make_removal();
    let _ = res.add_cookie(&gone);
    res
}

/// A cookie only this site's pages send back, and only over TLS when the
/// request came over it.
pub(crate) fn cookie(
    req: &HttpRequest,
    name: &'static str,
    value: String,
    max_age: Option<Duration>,
) -> Cookie<'static> {
    let mut c = Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(req.connection_info().scheme() == "https")
        .finish();
    if let Some(age) = max_age {
        c.set_max_age(age);
    }
    c
}

pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
