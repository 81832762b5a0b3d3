//! Reports: the downtime report of a period (a table per service and a
//! chart of its unplanned downtime), and the monthly client report.
//!
//! Both are the API's own reports, asked in-process with the reader as the
//! caller, so a client reads only its own client's and the figures are the
//! API's to the digit. The monthly report is its printable HTML page (inline
//! SVG charts, no script), in the client's language.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{Datelike, Months, NaiveDate, Utc};
use opsledger_api::auth::Caller;
use opsledger_api::reports::{DowntimeParams, Figures, MonthlyParams};
use opsledger_api::AppState;
use opsledger_domain::access::{ClientScope, Role};
use opsledger_store::directory::ClientFilter;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::session::reader;
use crate::ui::Ui;
use crate::view;

/// Who reads reports: staff, auditors and clients (their own).
const READERS: &[Role] = &[
    Role::Operator,
    Role::Maintainer,
    Role::Approver,
    Role::Auditor,
    Role::Admin,
    Role::Client,
];

#[derive(Debug, Default, Deserialize)]
pub struct Period {
    /// First day (`YYYY-MM-DD`), in the reader's time zone.
    pub from: Option<String>,
    /// The day after the last.
    pub to: Option<String>,
    pub client: Option<String>,
    /// The figures as the period stood then: it ends then at the latest.
    pub as_of: Option<String>,
}

/// A service's line of the downtime report.
#[derive(Debug, Serialize)]
struct Line {
    name: String,
    outage: f64,
    partial: f64,
    degraded: f64,
    planned: f64,
    weighted: f64,
    /// Percent of the period not down (weighted unplanned downtime).
    availability: String,
    /// The chart's bar, 0 to 100.
    bar: f64,
}

fn day(text: Option<&str>, default: NaiveDate) -> Result<NaiveDate, String> {
    match text.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|e| format!("{s} is not a date such as 2026-12-01: {e}")),
    }
}

fn lines(figures: &[Figures]) -> Vec<Line> {
    let minutes = |f: &Figures, level: &str, planned: bool| {
        f.minutes
            .get(level)
            .map_or(0.0, |m| if planned { m.planned } else { m.unplanned })
    };
    let mut lines: Vec<Line> = figures
        .iter()
        .map(|f| {
            let (period, weighted) = (f.period_minutes, f.weighted_unplanned_minutes);
            Line {
                name: f.name.clone(),
                outage: minutes(f, "outage", false),
                partial: minutes(f, "partial", false),
                degraded: minutes(f, "degraded", false),
                planned: ["outage", "partial", "degraded"]
                    .iter()
                    .map(|l| minutes(f, l, true))
                    .sum(),
                weighted,
                availability: if period > 0.0 {
                    format!("{:.3}", 100.0 * (1.0 - weighted / period))
                } else {
                    String::new()
                },
                bar: 0.0,
            }
        })
        .collect();
    let most = lines.iter().map(|l| l.weighted).fold(0.0_f64, f64::max);
    for l in &mut lines {
        l.bar = if most > 0.0 {
            (100.0 * l.weighted / most).round()
        } else {
            0.0
        };
    }
    lines
}

/// `/console/reports`.
pub async fn page(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<Period>,
) -> HttpResponse {
    let actor = match reader(&req, READERS, "your roles do not read reports") {
        Ok(a) => a,
        Err(turned) => return turned.page(&req),
    };
    let ui = Ui::of(&req);
    let today = Utc::now().with_timezone(&ui.tz).date_naive();
    let first = today.with_day(1).unwrap_or(today);
    let (from, to) = match (
        day(query.from.as_deref(), first),
        day(
            query.to.as_deref(),
            first.checked_add_months(Months::new(1)).unwrap_or(first),
        ),
    ) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(why), _) | (_, Err(why)) => return view::bad_request(&req, &why),
    };
    let client = match query
        .client
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(str::parse::<Uuid>)
    {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(_)) => return view::bad_request(&req, "client must be a client's id"),
    };
    let scope = actor.client_scope();
    let clients = match scope {
        ClientScope::All => {
            opsledger_store::directory::list_clients(
                &state.pool,
                actor.tenant_id,
                ClientFilter::All,
                None,
                500,
            )
            .await
        }
        ClientScope::Only(own) => {
            opsledger_store::directory::list_clients(
                &state.pool,
                actor.tenant_id,
                ClientFilter::Only(own),
                None,
                1,
            )
            .await
        }
        ClientScope::Nothing => Ok(Vec::new()),
    };
    let clients = match clients {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "reading clients failed");
            return view::unavailable(&req);
        }
    };
    let as_of = match view::instant(query.as_of.as_deref()) {
        Ok(at) => at,
        Err(why) => return view::bad_request(&req, &why),
    };
    let start = crate::ui::midnight(from, ui.tz);
    let end = crate::ui::midnight(to, ui.tz);
    let end = as_of.map_or(end, |at| {
        end.min(at).max(start + chrono::Duration::seconds(1))
    });
    let params = DowntimeParams {
        service: None,
        client,
        from: start,
        to: end,
        drilldown: false,
    };
    let figures =
        match opsledger_api::reports::downtime_figures(&state, &Caller(actor), &params).await {
            Ok(f) => f,
            Err(e) => return view::api_error(&req, e),
        };
    let month = format!("{:04}-{:02}", from.year(), from.month());
    view::page(
        &req,
        "reports.html",
        minijinja::context! {
            from => from.to_string(),
            to => to.to_string(),
            client => client,
            clients => clients,
            month => month,
            lines => lines(&figures),
            as_of => as_of,
        },
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct MonthQuery {
    pub client: Option<String>,
    pub month: Option<String>,
}

/// `/console/reports/monthly?client=&month=YYYY-MM`: the monthly report's
/// printable page.
pub async fn monthly(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<MonthQuery>,
) -> HttpResponse {
    let actor = match reader(&req, READERS, "your roles do not read reports") {
        Ok(a) => a,
        Err(turned) => return turned.page(&req),
    };
    let Some(Ok(client)) = query.client.as_deref().map(str::parse::<Uuid>) else {
        return view::bad_request(&req, "choose a client");
    };
    let params = MonthlyParams {
        client,
        month: query.month.clone().unwrap_or_default(),
        format: Some("html".into()),
    };
    match opsledger_api::reports::report_monthly(
        state,
        Caller(actor),
        req.clone(),
        web::Query(params),
    )
    .await
    {
        Ok(res) if res.status() == StatusCode::OK => res,
        Ok(_) => view::unavailable(&req),
        Err(e) => view::api_error(&req, e),
    }
}
