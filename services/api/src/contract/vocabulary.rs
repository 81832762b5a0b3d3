//! The document's shared vocabulary: what every operation may refer to by
//! name (the headers, the path and header parameters, the error responses)
//! and what describes the API as a whole. Body schemas are not here: they
//! come from the Rust types.

use serde_json::{json, Value};

/// `info`, `servers`, `security` and `tags` of the document.
pub(super) fn head() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "opsledger",
            "version": "0.1.0",
            "description": "An event-sourced operations ledger for a managed-services provider: the directory of tenants' clients and the services run for them, the alerts monitoring sends about those services, the incidents they open, and who is told about them: responders, escalation policies, on-call schedules, client subscriptions and the ledger of every notification.\n\nEvery error response is an RFC 9457 `application/problem+json` problem (see the `Problem` schema). An unknown path answers 404 and a known path answers 405 (`#/components/responses/MethodNotAllowed`) to a method it does not list. Request bodies over 1 MiB are refused with 413. Every response carries `X-Request-Id`."
        },
        "servers": [
            {
                "url": "/"
            }
        ],
        "security": [
            {
                "bearerAuth": []
            }
        ],
        "tags": [
            {
                "name": "system",
                "description": "Health, readiness, metrics and this document. No authentication."
            },
            {
                "name": "directory",
                "description": "Clients and the services run for them. Bearer JWT required."
            },
            {
                "name": "alerts",
                "description": "Alerts from monitoring: plain JSON in, and what became of each. Bearer JWT required."
            },
            {
                "name": "integrations",
                "description": "Webhooks in the native shapes of Alertmanager, PagerDuty (Events API v2) and Grafana alerting. Bearer JWT required; unknown fields are ignored."
            },
            {
                "name": "incidents",
                "description": "Incidents and their lifecycle: triggered → acknowledged → mitigated → resolved → closed, reopened from resolved. Escalation, hand-off and assignment are events, not states. Bearer JWT required."
            },
            {
                "name": "roster",
                "description": "Responders, escalation policies and on-call schedules. Bearer JWT required."
            },
            {
                "name": "queues",
                "description": "The operations and maintenance teams' queues of open incidents. Bearer JWT required."
            },
            {
                "name": "notifications",
                "description": "Client contacts' subscriptions to their services' incidents, and the ledger of every notification requested and what became of it. Bearer JWT required."
            },
            {
                "name": "proposals",
                "description": "Improvement proposals that prevent recurrence (SPEC §5)."
            },
            {
                "name": "work",
                "description": "The work ledger: operations and maintenance work apart (SPEC §6)."
            },
            {
                "name": "changes",
                "description": "Changes and their workflow (standard, normal, emergency; four-eyes approval), freeze periods and the change history of a service. Clients are refused. Bearer JWT required."
            },
            {
                "name": "maintenance",
                "description": "Maintenance windows (planned → announced → started → ended | cancelled, recurring by RRULE), their announcement mails, and the iCalendar feed. Bearer JWT required."
            },
            {
                "name": "worklog",
                "description": "The operations work log: routine tasks and backups with their verifications. Staff only. Bearer JWT required."
            },
            {
                "name": "runbooks",
                "description": "Runbooks as versioned procedures, and their executions recorded step by step, with a second person's confirmation where a step asks for it. Staff only. Bearer JWT required."
            },
            {
                "name": "inquiries",
                "description": "Client inquiries: questions, minor requests and suggestions, answered by the teams. Bearer JWT required."
            },
            {
                "name": "heartbeats",
                "description": "Heartbeats (SPEC §12): scheduled jobs ping their heartbeat's URL; a missed or failed run raises an alert and the next good ping resolves it. Only transitions are recorded. The ping routes need no bearer token (the token in the path is the credential); the others are staff only, Bearer JWT required."
            },
            {
                "name": "probes",
                "description": "Probes (SPEC §12): HTTP(S) and TCP liveness checks run by opsledger's workers; only their up and down transitions are recorded, and they raise and resolve alerts as any source. Staff only. Bearer JWT required."
            },
            {
                "name": "thresholds",
                "description": "Threshold rules on pushed samples (SPEC §12): machines push samples (metric, labels, value, time), which are kept for a few hours and are not events; rules compare each matching series with a threshold for a duration, and only their breaches and clearings are recorded, raising and resolving alerts (hardware or traffic) as any source. Samples: monitoring and staff; rules: staff only. Bearer JWT required."
            },
            {
                "name": "backups",
                "description": "Backup schedules (SPEC §12): how often each service's backups must be performed and verified, watched by opsledger's workers against the work log; only their changes of standing are recorded, and they raise and resolve alerts as any source. Staff only. Bearer JWT required."
            },
            {
                "name": "reports",
                "description": "Downtime, availability and SLA (SPEC §6), computed from the read models. Bearer JWT required."
            },
            {
                "name": "audit",
                "description": "The record, searchable, and the transparency log: signed checkpoints and proofs (SPEC §3.9)."
            }
        ]
    })
}

