//! The directory: tenants, their clients, and the services run for them.
//!
//! Streams: `tenant-<id>`, `client-<id>`, `service-<id>`. Names are unique per
//! tenant through reservation streams (`client-name-<key>`,
//! `service-name-<key>`) appended with "no stream yet" in the same transaction
//! as the registration, so two concurrent registrations of one name cannot
//! both succeed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{
    existing, stored_events, Aggregate, By, Elsewhere, Expected, Outcome, Recorder,
};
use crate::dependency::{checked_parents, DependencyContext, GraphEvent, GRAPH_STREAM};
use crate::period::{ServiceHours, TimeZoneName};
use crate::text::{Email, Locale, Name};
use crate::Rejection;

/// Longest notice period we accept: a year.
pub const NOTICE_PERIOD_MAX_H: u32 = 24 * 366;
/// Enough for a real contact list; more is a data-entry mistake.
pub const CONTACTS_MAX: usize = 50;
/// Enough for a real component list.
pub const COMPONENTS_MAX: usize = 100;

pub fn tenant_stream(id: Uuid) -> String {
    format!("tenant-{id}")
}
pub fn client_stream(id: Uuid) -> String {
    format!("client-{id}")
}
pub fn service_stream(id: Uuid) -> String {
    format!("service-{id}")
}
/// Reservation streams are named by a digest of the name's unique form, so a
/// name of any length and script makes a short, fixed-size stream id.
fn name_key(name: &Name) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(name.unique_key().as_bytes()))
}
pub fn client_name_stream(name: &Name) -> String {
    format!("client-name-{}", name_key(name))
}
pub fn service_name_stream(name: &Name) -> String {
    format!("service-name-{}", name_key(name))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Contact {
    pub name: Name,
    pub email: Email,
    pub locale: Locale,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    Server,
    Network,
    Database,
    Application,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Component {
    pub name: Name,
    pub kind: ComponentKind,
}

/// Availability target in percent, `0 < target <= 100`, kept to three decimals
/// (99.995 is a real SLA; a fourth decimal is not).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct SlaTarget(f64);

impl SlaTarget {
    pub fn parse(pct: f64) -> Result<SlaTarget, String> {
        if pct.is_finite() && pct > 0.0 && pct <= 100.0 {
            Ok(SlaTarget((pct * 1000.0).round() / 1000.0))
        } else {
            Err(format!(
                "sla_target_pct must be greater than 0 and at most 100, not {pct}"
            ))
        }
    }
    pub fn pct(self) -> f64 {
        self.0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum DirectoryEvent {
    TenantRegistered {
        tenant_id: Uuid,
        name: Name,
        /// The zone reports use for clients that name none; UTC if absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        time_zone: Option<TimeZoneName>,
    },
    ClientRegistered {
        client_id: Uuid,
        name: Name,
        locale: Locale,
        contacts: Vec<Contact>,
        /// The zone of its calendar periods (monthly reports); the tenant's
        /// if absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        time_zone: Option<TimeZoneName>,
    },
    ClientNameReserved {
        client_id: Uuid,
        name: Name,
    },
    ServiceRegistered {
        service_id: Uuid,
        client_id: Uuid,
        name: Name,
        components: Vec<Component>,
        sla_target_pct: SlaTarget,
        notice_period_h: u32,
        /// The hours the SLA commits to, in the client's zone; every hour
        /// if absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sla_hours: Option<ServiceHours>,
        /// When every alert of an incident has resolved, the impact ends
        /// at the last resolution (SPEC §5).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        auto_mitigate: bool,
    },
    ServiceNameReserved {
        service_id: Uuid,
        name: Name,
    },
    /// The service now depends on exactly these services, its parents
    /// (`domain::dependency`): sorted, without repeats; empty: on none.
    ServiceDependenciesSet {
        service_id: Uuid,
        depends_on: Vec<Uuid>,
    },
}

impl DirectoryEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            DirectoryEvent::TenantRegistered { .. } => "TenantRegistered",
            DirectoryEvent::ClientRegistered { .. } => "ClientRegistered",
            DirectoryEvent::ClientNameReserved { .. } => "ClientNameReserved",
            DirectoryEvent::ServiceRegistered { .. } => "ServiceRegistered",
            DirectoryEvent::ServiceNameReserved { .. } => "ServiceNameReserved",
            DirectoryEvent::ServiceDependenciesSet { .. } => "ServiceDependenciesSet",
        }
    }

    /// The payload as stored: the variant's fields, without the tag.
    pub fn payload(&self) -> serde_json::Value {
        crate::event::untagged_payload(self)
    }

    pub fn from_stored(event_type: &str, payload: &serde_json::Value) -> Option<DirectoryEvent> {
        crate::event::from_tagged(event_type, payload)
    }
}

// ---------------------------------------------------------------- commands

#[derive(Debug, Clone, PartialEq)]
pub struct RegisterClient {
    pub client_id: Uuid,
    pub name: Name,
    pub locale: Locale,
    pub contacts: Vec<Contact>,
    pub time_zone: Option<TimeZoneName>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RegisterService {
    pub service_id: Uuid,
    pub client_id: Uuid,
    pub name: Name,
    pub components: Vec<Component>,
    pub sla_target_pct: SlaTarget,
    pub notice_period_h: u32,
    pub sla_hours: Option<ServiceHours>,
    pub auto_mitigate: bool,
}

/// What may be asked of a service.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceCommand {
    Register(RegisterService),
    /// Replaces its parents (`domain::dependency`).
    SetDependencies {
        depends_on: Vec<Uuid>,
    },
}

// --------------------------------------------------------------- decisions

/// A client's registration; that it does not exist yet is the caller's to
/// check (`Client::decide`).
pub fn decide_register_client(cmd: RegisterClient) -> Result<Vec<DirectoryEvent>, Rejection> {
    if cmd.contacts.len() > CONTACTS_MAX {
        return Err(Rejection::Invalid(format!(
            "at most {CONTACTS_MAX} contacts"
        )));
    }
    Ok(vec![DirectoryEvent::ClientRegistered {
        client_id: cmd.client_id,
        name: cmd.name,
        locale: cmd.locale,
        contacts: cmd.contacts,
        time_zone: cmd.time_zone,
    }])
}

/// A service's registration. `client_exists` is looked up by the caller
/// (the domain does no I/O); that the service does not exist yet is the
/// caller's to check (`Service::decide`).
pub fn decide_register_service(
    client_exists: bool,
    cmd: RegisterService,
) -> Result<Vec<DirectoryEvent>, Rejection> {
    if !client_exists {
        return Err(Rejection::NotFound(format!("client {}", cmd.client_id)));
    }
    if cmd.notice_period_h > NOTICE_PERIOD_MAX_H {
        return Err(Rejection::Invalid(format!(
            "notice_period_h must be at most {NOTICE_PERIOD_MAX_H}"
        )));
    }
    if cmd.components.len() > COMPONENTS_MAX {
        return Err(Rejection::Invalid(format!(
            "at most {COMPONENTS_MAX} components"
        )));
    }
    Ok(vec![DirectoryEvent::ServiceRegistered {
        service_id: cmd.service_id,
        client_id: cmd.client_id,
        name: cmd.name,
        components: cmd.components,
        sla_target_pct: cmd.sla_target_pct,
        notice_period_h: cmd.notice_period_h,
        sla_hours: cmd.sla_hours,
        auto_mitigate: cmd.auto_mitigate,
    }])
}

/// A service's new parents, checked (`dependency::checked_parents`), on its
/// stream and on the tenant's graph stream at the version it was read at;
/// nothing when they are the parents it has.
pub fn decide_set_dependencies(
    service: &Service,
    depends_on: &[Uuid],
    ctx: &DependencyContext,
) -> Result<Outcome<DirectoryEvent>, Rejection> {
    let parents = checked_parents(service.id, depends_on, ctx)?;
    if parents == service.depends_on {
        return Ok(Outcome::only(Vec::new()));
    }
    let changed = GraphEvent::DependencyGraphChanged {
        service_id: service.id,
        depends_on: parents.clone(),
    };
    let set = DirectoryEvent::ServiceDependenciesSet {
        service_id: service.id,
        depends_on: parents,
    };
    Ok(Outcome::only(vec![set]).and(Elsewhere {
        stream: GRAPH_STREAM.to_owned(),
        expected: Expected::Exact(ctx.graph.version),
        events: vec![(changed.type_name(), changed.payload())],
        recorder: Recorder::Caller,
    }))
}

// -------------------------------------------------------------- aggregates

/// A client as registered, and when.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Client {
    pub id: Uuid,
    pub name: Name,
    pub locale: Locale,
    /// As registered; `null`: the tenant's zone (UTC if it has none).
    pub time_zone: Option<TimeZoneName>,
    pub contacts: Vec<Contact>,
    pub registered_at: DateTime<Utc>,
}

