//! The pages of a maintenance window and of an improvement proposal: the
//! record as the API shows its reader, and the steps its status allows that
//! the reader's roles may take (the roles of each step's API route). Reads
//! and steps go through the API's handlers in-process as the reader.

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use opsledger_api::auth::Caller;
use opsledger_api::common::AsOfQuery;
use opsledger_api::extract::IfMatch;
use opsledger_api::idempotency::IdempotencyKey;
use opsledger_api::problem::ApiError;
use opsledger_api::AppState;
use opsledger_domain::access::{Actor, Role};
use serde::Serialize;
use uuid::Uuid;

use crate::form::{refused_step, Posted};
use crate::session::{reader, see_other};
use crate::view;

/// A step's form field: its name, label, and input type.
#[derive(Debug, Clone, Copy, Serialize)]
struct Field {
    name: &'static str,
    label: &'static str,
    input: &'static str,
    required: bool,
}

/// A step: its name (the last segment of its API route), its button, the
/// statuses it applies in, and its fields.
#[derive(Debug, Clone, Copy, Serialize)]
struct Step {
    name: &'static str,
    label: &'static str,
    #[serde(skip)]
    when: &'static [&'static str],
    fields: &'static [Field],
}

const REASON: Field = Field {
    name: "reason",
    label: "Reason",
    input: "text",
    required: true,
};
const MINUTES: Field = Field {
    name: "minutes_spent",
    label: "Minutes spent",
    input: "number",
    required: false,
};

const WINDOW_STEPS: &[Step] = &[
    Step {
        name: "announce",
        label: "Announce",
        when: &["planned"],
        fields: &[],
    },
    Step {
        name: "start",
        label: "Start",
        when: &["announced"],
        fields: &[],
    },
    Step {
        name: "end",
        label: "End",
        when: &["started"],
        fields: &[MINUTES],
    },
    Step {
        name: "cancel",
        label: "Cancel",
        when: &["planned", "announced"],
        fields: &[REASON],
    },
];

const PROPOSAL_STEPS: &[Step] = &[
    Step {
        name: "approve",
        label: "Approve",
        when: &["raised"],
        fields: &[Field {
            name: "comment",
            label: "Comment",
            input: "text",
            required: false,
        }],
    },
    Step {
        name: "reject",
        label: "Reject",
        when: &["raised"],
        fields: &[REASON],
    },
    Step {
        name: "implement",
        label: "Implemented by change",
        when: &["approved"],
        fields: &[Field {
            name: "change_id",
            label: "Change",
            input: "text",
            required: true,
        }],
    },
    Step {
        name: "verify",
        label: "Verify",
        when: &["implemented"],
        fields: &[
            Field {
                name: "note",
                label: "Note",
                input: "text",
                required: true,
            },
            MINUTES,
        ],
    },
];

/// Which record a page is about.
#[derive(Clone, Copy)]
enum Kind {
    Window,
    Proposal,
}

impl Kind {
    fn api(self) -> &'static str {
        match self {
            Kind::Window => "maintenance-windows",
            Kind::Proposal => "proposals",
        }
    }
    fn console(self) -> &'static str {
        match self {
            Kind::Window => "windows",
            Kind::Proposal => "proposals",
        }
    }
    fn steps(self) -> &'static [Step] {
        match self {
            Kind::Window => WINDOW_STEPS,
            Kind::Proposal => PROPOSAL_STEPS,
        }
    }
}

/// Whether `actor` may take `step` on a record of `kind`: its route's roles.
fn may(actor: &Actor, kind: Kind, step: &str) -> bool {
    let path = format!("/api/v1/{}/{{id}}/{step}", kind.api());
    opsledger_api::routes::roles_of(&Method::POST, &path).is_some_and(|r| actor.has_any(r))
}

const READERS: &[Role] = &[
    Role::Operator,
    Role::Maintainer,
    Role::Approver,
    Role::Auditor,
    Role::Admin,
    Role::Client,
];

