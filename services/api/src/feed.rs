//! The event feed (SPEC §7): a tenant's events after a cursor, as pages
//! (`GET /events`) or as Server-Sent Events (`GET /events/stream`), in the
//! global order and gap-safe: an event that commits late with a lower
//! position is never skipped (the read stops below the oldest transaction
//! still running). Cursors are opaque to clients.

use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use opsledger_domain::access::{Actor, Role};
use opsledger_domain::feed_access::{self, FeedReaders};
use opsledger_domain::RecordedEvent;
use opsledger_store::read::{self, Cursor};
use serde::{Deserialize, Serialize};

use crate::aggregate::{self, Asked};
use crate::auth::Caller;
use crate::extract::IfMatch;
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::AppState;
use opsledger_app::run::Target;

/// Who reads the feed: everything of the tenant, so auditors and admins;
/// integrations only as granted ([`FeedReaders`]).
const READERS: &[Role] = &[Role::Auditor, Role::Admin];
/// Who sees the list of granted integrations.
const GRANT_READERS: &[Role] = &[Role::Auditor, Role::Admin];
/// Who grants and revokes: admins.
const GRANTERS: &[Role] = &[Role::Admin];

/// The caller, when it may read the feed: an auditor or admin, or an
/// integration whose subject is granted now.
async fn feed_reader<'a>(state: &AppState, caller: &'a Caller) -> Result<&'a Actor, ApiError> {
    let integration = !caller.0.has_any(READERS) && caller.0.has_any(&[Role::Integration]);
    let actor = if integration {
        &caller.0
    } else {
        caller.require(READERS)?
    };
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    if integration && !granted(state, actor).await? {
        return Err(ApiError::Forbidden(format!(
            "integration {:?} has not been granted this tenant's event feed: an admin grants it \
             with PUT /api/v1/events/readers/{{subject}}",
            actor.subject
        )));
    }
    Ok(actor)
}

async fn granted(state: &AppState, actor: &Actor) -> Result<bool, ApiError> {
    let list =
        aggregate::load::<FeedReaders>(state, actor.tenant_id, actor.tenant_id, None).await?;
    Ok(list.record.may_read(&actor.subject))
}

const FEED_PAGE_DEFAULT: u32 = 100;
const FEED_PAGE_MAX: u32 = 1000;

fn cursor_text(c: Cursor) -> String {
    format!("c{:x}-{:x}", c.tx_id, c.position)
}

