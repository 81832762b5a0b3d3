//! What deciding a step of a maintenance window needs: for an announcement
//! (or the cancellation of an announced window), its services' notice
//! periods, whether it serves an emergency change, the contacts subscribed
//! to its services, and the latest signed checkpoint their mails carry. The
//! rules are `domain::window`'s.

use chrono::{DateTime, Utc};
use opsledger_domain::change::{Change, Kind};
use opsledger_domain::directory::Service;
use opsledger_domain::notification::Recipient;
use opsledger_domain::window::{Context, Notice, Status, Window};
use opsledger_store::roster::{self as store_roster, SubscriptionRow};
use opsledger_store::StoreError;
use uuid::Uuid;

use crate::Ledger;

/// How long telling contacts waits for the roster projection to catch up
/// with subscriptions made before the request.
const ROSTER_READ_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The step a context is looked up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Nothing,
    Announce,
    Cancel,
}

pub async fn context(
    ledger: Ledger<'_>,
    tenant: Uuid,
    w: &Window,
    lookup: Lookup,
    now: DateTime<Utc>,
) -> Result<Context, StoreError> {
    let tells = match lookup {
        Lookup::Announce => w.status == Status::Planned,
        Lookup::Cancel => w.status == Status::Announced,
        Lookup::Nothing => false,
    };
    if !tells {
        return Ok(Context::at(now));
    }
    let services = services_of(ledger, tenant, w).await?;
    let contacts = contacts_of(ledger, tenant, w, &services).await?;
    let checkpoint = crate::latest_checkpoint(ledger, tenant).await?;
    Ok(Context {
        now,
        notices: services
            .iter()
            .map(|s| Notice {
                service_id: s.id,
                notice_period_h: s.notice_period_h,
            })
            .collect(),
        emergency: serves_emergency(ledger, tenant, w.change_id).await?,
        contacts,
        checkpoint,
        cause_id: Uuid::now_v7(),
    })
}

/// The services of a window that exist.
async fn services_of(
    ledger: Ledger<'_>,
    tenant: Uuid,
    w: &Window,
) -> Result<Vec<Service>, StoreError> {
    let mut out = Vec::new();
    for s in &w.service_ids {
        out.extend(crate::directory::service(ledger, tenant, *s).await?);
    }
    Ok(out)
}

/// Whether the change a window serves is an emergency change.
async fn serves_emergency(
    ledger: Ledger<'_>,
    tenant: Uuid,
    change_id: Option<Uuid>,
) -> Result<bool, StoreError> {
    let Some(c) = change_id else { return Ok(false) };
    let (change, _, _) = crate::run::load::<Change>(ledger, tenant, c, None).await?;
    Ok(change.is_some_and(|c| c.kind == Kind::Emergency))
}

/// Every active subscription to one service, page by page: an announcement
/// goes to all of them, however many there are.
async fn all_subscriptions(
    ledger: Ledger<'_>,
    tenant: Uuid,
    client: Uuid,
    service: Uuid,
) -> Result<Vec<SubscriptionRow>, StoreError> {
    const PAGE: i64 = 500;
    let mut all: Vec<SubscriptionRow> = Vec::new();
    loop {
        let after = all.last().map(|s| s.id);
        let page = store_roster::list_subscriptions(
            ledger.pool,
            tenant,
            Some(client),
            Some(service),
            after,
            PAGE,
        )
        .await?;
        let last = (page.len() as i64) < PAGE;
        all.extend(page);
        if last {
            return Ok(all);
        }
    }
}

/// The subscribed contacts of these services, each address once, with the
/// names of its own client's services among them.
async fn contacts_of(
    ledger: Ledger<'_>,
    tenant: Uuid,
    w: &Window,
    services: &[Service],
) -> Result<Vec<(Recipient, Vec<String>)>, StoreError> {
    // Subscriptions made before this request count.
    if !crate::changes::await_read_model(ledger, store_roster::PROJECTION, ROSTER_READ_WAIT).await?
    {
        tracing::warn!(window = %w.id, "telling contacts from a roster projection that is behind");
    }
    let mut contacts: Vec<(Recipient, Vec<String>)> = Vec::new();
    for s in services {
        for sub in all_subscriptions(ledger, tenant, s.client_id, s.id).await? {
            match contacts
                .iter_mut()
                .find(|(r, _)| r.email.eq_ignore_ascii_case(&sub.email))
            {
                Some((_, names)) => {
                    if !names.iter().any(|n| n == s.name.as_str()) {
                        names.push(s.name.as_str().to_owned());
                    }
                }
                None => contacts.push((
                    Recipient {
                        name: sub.name,
                        email: sub.email,
                        locale: sub.locale,
                        user_id: None,
                        subscription_id: Some(sub.id),
                        client_id: Some(sub.client_id),
                    },
                    vec![s.name.as_str().to_owned()],
                )),
            }
        }
    }
    Ok(contacts)
}
