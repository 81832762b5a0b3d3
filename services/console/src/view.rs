//! Rendering: the templates, compiled into the binary, and the headers
//! every page carries.

use std::sync::OnceLock;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use minijinja::{AutoEscape, Environment};

use crate::ui::{self, Ui};

/// Scripts and styles from this origin only: a stored text that holds
/// `<script>` is escaped by the templates, and could not run if it were not.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Every template, compiled into the binary.
pub(crate) const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("signin.html", include_str!("../templates/signin.html")),
    ("queue.html", include_str!("../templates/queue.html")),
    (
        "queue_rows.html",
        include_str!("../templates/queue_rows.html"),
    ),
    ("message.html", include_str!("../templates/message.html")),
    ("incident.html", include_str!("../templates/incident.html")),
    (
        "preferences.html",
        include_str!("../templates/preferences.html"),
    ),
    ("client.html", include_str!("../templates/client.html")),
    ("changes.html", include_str!("../templates/changes.html")),
    ("change.html", include_str!("../templates/change.html")),
    ("calendar.html", include_str!("../templates/calendar.html")),
    ("list.html", include_str!("../templates/list.html")),
    ("reports.html", include_str!("../templates/reports.html")),
    ("inquiry.html", include_str!("../templates/inquiry.html")),
    (
        "execution.html",
        include_str!("../templates/execution.html"),
    ),
    ("notices.html", include_str!("../templates/notices.html")),
    ("record.html", include_str!("../templates/record.html")),
    ("service.html", include_str!("../templates/service.html")),
];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // Every value is escaped for HTML; nothing is marked safe.
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::SemiStrict);
        // `t("Word")`: the word in the page's language.
        env.add_function("t", |state: &minijinja::State, key: &str| {
            let lang = state.lookup("lang");
            ui::translate(lang.as_ref().and_then(|l| l.as_str()).unwrap_or("en"), key)
        });
        // `x | when`: an instant in the reader's time zone.
        env.add_filter("when", |state: &minijinja::State, at: &str| {
            let tz = state
                .lookup("tz")
                .and_then(|t| t.as_str().and_then(|t| t.parse::<chrono_tz::Tz>().ok()))
                .unwrap_or(chrono_tz::Tz::UTC);
            match at.parse::<chrono::DateTime<chrono::Utc>>() {
                Ok(at) => ui::when(&at, tz),
                Err(_) => at.to_owned(),
            }
        });
        for (name, text) in TEMPLATES {
            env.add_template(name, text)
                .unwrap_or_else(|e| panic!("template {name}: {e}"));
        }
        env
    })
}

/// What every page's frame shows (see `page`); a part of a page sent alone
/// (a live list's rows) is rendered with it too.
pub fn frame(req: &HttpRequest, csrf: &str) -> minijinja::Value {
    let ui = Ui::of(req);
    let viewer = crate::session::viewer(req);
    minijinja::context! {
        lang => ui.lang,
        tz => ui.tz.name(),
        csrf => csrf,
        subject => viewer.as_ref().map(|a| a.subject.clone()),
        staff => viewer.as_ref().is_some_and(|a| a.has_any(crate::STAFF)),
        auditor => viewer.as_ref().is_some_and(|a| {
            a.has_any(&[opsledger_domain::access::Role::Auditor, opsledger_domain::access::Role::Admin])
        }),
        as_of => Option::<String>::None,
        path => req.path(),
    }
}

/// `template` rendered with `context`: a part of a page (a list's rows).
pub fn fragment(template: &str, context: minijinja::Value) -> Option<String> {
    env()
        .get_template(template)
        .and_then(|t| t.render(context))
        .map_err(|e| tracing::error!(template, error = %e, "a console fragment failed to render"))
        .ok()
}

