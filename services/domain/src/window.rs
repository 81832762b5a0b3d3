//! Maintenance windows (SPEC §5): planned → announced → started → ended |
//! cancelled. Stream: `window-<id>`.
//!
//! Invariants:
//! - A window is announced at least the longest notice period of its
//!   services before its (next) start; a later announcement is refused,
//!   unless the window serves an emergency change, and then it is `late`.
//! - A recurring window repeats its first occurrence's length at each
//!   occurrence of an RFC 5545 RRULE (expanded in UTC by the `rrule`
//!   crate); its state is the series'.
//! - Downtime inside an announced window is planned: [`Window::covers`]
//!   answers whether a window is in force for an instant.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{
    existing, stored_events, Aggregate, By, Elsewhere, Expected, Outcome, Recorder,
};
use crate::notice::{self, NoticeKind, WindowFacts};
use crate::notification::{self, NotificationEvent, Recipient};
use crate::Rejection;

pub fn window_stream(id: Uuid) -> String {
    format!("window-{id}")
}

/// Longest occurrence: a window longer than this is not maintenance.
pub const OCCURRENCE_LEN_MAX_HOURS: i64 = 7 * 24;
/// Occurrences expanded for one read at most: bounds the work of a request.
pub const OCCURRENCES_MAX: u16 = 500;
/// Longest RRULE text accepted.
pub const RRULE_LEN_MAX: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = WindowStatus)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Planned,
    Announced,
    Started,
    Ended,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Planned => "planned",
            Status::Announced => "announced",
            Status::Started => "started",
            Status::Ended => "ended",
            Status::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum WindowEvent {
    WindowPlanned {
        window_id: Uuid,
        service_ids: Vec<Uuid>,
        title: String,
        #[serde(default)]
        description: Option<String>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        /// An RFC 5545 RRULE value (without `RRULE:`), first occurrence at `start`.
        #[serde(default)]
        rrule: Option<String>,
        #[serde(default)]
        change_id: Option<Uuid>,
    },
    WindowAnnounced {
        service_ids: Vec<Uuid>,
        /// Announced later than a notice period allows (emergency changes only).
        late: bool,
        /// The contacts told, by mail through the outbox.
        recipients: u32,
    },
    WindowStarted {
        service_ids: Vec<Uuid>,
    },
    WindowEnded {
        service_ids: Vec<Uuid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes_spent: Option<u32>,
    },
    WindowCancelled {
        service_ids: Vec<Uuid>,
        reason: String,
    },
}

