//! The API contract as code: every route is one `Endpoint` that carries its
//! handler, the roles it admits and its OpenAPI operation. `configure`
//! registers the handlers and enforces the roles from the same entries, and
//! `document()` writes the OpenAPI document from them, with the body schemas
//! derived from the Rust types (`utoipa::ToSchema`). So the route table, the
//! roles (`x-roles`) and the document cannot drift apart.
//!
//! `openapi/openapi.json` is this document, written by `opsledger openapi`
//! and committed; a test fails when the committed file is stale.

#[cfg(feature = "conformance")]
pub mod conformance;
mod vocabulary;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, Route};
use opsledger_domain::access::Role;
use serde_json::{json, Map, Value};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::auth::Caller;

/// One route: where it is, what runs it, who may call it, and its operation.
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    pub(crate) route: Route,
    /// The roles admitted (`x-roles`); empty for the public routes.
    pub roles: &'static [Role],
    /// Roles the gate lets through to a handler that admits only some of
    /// their holders (`x-granted-roles`: an integration granted the feed).
    pub granted: &'static [Role],
    op: Option<Map<String, Value>>,
    schemas: Vec<(String, RefOr<Schema>)>,
}

impl Endpoint {
    pub fn new(method: Method, path: &'static str, route: Route) -> Endpoint {
        Endpoint {
            method,
            path,
            route,
            roles: &[],
            granted: &[],
            op: None,
            schemas: Vec::new(),
        }
    }

    /// The operation: its id (the handler's name), tag, summary and text.
    pub fn op(mut self, id: &str, tag: &str, summary: &str, description: &str) -> Endpoint {
        let mut op = Map::new();
        op.insert("operationId".into(), json!(id));
        op.insert("summary".into(), json!(summary));
        if !description.is_empty() {
            op.insert("description".into(), json!(description));
        }
        op.insert("tags".into(), json!([tag]));
        op.insert("security".into(), json!([]));
        op.insert("parameters".into(), json!([]));
        op.insert("responses".into(), json!({}));
        self.op = Some(op);
        self
    }

    /// Who may call it: enforced before the handler runs, and named in the
    /// document as `x-roles` (a handler may narrow it further by record).
    pub fn roles(mut self, roles: &'static [Role]) -> Endpoint {
        self.roles = roles;
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        let op = self.op_mut();
        op.insert("security".into(), json!([{ "bearerAuth": [] }]));
        op.insert("x-roles".into(), json!(names));
        self
    }

    /// Roles whose holders the handler admits one by one, as granted.
    pub fn granted(mut self, roles: &'static [Role]) -> Endpoint {
        self.granted = roles;
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        self.op_mut().insert("x-granted-roles".into(), json!(names));
        self
    }

    /// Shared parameters (`#/components/parameters/<name>`): the path's id,
    /// `If-Match`, `Idempotency-Key`, paging.
    pub fn params(mut self, names: &[&str]) -> Endpoint {
        let params = self.params_mut();
        for name in names {
            params.push(json!({ "$ref": format!("#/components/parameters/{name}") }));
        }
        self
    }

    /// A path parameter that is text (a token subject), not a shared id.
    pub fn path_param(mut self, name: &str, description: &str) -> Endpoint {
        self.params_mut().push(json!({
            "name": name, "in": "path", "required": true,
            "description": description, "schema": { "type": "string" }
        }));
        self
    }

    /// A request header the operation reads (text).
    pub fn header_param(mut self, name: &str, description: &str) -> Endpoint {
        self.params_mut().push(json!({
            "name": name, "in": "header", "required": false,
            "description": description, "schema": { "type": "string" }
        }));
        self
    }

    /// The query string, described by the type the handler deserialises it into.
    pub fn query<Q: IntoParams>(mut self) -> Endpoint {
        let described: Vec<Value> =
            Q::into_params(|| Some(utoipa::openapi::path::ParameterIn::Query))
                .into_iter()
                .map(|p| serde_json::to_value(p).expect("a parameter serialises"))
                .collect();
        self.params_mut().extend(described);
        self
    }