/// `template` rendered with `context` as a page. Every page also gets what
/// its frame shows: the reader's language and time zone, who is signed in
/// (`subject`, `staff`), this browser's CSRF token, and `as_of` when the
/// page shows a past instant.
pub fn page(req: &HttpRequest, template: &str, context: minijinja::Value) -> HttpResponse {
    let (csrf, new_cookie) = crate::session::csrf_token(req);
    let context = minijinja::context! { ..context, ..frame(req, &csrf) };
    match env().get_template(template).and_then(|t| t.render(context)) {
        Ok(html) => {
            let mut res = html_response(StatusCode::OK, html);
            if let Some(c) = new_cookie {
                let _ = res.add_cookie(&c);
            }
            res
        }
        Err(e) => {
            tracing::error!(template, error = %e, "a console page failed to render");
            html_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!doctype html><title>opsledger</title><p>This page could not be shown.".into(),
            )
        }
    }
}

/// Whether the client asked for HTML (a browser does). Anything else is
/// answered a refusal as an RFC 9457 problem, as the API answers.
pub fn wants_html(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// What went wrong, as a page with `title` for a browser, as a problem
/// otherwise.
pub fn failed(req: &HttpRequest, status: StatusCode, title: &str, message: &str) -> HttpResponse {
    if !wants_html(req) {
        let slug = title.to_lowercase().replace(' ', "-");
        return opsledger_api::problem::problem_response(
            status,
            opsledger_api::problem::problem_body(status, &slug, message),
        );
    }
    let mut res = page(
        req,
        "message.html",
        minijinja::context! { title => title, message => message },
    );
    *res.status_mut() = status;
    res
}

/// A page that says why a request was refused (403).
pub fn refused(req: &HttpRequest, why: &str) -> HttpResponse {
    failed(req, StatusCode::FORBIDDEN, "Refused", why)
}

/// The page for an unknown incident, change or path (404).
pub fn not_found(req: &HttpRequest) -> HttpResponse {
    failed(
        req,
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page.",
    )
}

/// The page when the database does not answer (503).
pub fn unavailable(req: &HttpRequest) -> HttpResponse {
    failed(
        req,
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        "The database did not answer; try again shortly.",
    )
}

/// The instant a page is asked for (`?as_of=`, RFC 3339), or what is
/// wrong with it.
pub fn instant(as_of: Option<&str>) -> Result<Option<chrono::DateTime<chrono::Utc>>, String> {
    match as_of.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s
            .parse::<chrono::DateTime<chrono::Utc>>()
            .map(Some)
            .map_err(|e| {
                format!("as_of must be an RFC 3339 instant such as 2026-12-01T09:00:00Z: {e}")
            }),
    }
}

/// A 400 page saying what is wrong with the request.
pub fn bad_request(req: &HttpRequest, why: &str) -> HttpResponse {
    failed(req, StatusCode::BAD_REQUEST, "Bad request", why)
}

/// What the API's read path said, as a page.
pub fn api_error(req: &HttpRequest, e: opsledger_api::problem::ApiError) -> HttpResponse {
    use opsledger_api::problem::ApiError as E;
    match e {
        E::NotFound(_) => not_found(req),
        E::Forbidden(why) => refused(req, &why),
        E::BadRequest(why) => failed(req, StatusCode::BAD_REQUEST, "Bad request", &why),
        E::Unprocessable(why) => {
            failed(req, StatusCode::UNPROCESSABLE_ENTITY, "Unprocessable", &why)
        }
        E::Conflict { detail, .. } => failed(req, StatusCode::CONFLICT, "Conflict", &detail),
        E::PreconditionFailed { detail, .. } => {
            failed(req, StatusCode::CONFLICT, "Conflict", &detail)
        }
        E::Unavailable(_) => unavailable(req),
        e => {
            tracing::error!(error = %e, "a console read failed");
            unavailable(req)
        }
    }
}

fn html_response(status: StatusCode, html: String) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(html)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_template_compiles() {
        let env = super::env();
        for (name, _) in super::TEMPLATES {
            assert!(env.get_template(name).is_ok(), "{name}");
        }
        // Every template file is compiled in.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
        for file in std::fs::read_dir(dir).unwrap() {
            let name = file.unwrap().file_name().into_string().unwrap();
            assert!(
                super::TEMPLATES.iter().any(|(n, _)| *n == name),
                "templates/{name} is not in view::TEMPLATES"
            );
        }
    }
}
