//! Notification texts: the subject and body of each notice, in English or
//! Japanese, rendered from the templates under `templates/notice/`.
//!
//! Templates are embedded at compile time and rendered with minijinja in
//! strict mode (a variable the template names but the context lacks is an
//! error, caught by the tests below) and without auto-escaping: these are
//! plain-text mails. Rendering is deterministic: the same facts give the same
//! text and the same hash, so the outbox can record exactly what was said.

use std::sync::OnceLock;

use chrono::{DateTime, FixedOffset, Utc};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Longest subject, in characters; longer titles are cut to fit.
pub const SUBJECT_LEN_MAX_CHARS: usize = 200;

/// What a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    IncidentOpened,
    IncidentMitigated,
    IncidentResolved,
    IncidentEscalated,
    /// A maintenance window announced to the contacts of its services.
    WindowAnnounced,
    /// An announced maintenance window called off.
    WindowCancelled,
    /// The client's monthly report, mailed on the first day of the month.
    MonthlyReport,
    /// A change submitted for approval, told to the approvers.
    ChangeAwaitingApproval,
    /// This and the five below: a step of a change, told to its requester.
    ChangeApproved,
    ChangeRejected,
    ChangeScheduled,
    ChangeStarted,
    ChangeCompleted,
    ChangeFailed,
}

impl NoticeKind {
    /// The kinds about maintenance windows, rendered by [`render_window`].
    pub const WINDOW: [NoticeKind; 2] = [NoticeKind::WindowAnnounced, NoticeKind::WindowCancelled];

    /// The kinds about a change's steps, rendered by [`render_change`] and
    /// told to staff only (`domain::change_notice`), never to subscribers.
    pub const CHANGE: [NoticeKind; 7] = [
        NoticeKind::ChangeAwaitingApproval,
        NoticeKind::ChangeApproved,
        NoticeKind::ChangeRejected,
        NoticeKind::ChangeScheduled,
        NoticeKind::ChangeStarted,
        NoticeKind::ChangeCompleted,
        NoticeKind::ChangeFailed,
    ];

    /// The kinds about incidents, rendered by [`render`] from [`NoticeFacts`]
    /// (a window's announcement is rendered by [`render_window`]).
    pub const ALL: [NoticeKind; 4] = [
        NoticeKind::IncidentOpened,
        NoticeKind::IncidentMitigated,
        NoticeKind::IncidentResolved,
        NoticeKind::IncidentEscalated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::IncidentOpened => "incident_opened",
            NoticeKind::IncidentMitigated => "incident_mitigated",
            NoticeKind::IncidentResolved => "incident_resolved",
            NoticeKind::IncidentEscalated => "incident_escalated",
            NoticeKind::WindowAnnounced => "window_announced",
            NoticeKind::WindowCancelled => "window_cancelled",
            NoticeKind::MonthlyReport => "monthly_report",
            NoticeKind::ChangeAwaitingApproval => "change_awaiting_approval",
            NoticeKind::ChangeApproved => "change_approved",
            NoticeKind::ChangeRejected => "change_rejected",
            NoticeKind::ChangeScheduled => "change_scheduled",
            NoticeKind::ChangeStarted => "change_started",
            NoticeKind::ChangeCompleted => "change_completed",
            NoticeKind::ChangeFailed => "change_failed",
        }
    }

    /// Every kind: [`NoticeKind::ALL`] (about incidents), the windows', the
    /// monthly report and the changes'.
    pub fn parse(s: &str) -> Option<NoticeKind> {
        NoticeKind::ALL
            .into_iter()
            .chain(NoticeKind::WINDOW)
            .chain([NoticeKind::MonthlyReport])
            .chain(NoticeKind::CHANGE)
            .find(|k| k.as_str() == s)
    }
}

/// What a notice may say. For client contacts only client-visible facts are
/// ever put here (no internal notes, no responder names).
#[derive(Debug, Clone, Serialize)]
pub struct NoticeFacts {
    pub incident_id: Uuid,
    pub title: String,
    pub service_name: Option<String>,
    /// critical | error | warning | info
    pub severity: String,
    /// triggered | acknowledged | mitigated | resolved | closed
    pub status: String,
    pub impact_start: DateTime<Utc>,
    pub impact_end: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// For escalations: the level reached (1-based) and whether by hand.
    pub escalation_level: Option<u32>,
    pub escalated_by_hand: bool,
    pub recipient_name: String,
}

/// A notice as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderedNotice {
    pub subject: String,
    pub body: String,
    /// The language the notice is written in: "en" or "ja".
    pub locale: String,
    /// An HTML alternative of the body (the monthly report), sent beside
    /// the plain text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// hex SHA-256 over subject, a NUL byte, body (and, with an HTML
    /// alternative, a NUL byte and the HTML)
    pub sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    En,
    Ja,
}

impl Lang {
    /// "ja" or any "ja-*" (also "ja_*", any case) is Japanese; all else English.
    fn of(locale: &str) -> Lang {
        let l = locale.trim().to_ascii_lowercase();
        if l == "ja" || l.starts_with("ja-") || l.starts_with("ja_") {
            Lang::Ja
        } else {
            Lang::En
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ja => "ja",
        }
    }
}

/// Embeds each named template from `templates/notice/`.
macro_rules! notice_templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../templates/notice/", $name)))),*]
    };
}

