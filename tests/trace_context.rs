//! W3C trace-context propagation, on the memory backend and through a real Redis: a producer
//! submits inside a traced request; the worker's span for the attempt must continue that trace
//! (same trace id, the request's span as parent, the same `tracestate`), both as the handler
//! sees it and as exported to an OpenTelemetry backend (the SDK's in-memory exporter).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider,
};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use switchyard::{Client, QueueConfig, TaskSpec, Worker};
use switchyard_testkit::redis_server::RedisServer;
use switchyard_testkit::wait_until;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

/// What the handler saw: its span's trace id and trace state, and the task id.
type Seen = Arc<Mutex<Vec<(TraceId, String, String)>>>;

/// The vendor state of the incoming request, which must reach the worker unchanged.
const STATE: &str = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE";

async fn one_traced_task(
    client: &Client,
    exporter: &InMemorySpanExporter,
    provider: &SdkTracerProvider,
    label: &str,
) {
    client
        .declare("traced", QueueConfig::default())
        .await
        .unwrap();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let worker = Worker::builder(client, &format!("w-{label}"), ["traced"])
        .unwrap()
        .handle("job", move |ctx, _payload| {
            let record = record.clone();
            async move {
                let cx = tracing::Span::current().context();
                let sc = cx.span().span_context().clone();
                let seen = (sc.trace_id(), sc.trace_state().header(), ctx.id.to_string());
                record.lock().unwrap().push(seen);
                Ok(b"done".to_vec())
            }
        })
        .build()
        .unwrap();
    let stop = worker.shutdown_handle();
    let running = tokio::spawn(worker.run());

    // The producer's request, continuing an incoming one (as an HTTP server's propagator makes
    // it) that carried a `tracestate`.
    let incoming = SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
        true,
        STATE.parse::<TraceState>().unwrap(),
    );
    let request = tracing::info_span!("http_request", label);
    let _ = request.set_parent(opentelemetry::Context::new().with_remote_span_context(incoming));
    let (trace, parent) = {
        let cx = request.context();
        let sc = cx.span().span_context().clone();
        (sc.trace_id(), sc.span_id())
    };
    assert_ne!(trace, TraceId::INVALID);
    let task = async {
        client
            .submit(TaskSpec::builder("traced", "job").build().unwrap())
            .await
            .unwrap()
    }
    .instrument(request.clone())
    .await;
    drop(request);
    let value = task.result_bytes(Duration::from_secs(20)).await.unwrap();
    assert_eq!(value, b"done");

    // The handler ran inside the producer's trace, with its vendor state.
    let id = task.id().to_string();
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        &[(trace, STATE.to_owned(), id.clone())]
    );
    let stored = task.info().await.unwrap().unwrap();
    assert_eq!(stored.trace_state.unwrap().as_str(), STATE);

    // And so it is exported: a `task` span, child of the request, with the task's fields.
    let exported = |exporter: &InMemorySpanExporter| {
        exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .find(|s| {
                s.name == "task"
                    && s.attributes
                        .iter()
                        .any(|kv| kv.key.as_str() == "id" && kv.value.as_str() == id.as_str())
            })
    };
    wait_until(
        Duration::from_secs(20),
        "the task's span to be exported",
        || {
            provider.force_flush().unwrap();
            exported(exporter).is_some()
        },
    )
    .await;
    let span = exported(exporter).unwrap();
    assert_eq!(span.span_context.trace_id(), trace);
    assert_eq!(span.span_context.trace_state().header(), STATE);
    assert_eq!(span.parent_span_id, parent);
    assert_ne!(span.parent_span_id, SpanId::INVALID);
    let field = |k: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == k)
            .map(|kv| kv.value.as_str().into_owned())
    };
    assert_eq!(field("queue").as_deref(), Some("traced"));
    assert_eq!(field("kind").as_deref(), Some("job"));
    assert_eq!(
        field("worker").as_deref(),
        Some(format!("w-{label}").as_str())
    );
    assert_eq!(field("attempt").as_deref(), Some("1"));

    stop.shutdown();
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producers_trace_context_arrives_in_the_workers_span() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("switchyard-test")));
    // Global: the worker's tasks run on the runtime's other threads.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    one_traced_task(&Client::memory(), &exporter, &provider, "memory").await;

    let server = RedisServer::start().unwrap();
    let redis = Client::connect(&server.url(), "traced").await.unwrap();
    one_traced_task(&redis, &exporter, &provider, "redis").await;
}
