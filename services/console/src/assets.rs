//! Static files, compiled into the binary.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

/// htmx 2.0.11 and its SSE extension 2.2.4 (both BSD Zero Clause), as
/// published on npm; the console's own script and style.
const FILES: &[(&str, &str, &str)] = &[
    (
        "htmx.min.js",
        "text/javascript",
        include_str!("../assets/htmx.min.js"),
    ),
    (
        "htmx-ext-sse.js",
        "text/javascript",
        include_str!("../assets/htmx-ext-sse.js"),
    ),
    (
        "console.js",
        "text/javascript",
        include_str!("../assets/console.js"),
    ),
    (
        "console.css",
        "text/css",
        include_str!("../assets/console.css"),
    ),
];

pub async fn serve(name: web::Path<String>) -> HttpResponse {
    match FILES.iter().find(|(n, _, _)| *n == name.as_str()) {
        Some((_, content_type, body)) => HttpResponse::Ok()
            .insert_header((
                header::CONTENT_TYPE,
                format!("{content_type}; charset=utf-8"),
            ))
            .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .body(*body),
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("no such asset"),
    }
}