    /// A JSON request body of type `B`.
    pub fn body<B: ToSchema>(mut self, required: bool) -> Endpoint {
        let schema = self.schema_of::<B>();
        self.op_mut().insert(
            "requestBody".into(),
            json!({ "required": required, "content": { "application/json": { "schema": schema } } }),
        );
        self
    }

    /// A JSON response of type `R`, with the headers it carries.
    pub fn answers<R: ToSchema>(
        mut self,
        status: u16,
        description: &str,
        headers: &[&str],
    ) -> Endpoint {
        let schema = self.schema_of::<R>();
        self.respond(status, description, headers, "application/json", schema)
    }

    /// A response whose body is text of `content_type` (CSV, HTML, ICS, …).
    pub fn answers_text(
        self,
        status: u16,
        content_type: &str,
        description: &str,
        headers: &[&str],
    ) -> Endpoint {
        self.respond(
            status,
            description,
            headers,
            content_type,
            json!({ "type": "string" }),
        )
    }

    /// A JSON object described elsewhere (the OpenAPI document itself).
    pub fn answers_object(self, status: u16, description: &str, headers: &[&str]) -> Endpoint {
        self.respond(
            status,
            description,
            headers,
            "application/json",
            json!({ "type": "object" }),
        )
    }

    /// A response with no body (204).
    pub fn answers_empty(mut self, status: u16, description: &str, headers: &[&str]) -> Endpoint {
        self.responses_mut().insert(
            status.to_string(),
            json!({ "description": description, "headers": header_refs(headers) }),
        );
        self
    }

    /// The shared error responses (`#/components/responses/<name>`) by status.
    pub fn fails(mut self, errors: &[(u16, &str)]) -> Endpoint {
        let responses = self.responses_mut();
        for (status, name) in errors {
            responses.insert(
                status.to_string(),
                json!({ "$ref": format!("#/components/responses/{name}") }),
            );
        }
        self
    }

    fn respond(
        mut self,
        status: u16,
        description: &str,
        headers: &[&str],
        content_type: &str,
        schema: Value,
    ) -> Endpoint {
        let responses = self.responses_mut();
        let response = responses
            .entry(status.to_string())
            .or_insert_with(|| json!({ "description": description, "headers": {}, "content": {} }));
        if let Some(named) = response["headers"].as_object_mut() {
            named.extend(header_refs(headers));
        }
        response["content"][content_type] = json!({ "schema": schema });
        self
    }

    /// `T`'s schema, inline (generic types have no name of their own), with
    /// every named schema it refers to kept for the components.
    fn schema_of<T: ToSchema>(&mut self) -> Value {
        T::schemas(&mut self.schemas);
        serde_json::to_value(T::schema()).expect("a schema serialises")
    }

    fn op_mut(&mut self) -> &mut Map<String, Value> {
        self.op.as_mut().expect("op() comes first")
    }

    fn params_mut(&mut self) -> &mut Vec<Value> {
        match self.op_mut().get_mut("parameters") {
            Some(Value::Array(a)) => a,
            _ => unreachable!("op() sets parameters"),
        }
    }

    fn responses_mut(&mut self) -> &mut Map<String, Value> {
        match self.op_mut().get_mut("responses") {
            Some(Value::Object(m)) => m,
            _ => unreachable!("op() sets responses"),
        }
    }
}

/// References to the shared headers a response carries, `X-Request-Id`
/// always; `name=Component` names a header after another component.
fn header_refs(headers: &[&str]) -> Map<String, Value> {
    std::iter::once("X-Request-Id")
        .chain(headers.iter().copied())
        .map(|h| {
            let (name, component) = h.split_once('=').unwrap_or((h, h));
            (
                name.to_owned(),
                json!({ "$ref": format!("#/components/headers/{component}") }),
            )
        })
        .collect()
}

