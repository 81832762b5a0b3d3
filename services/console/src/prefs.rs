//! The reader's preferences: language and time zone, kept in cookies of
//! this browser (the roster's locale is for mail; a person may read the
//! console in another language than their notifications).

use actix_web::cookie::time::Duration;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::session::{cookie, csrf_ok, see_other, viewer};
use crate::{ui, view};

pub async fn form(req: HttpRequest) -> HttpResponse {
    if viewer(&req).is_none() {
        return see_other("/signin");
    }
    let zones: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()).collect();
    view::page(
        &req,
        "preferences.html",
        minijinja::context! { zones => zones },
    )
}

#[derive(Debug, Deserialize)]
pub struct Chosen {
    pub csrf: String,
    pub lang: String,
    pub tz: String,
}

pub async fn save(req: HttpRequest, form: web::Form<Chosen>) -> HttpResponse {
    if viewer(&req).is_none() {
        return see_other("/signin");
    }
    if !csrf_ok(&req, &form.csrf) {
        return view::refused(
            &req,
            "the form's CSRF token is missing or not this browser's",
        );
    }
    let (Some(lang), Ok(tz)) = (
        ui::language(&form.lang),
        form.tz.trim().parse::<chrono_tz::Tz>(),
    ) else {
        return view::failed(
            &req,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unprocessable",
            "the language must be en or ja, and the time zone an IANA name such as Asia/Tokyo",
        );
    };
    let year = Some(Duration::days(365));
    let mut res = see_other("/console/preferences");
    let _ = res.add_cookie(&cookie(&req, ui::LANG, lang.to_owned(), year));
    let _ = res.add_cookie(&cookie(&req, ui::TZ, tz.name().to_owned(), year));
    res
}