impl WindowEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            WindowEvent::WindowPlanned { .. } => "WindowPlanned",
            WindowEvent::WindowAnnounced { .. } => "WindowAnnounced",
            WindowEvent::WindowStarted { .. } => "WindowStarted",
            WindowEvent::WindowEnded { .. } => "WindowEnded",
            WindowEvent::WindowCancelled { .. } => "WindowCancelled",
        }
    }
    pub fn payload(&self) -> serde_json::Value {
        crate::event::untagged_payload(self)
    }
    pub fn from_stored(event_type: &str, payload: &serde_json::Value) -> Option<WindowEvent> {
        crate::event::from_tagged(event_type, payload)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Window {
    pub id: Uuid,
    pub service_ids: Vec<Uuid>,
    pub title: String,
    pub description: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub rrule: Option<String>,
    pub change_id: Option<Uuid>,
    pub status: Status,
    pub planned_by: String,
    pub planned_at: DateTime<Utc>,
    pub announced_at: Option<DateTime<Utc>>,
    pub late: bool,
    pub recipients: u32,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
}

pub fn evolve(
    window: Option<Window>,
    event: &WindowEvent,
    at: DateTime<Utc>,
    by: &str,
) -> Option<Window> {
    if let WindowEvent::WindowPlanned {
        window_id,
        service_ids,
        title,
        description,
        start,
        end,
        rrule,
        change_id,
    } = event
    {
        return Some(Window {
            id: *window_id,
            service_ids: service_ids.clone(),
            title: title.clone(),
            description: description.clone(),
            start: *start,
            end: *end,
            rrule: rrule.clone(),
            change_id: *change_id,
            status: Status::Planned,
            planned_by: by.to_owned(),
            planned_at: at,
            announced_at: None,
            late: false,
            recipients: 0,
            started_at: None,
            ended_at: None,
            cancelled_at: None,
            cancel_reason: None,
        });
    }
    let mut w = window?;
    match event {
        WindowEvent::WindowPlanned { .. } => {}
        WindowEvent::WindowAnnounced {
            late, recipients, ..
        } => {
            w.status = Status::Announced;
            w.announced_at = Some(at);
            w.late = *late;
            w.recipients = *recipients;
        }
        WindowEvent::WindowStarted { .. } => {
            w.status = Status::Started;
            w.started_at = Some(at);
        }
        WindowEvent::WindowEnded { .. } => {
            w.status = Status::Ended;
            w.ended_at = Some(at);
        }
        WindowEvent::WindowCancelled { reason, .. } => {
            w.status = Status::Cancelled;
            w.cancelled_at = Some(at);
            w.cancel_reason = Some(reason.clone());
        }
    }
    Some(w)
}

/// The recurrence set of a rule whose first occurrence starts at `start`.
fn rule_set(start: DateTime<Utc>, rule: &str) -> Result<rrule::RRuleSet, String> {
    let text = format!("DTSTART:{}\nRRULE:{rule}", start.format("%Y%m%dT%H%M%SZ"));
    text.parse::<rrule::RRuleSet>().map_err(|e| e.to_string())
}

/// Checks an RRULE value: parseable, no finer than daily (a window is not
/// an hourly event), and no other properties smuggled in.
pub fn parse_rrule(start: DateTime<Utc>, raw: &str) -> Result<String, Rejection> {
    let rule = raw.trim();
    let rule = rule.strip_prefix("RRULE:").unwrap_or(rule);
    let bad =
        |why: String| Rejection::Invalid(format!("rrule is not a valid RFC 5545 RRULE: {why}"));
    if rule.is_empty() || rule.len() > RRULE_LEN_MAX || rule.chars().any(char::is_control) {
        return Err(bad(format!(
            "it must be one line of at most {RRULE_LEN_MAX} characters"
        )));
    }
    let freq = rule
        .split(';')
        .find_map(|p| p.strip_prefix("FREQ="))
        .ok_or_else(|| bad("FREQ is missing".into()))?;
    if !matches!(freq, "DAILY" | "WEEKLY" | "MONTHLY" | "YEARLY") {
        return Err(bad(format!(
            "FREQ={freq}: a window recurs DAILY, WEEKLY, MONTHLY or YEARLY"
        )));
    }
    if rule.split(';').any(|p| p.starts_with("DTSTART")) {
        return Err(bad("the start is the window's `start`".into()));
    }
    rule_set(start, rule).map_err(bad)?;
    Ok(rule.to_owned())
}

/// What a new window asks for, as parsed at the edge.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub window_id: Uuid,
    pub service_ids: Vec<Uuid>,
    pub title: String,
    pub description: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub rrule: Option<String>,
    pub change_id: Option<Uuid>,
}

pub fn decide_plan(p: Plan) -> Result<Vec<WindowEvent>, Rejection> {
    let title = crate::text::Name::parse("title", &p.title)
        .map_err(Rejection::Invalid)?
        .as_str()
        .to_owned();
    if p.service_ids.is_empty() || p.service_ids.len() > crate::change::SERVICES_MAX {
        return Err(Rejection::Invalid(format!(
            "service_ids must name 1 to {} services",
            crate::change::SERVICES_MAX
        )));
    }
    if p.end <= p.start {
        return Err(Rejection::Invalid("end must be after start".into()));
    }
    if p.end - p.start > Duration::hours(OCCURRENCE_LEN_MAX_HOURS) {
        return Err(Rejection::Invalid(format!(
            "a window lasts at most {OCCURRENCE_LEN_MAX_HOURS} hours"
        )));
    }
    let rrule = match p.rrule {
        Some(r) => Some(parse_rrule(p.start, &r)?),
        None => None,
    };
    let description = p
        .description
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty());
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > crate::change::TEXT_LEN_MAX_CHARS)
    {
        return Err(Rejection::Invalid("description is too long".into()));
    }
    Ok(vec![WindowEvent::WindowPlanned {
        window_id: p.window_id,
        service_ids: p.service_ids,
        title,
        description,
        start: p.start,
        end: p.end,
        rrule,
        change_id: p.change_id,
    }])
}

