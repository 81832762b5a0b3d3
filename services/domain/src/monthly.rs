//! The monthly client report (SPEC §6): what it holds, and its CSV and
//! HTML forms. Pure: the caller gathers the facts, this shapes and prints.
//!
//! The HTML page needs no script: charts are inline SVG drawn here, text is
//! escaped by the template engine, and a print stylesheet puts each section
//! on its own A4 page. Labels are Japanese or English by the client's locale.

use std::sync::OnceLock;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;
use uuid::Uuid;

use crate::metrics::{Definition, ServiceMetrics};
use crate::period::ServiceHours;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClientInfo {
    pub id: Uuid,
    pub name: String,
    /// `ja` or `en`.
    pub locale: String,
    pub time_zone: String,
}

/// Minutes of one level, planned and unplanned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LevelMinutes {
    pub unplanned: f64,
    pub planned: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Downtime {
    pub outage: LevelMinutes,
    pub partial: LevelMinutes,
    pub degraded: LevelMinutes,
}

/// Impact minutes of one local day, planned and unplanned together.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = MonthlyDay)]
pub struct Day {
    pub date: NaiveDate,
    pub outage: f64,
    pub partial: f64,
    pub degraded: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IncidentItem {
    pub id: Uuid,
    pub title: String,
    pub severity: String,
    pub opened_at: DateTime<Utc>,
    pub impact_start: DateTime<Utc>,
    pub impact_end: Option<DateTime<Utc>>,
    /// Its own impact inside the month, by level (overlaps with other
    /// incidents included: the service's downtime counts them once).
    pub outage_minutes: f64,
    pub partial_minutes: f64,
    pub degraded_minutes: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MaintenanceItem {
    pub window_id: Uuid,
    pub title: String,
    pub status: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Planned time inside the month.
    pub minutes: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChangeItem {
    pub id: Uuid,
    pub title: String,
    pub outcome: String,
    pub finished_at: DateTime<Utc>,
    pub caused_incident: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ServiceMonth {
    pub service_id: Uuid,
    pub name: String,
    pub sla_target_pct: f64,
    pub sla_hours: Option<ServiceHours>,
    pub metrics: ServiceMetrics,
    pub downtime: Downtime,
    pub daily: Vec<Day>,
    pub incidents: Vec<IncidentItem>,
    pub maintenance: Vec<MaintenanceItem>,
    pub changes: Vec<ChangeItem>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProposalItem {
    pub id: Uuid,
    pub title: String,
    pub status: String,
    pub raised_at: DateTime<Utc>,
}

/// An event recorded after the month ended that changed its figures (a
/// level or impact corrected after the fact): a visible restatement.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Restatement {
    pub service_id: Uuid,
    pub incident_id: Uuid,
    pub position: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MonthlyReport {
    pub client: ClientInfo,
    /// `YYYY-MM`.
    pub month: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The month's length in the client's zone: 743 for a March in Berlin.
    pub hours: f64,
    pub as_of: DateTime<Utc>,
    /// The month's figures are first reported when it ends: what is
    /// recorded later is listed under `restatements`.
    pub first_reported_at: DateTime<Utc>,
    pub definitions: Vec<Definition>,
    pub services: Vec<ServiceMonth>,
    pub open_proposals: Vec<ProposalItem>,
    pub restatements: Vec<Restatement>,
}

// ---------------------------------------------------------------- CSV

/// The CSV form: one flat table, `section,service_id,service,subject,field,value`,
/// a row per figure (see the OpenAPI document for the sections). Text a
/// spreadsheet would take for a formula is prefixed with `'`.
pub fn to_csv(r: &MonthlyReport) -> String {
    let mut out = String::from("section,service_id,service,subject,field,value\r\n");
    let mut row = |section: &str,
                   service: Option<(&Uuid, &str)>,
                   subject: &str,
                   field: &str,
                   value: String| {
        let (sid, name) = match service {
            Some((id, name)) => (id.to_string(), name.to_owned()),
            None => (String::new(), String::new()),
        };
        let cells = [
            section.to_owned(),
            sid,
            text_cell(&name),
            subject.to_owned(),
            field.to_owned(),
            value,
        ];
        out.push_str(
            &cells
                .iter()
                .map(|c| quoted(c))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push_str("\r\n");
    };
    let num = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    row("report", None, "", "client_id", r.client.id.to_string());
    row("report", None, "", "client", text_cell(&r.client.name));
    row("report", None, "", "month", r.month.clone());
    row("report", None, "", "time_zone", r.client.time_zone.clone());
    row("report", None, "", "hours", r.hours.to_string());
    row("report", None, "", "from", r.from.to_rfc3339());
    row("report", None, "", "to", r.to.to_rfc3339());
    for d in &r.definitions {
        row("definition", None, d.name, "text", text_cell(d.text));
    }
    for s in &r.services {
        let svc = Some((&s.service_id, s.name.as_str()));
        let m = &s.metrics;
        let a = &m.availability;
        for (field, value) in [
            ("availability_calendar", num(a.calendar)),
            ("availability_excluding_planned", num(a.excluding_planned)),
            ("availability_sla", num(a.sla)),
            ("sla_target_pct", s.sla_target_pct.to_string()),
            (
                "sla_met",
                m.sla.met.map(|b| b.to_string()).unwrap_or_default(),
            ),
            (
                "error_budget_total_minutes",
                m.error_budget.total_minutes.to_string(),
            ),
            (
                "error_budget_used_minutes",
                m.error_budget.used_minutes.to_string(),
            ),
            (
                "error_budget_left_minutes",
                m.error_budget.left_minutes.to_string(),
            ),
            ("mtta_minutes", num(m.mtta.minutes)),
            ("mttr_minutes", num(m.mttr.minutes)),
            ("mtbf_minutes", num(m.mtbf.minutes)),
            (
                "change_failure_rate",
                num(m.change_failure_rate.ratio.ratio),
            ),
            ("noise_ratio", num(m.noise_ratio.ratio)),
            ("incidents", m.incidents.incidents.len().to_string()),
        ] {
            row("service", svc, "", field, value);
        }
        for (level, minutes) in [
            ("outage", s.downtime.outage),
            ("partial", s.downtime.partial),
            ("degraded", s.downtime.degraded),
        ] {
            row(
                "downtime",
                svc,
                level,
                "unplanned_minutes",
                minutes.unplanned.to_string(),
            );
            row(
                "downtime",
                svc,
                level,
                "planned_minutes",
                minutes.planned.to_string(),
            );
        }
        for d in &s.daily {
            let day = d.date.to_string();
            row("daily", svc, &day, "outage_minutes", d.outage.to_string());
            row("daily", svc, &day, "partial_minutes", d.partial.to_string());
            row(
                "daily",
                svc,
                &day,
                "degraded_minutes",
                d.degraded.to_string(),
            );
        }
        for i in &s.incidents {
            let id = i.id.to_string();
            row("incident", svc, &id, "title", text_cell(&i.title));
            row("incident", svc, &id, "severity", i.severity.clone());
            row(
                "incident",
                svc,
                &id,
                "impact_start",
                i.impact_start.to_rfc3339(),
            );
            row(
                "incident",
                svc,
                &id,
                "impact_end",
                i.impact_end.map(|e| e.to_rfc3339()).unwrap_or_default(),
            );
            row(
                "incident",
                svc,
                &id,
                "outage_minutes",
                i.outage_minutes.to_string(),
            );
            row(
                "incident",
                svc,
                &id,
                "partial_minutes",
                i.partial_minutes.to_string(),
            );
            row(
                "incident",
                svc,
                &id,
                "degraded_minutes",
                i.degraded_minutes.to_string(),
            );
        }
        for w in &s.maintenance {
            let id = w.window_id.to_string();
            row("maintenance", svc, &id, "title", text_cell(&w.title));
            row("maintenance", svc, &id, "status", w.status.clone());
            row("maintenance", svc, &id, "start", w.start.to_rfc3339());
            row("maintenance", svc, &id, "end", w.end.to_rfc3339());
            row("maintenance", svc, &id, "minutes", w.minutes.to_string());
        }
        for c in &s.changes {
            let id = c.id.to_string();
            row("change", svc, &id, "title", text_cell(&c.title));
            row("change", svc, &id, "outcome", c.outcome.clone());
            row(
                "change",
                svc,
                &id,
                "finished_at",
                c.finished_at.to_rfc3339(),
            );
            row(
                "change",
                svc,
                &id,
                "caused_incident",
                c.caused_incident.to_string(),
            );
        }
    }
    for p in &r.open_proposals {
        let id = p.id.to_string();
        row("proposal", None, &id, "title", text_cell(&p.title));
        row("proposal", None, &id, "status", p.status.clone());
        row("proposal", None, &id, "raised_at", p.raised_at.to_rfc3339());
    }
    for x in &r.restatements {
        let name = r
            .services
            .iter()
            .find(|s| s.service_id == x.service_id)
            .map_or("", |s| s.name.as_str());
        let pos = x.position.to_string();
        row(
            "restatement",
            Some((&x.service_id, name)),
            &pos,
            "incident_id",
            x.incident_id.to_string(),
        );
        row(
            "restatement",
            Some((&x.service_id, name)),
            &pos,
            "type",
            x.event_type.clone(),
        );
        row(
            "restatement",
            Some((&x.service_id, name)),
            &pos,
            "recorded_at",
            x.recorded_at.to_rfc3339(),
        );
    }
    out
}

/// Free text as a cell: one a spreadsheet would read as a formula starts
/// with `'` (OWASP's advice for CSV injection).
fn text_cell(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

/// RFC 4180: quoted when it holds a comma, a quote or a line break.
fn quoted(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

// ---------------------------------------------------------------- HTML

const MONTHLY_HTML: &str = include_str!("../templates/report/monthly.html");

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Every text is escaped; the charts are marked safe where drawn.
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_template("monthly.html", MONTHLY_HTML)
            .unwrap_or_else(|e| panic!("the monthly report template does not parse: {e:#}"));
        env
    })
}

/// The words of the page, by locale.
fn labels(ja: bool) -> serde_json::Value {
    const LABELS: &[(&str, &str, &str)] = &[
        ("title", "月次サービスレポート", "Monthly service report"),
        ("month", "対象月", "Month"),
        ("zone", "タイムゾーン", "Time zone"),
        ("hours", "時間", "hours"),
        ("summary", "サマリー", "Summary"),
        ("service", "サービス", "Service"),
        ("availability", "可用性", "Availability"),
        ("calendar", "暦時間", "Calendar"),
        ("excluding_planned", "計画停止を除く", "Excluding planned"),
        ("sla", "SLA基準", "SLA basis"),
        ("target", "目標", "Target"),
        ("met", "達成", "Met"),
        ("breached", "未達", "Breached"),
        ("no_hours", "対象時間なし", "No committed hours"),
        ("budget", "エラーバジェット", "Error budget"),
        ("budget_total", "総量", "Total"),
        ("budget_used", "消費", "Used"),
        ("budget_left", "残り", "Left"),
        ("minutes", "分", "min"),
        ("downtime", "停止時間", "Downtime"),
        ("outage", "全面停止", "Outage"),
        ("partial", "部分停止", "Partial outage"),
        ("degraded", "性能低下", "Degraded"),
        ("planned", "計画", "Planned"),
        ("unplanned", "計画外", "Unplanned"),
        ("daily", "日別停止時間（分）", "Outage minutes per day"),
        (
            "chart_availability",
            "サービス別可用性とSLA目標",
            "Availability per service against its SLA",
        ),
        (
            "chart_severity",
            "重大度別インシデント数",
            "Incidents by severity",
        ),
        ("incidents", "インシデント", "Incidents"),
        ("none", "ありません", "None"),
        ("severity", "重大度", "Severity"),
        ("impact", "影響期間", "Impact"),
        ("open", "継続中", "ongoing"),
        (
            "maintenance",
            "実施した計画メンテナンス",
            "Planned maintenance done",
        ),
        ("changes", "変更", "Changes"),
        ("outcome", "結果", "Outcome"),
        ("finished", "完了日時", "Finished"),
        ("caused", "インシデントの原因", "Caused an incident"),
        (
            "proposals",
            "未完了の改善提案",
            "Open improvement proposals",
        ),
        ("status", "状態", "Status"),
        ("raised", "起票日時", "Raised"),
        (
            "restatements",
            "訂正（報告後に記録された変更）",
            "Restatements (recorded after the month was reported)",
        ),
        (
            "restatements_none",
            "訂正はありません。",
            "No figure was restated.",
        ),
        ("event", "イベント", "Event"),
        ("recorded", "記録日時", "Recorded"),
        ("definitions", "指標の定義", "Definitions"),
        ("mtta", "MTTA", "MTTA"),
        ("mttr", "MTTR", "MTTR"),
        ("mtbf", "MTBF", "MTBF"),
        ("cfr", "変更失敗率", "Change failure rate"),
        ("noise", "ノイズ率", "Noise ratio"),
        ("as_of", "作成日時", "Computed at"),
    ];
    LABELS
        .iter()
        .map(|(k, j, e)| {
            (
                k.to_string(),
                serde_json::Value::from(if ja { *j } else { *e }),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.3} %", x * 100.0))
        .unwrap_or_else(|| "—".into())
}

fn mins(v: f64) -> String {
    format!("{v:.1}")
}

fn local(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Horizontal bars of each service's SLA-basis availability, on a scale
/// wide enough for the lowest figure and its target, with the target as a
/// vertical line through its bar.
fn availability_chart(r: &MonthlyReport) -> String {
    let rows = r.services.len().max(1);
    let (w, label_w, row_h) = (640.0, 200.0, 28.0);
    let h = rows as f64 * row_h + 30.0;
    let lowest = r
        .services
        .iter()
        .flat_map(|s| {
            [
                s.metrics.availability.sla.unwrap_or(1.0) * 100.0,
                s.sla_target_pct,
            ]
        })
        .fold(100.0f64, f64::min);
    let floor = (lowest - (100.0 - lowest).max(0.1) * 0.5).floor().max(0.0);
    let span = (100.0 - floor).max(0.001);
    let x = |v: f64| label_w + (v - floor).clamp(0.0, span) / span * (w - label_w - 20.0);
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {w} {h}" width="{w}" height="{h}" class="chart">"##
    );
    for (i, s) in r.services.iter().enumerate() {
        let y = 10.0 + i as f64 * row_h;
        let v = s.metrics.availability.sla.map(|a| a * 100.0);
        let met = s.metrics.sla.met != Some(false);
        svg.push_str(&format!(
            r##"<text x="{tx}" y="{ty}" text-anchor="end" font-size="12">{name}</text>"##,
            tx = label_w - 8.0,
            ty = y + 15.0,
            name = xml(&s.name)
        ));
        if let Some(v) = v {
            svg.push_str(&format!(
                r##"<rect x="{label_w}" y="{y}" width="{bw:.1}" height="20" fill="{fill}"/><text x="{vx:.1}" y="{ty}" font-size="11">{v:.3} %</text>"##,
                bw = x(v) - label_w,
                fill = if met { "#3b8e5a" } else { "#c0392b" },
                vx = x(v) + 4.0,
                ty = y + 15.0,
            ));
        }
        let tx = x(s.sla_target_pct);
        svg.push_str(&format!(
            r##"<line x1="{tx:.1}" y1="{y1}" x2="{tx:.1}" y2="{y2}" stroke="#222" stroke-width="2" stroke-dasharray="4 2"/>"##,
            y1 = y - 3.0,
            y2 = y + 23.0
        ));
    }
    let axis_y = h - 8.0;
    for v in [floor, floor + span / 2.0, 100.0] {
        svg.push_str(&format!(
            r##"<text x="{:.1}" y="{axis_y}" font-size="10" text-anchor="middle">{v:.2} %</text>"##,
            x(v)
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// One strip per service: a cell per day, darker the more outage minutes.
fn daily_chart(s: &ServiceMonth) -> String {
    let days = s.daily.len().max(1);
    let (cell, h) = (18.0, 34.0);
    let w = days as f64 * cell + 2.0;
    let worst = s.daily.iter().map(|d| d.outage).fold(0.0f64, f64::max);
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {w} {h}" width="{w}" height="{h}" class="strip">"##
    );
    for (i, d) in s.daily.iter().enumerate() {
        let fill = if d.outage > 0.0 {
            let share = (d.outage / worst.max(1.0)).clamp(0.15, 1.0);
            format!("rgba(192,57,43,{share:.2})")
        } else if d.partial > 0.0 || d.degraded > 0.0 {
            "#f0c05a".to_owned()
        } else {
            "#cfe8d6".to_owned()
        };
        svg.push_str(&format!(
            r##"<rect x="{x:.1}" y="1" width="{cw}" height="18" fill="{fill}" stroke="#fff"><title>{date}: {out:.1}</title></rect><text x="{tx:.1}" y="31" font-size="8" text-anchor="middle">{day}</text>"##,
            x = 1.0 + i as f64 * cell,
            cw = cell - 1.0,
            date = d.date,
            out = d.outage,
            tx = 1.0 + i as f64 * cell + cell / 2.0,
            day = d.date.format("%d"),
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// Vertical bars: incidents opened in the month by severity.
fn severity_chart(r: &MonthlyReport) -> String {
    let order = ["critical", "error", "warning", "info"];
    let counts: Vec<usize> = order
        .iter()
        .map(|sev| {
            r.services
                .iter()
                .map(|s| {
                    s.metrics
                        .incidents
                        .by_severity
                        .get(sev)
                        .copied()
                        .unwrap_or(0)
                })
                .sum()
        })
        .collect();
    let top = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let (w, h, bar) = (320.0, 150.0, 50.0);
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {w} {h}" width="{w}" height="{h}" class="chart">"##
    );
    let colours = ["#8e1b10", "#c0392b", "#e67e22", "#7f8c8d"];
    for (i, (sev, n)) in order.iter().zip(&counts).enumerate() {
        let bh = *n as f64 / top * 100.0;
        let x = 20.0 + i as f64 * (bar + 25.0);
        svg.push_str(&format!(
            r##"<rect x="{x}" y="{y:.1}" width="{bar}" height="{bh:.1}" fill="{c}"/><text x="{tx}" y="{ny:.1}" font-size="11" text-anchor="middle">{n}</text><text x="{tx}" y="140" font-size="10" text-anchor="middle">{sev}</text>"##,
            y = 115.0 - bh,
            c = colours[i],
            tx = x + bar / 2.0,
            ny = 112.0 - bh,
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// The HTML page, in the client's language.
pub fn to_html(r: &MonthlyReport) -> Result<String, String> {
    let ja = r.client.locale == "ja";
    let tz = crate::period::TimeZoneName::parse(&r.client.time_zone)
        .map(|z| z.tz())
        .unwrap_or(Tz::UTC);
    let services: Vec<serde_json::Value> = r
        .services
        .iter()
        .map(|s| {
            let m = &s.metrics;
            serde_json::json!({
                "name": s.name,
                "calendar": pct(m.availability.calendar),
                "excluding_planned": pct(m.availability.excluding_planned),
                "sla": pct(m.availability.sla),
                "target": format!("{:.3} %", s.sla_target_pct),
                "met": m.sla.met,
                "budget_total": mins(m.error_budget.total_minutes),
                "budget_used": mins(m.error_budget.used_minutes),
                "budget_left": mins(m.error_budget.left_minutes),
                "mtta": m.mtta.minutes.map(mins),
                "mttr": m.mttr.minutes.map(mins),
                "mtbf": m.mtbf.minutes.map(mins),
                "cfr": m.change_failure_rate.ratio.ratio.map(|x| format!("{:.1} %", x * 100.0)),
                "noise": m.noise_ratio.ratio.map(|x| format!("{:.1} %", x * 100.0)),
                "downtime": [
                    ["outage", mins(s.downtime.outage.unplanned), mins(s.downtime.outage.planned)],
                    ["partial", mins(s.downtime.partial.unplanned), mins(s.downtime.partial.planned)],
                    ["degraded", mins(s.downtime.degraded.unplanned), mins(s.downtime.degraded.planned)],
                ],
                "strip": daily_chart(s),
                "incidents": s.incidents.iter().map(|i| serde_json::json!({
                    "title": i.title,
                    "severity": i.severity,
                    "start": local(i.impact_start, tz),
                    "end": i.impact_end.map(|e| local(e, tz)),
                    "outage": mins(i.outage_minutes),
                    "partial": mins(i.partial_minutes),
                    "degraded": mins(i.degraded_minutes),
                })).collect::<Vec<_>>(),
                "maintenance": s.maintenance.iter().map(|w| serde_json::json!({
                    "title": w.title,
                    "status": w.status,
                    "start": local(w.start, tz),
                    "end": local(w.end, tz),
                    "minutes": mins(w.minutes),
                })).collect::<Vec<_>>(),
                "changes": s.changes.iter().map(|c| serde_json::json!({
                    "title": c.title,
                    "outcome": c.outcome,
                    "finished": local(c.finished_at, tz),
                    "caused": c.caused_incident,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let context = serde_json::json!({
        "lang": if ja { "ja" } else { "en" },
        "l": labels(ja),
        "client": r.client.name,
        "month": r.month,
        "zone": r.client.time_zone,
        "hours": format!("{}", r.hours),
        "as_of": local(r.as_of, tz),
        "services": services,
        "availability_chart": availability_chart(r),
        "severity_chart": severity_chart(r),
        "proposals": r.open_proposals.iter().map(|p| serde_json::json!({
            "title": p.title, "status": p.status, "raised": local(p.raised_at, tz),
        })).collect::<Vec<_>>(),
        "restatements": r.restatements.iter().map(|x| serde_json::json!({
            "service": r.services.iter().find(|s| s.service_id == x.service_id).map_or("", |s| s.name.as_str()),
            "position": x.position, "type": x.event_type, "recorded": local(x.recorded_at, tz),
        })).collect::<Vec<_>>(),
        "definitions": r.definitions,
    });
    env()
        .get_template("monthly.html")
        .and_then(|t| t.render(context))
        .map_err(|e| format!("the monthly report did not render: {e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(quoted("a,b"), "\"a,b\"");
        assert_eq!(quoted("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(quoted("plain"), "plain");
        assert_eq!(text_cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(text_cell("受注サイト"), "受注サイト");
    }
}
