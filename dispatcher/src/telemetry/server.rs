//! The metrics and health server: `/metrics` (Prometheus text format),
//! `/health/live` and `/health/ready`, on the configured address.

use super::health::Health;
use crate::error::{Error, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The process's Prometheus recorder, installed by the first run that
/// serves metrics; later runs in the same process share it.
static RECORDER: OnceLock<std::result::Result<PrometheusHandle, String>> = OnceLock::new();

/// How long a gauge may go without an update before it is dropped: the
/// gauges of partitions revoked from this consumer disappear after this.
const GAUGE_IDLE: Duration = Duration::from_secs(30);

/// How often the recorder drains histogram samples when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the Prometheus recorder as the process's `metrics` recorder,
/// once. Call it before registering any series: a handle registered
/// before holds a no-op.
pub(crate) fn recorder() -> Result<PrometheusHandle> {
    let installed = RECORDER.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&super::metrics::DURATION_BUCKETS)
            .map_err(|e| e.to_string())?
            .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE))
            .build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).map_err(|_| {
            "the program installed a `metrics` recorder of its own; the dispatcher records into it: serve its metrics yourself and leave metrics_address unset (DISPATCHER_METRICS_ADDRESS)".to_owned()
        })?;
        Ok(handle)
    });
    installed.clone().map_err(|reason| config_error("", reason))
}

/// An error of the `metrics_address` setting.
fn config_error(value: &str, reason: String) -> Error {
    Error::Config(crate::config::ConfigError::new(
        "metrics_address",
        value,
        "the configuration (file key metrics_address, DISPATCHER_METRICS_ADDRESS, or the builder)",
        reason,
    ))
}

/// A running metrics server; it stops when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts serving `handle`'s metrics and `health` on `address`.
pub(crate) async fn start(
    address: SocketAddr,
    handle: PrometheusHandle,
    health: Arc<Health>,
) -> Result<Server> {
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
        config_error(
            &address.to_string(),
            format!("cannot listen there ({e}); choose a free port"),
        )
    })?;
    let address = listener.local_addr().unwrap_or(address);
    let stop = CancellationToken::new();
    tracing::info!(%address, "serving metrics at /metrics and health checks at /health/live and /health/ready");
    let upkeep = handle.clone();
    let until = stop.clone();
    let health_for_upkeep = health.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        loop {
            tokio::select! {
                () = until.cancelled() => break,
                _ = every.tick() => {
                    upkeep.run_upkeep();
                    // Set again, so that the recorder keeps it.
                    health_for_upkeep.refresh();
                }
            }
        }
    });
    let until = stop.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                () = until.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics server: cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let (handle, health) = (handle.clone(), health.clone());
            let service = hyper::service::service_fn(move |req| {
                let response = answer(&req, &handle, &health);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            let until = until.clone();
            tokio::spawn(async move {
                tokio::pin!(connection);
                tokio::select! {
                    _ = connection.as_mut() => {}
                    () = until.cancelled() => connection.as_mut().graceful_shutdown(),
                }
            });
        }
    });
    Ok(Server { stop })
}

/// The answer to one request.
fn answer(
    req: &Request<Incoming>,
    handle: &PrometheusHandle,
    health: &Health,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_default()
    };
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "only GET\n".to_owned(),
        );
    }
    match req.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            handle.render(),
        ),
        "/health/live" => reply(StatusCode::OK, TEXT, "live\n".to_owned()),
        "/health/ready" => {
            let r = health.readiness();
            let status = if r.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(status, TEXT, format!("{}\n", r.detail))
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found; try /metrics, /health/live or /health/ready\n".to_owned(),
        ),
    }
}