/// How a caller authenticates.
pub(super) fn security_schemes() -> Value {
    json!({
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An HS256 JWT with `sub`, `tenant` (uuid), `roles` (operator, maintainer, approver, client, auditor, admin, integration), `iss`, `aud`, `exp`, `nbf` and, for client users, `client_id`."
        }
    })
}

/// The response headers operations name (`#/components/headers/<name>`).
pub(super) fn headers() -> Value {
    json!({
        "X-Request-Id": {
            "description": "The request's id: the caller's `X-Request-Id` when it is 1 to 100 printable ASCII characters, otherwise a new UUID. Sent on every response.",
            "schema": {
                "type": "string"
            }
        },
        "WWW-Authenticate": {
            "description": "Always `Bearer`.",
            "schema": {
                "type": "string",
                "const": "Bearer"
            }
        },
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "schema": {
                "type": "string",
                "examples": [
                    "2"
                ]
            }
        },
        "Location": {
            "description": "The new resource's path, e.g. `/api/v1/clients/{id}`. An idempotent replay carries it too.",
            "schema": {
                "type": "string",
                "format": "uri-reference"
            }
        },
        "ETag": {
            "description": "The resource's stream version as a strong entity tag, e.g. `\"1\"`.",
            "schema": {
                "type": "string",
                "pattern": "^\"[0-9]+\"$"
            }
        },
        "ETagCreated": {
            "description": "The new resource's stream version as a strong entity tag (always `\"1\"`). An idempotent replay carries it too.",
            "schema": {
                "type": "string",
                "pattern": "^\"[0-9]+\"$"
            }
        },
        "Idempotent-Replayed": {
            "description": "`true` when this is the stored response of an earlier request with the same `Idempotency-Key`; absent otherwise.",
            "schema": {
                "type": "string",
                "const": "true"
            }
        }
    })
}

/// The path and header parameters operations name
/// (`#/components/parameters/<name>`); query strings come from the types
/// the handlers read them into.
pub(super) fn parameters() -> Value {
    json!({
        "PingToken": {
            "name": "id",
            "in": "path",
            "required": true,
            "description": "On the ping routes this segment is the heartbeat's ping token (64 hex digits, as shown when it was created or rotated), not its id: the token is the credential. An unknown one is 404.",
            "schema": {
                "type": "string"
            }
        },
        "Id": {
            "name": "id",
            "in": "path",
            "required": true,
            "description": "The resource's id. A value that is not a uuid is 404.",
            "schema": {
                "type": "string",
                "format": "uuid"
            }
        },
        "IdempotencyKey": {
            "name": "Idempotency-Key",
            "in": "header",
            "required": false,
            "description": "Makes the POST safe to retry: a retry with the same key (in the same tenant) appends nothing and gets the first response again (status and body) with `Idempotent-Replayed: true`. Reusing the key for a different request (other path or body) is refused with 422. 1 to 200 printable ASCII characters after trimming; anything else is refused with 400.",
            "schema": {
                "type": "string",
                "minLength": 1,
                "maxLength": 200
            }
        },
        "IfMatch": {
            "name": "If-Match",
            "in": "header",
            "required": false,
            "description": "The version of the record (an incident, change, window, freeze, proposal, execution, inquiry, backup or runbook) the command is based on, as its `ETag` gives it (`\"3\"`; `W/\"3\"` and a bare `3` are accepted too). When it is not the current version the command is refused with 412 Precondition Failed (`current_version`, `current_state`). Anything other than a positive integer is 400. Without it the command applies to whatever the current version is.",
            "schema": {
                "type": "string",
                "pattern": "^\\s*(W/)?\"?[0-9]+\"?\\s*$",
                "examples": [
                    "\"3\""
                ]
            }
        },
        "StepNumber": {
            "name": "n",
            "in": "path",
            "required": true,
            "description": "The step's number, from 1. Not a number: 404; outside the execution's steps: 422.",
            "schema": {
                "type": "integer",
                "minimum": 0
            }
        }
    })
}

