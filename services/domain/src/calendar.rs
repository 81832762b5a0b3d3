//! iCalendar (RFC 5545) text for `/calendar.ics`: maintenance windows and
//! scheduled changes as VEVENTs.
//!
//! Written by hand (about a page): TEXT values are escaped (§3.3.11), lines
//! end in CRLF and are folded at 75 octets without splitting a UTF-8
//! character (§3.1), times are UTC (`…Z`).

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Octets of a content line before it is folded (RFC 5545 §3.1).
const LINE_LEN_MAX_OCTETS: usize = 75;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Globally unique: `<kind>-<id>@opsledger`.
    pub uid: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub summary: String,
    pub description: Option<String>,
    /// An RRULE value, for recurring windows.
    pub rrule: Option<String>,
    /// TENTATIVE, CONFIRMED or CANCELLED.
    pub status: &'static str,
    pub categories: Vec<String>,
    pub last_modified: DateTime<Utc>,
    /// Revision of the event (its stream's version), so that calendar
    /// clients take a later copy over an earlier one.
    pub sequence: i64,
}

impl Event {
    pub fn uid_of(kind: &str, id: Uuid) -> String {
        format!("{kind}-{id}@opsledger")
    }
}

/// Escapes a TEXT value: backslash, semicolon, comma and line breaks.
pub fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push_str("\\n");
                }
            }
            '\n' => out.push_str("\\n"),
            // Other control characters are not allowed in TEXT.
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// One content line, folded: at most 75 octets a line, continuation lines
/// starting with a space, never splitting a character; each line ends CRLF.
pub fn fold(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + line.len() / 60 * 3 + 2);
    let mut used = 0;
    for c in line.chars() {
        let n = c.len_utf8();
        if used + n > LINE_LEN_MAX_OCTETS {
            out.push_str("\r\n ");
            used = 1;
        }
        out.push(c);
        used += n;
    }
    out.push_str("\r\n");
    out
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// A whole calendar.
pub fn render(name: &str, events: &[Event], now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let mut line = |l: String| out.push_str(&fold(&l));
    line("BEGIN:VCALENDAR".into());
    line("VERSION:2.0".into());
    line("PRODID:-//opsledger//maintenance calendar//EN".into());
    line("CALSCALE:GREGORIAN".into());
    line("METHOD:PUBLISH".into());
    line(format!("X-WR-CALNAME:{}", escape_text(name)));
    for e in events {
        line("BEGIN:VEVENT".into());
        line(format!("UID:{}", e.uid));
        line(format!("DTSTAMP:{}", stamp(now)));
        line(format!("LAST-MODIFIED:{}", stamp(e.last_modified)));
        line(format!("SEQUENCE:{}", e.sequence.max(0)));
        line(format!("DTSTART:{}", stamp(e.start)));
        line(format!("DTEND:{}", stamp(e.end)));
        if let Some(r) = &e.rrule {
            line(format!("RRULE:{r}"));
        }
        line(format!("SUMMARY:{}", escape_text(&e.summary)));
        if let Some(d) = &e.description {
            line(format!("DESCRIPTION:{}", escape_text(d)));
        }
        if !e.categories.is_empty() {
            let cats: Vec<String> = e.categories.iter().map(|c| escape_text(c)).collect();
            line(format!("CATEGORIES:{}", cats.join(",")));
        }
        line(format!("STATUS:{}", e.status));
        line("TRANSP:OPAQUE".into());
        line("END:VEVENT".into());
    }
    line("END:VCALENDAR".into());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape_text("a;b,c\\d\ne\r\nf"), "a\\;b\\,c\\\\d\\ne\\nf");
        assert_eq!(escape_text("x\u{7}y"), "x y");
    }

    #[test]
    fn long_lines_fold_at_75_octets_on_character_boundaries() {
        let line = format!("SUMMARY:{}", "定期メンテナンス".repeat(10));
        let folded = fold(&line);
        assert!(folded.ends_with("\r\n"));
        for (i, l) in folded.trim_end_matches("\r\n").split("\r\n").enumerate() {
            assert!(l.len() <= 75, "line {i} is {} octets", l.len());
            if i > 0 {
                assert!(l.starts_with(' '));
            }
        }
        // Unfolding gives the line back.
        let unfolded = folded.trim_end_matches("\r\n").replace("\r\n ", "");
        assert_eq!(unfolded, line);
        assert_eq!(fold("SHORT:x"), "SHORT:x\r\n");
    }

    #[test]
    fn a_calendar_has_its_events_and_crlf_lines() {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let e = Event {
            uid: Event::uid_of("window", Uuid::from_u128(1)),
            start: t,
            end: t + chrono::Duration::hours(2),
            summary: "Patch; reboot, done".into(),
            description: Some("line1\nline2".into()),
            rrule: Some("FREQ=WEEKLY;COUNT=2".into()),
            status: "CONFIRMED",
            categories: vec!["maintenance".into()],
            last_modified: t,
            sequence: 3,
        };
        let cal = render("opsledger", &[e], t);
        assert!(cal.starts_with("BEGIN:VCALENDAR\r\n"));
        assert!(cal.ends_with("END:VCALENDAR\r\n"));
        assert!(cal.contains("SUMMARY:Patch\\; reboot\\, done\r\n"));
        assert!(cal.contains("RRULE:FREQ=WEEKLY;COUNT=2\r\n"));
        assert!(cal.contains("SEQUENCE:3\r\n"));
        assert!(cal.contains("DTSTART:20270115T080000Z\r\n"));
        assert!(!cal.replace("\r\n", "").contains('\n'));
    }
}
