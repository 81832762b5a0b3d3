//! Rendering: the templates, compiled into the binary, and the headers
//! every page carries.

use std::sync::OnceLock;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use minijinja::{AutoEscape, Environment};

/// Scripts and styles from this origin only: a stored text that holds
/// `<script>` is escaped by the templates, and could not run if it were not.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // Every value is escaped for HTML; nothing is marked safe.
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, text) in [
            ("base.html", include_str!("../templates/base.html")),
            ("signin.html", include_str!("../templates/signin.html")),
            ("queue.html", include_str!("../templates/queue.html")),
            ("message.html", include_str!("../templates/message.html")),
            ("incident.html", include_str!("../templates/incident.html")),
            (
                "queue_rows.html",
                include_str!("../templates/queue_rows.html"),
            ),
        ] {
            env.add_template(name, text)
                .unwrap_or_else(|e| panic!("template {name}: {e}"));
        }
        env
    })
}

/// `template` rendered with `context`: a part of a page (a list's rows).
pub fn fragment(template: &str, context: minijinja::Value) -> Option<String> {
    env()
        .get_template(template)
        .and_then(|t| t.render(context))
        .map_err(|e| tracing::error!(template, error = %e, "a console fragment failed to render"))
        .ok()
}

/// `template` rendered with `context` as a page.
pub fn page(_req: &HttpRequest, template: &str, context: minijinja::Value) -> HttpResponse {
    match env().get_template(template).and_then(|t| t.render(context)) {
        Ok(html) => html_response(StatusCode::OK, html),
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
        for name in [
            "base.html",
            "signin.html",
            "queue.html",
            "message.html",
            "incident.html",
        ] {
            assert!(env.get_template(name).is_ok(), "{name}");
        }
    }
}