impl Window {
    pub fn len(&self) -> Duration {
        self.end - self.start
    }

    /// Occurrences `(start, end)` that overlap `[from, to)`, oldest first, at
    /// most [`OCCURRENCES_MAX`]. A window without a rule has one.
    pub fn occurrences(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let len = self.len();
        let Some(rule) = &self.rrule else {
            return if crate::change::overlaps((self.start, self.end), (from, to)) {
                vec![(self.start, self.end)]
            } else {
                vec![]
            };
        };
        let Ok(set) = rule_set(self.start, rule) else {
            return vec![];
        };
        let utc = rrule::Tz::UTC;
        // An occurrence that started up to `len` before `from` still overlaps.
        let after = (from - len).with_timezone(&utc);
        let before = to.with_timezone(&utc);
        set.after(after)
            .before(before)
            .all(OCCURRENCES_MAX)
            .dates
            .into_iter()
            .map(|d| {
                let s = d.with_timezone(&Utc);
                (s, s + len)
            })
            .filter(|o| crate::change::overlaps(*o, (from, to)))
            // RFC 3339 ends with year 9999; a rule may run past it.
            .filter(|(_, end)| *end <= crate::period::last_instant())
            .collect()
    }

    /// The time in `[from, to)` this window makes planned (SPEC §6): only
    /// a window that was announced plans anything; a single one from its
    /// actual start (if early) to its actual end once ended (early or
    /// late), a recurring one its occurrences; what follows an end or a
    /// cancellation is not planned.
    pub fn planned(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        if self.announced_at.is_none() {
            return vec![];
        }
        let stop = match self.status {
            Status::Planned => return vec![],
            Status::Announced | Status::Started => None,
            Status::Ended => self.ended_at,
            Status::Cancelled => self.cancelled_at,
        };
        let spans = match &self.rrule {
            None => {
                let start = self.started_at.map_or(self.start, |s| s.min(self.start));
                let end = match (self.status, self.ended_at) {
                    (Status::Ended, Some(e)) => e,
                    _ => self.end,
                };
                vec![(start, end)]
            }
            Some(_) => self.occurrences(from, to),
        };
        spans
            .into_iter()
            .filter_map(|(s, e)| {
                let e = stop.map_or(e, |x| e.min(x)).min(to);
                let s = s.max(from);
                (s < e).then_some((s, e))
            })
            .collect()
    }

    /// The first occurrence that has not ended by `now`.
    pub fn next_occurrence(&self, now: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        match &self.rrule {
            None => (self.end > now).then_some((self.start, self.end)),
            Some(_) => self
                .occurrences(now, now + Duration::days(3660))
                .into_iter()
                .next(),
        }
    }

    /// Whether the window is in force at `at`: announced or started, and
    /// `at` inside an occurrence (or, once started, between its actual start
    /// and its planned end).
    pub fn covers(&self, at: DateTime<Utc>) -> bool {
        match self.status {
            Status::Announced => !self
                .occurrences(at, at + Duration::microseconds(1))
                .is_empty(),
            Status::Started => {
                let early = self.rrule.is_none()
                    && self.started_at.is_some_and(|s| s <= at && at < self.end);
                early
                    || !self
                        .occurrences(at, at + Duration::microseconds(1))
                        .is_empty()
            }
            _ => false,
        }
    }
}

/// The notice a service needs: its id and its notice period in hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notice {
    pub service_id: Uuid,
    pub notice_period_h: u32,
}

/// The latest instant a window starting at `start` may be announced for a
/// service with this notice period.
pub fn announce_by(start: DateTime<Utc>, notice_period_h: u32) -> DateTime<Utc> {
    start - Duration::hours(notice_period_h as i64)
}

/// Commands on an existing window.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Announce {
        now: DateTime<Utc>,
        notices: Vec<Notice>,
        /// The window serves an emergency change: a late announcement is
        /// accepted and flagged.
        emergency: bool,
        recipients: u32,
    },
    Start,
    End {
        minutes_spent: Option<u32>,
    },
    Cancel {
        reason: String,
    },
}

