//! Roles (SPEC §8) and who may do what. The HTTP layer asks these questions;
//! the answers live here so they can be tested without a server.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A role (SPEC §8): what a token lets its caller do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Operator,
    Maintainer,
    Approver,
    Client,
    Auditor,
    Admin,
    Integration,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Operator,
        Role::Maintainer,
        Role::Approver,
        Role::Client,
        Role::Auditor,
        Role::Admin,
        Role::Integration,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Maintainer => "maintainer",
            Role::Approver => "approver",
            Role::Client => "client",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
            Role::Integration => "integration",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The authenticated caller, as the domain sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub tenant_id: Uuid,
    pub subject: String,
    pub roles: Vec<Role>,
    /// Set for client users: the only client whose data they may see.
    pub client_id: Option<Uuid>,
}

impl Actor {
    pub fn has_any(&self, roles: &[Role]) -> bool {
        self.roles.iter().any(|r| roles.contains(r))
    }

    /// The role recorded in event metadata: the most privileged one held.
    pub fn primary_role(&self) -> Role {
        Role::ALL
            .into_iter()
            .rev()
            .find(|r| self.roles.contains(r))
            .unwrap_or(Role::Client)
    }

    /// A client user is restricted to one client; staff see every client.
    pub fn client_scope(&self) -> ClientScope {
        let staff = [
            Role::Operator,
            Role::Maintainer,
            Role::Approver,
            Role::Auditor,
            Role::Admin,
        ];
        if self.has_any(&staff) {
            ClientScope::All
        } else {
            match self.client_id {
                Some(id) if self.roles.contains(&Role::Client) => ClientScope::Only(id),
                _ => ClientScope::Nothing,
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientScope {
    All,
    Only(Uuid),
    Nothing,
}

/// Directory reads: staff and clients (their own); integrations never.
pub const DIRECTORY_READERS: &[Role] = &[
    Role::Operator,
    Role::Maintainer,
    Role::Approver,
    Role::Auditor,
    Role::Admin,
    Role::Client,
];
/// Registering clients and services shapes what everyone else sees: admins only.
pub const DIRECTORY_WRITERS: &[Role] = &[Role::Admin];
/// Who may post alerts: monitoring (integration tokens, which may do nothing
/// else) and the staff who run it.
pub const ALERT_SENDERS: &[Role] = &[
    Role::Integration,
    Role::Operator,
    Role::Maintainer,
    Role::Admin,
];
/// Who may read alerts and incidents: staff, and clients (their own services').
pub const INCIDENT_READERS: &[Role] = &[
    Role::Operator,
    Role::Maintainer,
    Role::Approver,
    Role::Auditor,
    Role::Admin,
    Role::Client,
];
/// Staff who read the teams' queues, responders, schedules and the
/// notification ledger: everyone but clients and integrations.
pub const STAFF: &[Role] = &[
    Role::Operator,
    Role::Maintainer,
    Role::Approver,
    Role::Auditor,
    Role::Admin,
];
/// Who defines responders, policies and schedules.
pub const ROSTER_WRITERS: &[Role] = &[Role::Admin];
/// Who may add an on-call override (swapping a shift is the teams' own business).
pub const OVERRIDE_WRITERS: &[Role] = &[Role::Operator, Role::Maintainer, Role::Admin];
/// Who manages client subscriptions: admins, and clients (their own).
pub const SUBSCRIPTION_WRITERS: &[Role] = &[Role::Admin, Role::Client];
/// Who reads subscriptions and the notification ledger: staff, and clients (their own).
pub const LEDGER_READERS: &[Role] = &[
    Role::Operator,
    Role::Maintainer,
    Role::Approver,
    Role::Auditor,
    Role::Admin,
    Role::Client,
];

/// Who responds to incidents: the two teams, and admins.
pub const RESPONDERS: &[Role] = &[Role::Operator, Role::Maintainer, Role::Admin];
/// Who records work that changes the system: findings, recoveries, fixes.
pub const MAINTAINERS: &[Role] = &[Role::Maintainer, Role::Admin];

/// Who records operations work (routine tasks, backups), publishes runbooks
/// and executes them: operators, maintainers too, and admins.
pub const OPERATIONS_WORKERS: &[Role] = &[Role::Operator, Role::Maintainer, Role::Admin];
/// Who reads the work log, runbooks and executions: staff. Clients never do:
/// the log names internal hosts, locations and people.
pub const WORKLOG_READERS: &[Role] = STAFF;
/// Who opens an inquiry: client users (their own client's services), and
/// staff on a client's behalf (a question asked by phone).
pub const INQUIRY_OPENERS: &[Role] = &[Role::Client, Role::Operator, Role::Maintainer, Role::Admin];
/// Who answers and escalates inquiries: operators, and maintainers once it is
/// escalated to them (admins too).
pub const INQUIRY_RESPONDERS: &[Role] = &[Role::Operator, Role::Maintainer, Role::Admin];
/// Who closes one: its responders, and the client who asked (their own).
pub const INQUIRY_CLOSERS: &[Role] = &[Role::Operator, Role::Maintainer, Role::Admin, Role::Client];
/// Who reads inquiries: staff, and clients (their own client's).
pub const INQUIRY_READERS: &[Role] = LEDGER_READERS;

/// Who defines, changes and removes probes (SPEC §12): admins and operators.
pub const PROBE_WRITERS: &[Role] = &[Role::Operator, Role::Admin];
/// Who reads probes: staff. Clients never do: probes name internal hosts.
pub const PROBE_READERS: &[Role] = STAFF;
/// Who pushes samples (SPEC §12): what pushes alerts, since a machine
/// pushing its temperature is monitoring (integration tokens), and the
/// staff who run it.
pub const SAMPLE_SENDERS: &[Role] = ALERT_SENDERS;
/// Who defines, changes and removes threshold rules: as for probes.
pub const THRESHOLD_RULE_WRITERS: &[Role] = PROBE_WRITERS;
/// Who reads threshold rules and their series: staff. Clients never do:
/// series name internal hosts.
pub const THRESHOLD_RULE_READERS: &[Role] = STAFF;

/// Who creates, changes, rotates and removes heartbeats: admins and operators.
pub const HEARTBEAT_WRITERS: &[Role] = &[Role::Operator, Role::Admin];
/// Who reads heartbeats: staff.
pub const HEARTBEAT_READERS: &[Role] = STAFF;
/// Who sets and removes backup schedules (SPEC §12): admins and operators.
pub const BACKUP_SCHEDULE_WRITERS: &[Role] = &[Role::Operator, Role::Admin];
/// Who reads them: staff, as the work log they watch.
pub const BACKUP_SCHEDULE_READERS: &[Role] = WORKLOG_READERS;

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(roles: &[Role], client_id: Option<Uuid>) -> Actor {
        Actor {
            tenant_id: Uuid::nil(),
            subject: "u".into(),
            roles: roles.to_vec(),
            client_id,
        }
    }

    #[test]
    fn a_client_user_sees_only_its_client() {
        let id = Uuid::from_u128(7);
        assert_eq!(
            actor(&[Role::Client], Some(id)).client_scope(),
            ClientScope::Only(id)
        );
        assert_eq!(
            actor(&[Role::Client], None).client_scope(),
            ClientScope::Nothing
        );
        assert_eq!(
            actor(&[Role::Integration], Some(id)).client_scope(),
            ClientScope::Nothing
        );
        assert_eq!(
            actor(&[Role::Operator], None).client_scope(),
            ClientScope::All
        );
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