/// The error responses operations name (`#/components/responses/<name>`):
/// each a `Problem`, with what the status means for those operations.
pub(super) const PROBLEMS: &[(&str, &str)] = &[
    ("BadRequest", "Malformed input: the JSON body does not deserialise (wrong type, missing required field, unknown field, unknown enum value), the query string is invalid (bad uuid or date-time, unknown parameter, `limit` outside 1..200), or the `Idempotency-Key` header is not 1 to 200 printable ASCII characters. Also: a NUL character (`%00`) in a query parameter or in the path, on every route."),
    ("Unauthorized", "No `Authorization: Bearer` token, or the token is malformed, expired, not yet valid, signed with another key or algorithm, has the wrong issuer or audience, names an unknown role, or is a client token without a `client_id` claim."),
    ("Forbidden", "The token holds none of the roles this operation allows, or its tenant is not registered."),
    ("NotFound", "No such resource: the id is not a uuid, nothing with this id exists in the caller's tenant (at `as_of`, when given), or it belongs to a client the caller may not see."),
    ("MethodNotAllowed", "The path exists but does not accept this method. Every path answers 405 to methods it does not list."),
    ("Conflict", "The name is already taken in this tenant (names are compared ignoring case and surrounding space). A conflict on the resource's own stream also carries `stream` and `current_version`."),
    ("PayloadTooLarge", "The request body is larger than 1 MiB (1048576 bytes): refused on every route, whether or not it reads a body, and nothing is done."),
    ("UnsupportedMediaType", "The body is not declared as JSON (`Content-Type: application/json` is required)."),
    ("Unprocessable", "The request is well-formed but invalid (an empty, over-long or control-character name, an invalid email, an unsupported locale, too many contacts or components, an out-of-range `sla_target_pct` or `notice_period_h`, an unknown `client_id`), or the `Idempotency-Key` was already used for a different request. On every route: a NUL character (U+0000) anywhere in the body (the problem's `pointer` names where)."),
    ("InternalError", "An unexpected error; the detail only refers to the request id, which identifies it in the service's log."),
    ("Unavailable", "The database is unavailable, or the service is stopping; retry after the delay in `Retry-After`."),
    ("LifecycleConflict", "The command does not apply to the incident in its current status (`current_state` names it; e.g. acknowledging an incident that is acknowledged already, or closing one that is not resolved); or a concurrent command was appended first (`stream`, `current_version`). Reload the incident and decide again."),
    ("IncidentUnprocessable", "The command is well-formed but invalid: an empty text, description, reason or assignee, or one over 10000 characters (after trimming); an `impact_end` before the impact start; a severity change to the severity the incident has already; a hand-off of an incident that is with maintenance already; an unassign when nobody is assigned; or the `Idempotency-Key` was already used for a different request."),
    ("OpenUnprocessable", "The incident is well-formed but invalid: an empty, over-long (200 characters) or control-character title, or a `service_id` that is not a service of the tenant; or the `Idempotency-Key` was already used for a different request."),
    ("AlertUnprocessable", "The alert is well-formed but invalid: a severity, category or status word that is not recognised (plain JSON), an alert status other than `firing` or `resolved` (Alertmanager, Grafana), a dedup key empty or over 512 bytes, a group key over 512 bytes, more than 64 labels or a label name or value over 1024 bytes, or a source empty or over 100 bytes."),
    ("IngestConflict", "Other receipts of the same dedup key or alert group kept winning while this one was being recorded; retrying is safe."),
    ("IngestTooLarge", "The request body is larger than 1 MiB (1048576 bytes), or the notification carries more than 1000 alerts."),
    ("StreamConflict", "A concurrent change to the same resource was appended first (`stream` and `current_version` say where it stands); retrying is safe."),
    ("UserUnprocessable", "The responder is well-formed but invalid: an empty, over-long (200 characters) or control-character name, an invalid email, an unsupported locale, or a role other than a staff role (`client`, `integration`); or the `Idempotency-Key` was already used for a different request."),
    ("PolicyUnprocessable", "The policy is well-formed but invalid: a name empty or over 200 characters after trimming; no levels or more than 20; a level without targets or with more than 50, a `timeout_minutes` outside 1/60 to 1440, or a `repeat` over 10; a service, user or schedule that does not exist in the tenant; or the `Idempotency-Key` was already used for a different request."),
    ("ScheduleUnprocessable", "The schedule is well-formed but invalid: an empty, over-long (200 characters) or control-character name; a `time_zone` that is not an IANA zone name; no rotations; a rotation naming no users or more than 100, with `shift_hours` outside 1 to 8760, or whose first hand-off is out of range; a user that is not registered; or the `Idempotency-Key` was already used for a different request."),
    ("OverrideUnprocessable", "The override is well-formed but invalid: `start` not before `end`; a user that is not registered; the schedule keeps 500 overrides already and must be defined anew; or the `Idempotency-Key` was already used for a different request."),
    ("SubscriptionUnprocessable", "The subscription is well-formed but invalid: a service that does not exist in the tenant (or, for a client user, is another client's); an empty, over-long (200 characters) or control-character name; an invalid email; an unsupported locale; no kinds, or a kind other than `incident_opened`, `incident_mitigated`, `incident_resolved` and `monthly_report` (escalations, windows and changes are told without being chosen); or the `Idempotency-Key` was already used for a different request."),
    ("ProposalConflict", "The command does not apply to the proposal in its current status (`current_state` names it); or a concurrent command was appended first. Reload the proposal and decide again."),
    ("ChangeConflict", "The step does not apply to the change in its current status (`current_state` names it), or a concurrent command was appended first (`stream`, `current_version`); or, scheduling a normal change, a freeze of one of its services covers the schedule (`freeze_id` names it)."),
    ("ChangeUnprocessable", "The request is well-formed but invalid: an empty or over-long text; no or more than 50 services; a normal change without `rollback_plan`; a service, incident, proposal or window that does not exist; a link of the wrong shape or one the change has already; an approval of a standard change or of an approved one; a review of an emergency change not yet approved; `end` not after `start`; `minutes_spent` over 10080; or the `Idempotency-Key` was already used for a different request."),
    ("FreezeUnprocessable", "The freeze is invalid: no or more than 50 services, an unknown service, `end` not after `start`, longer than 366 days, an empty reason; or the `Idempotency-Key` was already used for a different request."),
    ("WindowUnprocessable", "The request is well-formed but invalid: an empty title, no or more than 50 services, an unknown service or change, `end` not after `start` or more than 168 hours after it, an RRULE that does not parse or recurs more often than daily; announcing too late for a service's notice period (the detail names the service, its notice period and the latest time it could have been announced) unless the window serves an emergency change; or the `Idempotency-Key` was already used for a different request."),
    ("WindowConflict", "The step does not apply to the window in its current status (`current_state`), or a concurrent command was appended first."),
    ("WorkUnprocessable", "The request is well-formed but invalid: an empty or over-long text (summary, what, location, how, title, instructions, subject, body, answer, reason, note) or one with control characters other than line breaks and tabs, `minutes_spent` outside 0 to 10080, a `performed_at` in the future, a runbook without steps or with more than 100, a step number outside the execution's steps, confirming a step not marked for double-check, aborting without a note, a `service_id` or `incident_id` that does not exist (or, for a client user, a service of another client), or the `Idempotency-Key` was already used for a different request."),
    ("ExecutionConflict", "The command does not apply to the execution as it stands (`current_state` names its status, `next_step` the step to complete next and `awaiting_confirmation` a step waiting for its second person): a step completed out of order or twice, a step completed while an earlier double-check step is unconfirmed, a step confirmed by the person who completed it, a step confirmed twice or before it was completed, finishing as succeeded with steps left, or any command on a finished execution; or a concurrent command was appended first (`stream`, `current_version`). Reload the execution and decide again."),
    ("InquiryConflict", "The command does not apply to the inquiry in its current status (`current_state`): answering or closing a closed inquiry, escalating one that is escalated or closed; or a concurrent command was appended first (`stream`, `current_version`)."),
    ("ProbeConflict", "The command does not apply to the probe as it stands (`current_state`): changing or removing a removed probe; or a concurrent command was appended first (`stream`, `current_version`). Reload the probe and decide again."),
    ("HeartbeatConflict", "The command does not apply to the heartbeat as it stands (`current_state`): changing, rotating or removing a removed heartbeat; or a concurrent command was appended first (`stream`, `current_version`). Reload the heartbeat and decide again."),
    ("HeartbeatUnprocessable", "The heartbeat is well-formed but invalid: a name empty, over 200 characters or with control characters; a `period_s` under 1 or over 3024000; a `grace_s` over 604800; a cron expression that is not five fields, names days of the week by number, never runs or does not parse; a `time_zone` that is not an IANA zone; a `service_id` that is not a service of the tenant; or the `Idempotency-Key` was already used for a different request."),
    ("ProbeUnprocessable", "The probe is well-formed but invalid: a name or component empty, over 200 characters or with control characters; an `interval_s` under 10 or over 86400; a `timeout_ms` of 0 or over the interval or a minute; a threshold of 0 or over 100; a URL that is not an absolute http or https URL of at most 2048 bytes, an `expected_status` outside 100 to 599, an empty or over-long `body_keyword`, a `json_pointer` that is not an RFC 6901 pointer or one without `json_value` (or the reverse); a TCP host that is not a host name or address, or port 0; a `service_id` that is not a service of the tenant; or the `Idempotency-Key` was already used for a different request."),
    ("DependenciesUnprocessable", "The dependencies are well-formed but invalid: more than 20 services (repeats count once); the service itself; a service that does not exist in the tenant (the detail names it); or a set that would make a cycle (the detail names it, from the service back to itself, as `a → b → a`); or the `Idempotency-Key` was already used for a different request."),
    ("SamplesTooLarge", "The request body is larger than 1 MiB (1048576 bytes), or the batch holds more than 1000 samples. Nothing is kept."),
    ("SamplesUnprocessable", "The batch is well-formed but invalid, and nothing of it is kept: no samples; or a sample (the detail names its index) whose metric name does not match `[a-zA-Z_:][a-zA-Z0-9_:]*` or is over 200 bytes, with more than 32 labels, a label name that does not match `[a-zA-Z_][a-zA-Z0-9_]*` or is over 100 bytes, a label value empty, over 512 bytes or with control characters, a value that is not a finite number, or a time more than 5 minutes ahead of the service's clock or older than the 3 h 10 min samples are kept. A NUL anywhere in the body, too (the problem's `pointer` names where)."),
    ("ThresholdRuleConflict", "The command does not apply to the rule as it stands (`current_state`): changing or removing a removed rule; or a concurrent command was appended first (`stream`, `current_version`). Reload the rule and decide again."),
    ("ThresholdRuleUnprocessable", "The rule is well-formed but invalid: a name or component empty, over 200 characters or with control characters; a metric or matcher label name that is not Prometheus'; more than 32 matchers, or a matcher value empty, over 512 bytes or with control characters; a `for_s` over 3600; a `stale_after_s` of 0 or over 3600; a category other than `hardware` or `traffic`; a `service_id` that is not a service of the tenant; or the `Idempotency-Key` was already used for a different request."),
    ("BackupScheduleConflict", "The command does not apply to the schedule as it stands (`current_state`): removing a removed schedule; or a concurrent command was appended first (`stream`, `current_version`), two first `PUT`s of one service's schedule among them. Reload the schedule and decide again."),
    ("BackupScheduleUnprocessable", "The schedule is well-formed but invalid: a `period_s` or `verify_within_s` under an hour (3600) or over 400 days (34560000); a `grace_s` over the period; or the `Idempotency-Key` was already used for a different request."),
    ("VersionConflict", "A concurrent command was appended first (`stream`, `current_version`). Reload and decide again."),
    ("PreconditionFailed", "`If-Match` names another version than the current one (RFC 9110 §13.1.1): the record moved on since the version the command was based on. `current_version` and `current_state` say where it stands; reload it and decide again. Nothing was written."),
];