const TEMPLATES: &[(&str, &str)] = notice_templates!(
    "incident_opened.en.subject.txt",
    "incident_opened.en.body.txt",
    "incident_opened.ja.subject.txt",
    "incident_opened.ja.body.txt",
    "incident_mitigated.en.subject.txt",
    "incident_mitigated.en.body.txt",
    "incident_mitigated.ja.subject.txt",
    "incident_mitigated.ja.body.txt",
    "incident_resolved.en.subject.txt",
    "incident_resolved.en.body.txt",
    "incident_resolved.ja.subject.txt",
    "incident_resolved.ja.body.txt",
    "incident_escalated.en.subject.txt",
    "incident_escalated.en.body.txt",
    "incident_escalated.ja.subject.txt",
    "incident_escalated.ja.body.txt",
    "window_announced.en.subject.txt",
    "window_announced.en.body.txt",
    "window_announced.ja.subject.txt",
    "window_announced.ja.body.txt",
    "window_cancelled.en.subject.txt",
    "window_cancelled.en.body.txt",
    "window_cancelled.ja.subject.txt",
    "window_cancelled.ja.body.txt",
    "monthly_report.en.subject.txt",
    "monthly_report.en.body.txt",
    "monthly_report.ja.subject.txt",
    "monthly_report.ja.body.txt",
    "change.en.subject.txt",
    "change.en.body.txt",
    "change.ja.subject.txt",
    "change.ja.body.txt",
);

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        // Block tags on lines of their own leave no blank lines behind.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("notice template {name} does not parse: {e:#}"));
        }
        env
    })
}

/// Everything a template may name: the facts, made printable.
#[derive(Debug, Clone, Serialize)]
struct Context {
    incident_id: Uuid,
    /// On one line; in subjects possibly cut to fit.
    title: String,
    /// On one line.
    service: Option<String>,
    severity: String,
    severity_label: String,
    status: String,
    status_label: String,
    impact_start: String,
    impact_end: Option<String>,
    resolved_at: Option<String>,
    escalation_level: Option<u32>,
    escalated_by_hand: bool,
    recipient_name: String,
}

impl Context {
    fn new(lang: Lang, facts: &NoticeFacts) -> Context {
        let time = |t: DateTime<Utc>| format_time(lang, t);
        Context {
            incident_id: facts.incident_id,
            title: single_line(&facts.title),
            service: facts
                .service_name
                .as_deref()
                .map(single_line)
                .filter(|s| !s.is_empty()),
            severity: facts.severity.clone(),
            severity_label: severity_label(lang, &facts.severity),
            status: facts.status.clone(),
            status_label: status_label(lang, &facts.status),
            impact_start: time(facts.impact_start),
            impact_end: facts.impact_end.map(time),
            resolved_at: facts.resolved_at.map(time),
            escalation_level: facts.escalation_level,
            escalated_by_hand: facts.escalated_by_hand,
            recipient_name: single_line(&facts.recipient_name),
        }
    }
}

/// Renders the notice for a recipient locale: "ja" (or any "ja-*") gets
/// Japanese, everything else English. Deterministic: same input, same output.
/// Times are shown in UTC for English ("2026-11-25 06:24 UTC") and in Japan
/// time for Japanese ("2026年11月25日 15:24 (JST)").
pub fn render(kind: NoticeKind, locale: &str, facts: &NoticeFacts) -> RenderedNotice {
    let lang = Lang::of(locale);
    let base = format!("{}.{}", kind.as_str(), lang.as_str());
    let ctx = Context::new(lang, facts);

    let subject = render_subject(&format!("{base}.subject.txt"), ctx.clone());
    let body = format!(
        "{}\n",
        render_template(&format!("{base}.body.txt"), &ctx).trim_end()
    );
    let sha256 = digest(&subject, &body, None);
    RenderedNotice {
        subject,
        body,
        locale: lang.as_str().to_owned(),
        html: None,
        sha256,
    }
}

/// What a window announcement may say: client-visible facts only (no
/// change, no responder, no internal notes), and only the recipient's own
/// client's services.
#[derive(Debug, Clone, Serialize)]
pub struct WindowFacts {
    pub window_id: Uuid,
    pub title: String,
    pub description: Option<String>,
    /// The recipient's services among the window's.
    pub services: Vec<String>,
    /// The next occurrences (at most a few), oldest first.
    pub occurrences: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// The RRULE of a recurring window, shown as given.
    pub rrule: Option<String>,
    pub recipient_name: String,
}

#[derive(Debug, Clone, Serialize)]
struct WindowContext {
    window_id: Uuid,
    title: String,
    description: Option<String>,
    services: String,
    /// "start – end" per occurrence, in the recipient's language and zone.
    occurrences: Vec<String>,
    /// When the next occurrence starts, for the subject.
    first_start: Option<String>,
    recurring: bool,
    rrule: Option<String>,
    recipient_name: String,
}

