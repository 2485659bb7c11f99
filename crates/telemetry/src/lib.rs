//! How every weknora service logs and traces.
//!
//! Logs go to stdout, filtered by LOG_LEVEL (an `EnvFilter` directive; `info` when it does
//! not parse), as text or, with LOG_FORMAT=json, one JSON object per line that carries the
//! `trace_id` and `span_id` of the span it was written in. Colours only on a terminal:
//! container logs stay plain text.
//!
//! Traces go over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, configured by the standard `OTEL_*`
//! variables (`OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, `OTEL_RESOURCE_ATTRIBUTES`, ...);
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turns them off. A trace crosses
//! services as a W3C `traceparent`: [`adopt`] makes a span the child of one received,
//! [`traceparent`] gives the one to send.
//!
//! Architecture invariants: every service calls [`init`] once, early in `main`, and logs
//! only through `tracing`. This crate knows no service: the caller passes its name, level
//! and format, and the crate itself reads only the standard `OTEL_*` variables. It never
//! fails a service's start: an exporter that cannot be set up is a warning, and logs
//! still flow.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

mod json;

/// Keeps the trace exporter running; dropping it sends the spans still buffered.
#[must_use = "dropping it stops the trace export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Sets up logging, and trace export when the environment asks for it. Call it from
/// within the Tokio runtime: the OTLP exporter's connection lives on it.
pub fn init(service: &str, level: &str, json: bool) -> Telemetry {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let filter =
        tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let (provider, problem) = match exporting(&env) {
        true => match provider(service, &env) {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e)),
        },
        false => (None, None),
    };
    // LOG_LEVEL filters the logs only: the spans of requests and jobs are traced whatever
    // it says.
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer().with_tracer(p.tracer(service.to_string())).with_filter(LevelFilter::INFO)
    });
    let fmt = tracing_subscriber::fmt::layer().with_target(false).with_ansi(ansi);
    let fmt = if json {
        fmt.fmt_fields(JsonFields::new()).event_format(json::Json).with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    tracing_subscriber::registry().with(otel).with(fmt).init();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    if let Some(e) = problem {
        tracing::warn!(error = %e, "traces are not exported: the OTLP exporter could not be set up (check OTEL_EXPORTER_OTLP_ENDPOINT)");
    }
    Telemetry { provider }
}

/// Whether the `OTEL_*` variables ask for an exporter.
fn exporting(env: &impl Fn(&str) -> Option<String>) -> bool {
    let off = |k: &str, v: &str| env(k).is_some_and(|x| x.trim().eq_ignore_ascii_case(v));
    let endpoint = env("OTEL_EXPORTER_OTLP_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"));
    endpoint.is_some() && !off("OTEL_SDK_DISABLED", "true") && !off("OTEL_TRACES_EXPORTER", "none")
}

fn provider(service: &str, env: &impl Fn(&str) -> Option<String>) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().build().map_err(|e| e.to_string())?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if env("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service.to_string());
    }
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build())
}

/// Makes `span` the child of the trace a W3C `traceparent` names (a request's header, a
/// job's record); a missing or malformed one leaves it a root. Call it before the span is
/// entered.
pub fn adopt(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(value) = traceparent else { return };
    let carrier = HashMap::from([("traceparent".to_string(), value.to_string())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Renames `span`'s trace span, for a name known only once it runs (an HTTP request's
/// route, after routing).
pub fn rename(span: &tracing::Span, name: String) {
    span.context().span().update_name(name);
}

/// The W3C `traceparent` of `span`, to send with a call or keep with a job; None when
/// nothing is traced.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| vars.get(k).cloned().filter(|v| !v.trim().is_empty())
    }

    #[test]
    fn traces_are_exported_only_where_an_endpoint_is_set_and_not_turned_off() {
        assert!(!exporting(&env(&[])));
        assert!(!exporting(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(exporting(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4317")])));
        assert!(exporting(&env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://jaeger:4317")])));
        let off = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4317"), ("OTEL_SDK_DISABLED", "TRUE")];
        assert!(!exporting(&env(&off)));
        let none = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4317"), ("OTEL_TRACES_EXPORTER", "none")];
        assert!(!exporting(&env(&none)));
    }
}