fn invalid_in(command: &str, status: Status) -> Rejection {
    Rejection::InvalidState {
        entity: "maintenance window",
        command: command.to_owned(),
        state: status.as_str().to_owned(),
    }
}

pub fn decide(window: &Window, command: Command) -> Result<Vec<WindowEvent>, Rejection> {
    use Status::*;
    let s = window.status;
    let services = window.service_ids.clone();
    let event = match command {
        Command::Announce {
            now,
            notices,
            emergency,
            recipients,
        } => {
            if s != Planned {
                return Err(invalid_in("announce", s));
            }
            let Some((start, _)) = window.next_occurrence(now) else {
                return Err(Rejection::Invalid(
                    "the window is over: there is nothing left to announce".into(),
                ));
            };
            // The longest notice period binds; name it.
            let binding = notices
                .iter()
                .max_by_key(|n| (n.notice_period_h, n.service_id))
                .copied();
            let late = match binding {
                Some(n) if now > announce_by(start, n.notice_period_h) => {
                    if !emergency {
                        return Err(Rejection::Invalid(format!(
                            "service {} needs {} h notice: a window starting {} had to be \
                             announced by {}; only a window serving an emergency change may be \
                             announced later",
                            n.service_id,
                            n.notice_period_h,
                            start.to_rfc3339(),
                            announce_by(start, n.notice_period_h).to_rfc3339(),
                        )));
                    }
                    true
                }
                _ => false,
            };
            WindowEvent::WindowAnnounced {
                service_ids: services,
                late,
                recipients,
            }
        }
        Command::Start => match s {
            Planned | Announced => WindowEvent::WindowStarted {
                service_ids: services,
            },
            _ => return Err(invalid_in("start", s)),
        },
        Command::End { minutes_spent } => match s {
            Started => WindowEvent::WindowEnded {
                service_ids: services,
                minutes_spent: crate::worklog::minutes(minutes_spent)?,
            },
            _ => return Err(invalid_in("end", s)),
        },
        Command::Cancel { reason } => match s {
            Planned | Announced => {
                let reason = reason.trim();
                if reason.is_empty() || reason.chars().count() > crate::change::TEXT_LEN_MAX_CHARS {
                    return Err(Rejection::Invalid("reason must not be empty".into()));
                }
                WindowEvent::WindowCancelled {
                    service_ids: services,
                    reason: reason.to_owned(),
                }
            }
            _ => return Err(invalid_in("cancel", s)),
        },
    };
    Ok(vec![event])
}

/// What may be asked of a window: the commands of the one command path.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Plan(Plan),
    Announce,
    Start,
    End { minutes_spent: Option<u32> },
    Cancel { reason: String },
}

/// Upcoming occurrences a mail lists, at most.
pub const MAIL_OCCURRENCES_MAX: usize = 5;

/// What deciding a step needs from beyond the window's stream, looked up
/// for an announcement (and a cancellation of an announced window, whose
/// contacts are told it is called off).
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    pub now: DateTime<Utc>,
    /// The notice period of each of its services.
    pub notices: Vec<Notice>,
    /// It serves an emergency change.
    pub emergency: bool,
    /// The contacts subscribed to its services, each address once, with the
    /// names of its own client's services among them.
    pub contacts: Vec<(Recipient, Vec<String>)>,
    /// The tenant's latest signed checkpoint, carried at each mail's foot.
    pub checkpoint: Option<String>,
    /// The id of the window's new event, which each notice names as its cause.
    pub cause_id: Uuid,
}

impl Context {
    /// The context of a step that tells nobody.
    pub fn at(now: DateTime<Utc>) -> Context {
        Context {
            now,
            notices: Vec::new(),
            emergency: false,
            contacts: Vec::new(),
            checkpoint: None,
            cause_id: Uuid::nil(),
        }
    }
}

impl Aggregate for Window {
    stored_events!(WindowEvent, window_stream);
    type Command = Step;
    type Context = Context;
    const NOUN: &'static str = "maintenance window";

