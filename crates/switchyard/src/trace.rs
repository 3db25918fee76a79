//! Following a task in logs and traces: a span per attempt, and (feature `opentelemetry`)
//! W3C trace-context propagation from the submitter to the worker.
//!
//! Every attempt runs, and is reported, inside a `task` span with the fields `id`, `queue`,
//! `kind`, `attempt` and `worker`: `RUST_LOG` output and any `tracing` subscriber can follow
//! one task through its attempts and workers. With the `opentelemetry` feature and a
//! `tracing-opentelemetry` layer installed, [`Client`](crate::Client) submits each task with
//! the current span's trace context, `traceparent` and `tracestate` (unless the spec carries
//! one already, see
//! [`TaskSpecBuilder::trace_parent`](crate::TaskSpecBuilder::trace_parent)), and the attempt's
//! span takes it as its parent: a task shows up inside the request that created it.

use switchyard_core::{Delivery, TaskSpec, WorkerId};

/// The span one attempt runs in.
pub(crate) fn attempt_span(worker: &WorkerId, delivery: &Delivery) -> tracing::Span {
    let span = tracing::info_span!(
        "task",
        id = %delivery.lease.task,
        queue = %delivery.lease.queue,
        kind = %delivery.kind,
        attempt = delivery.attempt,
        worker = %worker,
    );
    #[cfg(feature = "opentelemetry")]
    if let Some(parent) = &delivery.trace_parent {
        otel::continue_from(&span, parent, delivery.trace_state.as_ref());
    }
    span
}

/// `spec`, carrying the caller's trace context if it has none of its own (feature
/// `opentelemetry`; otherwise `spec` as it is).
pub(crate) fn with_callers_context(spec: TaskSpec) -> TaskSpec {
    #[cfg(feature = "opentelemetry")]
    if spec.trace_parent().is_none()
        && let Some((parent, state)) = otel::current()
    {
        return spec.with_trace_context(Some(parent), state);
    }
    spec
}

#[cfg(feature = "opentelemetry")]
mod otel {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use switchyard_core::{TraceParent, TraceState as CarriedState};
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    /// The current span's OpenTelemetry context as a `traceparent` and its `tracestate`, if it
    /// has a valid one. A state too long to carry (over 512 bytes) is left out, as W3C allows.
    pub(super) fn current() -> Option<(TraceParent, Option<CarriedState>)> {
        let cx = tracing::Span::current().context();
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return None;
        }
        let parent = TraceParent::parse(&format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        ))
        .ok()?;
        let header = sc.trace_state().header();
        let state = (!header.is_empty())
            .then(|| CarriedState::parse(&header).ok())
            .flatten();
        Some((parent, state))
    }

    /// Makes `span` a child of the remote span `parent` names, with its vendor `state`.
    pub(super) fn continue_from(
        span: &tracing::Span,
        parent: &TraceParent,
        state: Option<&CarriedState>,
    ) {
        let (Ok(trace), Ok(id)) = (
            TraceId::from_hex(parent.trace_id()),
            SpanId::from_hex(parent.parent_id()),
        ) else {
            return;
        };
        let remote = SpanContext::new(
            trace,
            id,
            TraceFlags::new(parent.flags()),
            true,
            state
                .and_then(|s| s.as_str().parse::<TraceState>().ok())
                .unwrap_or_default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
}
