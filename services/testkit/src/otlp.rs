//! An OTLP/HTTP receiver on loopback: accepts `POST /v1/traces` with
//! protobuf bodies (`application/x-protobuf`), decodes them with the OTLP
//! definitions and keeps the spans, for tests to read back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

/// Export bodies larger than this are refused: a batch of the SDK's default
/// size (512 spans) is well under it.
const BODY_LEN_MAX_BYTES: usize = 16 << 20;

/// A span as received, its ids in lowercase hex.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// The resource's `service.name`.
    pub service: Option<String>,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// OTLP's `SpanKind` (2 is server).
    pub kind: i32,
    /// Attribute values as text.
    pub attributes: BTreeMap<String, String>,
    /// The (trace id, span id) of each linked span.
    pub links: Vec<(String, String)>,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

#[derive(Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    /// Export requests answered, and what was refused and why.
    posts: usize,
    refused: Vec<String>,
}

pub struct OtlpReceiver {
    /// What `OTEL_EXPORTER_OTLP_ENDPOINT` is set to: `/v1/traces` is under it.
    pub endpoint: String,
    received: Arc<Mutex<Received>>,
    server: actix_web::dev::ServerHandle,
}

impl OtlpReceiver {
    pub async fn start() -> OtlpReceiver {
        let received = Arc::new(Mutex::new(Received::default()));
        let shared = web::Data::from(received.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port on loopback");
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .app_data(web::PayloadConfig::new(BODY_LEN_MAX_BYTES))
                .route("/v1/traces", web::post().to(export))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("the receiver listens")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        OtlpReceiver {
            endpoint: format!("http://127.0.0.1:{port}"),
            received,
            server: handle,
        }
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.lock().unwrap().spans.clone()
    }

    /// Export requests received (answered or refused).
    pub fn posts(&self) -> usize {
        self.received.lock().unwrap().posts
    }

    /// Why export requests were refused, if any were.
    pub fn refused(&self) -> Vec<String> {
        self.received.lock().unwrap().refused.clone()
    }

    /// The spans received once `done` holds of them, or within `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let by = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) || Instant::now() > by {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        let stop = self.server.stop(false);
        drop(stop);
    }
}

async fn export(
    req: HttpRequest,
    body: web::Bytes,
    received: web::Data<Mutex<Received>>,
) -> HttpResponse {
    let mut received = received.lock().unwrap();
    received.posts += 1;
    let protobuf = req
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes() == b"application/x-protobuf");
    if !protobuf {
        received.refused.push(format!(
            "content type {:?}",
            req.headers().get("content-type")
        ));
        return HttpResponse::UnsupportedMediaType().finish();
    }
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(request) => request,
        Err(e) => {
            received.refused.push(format!("not an export request: {e}"));
            return HttpResponse::BadRequest().finish();
        }
    };
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
            .and_then(text);
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                received.spans.push(ReceivedSpan {
                    service: service.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    attributes: span
                        .attributes
                        .iter()
                        .filter_map(|a| Some((a.key.clone(), text(a)?)))
                        .collect(),
                    links: span
                        .links
                        .iter()
                        .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                        .collect(),
                });
            }
        }
    }
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .body(ExportTraceServiceResponse::default().encode_to_vec())
}

fn text(attribute: &KeyValue) -> Option<String> {
    Some(match attribute.value.as_ref()?.value.as_ref()? {
        Value::StringValue(s) => s.clone(),
        Value::BoolValue(b) => b.to_string(),
        Value::IntValue(i) => i.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