fn cursor_of(text: &str) -> Result<Cursor, ApiError> {
    let bad = || ApiError::BadRequest(format!("cursor {text:?} is not one this API gave"));
    let (tx, position) = text
        .strip_prefix('c')
        .and_then(|t| t.split_once('-'))
        .ok_or_else(bad)?;
    Ok(Cursor {
        // Transaction ids travel as int8: none beyond it was ever given.
        tx_id: i64::from_str_radix(tx, 16)
            .ok()
            .filter(|t| *t >= 0)
            .ok_or_else(bad)? as u64,
        position: i64::from_str_radix(position, 16)
            .ok()
            .filter(|p| *p >= 0)
            .ok_or_else(bad)?,
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FeedParams {
    /// A cursor this API gave (`next_cursor`, or an event's `cursor`).
    pub after: Option<String>,
    /// Page length, 1–1000 (default 100).
    pub limit: Option<u32>,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// Only events of this stream.
    pub stream: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct FeedItem<'a> {
    /// Resume after this event with it.
    cursor: String,
    #[serde(flatten)]
    event: &'a RecordedEvent,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedPage<'a> {
    items: Vec<FeedItem<'a>>,
    /// Where to continue, always: past the items, or past everything final
    /// when there were none.
    next_cursor: String,
}

fn item(event: &RecordedEvent) -> FeedItem<'_> {
    FeedItem {
        cursor: cursor_text(Cursor::after(event)),
        event,
    }
}

/// `GET /events`: a page of the feed.
pub async fn page(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<FeedParams>,
) -> Result<HttpResponse, ApiError> {
    let actor = feed_reader(&state, &caller).await?;
    let q = query.into_inner();
    let limit = match q.limit.unwrap_or(FEED_PAGE_DEFAULT) {
        n @ 1..=FEED_PAGE_MAX => i64::from(n),
        n => {
            return Err(ApiError::BadRequest(format!(
                "limit must be between 1 and {FEED_PAGE_MAX}, not {n}"
            )))
        }
    };
    let after = q.after.as_deref().map(cursor_of).transpose()?;
    let client = state
        .pool
        .get()
        .await
        .map_err(opsledger_store::StoreError::from)?;
    let read = read::feed(
        &client,
        actor.tenant_id,
        after.unwrap_or(Cursor::START),
        limit,
        q.event_type.as_deref(),
        q.stream.as_deref(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(FeedPage {
        items: read.events.iter().map(item).collect(),
        next_cursor: cursor_text(read.next),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    /// Where to start, when no `Last-Event-ID` says.
    pub after: Option<String>,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// Only events of this stream.
    pub stream: Option<String>,
}

/// Events read per round trip while streaming.
const STREAM_PAGE: i64 = 200;

/// `GET /events/stream`: the feed as Server-Sent Events, for ever. Each
/// event's `id` is its cursor, so a reconnecting client's `Last-Event-ID`
/// resumes after it. A comment line is sent when nothing happened for a
/// while, so proxies keep the connection. The next page is read only when
/// the client has taken the last: a slow reader holds a page at most.
pub async fn stream(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<StreamParams>,
) -> Result<HttpResponse, ApiError> {
    let actor = feed_reader(&state, &caller).await?;
    let tenant = actor.tenant_id;
    // A granted integration's stream ends once its grant is revoked: looked
    // at again every heartbeat interval.
    let recheck = (!actor.has_any(READERS)).then(|| actor.clone());
    let q = query.into_inner();
    let resume = req
        .headers()
        .get("Last-Event-ID")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::BadRequest("Last-Event-ID is not text".into()))
        })
        .transpose()?
        .or(q.after.as_deref());
    let cursor = resume.map(cursor_of).transpose()?.unwrap_or(Cursor::START);
    let heartbeat = state.feed_heartbeat;
    let poll = state.feed_poll;
    struct At {
        state: web::Data<AppState>,
        cursor: Cursor,
        quiet_since: tokio::time::Instant,
        checked_at: tokio::time::Instant,
    }
    let (event_type, stream_id) = (q.event_type, q.stream);
    let frames = futures_util::stream::unfold(
        At {
            state,
            cursor,
            quiet_since: tokio::time::Instant::now(),
            checked_at: tokio::time::Instant::now(),
        },
        move |mut at| {
            let (event_type, stream_id) = (event_type.clone(), stream_id.clone());
            let recheck = recheck.clone();
            async move {
                loop {
                    if let Some(actor) = &recheck {
                        if at.checked_at.elapsed() >= heartbeat {
                            at.checked_at = tokio::time::Instant::now();
                            // Revoked (or unreadable): the stream ends; the
                            // client's reconnect then hears why.
                            if !matches!(granted(&at.state, actor).await, Ok(true)) {
                                return None;
                            }
                        }
                    }
                    let read = match at.state.pool.get().await {
                        Ok(client) => {
                            read::feed(
                                &client,
                                tenant,
                                at.cursor,
                                STREAM_PAGE,
                                event_type.as_deref(),
                                stream_id.as_deref(),
                            )
                            .await
                        }
                        Err(e) => Err(opsledger_store::StoreError::from(e)),
                    };
                    let read = match read {
                        Ok(read) => read,
                        // The database is away: say nothing, try again; the
                        // heartbeat keeps the connection meanwhile.
                        Err(e) => {
                            tracing::debug!(error = %e, "event stream read failed");
                            tokio::time::sleep(poll.max(Duration::from_millis(500))).await;
                            if at.quiet_since.elapsed() >= heartbeat {
                                at.quiet_since = tokio::time::Instant::now();
                                return Some((Ok(web::Bytes::from_static(b": heartbeat\n\n")), at));
                            }
                            continue;
                        }
                    };
                    at.cursor = read.next;
                    if !read.events.is_empty() {
                        let mut out = Vec::with_capacity(read.events.len() * 512);
                        for e in &read.events {
                            out.extend_from_slice(
                                format!(
                                    "id: {}\nevent: {}\ndata: ",
                                    cursor_text(Cursor::after(e)),
                                    e.event_type
                                )
                                .as_bytes(),
                            );
                            // JSON has no raw newline: one data line.
                            if serde_json::to_writer(&mut out, e).is_err() {
                                return None;
                            }
                            out.extend_from_slice(b"\n\n");
                        }
                        at.quiet_since = tokio::time::Instant::now();
                        return Some((Ok::<_, std::io::Error>(web::Bytes::from(out)), at));
                    }
                    if at.quiet_since.elapsed() >= heartbeat {
                        at.quiet_since = tokio::time::Instant::now();
                        return Some((Ok(web::Bytes::from_static(b": heartbeat\n\n")), at));
                    }
                    tokio::time::sleep(poll).await;
                }
            }
        },
    );
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(frames))
}

// ------------------------------------------------ integrations granted the feed

/// `GET /events/readers`: the integration subjects granted the feed.
pub async fn readers(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(GRANT_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let v = aggregate::load::<FeedReaders>(&state, actor.tenant_id, actor.tenant_id, None).await?;
    Ok(aggregate::respond(StatusCode::OK, &v))
}

async fn change_readers(
    state: &AppState,
    caller: &Caller,
    req: &HttpRequest,
    key: IdempotencyKey,
    if_match: IfMatch,
    subject: &str,
    grant: bool,
) -> Result<HttpResponse, ApiError> {
    let subject = feed_access::subject(subject).map_err(ApiError::from)?;
    let asked = Asked {
        caller,
        req,
        key,
        body: serde_json::json!({ "subject": subject, "grant": grant }),
    };
    // The list is the tenant's own: its stream is named by the tenant.
    let tenant = caller.0.tenant_id;
    let command = if grant {
        feed_access::Command::Grant(subject)
    } else {
        feed_access::Command::Revoke(subject)
    };
    aggregate::command::<FeedReaders>(
        state,
        asked,
        if_match,
        GRANTERS,
        Target::Existing(tenant),
        command,
    )
    .await
}

/// `PUT /events/readers/{subject}`: grant an integration the feed.
pub async fn reader_grant(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    subject: web::Path<String>,
    if_match: IfMatch,
    key: IdempotencyKey,
) -> Result<HttpResponse, ApiError> {
    change_readers(&state, &caller, &req, key, if_match, &subject, true).await
}

/// `DELETE /events/readers/{subject}`: revoke it.
pub async fn reader_revoke(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    subject: web::Path<String>,
    if_match: IfMatch,
    key: IdempotencyKey,
) -> Result<HttpResponse, ApiError> {
    change_readers(&state, &caller, &req, key, if_match, &subject, false).await
}
