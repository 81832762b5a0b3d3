//! Audit (SPEC §3.9, §6): the search over a tenant's events, and the
//! transparency log's signed checkpoints and proofs, which let an auditor or
//! a client check the record without trusting us.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use opsledger_domain::access::Role;
use opsledger_domain::audit::{self as tlog_audit, base64, Hash};
use opsledger_domain::RecordedEvent;
use opsledger_store::audit::{self, AuditFilter, StoredCheckpoint};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::common::page_len;
use crate::problem::ApiError;
use crate::AppState;

/// Who may search the record and read any event's proof.
const AUDITORS: &[Role] = &[Role::Auditor, Role::Admin];
/// Who may read the checkpoints, the key and consistency proofs: everyone
/// of the tenant. They reveal hashes only, and every client mail carries a
/// checkpoint that a client must be able to check.
const EVERYONE: &[Role] = &Role::ALL;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// The actor (token subject) recorded with the event.
    pub actor: Option<String>,
    /// The role recorded with the event.
    pub role: Option<String>,
    /// A stream id (`incident-…`) or an entity's id.
    pub entity: Option<String>,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// Operations or maintenance.
    pub work_class: Option<String>,
    /// Recorded at or after.
    pub recorded_from: Option<DateTime<Utc>>,
    /// Recorded before.
    pub recorded_to: Option<DateTime<Utc>>,
    /// Occurred at or after.
    pub occurred_from: Option<DateTime<Utc>>,
    /// Occurred before.
    pub occurred_to: Option<DateTime<Utc>>,
    /// `newest` (the default) or `oldest` first.
    pub order: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page length, 1–200 (default 50).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    items: Vec<RecordedEvent>,
    /// Opaque: give it back as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// A cursor is a position, written so nobody mistakes it for one.
fn cursor_text(position: i64) -> String {
    format!("e{position:x}")
}

fn cursor_position(text: &str) -> Result<i64, ApiError> {
    text.strip_prefix('e')
        .and_then(|hex| i64::from_str_radix(hex, 16).ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| ApiError::BadRequest(format!("cursor {text:?} is not one this API gave")))
}

/// `GET /audit`: who did what and when, filtered, newest or oldest first.
pub async fn search(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<SearchParams>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(AUDITORS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let q = query.into_inner();
    let newest_first = match q.order.as_deref() {
        None | Some("newest") => true,
        Some("oldest") => false,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "order {other:?} is neither newest nor oldest"
            )))
        }
    };
    if let Some(role) = &q.role {
        if Role::parse(role).is_none() {
            return Err(ApiError::BadRequest(format!("no role is named {role:?}")));
        }
    }
    if let Some(class) = &q.work_class {
        if !["operations", "maintenance"].contains(&class.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "work class {class:?} is neither operations nor maintenance"
            )));
        }
    }
    for (from, to, what) in [
        (q.recorded_from, q.recorded_to, "recorded"),
        (q.occurred_from, q.occurred_to, "occurred"),
    ] {
        if let (Some(from), Some(to)) = (from, to) {
            if from >= to {
                return Err(ApiError::BadRequest(format!(
                    "{what}_from must be before {what}_to"
                )));
            }
        }
    }
    let limit = page_len(q.limit)?;
    let filter = AuditFilter {
        actor: q.actor,
        role: q.role,
        entity: q.entity,
        event_type: q.event_type,
        work_class: q.work_class,
        recorded_from: q.recorded_from,
        recorded_to: q.recorded_to,
        occurred_from: q.occurred_from,
        occurred_to: q.occurred_to,
        after: q.cursor.as_deref().map(cursor_position).transpose()?,
        newest_first,
        limit: limit + 1,
    };
    let client = state
        .pool
        .get()
        .await
        .map_err(opsledger_store::StoreError::from)?;
    let mut items = audit::search(&client, actor.tenant_id, &filter).await?;
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next_cursor = more
        .then(|| items.last().map(|e| cursor_text(e.position)))
        .flatten();
    Ok(HttpResponse::Ok().json(AuditPage { items, next_cursor }))
}

fn no_key() -> ApiError {
    ApiError::NotFound(
        "this service signs no checkpoints: it has no key (OPSLEDGER_AUDIT_KEY_FILE)".into(),
    )
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyAnswer<'a> {
    name: &'a str,
    /// signed-note's verifier key: `name+key id+base64(0x01 ‖ Ed25519 key)`.
    verifier_key: &'a str,
    algorithm: &'static str,
    /// This tenant's checkpoints' origin line.
    origin: String,
}

