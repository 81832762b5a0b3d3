//! Administrative commands that append events: the CLI's and the tests'.

use chrono::Utc;
use opsledger_domain::directory::{tenant_stream, DirectoryEvent};
use opsledger_domain::text::Name;
use opsledger_domain::{Metadata, NewEvent};
use opsledger_store::{append, AppendError, AppendRequest, ExpectedVersion, Pool, StreamAppend};
use uuid::Uuid;

/// Registers a tenant: its `tenant-<id>` stream must not exist yet.
pub async fn register_tenant(
    pool: &Pool,
    id: Uuid,
    name: &str,
    actor: &str,
) -> Result<(), AppendError> {
    let name = Name::parse("name", name).map_err(AppendError::Invalid)?;
    let event = DirectoryEvent::TenantRegistered {
        tenant_id: id,
        name,
    };
    let meta = Metadata {
        actor: actor.to_owned(),
        role: "admin".into(),
        request_id: None,
        correlation_id: None,
        causation_id: None,
        source: "cli".into(),
    };
    let request = AppendRequest {
        tenant_id: id,
        streams: vec![StreamAppend {
            stream_id: tenant_stream(id),
            expected: ExpectedVersion::NoStream,
            events: vec![NewEvent::new(
                event.type_name(),
                event.payload(),
                meta,
                Utc::now(),
            )],
        }],
        idempotency: None,
    };
    append::append_direct(pool, &request).await.map(|_| ())
}