    fn evolve(
        state: Option<Self>,
        event: &WindowEvent,
        at: DateTime<Utc>,
        by: By<'_>,
    ) -> Option<Self> {
        evolve(state, event, at, by.actor)
    }
    fn status(&self) -> &'static str {
        self.status.as_str()
    }

    /// Announcing tells every contact of its services, each in its language
    /// and of its own client's services only, in the same append; so does
    /// cancelling a window that was announced.
    fn decide(
        state: Option<&Self>,
        step: Step,
        ctx: &Context,
        _: &str,
    ) -> Result<Outcome<WindowEvent>, Rejection> {
        if let (None, Step::Plan(p)) = (state, &step) {
            return decide_plan(p.clone()).map(Outcome::only);
        }
        let w = existing(state, "change")?;
        let (command, told) = match step {
            Step::Plan(_) => {
                return Err(Rejection::AlreadyExists(format!(
                    "maintenance window {}",
                    w.id
                )))
            }
            Step::Announce => (
                Command::Announce {
                    now: ctx.now,
                    notices: ctx.notices.clone(),
                    emergency: ctx.emergency,
                    recipients: ctx.contacts.len() as u32,
                },
                Some(NoticeKind::WindowAnnounced),
            ),
            Step::Start => (Command::Start, None),
            Step::End { minutes_spent } => (Command::End { minutes_spent }, None),
            Step::Cancel { reason } => (
                Command::Cancel { reason },
                (w.status == Status::Announced).then_some(NoticeKind::WindowCancelled),
            ),
        };
        let events = decide(w, command)?;
        let Some(kind) = told else {
            return Ok(Outcome::only(events));
        };
        Ok(Outcome {
            events,
            elsewhere: notices(kind, w, ctx),
            first_event_id: Some(ctx.cause_id),
        })
    }
}