/// `GET /audit/key`: the key checkpoints are signed with.
pub async fn key(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(EVERYONE)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let key = state.audit_key.as_ref().ok_or_else(no_key)?;
    Ok(HttpResponse::Ok().json(KeyAnswer {
        name: &key.name,
        verifier_key: &key.verifier_key,
        algorithm: "ed25519",
        origin: tlog_audit::origin(&key.name, actor.tenant_id),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CheckpointParams {
    /// The checkpoint of this size (default: the latest).
    pub size: Option<u64>,
    /// `note`: the signed note itself, as `text/plain`.
    pub format: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckpointAnswer {
    origin: String,
    #[serde(flatten)]
    checkpoint: StoredCheckpoint,
}

/// `GET /audit/checkpoint`: the latest signed checkpoint (or one of a size).
pub async fn checkpoint(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<CheckpointParams>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(EVERYONE)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let q = query.into_inner();
    let as_note = match q.format.as_deref() {
        None | Some("json") => false,
        Some("note") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format {other:?} is neither json nor note"
            )))
        }
    };
    let client = state
        .pool
        .get()
        .await
        .map_err(opsledger_store::StoreError::from)?;
    let found = audit::checkpoint(&client, actor.tenant_id, q.size).await?;
    let checkpoint = found.ok_or_else(|| match q.size {
        Some(size) => ApiError::NotFound(format!("no checkpoint of size {size} was signed")),
        None if state.audit_key.is_none() => no_key(),
        None => ApiError::NotFound(
            "no checkpoint was signed yet: the first follows within seconds of the first event"
                .into(),
        ),
    })?;
    if as_note {
        return Ok(HttpResponse::Ok()
            .insert_header(header::ContentType::plaintext())
            .body(checkpoint.note));
    }
    let origin = checkpoint
        .note
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    Ok(HttpResponse::Ok().json(CheckpointAnswer { origin, checkpoint }))
}

/// The tree size a proof is asked against: `size` if given (at most the
/// tree's), else the latest checkpoint's, else the tree's.
async fn proof_size(
    client: &opsledger_store::pool::Client,
    tenant: Uuid,
    size: Option<u64>,
) -> Result<(u64, Option<StoredCheckpoint>), ApiError> {
    let tree = audit::tree(client, tenant).await?;
    match size {
        Some(0) => Err(ApiError::BadRequest("size must be at least 1".into())),
        Some(size) if size > tree.size => Err(ApiError::BadRequest(format!(
            "size {size} is beyond the tree, which has {} leaves",
            tree.size
        ))),
        Some(size) => Ok((size, audit::checkpoint(client, tenant, Some(size)).await?)),
        None => match audit::checkpoint(client, tenant, None).await? {
            Some(c) => Ok((c.size, Some(c))),
            None if tree.size > 0 => Ok((tree.size, None)),
            None => Err(ApiError::NotFound("the log is empty".into())),
        },
    }
}

fn proof_failed(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(format!("the tree cannot answer this proof: {e}").into())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InclusionParams {
    /// The event's id.
    pub event: Uuid,
    /// The tree size to prove inclusion in (default: the latest checkpoint's).
    pub size: Option<u64>,
    /// `tlog-proof`: a C2SP tlog-proof file (needs a checkpoint of `size`).
    pub format: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InclusionAnswer {
    event_id: Uuid,
    leaf_index: u64,
    tree_size: u64,
    /// Base64 root of the tree of `tree_size` leaves.
    root: String,
    /// Base64 leaf bytes (`opsledger-leaf/v1`): hash them as RFC 9162 does.
    leaf: String,
    /// Base64 hashes, from the leaf's sibling up (RFC 9162 §2.1.3).
    hashes: Vec<String>,
    /// The signed checkpoint of `tree_size`, when one was signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<String>,
}

/// `GET /audit/proof/inclusion`: this event is leaf i of the tree of size n.
pub async fn inclusion(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<InclusionParams>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(AUDITORS)?;
    let tenant = actor.tenant_id;
    state.tenants.require(&state.pool, tenant).await?;
    let q = query.into_inner();
    let as_file = match q.format.as_deref() {
        None | Some("json") => false,
        Some("tlog-proof") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format {other:?} is neither json nor tlog-proof"
            )))
        }
    };
    let client = state
        .pool
        .get()
        .await
        .map_err(opsledger_store::StoreError::from)?;
    let leaf = audit::leaf_of_event(&client, tenant, q.event)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "event {} is not in this tenant's log (or not yet: events join it within a second)",
                q.event
            ))
        })?;
    let (size, checkpoint) = proof_size(&client, tenant, q.size).await?;
    if leaf.leaf_index >= size {
        return Err(ApiError::BadRequest(format!(
            "event {} is leaf {}: not in the tree of {size} leaves",
            q.event, leaf.leaf_index
        )));
    }
    let hashes = audit::inclusion(&client, tenant, size, leaf.leaf_index)
        .await?
        .map_err(proof_failed)?;
    let root = audit::root_at(&client, tenant, size)
        .await?
        .map_err(proof_failed)?;
    let bytes = audit::leaf_bytes(&client, tenant, leaf.leaf_index)
        .await?
        .ok_or_else(|| {
            ApiError::Internal(format!("leaf {} has no event", leaf.leaf_index).into())
        })?;
    if as_file {
        let checkpoint = checkpoint.ok_or_else(|| {
            ApiError::NotFound(format!(
                "no checkpoint of size {size} was signed: ask without size for the latest"
            ))
        })?;
        return Ok(HttpResponse::Ok()
            .insert_header(header::ContentType::plaintext())
            .body(tlog_proof(
                &bytes,
                leaf.leaf_index,
                &hashes,
                &checkpoint.note,
            )));
    }
    Ok(HttpResponse::Ok().json(InclusionAnswer {
        event_id: q.event,
        leaf_index: leaf.leaf_index,
        tree_size: size,
        root: base64(&root.0),
        leaf: base64(&bytes),
        hashes: hashes.iter().map(|h| base64(&h.0)).collect(),
        checkpoint: checkpoint.map(|c| c.note),
    }))
}

