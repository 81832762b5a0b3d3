//! Structured logs through `tracing`: text for people, JSON
//! (`OPSLEDGER_LOG_FORMAT=json`) for machines; `RUST_LOG` filters. Request
//! latency for `/metrics` (`api::metrics`).
//!
//! OpenTelemetry traces over OTLP/HTTP (protobuf), when an endpoint is
//! configured by the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_SERVICE_NAME`,
//! `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`; the exporter itself
//! reads `OTEL_EXPORTER_OTLP_HEADERS` and `OTEL_RESOURCE_ATTRIBUTES`).
//!
//! Invariants:
//! - The exported spans have the target [`SPAN_TARGET`]; the log never shows
//!   them. With no endpoint set no OpenTelemetry layer is installed, nothing
//!   wants those spans, and their callsites stay disabled: a span macro
//!   costs a check of a cached interest and no span is ever built.
//! - A request's span continues the caller's trace (W3C `traceparent`).
//! - Every log line written inside a traced span ends with its `trace_id`.
//! - A bad variable stops the service at start naming it; nothing panics.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use opentelemetry::trace::{TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opsledger_api::AppState;
pub use opsledger_store::SPAN_TARGET;
use tracing::field::Empty;
use tracing::{Instrument, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// The service's name in traces when `OTEL_SERVICE_NAME` is unset.
pub const SERVICE_NAME_DEFAULT: &str = "opsledger";
/// How long one export may take: the OTLP exporters' default (10 s).
const EXPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Which traces are kept (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerChoice {
    /// A span with a parent follows its parent's decision (`parentbased_*`).
    pub parent_based: bool,
    /// The share of root traces kept, 0 to 1.
    pub ratio: f64,
}

impl SamplerChoice {
    /// The specification's default: `parentbased_always_on`.
    pub const DEFAULT: SamplerChoice = SamplerChoice {
        parent_based: true,
        ratio: 1.0,
    };

    fn sampler(self) -> Sampler {
        let root = match self.ratio {
            r if r >= 1.0 => Sampler::AlwaysOn,
            r if r <= 0.0 => Sampler::AlwaysOff,
            r => Sampler::TraceIdRatioBased(r),
        };
        if self.parent_based {
            Sampler::ParentBased(Box::new(root))
        } else {
            root
        }
    }
}

/// What the `OTEL_*` variables ask for, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceConfig {
    /// Where spans are posted: the full URL of the traces resource.
    pub endpoint: String,
    pub service_name: String,
    pub sampler: SamplerChoice,
}

impl TraceConfig {
    /// `None` when no endpoint is set (traces off); an error naming the
    /// variable when one is set wrong. `get` reads a variable (the
    /// environment, or a test's map); empty counts as unset.
    pub fn from_vars(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<TraceConfig>, String> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        // The specification's precedence: the traces endpoint is used as it
        // is; the general one is a base that `/v1/traces` is appended to.
        let endpoint = match (
            get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(url), _) => endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &url, "")?,
            (None, Some(url)) => endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", &url, "v1/traces")?,
            (None, None) => return Ok(None),
        };
        Ok(Some(TraceConfig {
            endpoint,
            service_name: get("OTEL_SERVICE_NAME").unwrap_or_else(|| SERVICE_NAME_DEFAULT.into()),
            sampler: sampler(get("OTEL_TRACES_SAMPLER"), get("OTEL_TRACES_SAMPLER_ARG"))?,
        }))
    }

    pub fn from_env() -> Result<Option<TraceConfig>, String> {
        TraceConfig::from_vars(&|name| std::env::var(name).ok())
    }
}

/// `raw` checked as an http(s) URL with a host, with `path` appended.
fn endpoint(variable: &str, raw: &str, path: &str) -> Result<String, String> {
    let bad = |why: &str| format!("{variable}={raw:?} is not valid: {why}");
    let mut url = reqwest::Url::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?;
    match url.scheme() {
        // https is verified against the system's root certificates.
        "http" | "https" => {}
        _ => return Err(bad("the scheme must be http or https (OTLP over HTTP)")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it names no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it must have no query or fragment"));
    }
    if !path.is_empty() {
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}/{path}"));
    }
    Ok(url.into())
}