async fn page(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: String,
    query: web::Query<std::collections::HashMap<String, String>>,
    kind: Kind,
) -> HttpResponse {
    let actor = match reader(&req, READERS, "your roles do not read this") {
        Ok(a) => a,
        Err(turned) => return turned.page(&req),
    };
    let Ok(id) = id.parse::<Uuid>() else {
        return view::not_found(&req);
    };
    let as_of = match view::instant(query.get("as_of").map(String::as_str)) {
        Ok(at) => at,
        Err(why) => return view::bad_request(&req, &why),
    };
    let caller = Caller(actor.clone());
    let shown = match (kind, as_of) {
        // The API reads a window as it is; then, it is folded as it stood.
        (Kind::Window, Some(at)) => {
            let tenant = actor.tenant_id;
            let visible = opsledger_api::windows::window_get(
                state.clone(),
                caller,
                web::Path::from(id),
                web::Query(opsledger_api::windows::WindowQuery {
                    from: None,
                    to: None,
                }),
            )
            .await;
            match visible {
                Ok(_) => {
                    match opsledger_app::history::states_at::<opsledger_domain::window::Window>(
                        state.ledger(),
                        tenant,
                        &[id],
                        at,
                    )
                    .await
                    {
                        Ok(then) => match then.into_iter().next() {
                            Some((_, w, version)) => {
                                let mut v = serde_json::to_value(w).unwrap_or_default();
                                v["version"] = version.into();
                                Ok(HttpResponse::Ok().json(v))
                            }
                            None => Err(ApiError::NotFound(format!("no window {id} then"))),
                        },
                        Err(e) => Err(ApiError::Unavailable(e)),
                    }
                }
                Err(e) => Err(e),
            }
        }
        (Kind::Window, None) => {
            let q = opsledger_api::windows::WindowQuery {
                from: None,
                to: None,
            };
            opsledger_api::windows::window_get(state, caller, web::Path::from(id), web::Query(q))
                .await
        }
        (Kind::Proposal, _) => {
            let q = AsOfQuery { as_of };
            opsledger_api::proposals::proposal_get(
                state,
                caller,
                web::Path::from(id),
                web::Query(q),
            )
            .await
        }
    };
    let record = match crate::answered(shown).await {
        Ok(v) => v,
        Err(e) => return view::api_error(&req, e),
    };
    let status = record["status"].as_str().unwrap_or_default().to_owned();
    let steps: Vec<Step> = if as_of.is_some() {
        Vec::new()
    } else {
        kind.steps()
            .iter()
            .filter(|s| s.when.contains(&status.as_str()) && may(&actor, kind, s.name))
            .copied()
            .collect()
    };
    // The record's own fields, as the API shows them to this reader.
    let facts: Vec<(String, String)> = record
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, v)| !v.is_null() && !matches!(k.as_str(), "title" | "occurrences"))
                .map(|(k, v)| {
                    let text = match v {
                        serde_json::Value::String(s) => s.clone(),
                        v => v.to_string(),
                    };
                    (k.clone(), text)
                })
                .collect()
        })
        .unwrap_or_default();
    view::page(
        &req,
        "record.html",
        minijinja::context! {
            title => record["title"].as_str().unwrap_or_default(),
            base => format!("/console/{}/{id}", kind.console()),
            status => status,
            version => record["version"].as_i64().unwrap_or(0),
            facts => facts,
            steps => steps,
            as_of => as_of,
        },
    )
}

pub async fn window(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> HttpResponse {
    page(req, state, id.into_inner(), query, Kind::Window).await
}

pub async fn proposal(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> HttpResponse {
    page(req, state, id.into_inner(), query, Kind::Proposal).await
}

async fn act(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: (String, String),
    form: web::Bytes,
    kind: Kind,
) -> HttpResponse {
    let actor = match reader(&req, READERS, "your roles do not act on this") {
        Ok(a) => a,
        Err(turned) => return turned.page(&req),
    };
    let (id, step) = path;
    let (posted, id, version) = match Posted::on_record(&req, &form, &id) {
        Ok(on) => on,
        Err(unfit) => return unfit.page(&req),
    };
    if !kind.steps().iter().any(|s| s.name == step) {
        return view::not_found(&req);
    }
    let (c, k, at, m) = (
        Caller(actor),
        IdempotencyKey(None),
        web::Path::from(id),
        IfMatch(Some(version)),
    );
    let r = req.clone();
    use opsledger_api::{proposals as p, windows as w};
    let done = async {
        match (kind, step.as_str()) {
            (Kind::Window, "announce") => {
                w::window_announce(state, c, r, at, m, k, posted.or_empty()?).await
            }
            (Kind::Window, "start") => {
                w::window_start(state, c, r, at, m, k, posted.or_empty()?).await
            }
            (Kind::Window, "end") => w::window_end(state, c, r, at, m, k, posted.or_empty()?).await,
            (Kind::Window, _) => w::window_cancel(state, c, r, at, m, k, posted.or_empty()?).await,
            (Kind::Proposal, "approve") => {
                p::proposal_approve(state, c, r, at, m, k, posted.or_empty()?).await
            }
            (Kind::Proposal, "reject") => {
                p::proposal_reject(state, c, r, at, m, k, posted.json()?).await
            }
            (Kind::Proposal, "implement") => {
                p::proposal_implement(state, c, r, at, m, k, posted.json()?).await
            }
            (Kind::Proposal, _) => p::proposal_verify(state, c, r, at, m, k, posted.json()?).await,
        }
    };
    match done.await {
        Ok(_) => see_other(&format!("/console/{}/{id}", kind.console())),
        Err(e) => refused_step(&req, &step, e),
    }
}

pub async fn window_act(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    form: web::Bytes,
) -> HttpResponse {
    act(req, state, path.into_inner(), form, Kind::Window).await
}

pub async fn proposal_act(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    form: web::Bytes,
) -> HttpResponse {
    act(req, state, path.into_inner(), form, Kind::Proposal).await
}