/// Renders a window's notice (`kind` is one of [`NoticeKind::WINDOW`]) for a
/// recipient locale, like [`render`].
pub fn render_window(kind: NoticeKind, locale: &str, facts: &WindowFacts) -> RenderedNotice {
    assert!(
        NoticeKind::WINDOW.contains(&kind),
        "{} is not about a window",
        kind.as_str()
    );
    let lang = Lang::of(locale);
    let base = format!("{}.{}", kind.as_str(), lang.as_str());
    let sep = match lang {
        Lang::En => ", ",
        Lang::Ja => "、",
    };
    let ctx = WindowContext {
        window_id: facts.window_id,
        title: truncate(&single_line(&facts.title), SUBJECT_LEN_MAX_CHARS / 2),
        description: facts
            .description
            .as_deref()
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(str::to_owned),
        services: single_line(&facts.services.join(sep)),
        occurrences: facts
            .occurrences
            .iter()
            .map(|(s, e)| format!("{} – {}", format_time(lang, *s), format_time(lang, *e)))
            .collect(),
        first_start: facts
            .occurrences
            .first()
            .map(|(s, _)| format_time(lang, *s)),
        recurring: facts.rrule.is_some(),
        rrule: facts.rrule.as_deref().map(single_line),
        recipient_name: single_line(&facts.recipient_name),
    };
    let render = |name: String| {
        env()
            .get_template(&name)
            .and_then(|t| t.render(&ctx))
            .unwrap_or_else(|e| panic!("notice template {name} fails to render: {e:#}"))
    };
    let subject = truncate(
        &single_line(&render(format!("{base}.subject.txt"))),
        SUBJECT_LEN_MAX_CHARS,
    );
    let body = format!("{}\n", render(format!("{base}.body.txt")).trim_end());
    let sha256 = digest(&subject, &body, None);
    RenderedNotice {
        subject,
        body,
        locale: lang.as_str().to_owned(),
        html: None,
        sha256,
    }
}

/// What a notice of a change's step may say. Told to staff only (the
/// requester, the approvers), so internal facts such as the risk may be
/// here.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeFacts {
    pub change_id: Uuid,
    pub title: String,
    /// standard | normal | emergency
    pub kind: String,
    /// low | medium | high
    pub risk: String,
    /// The names of the change's services, in the change's order.
    pub services: Vec<String>,
    /// The token subject who requested the change.
    pub requested_by: String,
    /// The token subject who took the step.
    pub actor: String,
    /// When the step was recorded.
    pub at: DateTime<Utc>,
    /// The schedule a `change_scheduled` notice tells.
    pub schedule: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// The approval's comment, the rejection's or failure's reason, or the
    /// completion's note.
    pub note: Option<String>,
    pub recipient_name: String,
}

#[derive(Debug, Clone, Serialize)]
struct ChangeContext {
    /// The notice kind's name: the templates branch on it.
    step: &'static str,
    change_id: Uuid,
    /// On one line, cut to fit a subject.
    title: String,
    /// On one line, whole: for the body.
    whole_title: String,
    kind_label: String,
    risk_label: String,
    services: String,
    requested_by: String,
    actor: String,
    at: String,
    schedule: Option<String>,
    /// When the schedule starts, for the subject.
    schedule_start: Option<String>,
    note: Option<String>,
    note_label: &'static str,
    recipient_name: String,
}

/// Renders the notice of a change's step (`kind` is one of
/// [`NoticeKind::CHANGE`]) for a recipient locale, like [`render`]: one
/// subject and one body template per language
/// (`templates/notice/change.{en,ja}.*`), branching on the step.
pub fn render_change(kind: NoticeKind, locale: &str, facts: &ChangeFacts) -> RenderedNotice {
    assert!(
        NoticeKind::CHANGE.contains(&kind),
        "{} is not about a change",
        kind.as_str()
    );
    let lang = Lang::of(locale);
    let time = |t: DateTime<Utc>| format_time(lang, t);
    let sep = match lang {
        Lang::En => ", ",
        Lang::Ja => "、",
    };
    let note_label = match (lang, kind) {
        (Lang::En, NoticeKind::ChangeApproved) => "Comment",
        (Lang::En, NoticeKind::ChangeRejected | NoticeKind::ChangeFailed) => "Reason",
        (Lang::En, _) => "Note",
        (Lang::Ja, NoticeKind::ChangeApproved) => "コメント",
        (Lang::Ja, NoticeKind::ChangeRejected | NoticeKind::ChangeFailed) => "理由",
        (Lang::Ja, _) => "備考",
    };
    let ctx = ChangeContext {
        step: kind.as_str(),
        change_id: facts.change_id,
        title: truncate(&single_line(&facts.title), SUBJECT_LEN_MAX_CHARS / 2),
        whole_title: single_line(&facts.title),
        kind_label: change_label(lang, &facts.kind),
        risk_label: change_label(lang, &facts.risk),
        services: single_line(&facts.services.join(sep)),
        requested_by: single_line(&facts.requested_by),
        actor: single_line(&facts.actor),
        at: time(facts.at),
        schedule: facts
            .schedule
            .map(|(s, e)| format!("{} – {}", time(s), time(e))),
        schedule_start: facts.schedule.map(|(s, _)| time(s)),
        note: facts
            .note
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        note_label,
        recipient_name: single_line(&facts.recipient_name),
    };
    let base = format!("change.{}", lang.as_str());
    let render = |name: String| {
        env()
            .get_template(&name)
            .and_then(|t| t.render(&ctx))
            .unwrap_or_else(|e| panic!("notice template {name} fails to render: {e:#}"))
    };
    let subject = truncate(
        &single_line(&render(format!("{base}.subject.txt"))),
        SUBJECT_LEN_MAX_CHARS,
    );
    let body = format!("{}\n", render(format!("{base}.body.txt")).trim_end());
    let sha256 = digest(&subject, &body, None);
    RenderedNotice {
        subject,
        body,
        locale: lang.as_str().to_owned(),
        html: None,
        sha256,
    }
}