/// A C2SP `tlog-proof`: the leaf bytes as its extra data, so the file needs
/// nothing else to check.
fn tlog_proof(leaf: &[u8], index: u64, hashes: &[Hash], note: &str) -> String {
    let mut out = format!(
        "c2sp.org/tlog-proof@v1\nextra {}\nindex {index}\n",
        base64(leaf)
    );
    for h in hashes {
        out.push_str(&base64(&h.0));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(note);
    out
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyParams {
    /// The older tree size.
    pub from: u64,
    /// Default: the latest checkpoint's size.
    pub to: Option<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConsistencyAnswer {
    from: u64,
    to: u64,
    root_from: String,
    root_to: String,
    /// Base64 hashes of the RFC 9162 consistency proof (§2.1.4).
    hashes: Vec<String>,
}

/// `GET /audit/proof/consistency`: the tree of `from` leaves is a prefix of
/// the tree of `to`.
pub async fn consistency(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ConsistencyParams>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(EVERYONE)?;
    let tenant = actor.tenant_id;
    state.tenants.require(&state.pool, tenant).await?;
    let q = query.into_inner();
    let client = state
        .pool
        .get()
        .await
        .map_err(opsledger_store::StoreError::from)?;
    let (to, _) = proof_size(&client, tenant, q.to).await?;
    if q.from == 0 || q.from > to {
        return Err(ApiError::BadRequest(format!(
            "from must be between 1 and to ({to}), not {}",
            q.from
        )));
    }
    let hashes = audit::consistency(&client, tenant, q.from, to)
        .await?
        .map_err(proof_failed)?;
    let root_from = audit::root_at(&client, tenant, q.from)
        .await?
        .map_err(proof_failed)?;
    let root_to = audit::root_at(&client, tenant, to)
        .await?
        .map_err(proof_failed)?;
    Ok(HttpResponse::Ok().json(ConsistencyAnswer {
        from: q.from,
        to,
        root_from: base64(&root_from.0),
        root_to: base64(&root_to.0),
        hashes: hashes.iter().map(|h| base64(&h.0)).collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// The size of a signed checkpoint (default: the latest).
    pub size: Option<u64>,
}

/// The checkpoint an export or a check is of.
async fn signed_for(
    state: &AppState,
    client: &opsledger_store::pool::Client,
    tenant: Uuid,
    size: Option<u64>,
) -> Result<StoredCheckpoint, ApiError> {
    audit::checkpoint(client, tenant, size)
        .await?
        .ok_or_else(|| match size {
            Some(size) => ApiError::NotFound(format!(
                "no checkpoint of size {size} was signed: export the size of one (GET /audit/checkpoint)"
            )),
            None if state.audit_key.is_none() => no_key(),
            None => ApiError::NotFound("no checkpoint was signed yet".into()),
        })
}

/// `GET /audit/export`: the tenant's log up to a signed checkpoint, as JSON
/// Lines: every leaf with what it is made of, then the checkpoint. Streamed
/// a page at a time as the reader takes it, so a log of millions of events
/// never sits in memory.
pub async fn export(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ExportParams>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(AUDITORS)?;
    let tenant = actor.tenant_id;
    state.tenants.require(&state.pool, tenant).await?;
    let client = state
        .pool
        .get()
        .await
        .map_err(opsledger_store::StoreError::from)?;
    let checkpoint = signed_for(&state, &client, tenant, query.size).await?;
    let size = checkpoint.size;
    let end = serde_json::to_string(&tlog_audit::ExportEnd {
        checkpoint: checkpoint.note,
    })
    .map_err(|e| ApiError::Internal(Box::new(e)))?;
    struct Cursor {
        client: opsledger_store::pool::Client,
        next: u64,
        end: Option<String>,
    }
    let lines = futures_util::stream::unfold(
        Cursor {
            client,
            next: 0,
            end: Some(end),
        },
        move |mut at| async move {
            if at.next < size {
                let page = audit::export_page(
                    &at.client,
                    tenant,
                    at.next,
                    size,
                    audit::EXPORT_PAGE_LEAVES,
                )
                .await;
                return Some(match page {
                    Ok(page) => {
                        // Past the page, or past the end when the rest is gone.
                        at.next = page.last().map_or(size, |l| l.leaf_index + 1);
                        let mut out = Vec::with_capacity(page.len() * 512);
                        for leaf in &page {
                            serde_json::to_writer(&mut out, leaf).expect("a leaf serialises");
                            out.push(b'\n');
                        }
                        (Ok(web::Bytes::from(out)), at)
                    }
                    Err(e) => {
                        // The answer stops short; its reader's check says so.
                        tracing::warn!(error = %e, "export stopped");
                        at.next = size;
                        at.end = None;
                        (Err(std::io::Error::other(e.to_string())), at)
                    }
                });
            }
            let end = at.end.take()?;
            Some((Ok(web::Bytes::from(end + "\n")), at))
        },
    );
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/jsonl"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"opsledger-{tenant}-{size}.jsonl\""),
        ))
        .streaming(lines))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VerifyAnswer {
    ok: bool,
    checkpoint_size: u64,
    leaves_checked: u64,
    /// The first thing found wrong, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    first_failure: Option<tlog_audit::ExportFailure>,
    /// A tree head the signer refused to sign (inconsistent with the last
    /// checkpoint), if it has not signed since.
    #[serde(skip_serializing_if = "Option::is_none")]
    refused: Option<Refusal>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Refusal {
    size: u64,
    reason: String,
    refused_at: DateTime<Utc>,
}

/// `GET /audit/verify`: the checks of `opsledger audit verify-export`, run
/// here over the log up to the latest checkpoint, and the signer's refusal
/// if there is one.
pub async fn verify(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(AUDITORS)?;
    let tenant = actor.tenant_id;
    state.tenants.require(&state.pool, tenant).await?;
    let key = state.audit_key.as_ref().ok_or_else(no_key)?;
    let client = state
        .pool
        .get()
        .await
        .map_err(opsledger_store::StoreError::from)?;
    let checkpoint = signed_for(&state, &client, tenant, None).await?;
    let size = checkpoint.size;
    let refused = audit::refusal(&client, tenant)
        .await?
        .map(|(size, reason, refused_at)| Refusal {
            size,
            reason,
            refused_at,
        });
    let mut check = tlog_audit::ExportCheck::new(&key.verifier_key, None)
        .map_err(|e| ApiError::Internal(e.to_string().into()))?;
    let mut next = 0;
    let mut failure = None;
    let mut leaves = 0;
    'pages: while next < size {
        let page =
            audit::export_page(&client, tenant, next, size, audit::EXPORT_PAGE_LEAVES).await?;
        next = page.last().map_or(size, |l| l.leaf_index + 1);
        for leaf in &page {
            if let Err(e) = check.leaf(leaf) {
                failure = Some(e);
                break 'pages;
            }
            leaves += 1;
        }
    }
    if failure.is_none() {
        failure = check
            .end_with(&checkpoint.note)
            .and_then(|()| check.finish().map(|_| ()))
            .err();
    }
    Ok(HttpResponse::Ok().json(VerifyAnswer {
        ok: failure.is_none() && refused.is_none(),
        checkpoint_size: size,
        leaves_checked: leaves,
        first_failure: failure,
        refused,
    }))
}
