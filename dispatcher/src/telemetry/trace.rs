//! A `tracing` span around every handler attempt, named and filled in
//! after OpenTelemetry's messaging conventions, and (with the `otel`
//! feature) W3C trace context carried from a record to its span and on to
//! what the handler writes.

use crate::message::{KeyDisplay, Message};
use tracing::Span;

/// The target of record spans, for filters: `RUST_LOG=dispatcher::record=off`
/// turns them off.
pub const RECORD_TARGET: &str = "dispatcher::record";

/// The span of attempt `attempt` at `msg` by `handler` of `group`. The
/// handler's own events inside it carry the record's coordinates.
pub(crate) fn record_span(msg: &Message, handler: &str, group: &str, attempt: u32) -> Span {
    // The `otel.*` fields and the constant attributes matter only to an
    // OpenTelemetry layer: left empty, a formatting subscriber does not
    // write them, and they are filled in only with the feature.
    let span = tracing::info_span!(
        target: RECORD_TARGET,
        "process",
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
        messaging.system = tracing::field::Empty,
        messaging.operation.type = tracing::field::Empty,
        messaging.destination.name = msg.topic(),
        messaging.destination.partition.id = msg.partition(),
        messaging.kafka.offset = msg.offset(),
        messaging.kafka.message.key = %KeyDisplay(msg.key()),
        messaging.consumer.group.name = group,
        handler,
        attempt,
    );
    #[cfg(feature = "otel")]
    if !span.is_disabled() {
        span.record("otel.name", format!("process {}", msg.topic()));
        span.record("otel.kind", "consumer");
        span.record("messaging.system", "kafka");
        span.record("messaging.operation.type", "process");
        otel::adopt_parent(&span, msg);
    }
    span
}

/// The trace context headers to write on a record produced on behalf of
/// the record being handled now: the current span's context with the
/// `otel` feature and an OpenTelemetry layer, else nothing.
pub(crate) fn current_context_headers() -> Vec<(&'static str, String)> {
    #[cfg(feature = "otel")]
    {
        otel::current_headers()
    }
    #[cfg(not(feature = "otel"))]
    {
        Vec::new()
    }
}

#[cfg(feature = "otel")]
mod otel {
    use crate::message::Message;
    use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    /// A record's headers, as OpenTelemetry reads them.
    struct Headers<'a>(&'a Message);

    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.header(key).and_then(|v| std::str::from_utf8(v).ok())
        }

        fn keys(&self) -> Vec<&str> {
            self.0.headers().iter().map(|h| h.name.as_str()).collect()
        }
    }

    /// Makes the record's `traceparent` (and `tracestate`) the parent of
    /// `span`.
    pub(super) fn adopt_parent(span: &Span, msg: &Message) {
        if msg.header("traceparent").is_none() {
            return;
        }
        let cx = TraceContextPropagator::new().extract(&Headers(msg));
        if cx.span().span_context().is_valid() {
            // Fails only without an OpenTelemetry layer: nothing to link.
            let _ = span.set_parent(cx);
        }
    }

    struct Collect(Vec<(&'static str, String)>);

    impl Injector for Collect {
        fn set(&mut self, key: &str, value: String) {
            let key = match key {
                "traceparent" => "traceparent",
                "tracestate" => "tracestate",
                _ => return,
            };
            self.0.push((key, value));
        }
    }

    pub(super) fn current_headers() -> Vec<(&'static str, String)> {
        let cx = Span::current().context();
        if !cx.span().span_context().is_valid() {
            return Vec::new();
        }
        let mut out = Collect(Vec::new());
        TraceContextPropagator::new().inject_context(&cx, &mut out);
        out.0
    }
}