/// A change's kind or risk, in the recipient's language.
fn change_label(lang: Lang, word: &str) -> String {
    let label = match (lang, word) {
        (Lang::En, "standard") => "Standard",
        (Lang::En, "normal") => "Normal",
        (Lang::En, "emergency") => "Emergency",
        (Lang::En, "low") => "Low",
        (Lang::En, "medium") => "Medium",
        (Lang::En, "high") => "High",
        (Lang::Ja, "standard") => "標準変更",
        (Lang::Ja, "normal") => "通常変更",
        (Lang::Ja, "emergency") => "緊急変更",
        (Lang::Ja, "low") => "低",
        (Lang::Ja, "medium") => "中",
        (Lang::Ja, "high") => "高",
        (_, other) => other,
    };
    single_line(label)
}

/// hex SHA-256 over subject, a NUL byte, body, and with an HTML
/// alternative a NUL byte and the HTML.
impl RenderedNotice {
    /// The notice with the tenant's latest signed checkpoint (SPEC §3.9) at
    /// the foot of its text: the client keeps evidence of the log as it
    /// stood, which a consistency proof from that size checks any later log
    /// against. Unchanged without a checkpoint.
    pub fn with_checkpoint(mut self, note: Option<&str>) -> RenderedNotice {
        let Some(note) = note else { return self };
        let mut lines = note.lines().skip(1);
        let (Some(size), Some(root)) = (lines.next(), lines.next()) else {
            return self;
        };
        let proof = format!("/api/v1/audit/proof/consistency?from={size}");
        let foot = match self.locale.as_str() {
            "ja" => format!(
                "\n-- \n記録の証拠: この時点の記録は {size} 件、ルートハッシュは {root} です。\n\
                 下の署名付きチェックポイントを保管してください。後日 {proof} で、\n\
                 それまでの記録が変更されていないことを確かめられます。\n\n{note}"
            ),
            _ => format!(
                "\n-- \nEvidence of the record: it held {size} events, root hash {root}.\n\
                 Keep the signed checkpoint below: a proof from {proof}\n\
                 shows later that nothing recorded until now was changed.\n\n{note}"
            ),
        };
        self.body.push_str(&foot);
        if !self.body.ends_with('\n') {
            self.body.push('\n');
        }
        self.sha256 = digest(&self.subject, &self.body, self.html.as_deref());
        self
    }
}