/// A new entity's stream and the reservation of its unique name, appended
/// together: a name taken is the reservation's stream found existing.
fn reserved<E>(events: Vec<E>, name_stream: String, reservation: DirectoryEvent) -> Outcome<E> {
    Outcome::only(events).and(Elsewhere {
        stream: name_stream,
        expected: Expected::NoStream,
        events: vec![(reservation.type_name(), reservation.payload())],
        recorder: Recorder::Caller,
    })
}

impl Aggregate for Client {
    stored_events!(DirectoryEvent, client_stream);
    type Command = RegisterClient;
    type Context = ();
    const NOUN: &'static str = "client";

    fn evolve(
        state: Option<Self>,
        event: &DirectoryEvent,
        at: DateTime<Utc>,
        _: By<'_>,
    ) -> Option<Self> {
        match event {
            DirectoryEvent::ClientRegistered {
                client_id,
                name,
                locale,
                contacts,
                time_zone,
            } => Some(Client {
                id: *client_id,
                name: name.clone(),
                locale: *locale,
                time_zone: time_zone.clone(),
                contacts: contacts.clone(),
                registered_at: at,
            }),
            _ => state,
        }
    }
    fn status(&self) -> &'static str {
        "registered"
    }
    fn decide(
        state: Option<&Self>,
        cmd: RegisterClient,
        _: &(),
        _: &str,
    ) -> Result<Outcome<DirectoryEvent>, Rejection> {
        if state.is_some() {
            return Err(Rejection::AlreadyExists(format!(
                "client {}",
                cmd.client_id
            )));
        }
        let reservation = DirectoryEvent::ClientNameReserved {
            client_id: cmd.client_id,
            name: cmd.name.clone(),
        };
        let name_stream = client_name_stream(&cmd.name);
        let events = decide_register_client(cmd)?;
        Ok(reserved(events, name_stream, reservation))
    }
}