/// One notification request per contact, caused by the window's new event:
/// each told once, in its language, of its own client's services only.
fn notices(kind: NoticeKind, w: &Window, ctx: &Context) -> Vec<Elsewhere> {
    let next: Vec<(DateTime<Utc>, DateTime<Utc>)> = w
        .occurrences(ctx.now, ctx.now + Duration::days(3660))
        .into_iter()
        .take(MAIL_OCCURRENCES_MAX)
        .collect();
    ctx.contacts
        .iter()
        .map(|(recipient, services)| {
            let message = notice::render_window(
                kind,
                &recipient.locale,
                &WindowFacts {
                    window_id: w.id,
                    title: w.title.clone(),
                    description: w.description.clone(),
                    services: services.clone(),
                    occurrences: next.clone(),
                    rrule: w.rrule.clone(),
                    recipient_name: recipient.name.clone(),
                },
            )
            .with_checkpoint(ctx.checkpoint.as_deref());
            let id = notification::notification_id(ctx.cause_id, &recipient.email);
            let requested = NotificationEvent::NotificationRequested {
                notification_id: id,
                kind,
                cause_event_id: ctx.cause_id,
                incident_id: None,
                change_id: None,
                recipient: recipient.clone(),
                message,
            };
            Elsewhere {
                stream: notification::notification_stream(id),
                expected: Expected::NoStream,
                events: vec![(requested.type_name(), requested.payload())],
                recorder: Recorder::System("system:notifier"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, 0, 0).unwrap()
    }

    fn planned(rrule: Option<&str>) -> Window {
        let e = decide_plan(Plan {
            window_id: Uuid::from_u128(1),
            service_ids: vec![Uuid::from_u128(7)],
            title: "OS patching".into(),
            description: None,
            start: at(2026, 12, 6, 2),
            end: at(2026, 12, 6, 4),
            rrule: rrule.map(str::to_owned),
            change_id: None,
        })
        .unwrap();
        evolve(None, &e[0], at(2026, 11, 1, 0), "maint").unwrap()
    }

    #[test]
    fn given_contacts_when_a_window_is_announced_or_an_announced_one_cancelled_then_each_is_told_once(
    ) {
        let w = planned(None);
        let ctx = Context {
            notices: vec![Notice {
                service_id: Uuid::from_u128(7),
                notice_period_h: 24,
            }],
            contacts: vec![(
                Recipient {
                    name: "Ops desk".into(),
                    email: "desk@client.example".into(),
                    locale: "ja".into(),
                    user_id: None,
                    subscription_id: Some(Uuid::from_u128(3)),
                    client_id: Some(Uuid::from_u128(4)),
                },
                vec!["shop".into()],
            )],
            cause_id: Uuid::from_u128(42),
            ..Context::at(at(2026, 12, 1, 0))
        };
        let out = <Window as Aggregate>::decide(Some(&w), Step::Announce, &ctx, "maint").unwrap();
        assert!(matches!(
            out.events[..],
            [WindowEvent::WindowAnnounced {
                late: false,
                recipients: 1,
                ..
            }]
        ));
        assert_eq!(out.first_event_id, Some(Uuid::from_u128(42)));
        assert_eq!(out.elsewhere.len(), 1);
        let told = &out.elsewhere[0];
        assert_eq!(told.recorder, Recorder::System("system:notifier"));
        assert_eq!(told.expected, Expected::NoStream);
        assert_eq!(
            told.events[0].1["cause_event_id"],
            Uuid::from_u128(42).to_string()
        );

        // Cancelling a window nobody was told of tells nobody.
        let cancel = Step::Cancel {
            reason: "postponed".into(),
        };
        let quiet = <Window as Aggregate>::decide(Some(&w), cancel.clone(), &ctx, "maint").unwrap();
        assert!(quiet.elsewhere.is_empty());
        let announced = evolve(Some(w), &out.events[0], ctx.now, "maint").unwrap();
        let called_off =
            <Window as Aggregate>::decide(Some(&announced), cancel, &ctx, "maint").unwrap();
        assert_eq!(called_off.elsewhere.len(), 1);
        assert_eq!(
            called_off.elsewhere[0].events[0].1["kind"],
            "window_cancelled"
        );
    }

    fn announce(
        w: &Window,
        now: DateTime<Utc>,
        hours: u32,
        emergency: bool,
    ) -> Result<Window, Rejection> {
        let events = decide(
            w,
            Command::Announce {
                now,
                notices: vec![
                    Notice {
                        service_id: Uuid::from_u128(7),
                        notice_period_h: hours,
                    },
                    Notice {
                        service_id: Uuid::from_u128(8),
                        notice_period_h: 1,
                    },
                ],
                emergency,
                recipients: 2,
            },
        )?;
        Ok(evolve(Some(w.clone()), &events[0], now, "maint").unwrap())
    }

    #[test]
    fn the_notice_period_is_counted_back_from_the_start() {
        assert_eq!(announce_by(at(2026, 12, 6, 2), 48), at(2026, 12, 4, 2));
        let w = planned(None);
        // Exactly at the deadline is in time; a second later is late.
        assert!(!announce(&w, at(2026, 12, 4, 2), 48, false).unwrap().late);
        let err = announce(&w, at(2026, 12, 4, 2) + Duration::seconds(1), 48, false).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("48 h notice"), "{msg}");
        assert!(msg.contains("2026-12-04T02:00:00+00:00"), "{msg}");
        // An emergency is accepted and flagged.
        let late = announce(&w, at(2026, 12, 5, 2), 48, true).unwrap();
        assert!(late.late);
        assert_eq!(late.status, Status::Announced);
        assert!(announce(&late, at(2026, 12, 5, 3), 48, true).is_err());
    }

    #[test]
    fn weekly_rules_expand_to_each_occurrence_with_the_first_ones_length() {
        let w = planned(Some("FREQ=WEEKLY;BYDAY=SU;COUNT=3"));
        let occ = w.occurrences(at(2026, 11, 1, 0), at(2027, 1, 1, 0));
        assert_eq!(
            occ,
            vec![
                (at(2026, 12, 6, 2), at(2026, 12, 6, 4)),
                (at(2026, 12, 13, 2), at(2026, 12, 13, 4)),
                (at(2026, 12, 20, 2), at(2026, 12, 20, 4)),
            ]
        );
        // A range that starts inside an occurrence still returns it.
        assert_eq!(
            w.occurrences(at(2026, 12, 13, 3), at(2026, 12, 13, 5))
                .len(),
            1
        );
        let monthly = planned(Some("RRULE:FREQ=MONTHLY;INTERVAL=2;UNTIL=20270601T000000Z"));
        let occ = monthly.occurrences(at(2026, 1, 1, 0), at(2028, 1, 1, 0));
        assert_eq!(occ.len(), 3, "{occ:?}");
        assert_eq!(occ[1].0, at(2027, 2, 6, 2));
    }

    #[test]
    fn bad_rules_are_refused() {
        for bad in [
            "FREQ=HOURLY",
            "FREQ=WEEKLY;BYDAY=XX",
            "COUNT=3",
            "FREQ=DAILY\nX-EVIL:1",
            "",
            "FREQ=DAILY;DTSTART=20260101T000000Z",
        ] {
            assert!(parse_rrule(at(2026, 1, 1, 0), bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_rrule(at(2026, 1, 1, 0), "RRULE:FREQ=DAILY;COUNT=2").unwrap(),
            "FREQ=DAILY;COUNT=2"
        );
    }

    #[test]
    fn a_recurring_window_is_announced_against_its_next_occurrence() {
        let w = planned(Some("FREQ=WEEKLY;COUNT=4"));
        // The first occurrence is past: the second (13 Dec 02:00) binds.
        let a = announce(&w, at(2026, 12, 10, 0), 48, false).unwrap();
        assert!(!a.late);
        assert!(announce(&w, at(2026, 12, 12, 0), 48, false).is_err());
    }

    #[test]
    fn only_announced_or_started_windows_cover_their_occurrences() {
        let w = planned(Some("FREQ=DAILY;COUNT=2"));
        assert!(!w.covers(at(2026, 12, 6, 3)));
        let a = announce(&w, at(2026, 11, 1, 0), 48, false).unwrap();
        assert!(a.covers(at(2026, 12, 6, 3)));
        assert!(a.covers(at(2026, 12, 7, 2)));
        assert!(!a.covers(at(2026, 12, 7, 4)), "end is exclusive");
        assert!(!a.covers(at(2026, 12, 8, 3)), "only two occurrences");
        let one = planned(None);
        let started = decide(&one, Command::Start).unwrap();
        let s = evolve(Some(one), &started[0], at(2026, 12, 6, 1), "maint").unwrap();
        assert!(s.covers(at(2026, 12, 6, 1)), "started early");
        let ended = decide(
            &s,
            Command::End {
                minutes_spent: Some(30),
            },
        )
        .unwrap();
        let e = evolve(Some(s), &ended[0], at(2026, 12, 6, 3), "maint").unwrap();
        assert!(!e.covers(at(2026, 12, 6, 3)));
        assert!(decide(&e, Command::Cancel { reason: "x".into() }).is_err());
    }

    #[test]
    fn only_an_announced_window_plans_time_up_to_its_actual_end() {
        let (from, to) = (at(2026, 11, 1, 0), at(2027, 1, 1, 0));
        let w = planned(None);
        assert!(w.planned(from, to).is_empty(), "not announced");
        let w = announce(&w, at(2026, 12, 1, 0), 48, false).unwrap();
        assert_eq!(
            w.planned(from, to),
            vec![(at(2026, 12, 6, 2), at(2026, 12, 6, 4))]
        );
        // Clipped to the period asked for.
        assert_eq!(
            w.planned(at(2026, 12, 6, 3), to),
            vec![(at(2026, 12, 6, 3), at(2026, 12, 6, 4))]
        );
        // Started early, ended late: in force from its actual start to its end.
        let step = |w: &Window, e: WindowEvent, now| evolve(Some(w.clone()), &e, now, "m").unwrap();
        let started = step(
            &w,
            WindowEvent::WindowStarted {
                service_ids: vec![],
            },
            at(2026, 12, 6, 1),
        );
        let ended = step(
            &started,
            WindowEvent::WindowEnded {
                service_ids: vec![],
                minutes_spent: None,
            },
            at(2026, 12, 6, 5),
        );
        assert_eq!(
            ended.planned(from, to),
            vec![(at(2026, 12, 6, 1), at(2026, 12, 6, 5))]
        );
        // A recurring window cancelled after its first occurrence planned that one.
        let weekly = announce(
            &planned(Some("FREQ=WEEKLY;BYDAY=SU;COUNT=3")),
            at(2026, 12, 1, 0),
            48,
            false,
        )
        .unwrap();
        let cancelled = step(
            &weekly,
            WindowEvent::WindowCancelled {
                service_ids: vec![],
                reason: "done".into(),
            },
            at(2026, 12, 10, 0),
        );
        assert_eq!(
            cancelled.planned(from, to),
            vec![(at(2026, 12, 6, 2), at(2026, 12, 6, 4))]
        );
    }
}
