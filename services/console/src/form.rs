//! A form as the console's pages post it: the CSRF token checked, the
//! version of the record the page showed, the record's id from the path,
//! and the form's own fields read into the API's body type for the step
//! (so a form and a JSON body mean the same).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use opsledger_api::problem::ApiError;
use uuid::Uuid;

use crate::session::{csrf_ok, see_other};
use crate::view;

/// A posted form: its CSRF token, the version it was based on, and its own
/// fields (empty ones left out, as an unset optional field).
pub(crate) struct Posted {
    pub csrf: String,
    pub version: Option<i64>,
    pub fields: Vec<(String, String)>,
}

/// Why a posted form is not acted on.
pub(crate) enum Unfit {
    /// No CSRF token, or not this browser's.
    Csrf,
    /// The path names no record.
    NotFound,
    /// The form does not say which version of the record it was based on.
    NoVersion,
}

impl Unfit {
    pub fn page(self, req: &HttpRequest) -> HttpResponse {
        match self {
            Unfit::Csrf => view::refused(
                req,
                "the form's CSRF token is missing or not this browser's",
            ),
            Unfit::NotFound => view::not_found(req),
            Unfit::NoVersion => view::bad_request(
                req,
                "the form does not say which version of the record it was based on",
            ),
        }
    }
}

impl Posted {
    pub fn of(body: &[u8]) -> Posted {
        let mut posted = Posted {
            csrf: String::new(),
            version: None,
            fields: Vec::new(),
        };
        for (k, v) in form_urlencoded::parse(body) {
            match k.as_ref() {
                "csrf" => posted.csrf = v.into_owned(),
                "version" => posted.version = v.parse().ok(),
                _ if v.trim().is_empty() => {}
                _ => posted.fields.push((k.into_owned(), v.into_owned())),
            }
        }
        posted
    }

    /// The form `body`, once its CSRF token is this browser's.
    pub fn checked(req: &HttpRequest, body: &[u8]) -> Result<Posted, Unfit> {
        let posted = Posted::of(body);
        if csrf_ok(req, &posted.csrf) {
            Ok(posted)
        } else {
            Err(Unfit::Csrf)
        }
    }

    /// A form posted to a record's page (`id` from its path): checked, with
    /// the record's id and the version the page showed.
    pub fn on_record(
        req: &HttpRequest,
        body: &[u8],
        id: &str,
    ) -> Result<(Posted, Uuid, i64), Unfit> {
        let posted = Posted::checked(req, body)?;
        let id = id.parse::<Uuid>().map_err(|_| Unfit::NotFound)?;
        let version = posted.version.ok_or(Unfit::NoVersion)?;
        Ok((posted, id, version))
    }

    /// Takes the field `name` out of the form (one the API's body does not
    /// have: a step number, a record named in the path).
    pub fn take(&mut self, name: &str) -> Option<String> {
        let at = self.fields.iter().position(|(k, _)| k == name)?;
        Some(self.fields.remove(at).1)
    }

    /// The fields, encoded again for a typed body.
    pub fn encoded(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&self.fields)
            .finish()
    }

    /// The fields read into the API's body type `B`.
    pub fn read<B: serde::de::DeserializeOwned>(&self) -> Result<B, ApiError> {
        serde_urlencoded::from_str(&self.encoded())
            .map_err(|e| ApiError::Unprocessable(e.to_string()))
    }

    /// The fields as a JSON body the API's handler takes.
    pub fn json<B: serde::de::DeserializeOwned>(
        &self,
    ) -> Result<actix_web::web::Json<B>, ApiError> {
        self.read().map(actix_web::web::Json)
    }

    /// The fields as a body the API's handler takes, or leaves out.
    pub fn or_empty<B: serde::de::DeserializeOwned>(
        &self,
    ) -> Result<opsledger_api::extract::OrEmpty<B>, ApiError> {
        self.read().map(|body| opsledger_api::extract::OrEmpty {
            body,
            asked: serde_json::Value::Null,
        })
    }
}

/// Where a form that created a record goes: the console's page of what the
/// API answered it made (its `Location`, `/api/v1/{api}/…`), else `fallback`.
pub(crate) fn to_created(answer: &HttpResponse, api: &str, console: &str) -> HttpResponse {
    match answer
        .headers()
        .get(header::LOCATION)
        .and_then(|l| l.to_str().ok())
    {
        Some(made) => {
            see_other(&made.replace(&format!("/api/v1/{api}/"), &format!("/console/{console}/")))
        }
        None => see_other(&format!("/console/{console}")),
    }
}

/// What became of a step the API refused: a stale version says someone
/// acted first; the rest as the API says.
pub(crate) fn refused_step(req: &HttpRequest, step: &str, e: ApiError) -> HttpResponse {
    match e {
        ApiError::PreconditionFailed { detail, .. } => view::failed(
            req,
            actix_web::http::StatusCode::CONFLICT,
            "Conflict",
            &format!("Someone else acted first, and your {step} was not applied: {detail}"),
        ),
        e => view::api_error(req, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_posted_form_leaves_empty_fields_out_and_keeps_its_token_apart() {
        let p = Posted::of(b"csrf=abc&version=7&kind=fix&minutes_spent=&description=a+b");
        assert_eq!(p.csrf, "abc");
        assert_eq!(p.version, Some(7));
        assert_eq!(p.encoded(), "kind=fix&description=a+b");
    }
}