/// A service as registered, and when.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Service {
    pub id: Uuid,
    pub client_id: Uuid,
    pub name: Name,
    pub components: Vec<Component>,
    pub sla_target_pct: SlaTarget,
    pub notice_period_h: u32,
    pub sla_hours: Option<ServiceHours>,
    pub auto_mitigate: bool,
    pub registered_at: DateTime<Utc>,
    /// The services it depends on, its parents: while one of them (or one
    /// of theirs) has a probe down, its alerts open no incident
    /// (`suppressed_by_parent`).
    pub depends_on: Vec<Uuid>,
}

/// What a service's commands need from beyond its stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceContext {
    /// The client it is for was registered (registering).
    pub client_exists: bool,
    /// The tenant's dependencies and which named parents are unknown
    /// (setting its dependencies).
    pub dependencies: DependencyContext,
}

impl Aggregate for Service {
    stored_events!(DirectoryEvent, service_stream);
    type Command = ServiceCommand;
    type Context = ServiceContext;
    const NOUN: &'static str = "service";

    fn evolve(
        state: Option<Self>,
        event: &DirectoryEvent,
        at: DateTime<Utc>,
        _: By<'_>,
    ) -> Option<Self> {
        match event {
            DirectoryEvent::ServiceRegistered {
                service_id,
                client_id,
                name,
                components,
                sla_target_pct,
                notice_period_h,
                sla_hours,
                auto_mitigate,
            } => Some(Service {
                id: *service_id,
                client_id: *client_id,
                name: name.clone(),
                components: components.clone(),
                sla_target_pct: *sla_target_pct,
                notice_period_h: *notice_period_h,
                sla_hours: sla_hours.clone(),
                auto_mitigate: *auto_mitigate,
                registered_at: at,
                depends_on: Vec::new(),
            }),
            DirectoryEvent::ServiceDependenciesSet { depends_on, .. } => state.map(|s| Service {
                depends_on: depends_on.clone(),
                ..s
            }),
            _ => state,
        }
    }
    fn status(&self) -> &'static str {
        "registered"
    }
    fn decide(
        state: Option<&Self>,
        cmd: ServiceCommand,
        ctx: &ServiceContext,
        _: &str,
    ) -> Result<Outcome<DirectoryEvent>, Rejection> {
        let cmd = match cmd {
            ServiceCommand::Register(cmd) => cmd,
            ServiceCommand::SetDependencies { depends_on } => {
                let service = existing(state, "set the dependencies of")?;
                return decide_set_dependencies(service, &depends_on, &ctx.dependencies);
            }
        };
        if state.is_some() {
            return Err(Rejection::AlreadyExists(format!(
                "service {}",
                cmd.service_id
            )));
        }
        let reservation = DirectoryEvent::ServiceNameReserved {
            service_id: cmd.service_id,
            name: cmd.name.clone(),
        };
        let name_stream = service_name_stream(&cmd.name);
        let events = decide_register_service(ctx.client_exists, cmd)?;
        Ok(reserved(events, name_stream, reservation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register_service(client_id: Uuid) -> RegisterService {
        RegisterService {
            service_id: Uuid::from_u128(10),
            client_id,
            name: Name::parse("name", "受注サイト").unwrap(),
            components: vec![Component {
                name: Name::parse("name", "db-1").unwrap(),
                kind: ComponentKind::Database,
            }],
            sla_target_pct: SlaTarget::parse(99.9).unwrap(),
            notice_period_h: 72,
            sla_hours: None,
            auto_mitigate: false,
        }
    }

    fn exists() -> ServiceContext {
        ServiceContext {
            client_exists: true,
            ..ServiceContext::default()
        }
    }

    fn registered(events: &[DirectoryEvent]) -> Option<Service> {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let by = By {
            actor: "admin",
            role: "admin",
        };
        events
            .iter()
            .fold(None, |s, e| Service::evolve(s, e, at, by))
    }

    #[test]
    fn given_nothing_when_registering_a_service_then_it_is_registered() {
        let events = decide_register_service(true, register_service(Uuid::nil())).unwrap();
        assert_eq!(events.len(), 1);
        let state = registered(&events).unwrap();
        assert_eq!(state.notice_period_h, 72);
        assert_eq!(state.name.as_str(), "受注サイト");
    }

    #[test]
    fn given_a_registered_service_when_registering_again_then_rejected() {
        let events = decide_register_service(true, register_service(Uuid::nil())).unwrap();
        let state = registered(&events);
        let again = Service::decide(
            state.as_ref(),
            ServiceCommand::Register(register_service(Uuid::nil())),
            &exists(),
            "admin",
        );
        assert!(matches!(again, Err(Rejection::AlreadyExists(_))));
    }

    #[test]
    fn a_service_needs_an_existing_client_and_a_sane_notice_period() {
        let missing = decide_register_service(false, register_service(Uuid::nil()));
        assert!(matches!(missing, Err(Rejection::NotFound(_))));
        let mut cmd = register_service(Uuid::nil());
        cmd.notice_period_h = NOTICE_PERIOD_MAX_H + 1;
        assert!(matches!(
            decide_register_service(true, cmd),
            Err(Rejection::Invalid(_))
        ));
    }

    #[test]
    fn dependencies_are_set_on_the_service_and_the_graph_stream_and_the_same_set_records_nothing() {
        let events = decide_register_service(true, register_service(Uuid::nil())).unwrap();
        let state = registered(&events).unwrap();
        assert!(state.depends_on.is_empty());
        let parent = Uuid::from_u128(20);
        let mut ctx = exists();
        ctx.dependencies.graph.version = 3;
        let set = |state: &Service, ctx: &ServiceContext| {
            Service::decide(
                Some(state),
                ServiceCommand::SetDependencies {
                    depends_on: vec![parent, parent],
                },
                ctx,
                "admin",
            )
        };
        let outcome = set(&state, &ctx).unwrap();
        assert_eq!(
            outcome.events,
            [DirectoryEvent::ServiceDependenciesSet {
                service_id: state.id,
                depends_on: vec![parent],
            }]
        );
        assert_eq!(outcome.elsewhere[0].stream, GRAPH_STREAM);
        assert_eq!(outcome.elsewhere[0].expected, Expected::Exact(3));
        let mut all = events.clone();
        all.extend(outcome.events);
        let state = registered(&all).unwrap();
        assert_eq!(state.depends_on, [parent]);
        let again = set(&state, &ctx).unwrap();
        assert!(again.events.is_empty() && again.elsewhere.is_empty());
        // A service never registered has no dependencies to set.
        let none = Service::decide(
            None,
            ServiceCommand::SetDependencies { depends_on: vec![] },
            &ctx,
            "admin",
        );
        assert!(matches!(none, Err(Rejection::NotFound(_))));
    }

    #[test]
    fn sla_targets_are_bounded() {
        assert!(SlaTarget::parse(0.0).is_err());
        assert!(SlaTarget::parse(100.5).is_err());
        assert!(SlaTarget::parse(f64::NAN).is_err());
        assert_eq!(SlaTarget::parse(99.9951).unwrap().pct(), 99.995);
    }

    #[test]
    fn events_round_trip_through_their_stored_form() {
        let events = decide_register_service(true, register_service(Uuid::nil())).unwrap();
        let stored = events[0].payload();
        assert_eq!(
            DirectoryEvent::from_stored(events[0].type_name(), &stored).as_ref(),
            Some(&events[0])
        );
        assert!(crate::catalogue::lookup(events[0].type_name()).is_some());
    }

    #[test]
    fn name_reservations_ignore_case_and_fit_any_name() {
        let a = Name::parse("name", "Order Site").unwrap();
        let b = Name::parse("name", " order site").unwrap();
        assert_eq!(service_name_stream(&a), service_name_stream(&b));
        let long = Name::parse("name", &"受".repeat(crate::text::NAME_LEN_MAX_CHARS)).unwrap();
        assert!(service_name_stream(&long).len() < 100);
        assert_ne!(service_name_stream(&long), service_name_stream(&a));
    }
}