/// The sampler the variables name; the specification's names, less the
/// remote samplers (`jaeger_remote`, `xray`) this build has none of.
fn sampler(name: Option<String>, arg: Option<String>) -> Result<SamplerChoice, String> {
    const NAMES: &str = "always_on, always_off, traceidratio, parentbased_always_on, \
                         parentbased_always_off, parentbased_traceidratio";
    let name = name.map(|n| n.trim().to_ascii_lowercase());
    let Some(name) = name else {
        return Ok(SamplerChoice::DEFAULT);
    };
    let (parent_based, root) = match name.strip_prefix("parentbased_") {
        Some(root) => (true, root),
        None => (false, name.as_str()),
    };
    let ratio = match root {
        "always_on" => 1.0,
        "always_off" => 0.0,
        "traceidratio" => match arg {
            None => 1.0,
            Some(arg) => arg
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| {
                    format!("OTEL_TRACES_SAMPLER_ARG={arg:?} is not valid (a ratio from 0 to 1)")
                })?,
        },
        _ => {
            return Err(format!(
                "OTEL_TRACES_SAMPLER={name:?} is not valid ({NAMES})"
            ))
        }
    };
    Ok(SamplerChoice {
        parent_based,
        ratio,
    })
}

/// What `init` set up; [`Telemetry::shutdown`] exports the spans still held.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is buffered and stops the exporter. Call it outside the
    /// async runtime: it waits for the exporter's thread.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown() {
                eprintln!("opsledger: traces not all exported: {e}");
            }
        }
    }
}

/// Logs, plus traces when `traces` says where to send them. Call it outside
/// the async runtime (the exporter's HTTP client is a blocking one, whose
/// runtime may not be built or dropped inside another).
pub fn init(traces: Option<&TraceConfig>) -> Result<Telemetry, String> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // The exported spans are never the log's; with no exporter, nothing
    // wants them at all.
    let filter = filter.add_directive(
        format!("{SPAN_TARGET}=off")
            .parse()
            .expect("a directive naming a target"),
    );
    let json = std::env::var("OPSLEDGER_LOG_FORMAT").is_ok_and(|f| f == "json");
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    let mut telemetry = Telemetry::default();
    if let Some(traces) = traces {
        let provider = provider(traces)?;
        let tracer = provider.tracer("opsledger");
        telemetry.provider = Some(provider);
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_threads(false)
                .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                    m.target() == SPAN_TARGET
                }))
                .boxed(),
        );
    }
    // As `fmt`'s own default: colours unless NO_COLOR says otherwise.
    let ansi = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let traced = traces.is_some();
    let fmt = match (json, traced) {
        (false, false) => fmt.boxed(),
        (true, false) => fmt.json().boxed(),
        (false, true) => fmt
            .event_format(WithTraceId {
                inner: format::Format::default().with_ansi(ansi),
                json: false,
            })
            .boxed(),
        (true, true) => fmt
            .json()
            .event_format(WithTraceId {
                inner: format::Format::default().json(),
                json: true,
            })
            .boxed(),
    };
    layers.push(fmt.with_filter(filter).boxed());
    // A second init (tests spawn many apps in one process) is harmless.
    let _ = tracing_subscriber::registry().with(layers).try_init();
    Ok(telemetry)
}

/// The tracer provider: spans batched on the SDK's own thread and posted as
/// OTLP protobuf.
fn provider(traces: &TraceConfig) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let client = reqwest::blocking::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("the OTLP exporter's HTTP client: {e}"))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(traces.endpoint.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .with_http_client(Exporter(client))
        .build()
        .map_err(|e| format!("the OTLP exporter for {}: {e}", traces.endpoint))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(traces.sampler.sampler())
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(traces.service_name.clone())
                .build(),
        )
        .build())
}