fn digest(subject: &str, body: &str, html: Option<&str>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(subject.as_bytes());
    hasher.update([0u8]);
    hasher.update(body.as_bytes());
    if let Some(html) = html {
        hasher.update([0u8]);
        hasher.update(html.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// One service's line in the monthly report's mail.
#[derive(Debug, Clone, Serialize)]
pub struct MonthlyLine {
    pub name: String,
    pub availability: String,
    pub target: String,
    pub met: Option<bool>,
    pub outage_minutes: String,
    pub incidents: usize,
}

/// What the monthly report's mail says, besides the report itself.
#[derive(Debug, Clone, Serialize)]
pub struct MonthlyFacts {
    pub client: String,
    pub month: String,
    pub recipient_name: String,
    pub services: Vec<MonthlyLine>,
    pub restatements: usize,
}

/// The monthly report's mail for a recipient locale: a plain-text summary
/// and the report's HTML page as its alternative.
pub fn render_monthly(locale: &str, facts: &MonthlyFacts, html: String) -> RenderedNotice {
    let lang = Lang::of(locale);
    let base = format!("{}.{}", NoticeKind::MonthlyReport.as_str(), lang.as_str());
    let mut ctx = facts.clone();
    ctx.client = single_line(&ctx.client);
    ctx.recipient_name = single_line(&ctx.recipient_name);
    for line in &mut ctx.services {
        line.name = single_line(&line.name);
    }
    let render = |name: String| {
        env()
            .get_template(&name)
            .and_then(|t| t.render(&ctx))
            .unwrap_or_else(|e| panic!("notice template {name} fails to render: {e:#}"))
    };
    let subject = truncate(
        &single_line(&render(format!("{base}.subject.txt"))),
        SUBJECT_LEN_MAX_CHARS,
    );
    let body = format!("{}\n", render(format!("{base}.body.txt")).trim_end());
    let sha256 = digest(&subject, &body, Some(&html));
    RenderedNotice {
        subject,
        body,
        locale: lang.as_str().to_owned(),
        html: Some(html),
        sha256,
    }
}

/// Templates and contexts are ours, so a failure is a bug the tests catch.
fn render_template(name: &str, ctx: &Context) -> String {
    env()
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .unwrap_or_else(|e| panic!("notice template {name} fails to render: {e:#}"))
}

/// One line of at most [`SUBJECT_LEN_MAX_CHARS`]: a long title is cut on a
/// character boundary and ends in "…".
fn render_subject(name: &str, mut ctx: Context) -> String {
    let subject = single_line(&render_template(name, &ctx));
    let len = subject.chars().count();
    if len <= SUBJECT_LEN_MAX_CHARS {
        return subject;
    }
    let title_len = ctx.title.chars().count();
    let room = SUBJECT_LEN_MAX_CHARS.saturating_sub(len - title_len);
    if room >= 2 {
        ctx.title = truncate(&ctx.title, room);
        let subject = single_line(&render_template(name, &ctx));
        if subject.chars().count() <= SUBJECT_LEN_MAX_CHARS {
            return subject;
        }
    }
    // Only a very long service name gets here: cut the whole line.
    truncate(&subject, SUBJECT_LEN_MAX_CHARS)
}

/// `s` cut to at most `max` characters, ending in "…" if it was cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Line breaks and other control characters become single spaces; the ends
/// are trimmed. Other spaces (such as the ideographic space) are kept.
fn single_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    for c in s.chars() {
        if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            pending_space = true;
            continue;
        }
        if pending_space {
            if !out.is_empty() && !out.ends_with(' ') && c != ' ' {
                out.push(' ');
            }
            pending_space = false;
        }
        out.push(c);
    }
    out.trim().to_owned()
}

fn format_time(lang: Lang, t: DateTime<Utc>) -> String {
    match lang {
        Lang::En => t.format("%Y-%m-%d %H:%M UTC").to_string(),
        Lang::Ja => {
            let jst = FixedOffset::east_opt(9 * 3600).expect("UTC+9 is a valid offset");
            t.with_timezone(&jst)
                .format("%Y年%-m月%-d日 %H:%M (JST)")
                .to_string()
        }
    }
}

fn severity_label(lang: Lang, severity: &str) -> String {
    let label = match (lang, severity) {
        (Lang::En, "critical") => "Critical",
        (Lang::En, "error") => "Error",
        (Lang::En, "warning") => "Warning",
        (Lang::En, "info") => "Info",
        (Lang::Ja, "critical") => "重大",
        (Lang::Ja, "error") => "障害",
        (Lang::Ja, "warning") => "警告",
        (Lang::Ja, "info") => "情報",
        (_, other) => other,
    };
    single_line(label)
}

fn status_label(lang: Lang, status: &str) -> String {
    let label = match (lang, status) {
        (Lang::En, "triggered") => "Open",
        (Lang::En, "acknowledged") => "Being worked on",
        (Lang::En, "mitigated") => "Mitigated",
        (Lang::En, "resolved") => "Resolved",
        (Lang::En, "closed") => "Closed",
        (Lang::Ja, "triggered") => "発生中",
        (Lang::Ja, "acknowledged") => "対応中",
        (Lang::Ja, "mitigated") => "影響緩和済み",
        (Lang::Ja, "resolved") => "復旧済み",
        (Lang::Ja, "closed") => "対応完了",
        (_, other) => other,
    };
    single_line(label)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn facts() -> NoticeFacts {
        NoticeFacts {
            incident_id: Uuid::from_u128(0x0193_5f2a_7c11_7d40_9a3e_4b5c_6d7e_8f90),
            title: "受注APIの応答遅延".to_owned(),
            service_name: Some("受注システム".to_owned()),
            severity: "critical".to_owned(),
            status: "triggered".to_owned(),
            impact_start: at(2026, 11, 25, 6, 24),
            impact_end: None,
            resolved_at: None,
            escalation_level: Some(2),
            escalated_by_hand: false,
            recipient_name: "山田 太郎".to_owned(),
        }
    }

    fn resolved_facts() -> NoticeFacts {
        NoticeFacts {
            status: "resolved".to_owned(),
            impact_end: Some(at(2026, 11, 25, 7, 5)),
            resolved_at: Some(at(2026, 11, 25, 7, 12)),
            ..facts()
        }
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in NoticeKind::ALL {
            assert_eq!(NoticeKind::parse(kind.as_str()), Some(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        assert_eq!(NoticeKind::parse("incident_closed"), None);
    }

    #[test]
    fn every_kind_renders_in_both_languages() {
        let variants = [
            facts(),
            resolved_facts(),
            NoticeFacts {
                service_name: None,
                escalation_level: None,
                escalated_by_hand: true,
                ..facts()
            },
        ];
        for kind in NoticeKind::ALL {
            for locale in ["en", "ja"] {
                for f in &variants {
                    let n = render(kind, locale, f);
                    assert_eq!(n.locale, locale);
                    assert!(!n.subject.is_empty() && !n.subject.contains('\n'));
                    assert!(n.subject.chars().count() <= SUBJECT_LEN_MAX_CHARS);
                    assert!(n.body.contains(&f.incident_id.to_string()), "{}", n.body);
                    assert!(n.body.contains(&f.recipient_name), "{}", n.body);
                    assert!(n.body.ends_with('\n') && !n.body.ends_with("\n\n"));
                    assert!(!n.body.contains("{{") && !n.body.contains("{%"));
                    assert!(!n.body.contains("none"), "{}", n.body);
                }
            }
        }
    }

    #[test]
    fn japanese_subjects_have_the_prefix_and_the_whole_title() {
        let f = facts();
        for (kind, prefix) in [
            (NoticeKind::IncidentOpened, "【障害発生】"),
            (NoticeKind::IncidentMitigated, "【影響緩和】"),
            (NoticeKind::IncidentResolved, "【復旧】"),
            (
                NoticeKind::IncidentEscalated,
                "【エスカレーション レベル2】",
            ),
        ] {
            let n = render(kind, "ja", &f);
            assert!(n.subject.starts_with(prefix), "{}", n.subject);
            assert!(n.subject.contains(&f.title), "{}", n.subject);
        }
        assert_eq!(
            render(NoticeKind::IncidentOpened, "ja", &f).subject,
            "【障害発生】受注APIの応答遅延（受注システム）"
        );
    }

    #[test]
    fn english_subjects_follow_the_pattern() {
        let f = NoticeFacts {
            title: "Checkout latency".to_owned(),
            service_name: Some("Shop".to_owned()),
            ..facts()
        };
        assert_eq!(
            render(NoticeKind::IncidentOpened, "en", &f).subject,
            "[opsledger] Incident opened: Checkout latency (Shop)"
        );
        assert_eq!(
            render(NoticeKind::IncidentResolved, "en", &f).subject,
            "[opsledger] Incident resolved: Checkout latency (Shop)"
        );
        assert_eq!(
            render(NoticeKind::IncidentEscalated, "en", &f).subject,
            "[opsledger] Escalation level 2: Checkout latency"
        );
        let no_service = NoticeFacts {
            service_name: None,
            ..f
        };
        assert_eq!(
            render(NoticeKind::IncidentMitigated, "en", &no_service).subject,
            "[opsledger] Incident mitigated: Checkout latency"
        );
    }

    #[test]
    fn locales_pick_the_language() {
        let f = facts();
        for (locale, lang) in [
            ("en", "en"),
            ("en-GB", "en"),
            ("fr", "en"),
            ("", "en"),
            ("jav", "en"),
            ("ja", "ja"),
            ("ja-JP", "ja"),
            ("JA_jp", "ja"),
        ] {
            let n = render(NoticeKind::IncidentOpened, locale, &f);
            assert_eq!(n.locale, lang, "{locale}");
        }
        assert!(render(NoticeKind::IncidentOpened, "en-GB", &f)
            .subject
            .starts_with("[opsledger] Incident opened:"));
        let ja = render(NoticeKind::IncidentOpened, "ja-JP", &f);
        assert!(ja.subject.starts_with("【障害発生】"));
        assert!(ja.body.contains("いつもお世話になっております。"));
    }

    #[test]
    fn the_hash_covers_subject_nul_body() {
        let f = facts();
        let n = render(NoticeKind::IncidentOpened, "en", &f);
        let mut bytes = n.subject.as_bytes().to_vec();
        bytes.push(0);
        bytes.extend_from_slice(n.body.as_bytes());
        assert_eq!(n.sha256, hex::encode(Sha256::digest(&bytes)));
        assert_eq!(n.sha256.len(), 64);

        // Deterministic.
        assert_eq!(render(NoticeKind::IncidentOpened, "en", &f), n);

        // Only the body differs (the status is not in the subject): new hash.
        let other = render(
            NoticeKind::IncidentOpened,
            "en",
            &NoticeFacts {
                status: "acknowledged".to_owned(),
                ..f
            },
        );
        assert_eq!(other.subject, n.subject);
        assert_ne!(other.body, n.body);
        assert_ne!(other.sha256, n.sha256);
    }

    #[test]
    fn subjects_are_one_line_and_bounded() {
        let f = NoticeFacts {
            title: "Database down\r\nsecond line\n\tthird".to_owned(),
            service_name: Some("DB\nprimary".to_owned()),
            ..facts()
        };
        for locale in ["en", "ja"] {
            let n = render(NoticeKind::IncidentOpened, locale, &f);
            assert!(!n.subject.contains(['\n', '\r', '\t']), "{:?}", n.subject);
            assert!(n.subject.contains("Database down second line third"));
            assert!(n.subject.contains("DB primary"));
        }

        let long = NoticeFacts {
            title: "長".repeat(500),
            ..facts()
        };
        for kind in NoticeKind::ALL {
            for locale in ["en", "ja"] {
                let n = render(kind, locale, &long);
                assert_eq!(n.subject.chars().count(), SUBJECT_LEN_MAX_CHARS);
                assert!(n.subject.contains("長…"), "{}", n.subject);
                // The service still shows after the cut title.
                if kind != NoticeKind::IncidentEscalated {
                    assert!(n.subject.contains("受注システム"), "{}", n.subject);
                }
                // The body keeps the whole title.
                assert!(n.body.contains(&long.title));
            }
        }

        let huge_service = NoticeFacts {
            service_name: Some("s".repeat(400)),
            ..facts()
        };
        let n = render(NoticeKind::IncidentOpened, "en", &huge_service);
        assert_eq!(n.subject.chars().count(), SUBJECT_LEN_MAX_CHARS);
        assert!(n.subject.ends_with('…'));
    }

    #[test]
    fn escalations_name_the_level_and_ask_for_acknowledgement() {
        let auto = facts();
        let en = render(NoticeKind::IncidentEscalated, "en", &auto);
        assert!(en.subject.contains("Escalation level 2"));
        assert!(en.body.contains("escalation level 2"), "{}", en.body);
        assert!(en.body.contains("not been acknowledged"));
        assert!(en.body.contains("Please acknowledge"));
        let ja = render(NoticeKind::IncidentEscalated, "ja", &auto);
        assert!(ja.subject.starts_with("【エスカレーション レベル2】"));
        assert!(ja.body.contains("エスカレーション レベル2に達しました"));
        assert!(ja.body.contains("応答（acknowledge）をお願いいたします"));

        let by_hand = NoticeFacts {
            escalation_level: Some(3),
            escalated_by_hand: true,
            ..facts()
        };
        let en = render(NoticeKind::IncidentEscalated, "en", &by_hand);
        assert!(en.subject.contains("Escalation level 3"));
        assert!(
            en.body.contains("escalated by hand to level 3"),
            "{}",
            en.body
        );
        let ja = render(NoticeKind::IncidentEscalated, "ja", &by_hand);
        assert!(ja
            .body
            .contains("担当者の判断によりエスカレーション レベル3へ"));
    }

    #[test]
    fn times_are_utc_in_english_and_jst_in_japanese() {
        let t = at(2026, 11, 25, 6, 24);
        assert_eq!(format_time(Lang::En, t), "2026-11-25 06:24 UTC");
        assert_eq!(format_time(Lang::Ja, t), "2026年11月25日 15:24 (JST)");
        // Across midnight and the year end, month and day unpadded.
        let t = at(2026, 12, 31, 15, 5);
        assert_eq!(format_time(Lang::En, t), "2026-12-31 15:05 UTC");
        assert_eq!(format_time(Lang::Ja, t), "2027年1月1日 00:05 (JST)");

        let f = resolved_facts();
        let en = render(NoticeKind::IncidentResolved, "en", &f);
        assert!(
            en.body.contains("Impact start:  2026-11-25 06:24 UTC"),
            "{}",
            en.body
        );
        assert!(en.body.contains("Impact end:    2026-11-25 07:05 UTC"));
        assert!(en.body.contains("Resolved at:   2026-11-25 07:12 UTC"));
        let ja = render(NoticeKind::IncidentResolved, "ja", &f);
        assert!(
            ja.body.contains("影響開始　：2026年11月25日 15:24 (JST)"),
            "{}",
            ja.body
        );
        assert!(ja.body.contains("影響終了　：2026年11月25日 16:05 (JST)"));
        assert!(ja.body.contains("復旧日時　：2026年11月25日 16:12 (JST)"));
    }

    #[test]
    fn japanese_bodies_translate_severity_and_status() {
        for (severity, label) in [
            ("critical", "重大"),
            ("error", "障害"),
            ("warning", "警告"),
            ("info", "情報"),
        ] {
            let f = NoticeFacts {
                severity: severity.to_owned(),
                ..facts()
            };
            let n = render(NoticeKind::IncidentOpened, "ja", &f);
            assert!(
                n.body.contains(&format!("重要度　　：{label}\n")),
                "{}",
                n.body
            );
        }
        for (status, label) in [
            ("triggered", "発生中"),
            ("acknowledged", "対応中"),
            ("mitigated", "影響緩和済み"),
            ("resolved", "復旧済み"),
            ("closed", "対応完了"),
        ] {
            let f = NoticeFacts {
                status: status.to_owned(),
                ..facts()
            };
            let n = render(NoticeKind::IncidentMitigated, "ja", &f);
            assert!(
                n.body.contains(&format!("現在の状況：{label}\n")),
                "{}",
                n.body
            );
        }
    }

    #[test]
    fn window_announcements_render_in_both_languages() {
        let f = WindowFacts {
            window_id: Uuid::from_u128(5),
            title: "OS patching".into(),
            description: Some("Servers restart one by one.".into()),
            services: vec!["受注サイト".into(), "決済API".into()],
            occurrences: vec![(at(2026, 12, 6, 17, 0), at(2026, 12, 6, 19, 0))],
            rrule: None,
            recipient_name: "山田 太郎".into(),
        };
        let en = render_window(NoticeKind::WindowAnnounced, "en", &f);
        assert_eq!(
            en.subject,
            "[opsledger] Planned maintenance: OS patching (2026-12-06 17:00 UTC)"
        );
        assert!(
            en.body
                .contains("2026-12-06 17:00 UTC – 2026-12-06 19:00 UTC"),
            "{}",
            en.body
        );
        assert!(en.body.contains("受注サイト, 決済API"));
        assert!(en.body.contains(&f.window_id.to_string()));
        let ja = render_window(NoticeKind::WindowAnnounced, "ja", &f);
        assert!(
            ja.subject
                .starts_with("【メンテナンスのお知らせ】OS patching"),
            "{}",
            ja.subject
        );
        assert!(ja.subject.contains("12月7日 02:00"), "{}", ja.subject);
        assert!(
            ja.body
                .contains("2026年12月7日 02:00 (JST) – 2026年12月7日 04:00 (JST)"),
            "{}",
            ja.body
        );
        assert!(ja.body.contains("受注サイト、決済API"));
        assert!(ja.body.contains("山田 太郎 様"));
        let recurring = WindowFacts {
            rrule: Some("FREQ=WEEKLY;BYDAY=SU".into()),
            description: None,
            occurrences: vec![
                (at(2026, 12, 6, 17, 0), at(2026, 12, 6, 19, 0)),
                (at(2026, 12, 13, 17, 0), at(2026, 12, 13, 19, 0)),
            ],
            ..f
        };
        for locale in ["en", "ja"] {
            for kind in NoticeKind::WINDOW {
                let n = render_window(kind, locale, &recurring);
                assert!(n.body.contains("FREQ=WEEKLY;BYDAY=SU"), "{}", n.body);
                assert!(n.body.contains(&recurring.window_id.to_string()));
                assert!(n.body.ends_with('\n') && !n.body.ends_with("\n\n"));
                assert!(!n.body.contains("none"), "{}", n.body);
            }
        }
        assert_eq!(
            NoticeKind::parse("window_announced"),
            Some(NoticeKind::WindowAnnounced)
        );
    }

    fn change_facts() -> ChangeFacts {
        ChangeFacts {
            change_id: Uuid::from_u128(0x0193_5f2a_7c11_7d40_9a3e_4b5c_6d7e_8f91),
            title: "OpenSSL 3.0.15 に更新".into(),
            kind: "normal".into(),
            risk: "medium".into(),
            services: vec!["受注サイト".into(), "決済API".into()],
            requested_by: "hanako@msp.example".into(),
            actor: "taro@msp.example".into(),
            at: at(2026, 11, 25, 6, 24),
            schedule: None,
            note: None,
            recipient_name: "山田 花子".into(),
        }
    }

    #[test]
    fn every_change_step_renders_in_both_languages() {
        let variants = [
            change_facts(),
            ChangeFacts {
                services: vec![],
                note: Some("Reason\nover two lines".into()),
                schedule: Some((at(2026, 12, 6, 17, 0), at(2026, 12, 6, 19, 0))),
                kind: "emergency".into(),
                risk: "high".into(),
                ..change_facts()
            },
        ];
        for kind in NoticeKind::CHANGE {
            assert_eq!(NoticeKind::parse(kind.as_str()), Some(kind));
            for locale in ["en", "ja"] {
                for f in &variants {
                    let n = render_change(kind, locale, f);
                    assert_eq!(n.locale, locale);
                    assert!(!n.subject.is_empty() && !n.subject.contains('\n'));
                    assert!(n.subject.contains(&f.title), "{}", n.subject);
                    assert!(n.body.contains(&f.change_id.to_string()), "{}", n.body);
                    assert!(n.body.contains(&f.recipient_name), "{}", n.body);
                    assert!(n.body.contains(&f.requested_by), "{}", n.body);
                    assert!(n.body.ends_with('\n') && !n.body.ends_with("\n\n"));
                    assert!(!n.body.contains("{{") && !n.body.contains("{%"));
                    assert!(!n.body.contains("none"), "{}", n.body);
                    if let Some(note) = &f.note {
                        assert!(n.body.contains(note.as_str()), "{}", n.body);
                    }
                }
            }
        }
    }

    #[test]
    fn change_subjects_name_the_step_in_the_recipients_language() {
        let f = change_facts();
        for (kind, en, ja) in [
            (
                NoticeKind::ChangeAwaitingApproval,
                "[opsledger] Change awaiting your approval: ",
                "【変更承認のお願い】",
            ),
            (
                NoticeKind::ChangeApproved,
                "[opsledger] Change approved: ",
                "【変更承認】",
            ),
            (
                NoticeKind::ChangeRejected,
                "[opsledger] Change rejected: ",
                "【変更却下】",
            ),
            (
                NoticeKind::ChangeStarted,
                "[opsledger] Change started: ",
                "【変更作業開始】",
            ),
            (
                NoticeKind::ChangeCompleted,
                "[opsledger] Change completed: ",
                "【変更完了】",
            ),
            (
                NoticeKind::ChangeFailed,
                "[opsledger] Change failed: ",
                "【変更失敗】",
            ),
        ] {
            assert_eq!(
                render_change(kind, "en", &f).subject,
                format!("{en}{}", f.title)
            );
            assert_eq!(
                render_change(kind, "ja-JP", &f).subject,
                format!("{ja}{}", f.title)
            );
        }
        let scheduled = ChangeFacts {
            schedule: Some((at(2026, 12, 6, 17, 0), at(2026, 12, 6, 19, 0))),
            ..change_facts()
        };
        assert_eq!(
            render_change(NoticeKind::ChangeScheduled, "ja", &scheduled).subject,
            "【変更予定】OpenSSL 3.0.15 に更新（2026年12月7日 02:00 (JST)）"
        );
        let ja = render_change(NoticeKind::ChangeScheduled, "ja", &scheduled);
        assert!(
            ja.body
                .contains("予定日時　：2026年12月7日 02:00 (JST) – 2026年12月7日 04:00 (JST)"),
            "{}",
            ja.body
        );
        let en = render_change(NoticeKind::ChangeApproved, "en", &f);
        assert!(
            en.body.contains("approved by taro@msp.example"),
            "{}",
            en.body
        );
        assert!(
            en.body.contains("Services:      受注サイト, 決済API"),
            "{}",
            en.body
        );
        let ja = render_change(NoticeKind::ChangeApproved, "ja", &f);
        assert!(
            ja.body.contains("taro@msp.example により承認されました"),
            "{}",
            ja.body
        );
        assert!(ja.body.contains("種別　　　：通常変更"), "{}", ja.body);
        assert!(
            ja.body.contains("サービス　：受注サイト、決済API"),
            "{}",
            ja.body
        );

        let long = ChangeFacts {
            title: "長".repeat(500),
            ..change_facts()
        };
        let n = render_change(NoticeKind::ChangeApproved, "ja", &long);
        assert!(n.subject.chars().count() <= SUBJECT_LEN_MAX_CHARS);
        assert!(n.subject.ends_with('…'));
        assert!(
            n.body.contains(&long.title),
            "the body keeps the whole title"
        );
    }

    #[test]
    fn a_missing_variable_is_an_error() {
        let t = env().template_from_str("{{ nope }}").unwrap();
        assert!(t.render(Context::new(Lang::En, &facts())).is_err());
    }
}
