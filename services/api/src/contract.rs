//! The API contract as code: every route is one `Endpoint` that carries its
//! handler, the roles it admits and its OpenAPI operation. `configure`
//! registers the handlers and enforces the roles from the same entries, and
//! `document()` writes the OpenAPI document from them, with the body schemas
//! derived from the Rust types (`utoipa::ToSchema`). So the route table, the
//! roles (`x-roles`) and the document cannot drift apart.
//!
//! `openapi/openapi.json` is this document, written by `opsledger openapi`
//! and committed; a test fails when the committed file is stale.
//!
//! Operations not yet described here still come from `openapi/legacy.json`,
//! the remainder of the hand-kept document, which shrinks as they move.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, Route};
use opsledger_domain::access::Role;
use serde_json::{json, Map, Value};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;

/// What remains of the hand-kept document: operations not yet described by
/// an `Endpoint`, and the shared parameters, headers and error responses.
const LEGACY_JSON: &str = include_str!("../../../openapi/legacy.json");

/// One route: where it is, what runs it, who may call it, and its operation.
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    pub(crate) route: Route,
    /// The roles admitted (`x-roles`); empty for the public routes.
    pub roles: &'static [Role],
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

    /// A response with no body (204).
    pub fn answers_empty(mut self, status: u16, description: &str, headers: &[&str]) -> Endpoint {
        let mut named = serde_json::Map::new();
        named.insert(
            "X-Request-Id".into(),
            json!({ "$ref": "#/components/headers/X-Request-Id" }),
        );
        for h in headers {
            let (name, component) = h.split_once('=').unwrap_or((h, h));
            named.insert(
                name.into(),
                json!({ "$ref": format!("#/components/headers/{component}") }),
            );
        }
        self.responses_mut().insert(
            status.to_string(),
            json!({ "description": description, "headers": named }),
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
        let mut all_headers = vec!["X-Request-Id"];
        all_headers.extend_from_slice(headers);
        for h in all_headers {
            let (name, component) = h.split_once('=').unwrap_or((h, h));
            response["headers"][name] =
                json!({ "$ref": format!("#/components/headers/{component}") });
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

/// Refuses a caller without one of `roles` before the handler runs, and
/// leaves the authenticated caller for the handler's `Caller` extractor.
pub(crate) async fn admit(
    roles: &'static [Role],
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let caller = match crate::auth::authenticate(req.request()) {
        Ok(caller) => caller,
        Err(e) => return Ok(req.error_response(e)),
    };
    if let Err(e) = caller.require(roles) {
        return Ok(req.error_response(e));
    }
    req.extensions_mut().insert::<Caller>(caller);
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// The OpenAPI document of `endpoints`.
pub fn document(endpoints: &[Endpoint]) -> Value {
    let mut doc: Value = serde_json::from_str(LEGACY_JSON).expect("legacy.json is JSON");
    let mut schemas: Vec<(String, RefOr<Schema>)> = Vec::new();
    let mut described = Vec::new();
    for e in endpoints {
        let method = e.method.as_str().to_lowercase();
        if let Some(op) = &e.op {
            doc["paths"][e.path][&method] = Value::Object(op.clone());
            schemas.extend(e.schemas.iter().cloned());
            described.push((e.path, method));
        }
    }
    let components = doc["components"]["schemas"]
        .as_object_mut()
        .expect("legacy.json has components.schemas");
    let mut generated: Map<String, Value> = Map::new();
    for (name, schema) in schemas {
        let schema = serde_json::to_value(schema).expect("a schema serialises");
        // Two Rust types of one name would describe each other's bodies:
        // the second needs `#[schema(as = …)]`.
        if let Some(earlier) = generated.get(&name) {
            assert!(
                *earlier == schema,
                "two types are named {name} in the document; give one `#[schema(as = …)]`"
            );
        }
        generated.insert(name.clone(), schema.clone());
        components.insert(name, schema);
    }
    doc
}

/// The document as `opsledger openapi` writes it: pretty JSON, one newline.
pub fn document_text() -> String {
    let doc = document(&crate::table());
    let mut text = serde_json::to_string_pretty(&doc).expect("the document serialises");
    text.push('\n');
    text
}