/// The exporter's HTTP client: the workspace's reqwest, blocking, on the
/// batch processor's own thread (opentelemetry-otlp's bundled clients are of
/// another reqwest major version).
#[derive(Debug)]
struct Exporter(reqwest::blocking::Client);

type HttpAnswer =
    Result<opentelemetry_http::Response<opentelemetry_http::Bytes>, opentelemetry_http::HttpError>;

// `HttpClient` is an `async_trait`; this is its expansion, by hand.
impl opentelemetry_http::HttpClient for Exporter {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = HttpAnswer> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            let request = reqwest::blocking::Request::try_from(request.map(Vec::from))?;
            // The SDK drops an export's error unsaid (its own logs are not
            // built in): say it here, in the log.
            let response = self.0.execute(request).inspect_err(|e| {
                tracing::warn!(error = %e, "traces not exported");
            })?;
            if !response.status().is_success() {
                tracing::warn!(status = response.status().as_u16(), "traces not exported");
            }
            let mut answer = opentelemetry_http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                answer = answer.header(name, value);
            }
            Ok(answer.body(response.bytes()?)?)
        })
    }
}

/// A log line's format with the current trace's id at its end, as a field
/// (`trace_id=…`, or a `"trace_id"` member of the JSON object), when the line
/// is written inside a traced span.
struct WithTraceId<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceId<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some(trace_id) = current_trace_id() else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        match line.strip_suffix('}').filter(|_| self.json) {
            Some(open) => writeln!(writer, "{open},\"trace_id\":\"{trace_id}\"}}"),
            None => writeln!(writer, "{line} trace_id={trace_id}"),
        }
    }
}

/// The trace of the span the thread is in, if it is a traced one. The
/// registry's current span, not the log layer's (which never sees the
/// exported spans); the global dispatcher, as an event's formatting runs
/// inside the dispatch of that event.
fn current_trace_id() -> Option<TraceId> {
    tracing::dispatcher::get_default(|dispatch| {
        let id = dispatch.current_span().id()?.clone();
        let cx = tracing_opentelemetry::get_otel_context(&id, dispatch)?;
        let span = cx.span();
        let context = span.span_context();
        context.is_valid().then(|| context.trace_id())
    })
}

/// Reads W3C trace context from a request's headers.
struct Headers<'a>(&'a actix_web::http::header::HeaderMap);