/// Refuses a caller without one of `roles` before the handler runs, and
/// leaves the authenticated caller for the handler's `Caller` extractor.
pub(crate) async fn admit(
    roles: &'static [Role],
    granted: &'static [Role],
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let caller = match crate::auth::authenticate(req.request()) {
        Ok(caller) => caller,
        Err(e) => return Ok(req.error_response(e)),
    };
    if !caller.0.has_any(granted) {
        if let Err(e) = caller.require(roles) {
            return Ok(req.error_response(e));
        }
    }
    req.extensions_mut().insert::<Caller>(caller);
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// The OpenAPI document of `endpoints`.
pub fn document(endpoints: &[Endpoint]) -> Value {
    let mut doc = vocabulary::head();
    let mut paths = Map::new();
    let mut schemas: Vec<(String, RefOr<Schema>)> = Vec::new();
    crate::problem::Problem::schemas(&mut schemas);
    schemas.push(("Problem".into(), crate::problem::Problem::schema()));
    for e in endpoints {
        let mut op =
            e.op.clone()
                .unwrap_or_else(|| panic!("{} {} has no operation", e.method, e.path));
        answered_by_every_route(&mut op, !e.roles.is_empty());
        let item = paths.entry(e.path).or_insert_with(|| json!({}));
        item[e.method.as_str().to_lowercase()] = Value::Object(op);
        schemas.extend(e.schemas.iter().cloned());
    }
    let mut named: Map<String, Value> = Map::new();
    for (name, schema) in schemas {
        let schema = serde_json::to_value(schema).expect("a schema serialises");
        // Two Rust types of one name would describe each other's bodies:
        // the second needs `#[schema(as = …)]`.
        if let Some(earlier) = named.get(&name) {
            assert!(
                *earlier == schema,
                "two types are named {name} in the document; give one `#[schema(as = …)]`"
            );
        }
        named.insert(name, schema);
    }
    doc["paths"] = Value::Object(paths);
    doc["components"] = json!({
        "securitySchemes": vocabulary::security_schemes(),
        "parameters": vocabulary::parameters(),
        "headers": vocabulary::headers(),
        "responses": problem_responses(),
        "schemas": named,
    });
    doc
}

/// What any route may answer before its handler runs, unless the
/// operation names a more particular response for the status: 400 (a NUL in
/// the query), 413 (a body over the limit), 500; and, for a route that
/// takes a token, 401 and 403.
fn answered_by_every_route(op: &mut Map<String, Value>, private: bool) {
    let mut universal = vec![
        (400, "BadRequest"),
        (413, "PayloadTooLarge"),
        (500, "InternalError"),
        // The database does not answer, or the service is stopping.
        (503, "Unavailable"),
    ];
    if private {
        universal.extend([(401, "Unauthorized"), (403, "Forbidden")]);
    }
    let Some(Value::Object(responses)) = op.get_mut("responses") else {
        unreachable!("op() sets responses")
    };
    for (status, name) in universal {
        responses
            .entry(status.to_string())
            .or_insert_with(|| json!({ "$ref": format!("#/components/responses/{name}") }));
    }
}

/// Each shared error response: a `Problem`, with the request id, and the
/// headers its status always carries.
fn problem_responses() -> Value {
    let mut responses = Map::new();
    for (name, description) in vocabulary::PROBLEMS {
        let mut headers =
            json!({ "X-Request-Id": { "$ref": "#/components/headers/X-Request-Id" } });
        match *name {
            "Unauthorized" => {
                headers["WWW-Authenticate"] =
                    json!({ "$ref": "#/components/headers/WWW-Authenticate" })
            }
            "Unavailable" => {
                headers["Retry-After"] = json!({ "$ref": "#/components/headers/Retry-After" })
            }
            _ => {}
        }
        responses.insert(
            (*name).into(),
            json!({
                "description": description,
                "headers": headers,
                "content": { "application/problem+json": {
                    "schema": { "$ref": "#/components/schemas/Problem" }
                } }
            }),
        );
    }
    Value::Object(responses)
}

/// The document as `opsledger openapi` writes it: pretty JSON, one newline.
pub fn document_text() -> String {
    let doc = document(&crate::routes::table());
    let mut text = serde_json::to_string_pretty(&doc).expect("the document serialises");
    text.push('\n');
    text
}