impl opentelemetry::propagation::Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// A span per request (when traces are on), continuing the caller's trace:
/// its route template, method, status, request id and, once authenticated,
/// tenant (`api::auth::traced_tenant`).
pub async fn request_span(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let span = tracing::info_span!(
        target: SPAN_TARGET,
        "request",
        otel.name = Empty,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %req.method(),
        http.route = Empty,
        http.response.status_code = Empty,
        url.path = req.path(),
        request.id = Empty,
        tenant = Empty,
    );
    if span.is_disabled() {
        return next.call(req).await;
    }
    let route = req.match_pattern();
    span.record(
        "otel.name",
        match &route {
            Some(route) => format!("{} {route}", req.method()),
            None => req.method().to_string(),
        },
    );
    if let Some(route) = &route {
        span.record("http.route", route.as_str());
    }
    let parent = opentelemetry::propagation::TextMapPropagator::extract(
        &opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        &Headers(req.headers()),
    );
    // No `traceparent`: a context with no span, and this span is a root.
    let _ = span.set_parent(parent);
    let res = next.call(req).instrument(span.clone()).await;
    let status = match &res {
        Ok(res) => res.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    if let Some(id) = res
        .as_ref()
        .ok()
        .and_then(|r| r.headers().get("x-request-id"))
        .and_then(|v| v.to_str().ok())
    {
        span.record("request.id", id);
    }
    res
}

/// One log line per request, with its latency and status.
pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let res = next.call(req).await?;
    tracing::info!(
        method = %method,
        path = %path,
        status = res.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    Ok(res)
}

/// Times each request into `opsledger_http_request_duration_seconds`,
/// labelled by its route's template (`/api/v1/incidents/{id}`), never its
/// path: ids in paths would make a series per record. Once routed, the
/// template is a lookup by the matched resource, not a second match.
pub async fn request_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let answer = next.call(req).await;
    if let Some(state) = state {
        let took = started.elapsed();
        match &answer {
            Ok(res) => state.metrics.observe_request(
                res.request().match_pattern().as_deref(),
                &method,
                res.status(),
                took,
            ),
            // Only an inner middleware fails this way (none of ours does),
            // and the request is gone with the error: no route to name.
            Err(e) => state.metrics.observe_request(
                None,
                &method,
                e.as_response_error().status_code(),
                took,
            ),
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::{SamplerChoice, TraceConfig};

    fn read(vars: &[(&str, &str)]) -> Result<Option<TraceConfig>, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TraceConfig::from_vars(&|name| map.get(name).cloned())
    }

    #[test]
    fn no_endpoint_is_no_traces_whatever_else_is_set() {
        assert_eq!(read(&[]), Ok(None));
        assert_eq!(
            read(&[
                ("OTEL_SERVICE_NAME", "x"),
                ("OTEL_TRACES_SAMPLER", "nonsense"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", " "),
            ]),
            Ok(None)
        );
    }

    #[test]
    fn the_endpoint_is_a_base_and_the_traces_endpoint_is_used_as_it_is() {
        let c = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318")])
            .unwrap()
            .unwrap();
        assert_eq!(c.endpoint, "http://jaeger:4318/v1/traces");
        assert_eq!(c.service_name, "opsledger");
        assert_eq!(c.sampler, SamplerChoice::DEFAULT);
        let c = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel.example/prefix/")])
            .unwrap()
            .unwrap();
        assert_eq!(c.endpoint, "http://otel.example/prefix/v1/traces");
        let c = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel.example:4318")])
            .unwrap()
            .unwrap();
        assert_eq!(c.endpoint, "https://otel.example:4318/v1/traces");
        let c = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://collector:4318/in",
            ),
            ("OTEL_SERVICE_NAME", "opsledger-eu"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.endpoint, "http://collector:4318/in");
        assert_eq!(c.service_name, "opsledger-eu");
    }

    #[test]
    fn samplers_by_their_standard_names() {
        let with = |name: &str, arg: Option<&str>| {
            let mut vars = vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318"),
                ("OTEL_TRACES_SAMPLER", name),
            ];
            if let Some(arg) = arg {
                vars.push(("OTEL_TRACES_SAMPLER_ARG", arg));
            }
            read(&vars).map(|c| c.unwrap().sampler)
        };
        let choice = |parent_based, ratio| {
            Ok(SamplerChoice {
                parent_based,
                ratio,
            })
        };
        assert_eq!(with("always_on", None), choice(false, 1.0));
        assert_eq!(with("ALWAYS_OFF", None), choice(false, 0.0));
        assert_eq!(with("parentbased_always_off", None), choice(true, 0.0));
        assert_eq!(with("traceidratio", Some("0.25")), choice(false, 0.25));
        assert_eq!(with("parentbased_traceidratio", None), choice(true, 1.0));
        for (name, arg, variable) in [
            ("sometimes", None, "OTEL_TRACES_SAMPLER"),
            ("jaeger_remote", None, "OTEL_TRACES_SAMPLER"),
            ("traceidratio", Some("1.5"), "OTEL_TRACES_SAMPLER_ARG"),
            ("traceidratio", Some("half"), "OTEL_TRACES_SAMPLER_ARG"),
        ] {
            let e = with(name, arg).expect_err(name);
            assert!(e.starts_with(variable), "{e}");
        }
    }

    #[test]
    fn malformed_endpoints_are_refused_naming_their_variable() {
        for (variable, url) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://collector"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector?x=1"),
        ] {
            let e = read(&[(variable, url)]).expect_err(url);
            assert!(e.starts_with(variable), "{e}");
        }
    }
}
