//! Prometheus metrics: a tower middleware records every request; `/metrics`
//! renders them with the gauges read at scrape time.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `attune_http_requests_total` | counter | method, route, status |
//! | `attune_http_request_duration_seconds` | histogram | method, route |
//! | `attune_produce_duration_seconds` | histogram | |
//! | `attune_producer_queue_depth` | gauge | |
//! | `attune_events_accepted_total` | counter | kind |
//! | `attune_events_rejected_total` | counter | reason |
//! | `attune_rate_limited_total` | counter | by |
//! | `attune_rail_impressions_total` | counter | site, ranker, position |
//! | `attune_rail_clicks_total` | counter | site, ranker, position |
//!
//! The rail counters are the consumers' counts of served items' impressions
//! and clicks (each event once, `consume::rails`), read from the store at
//! scrape time: every origin reports the same totals, so aggregate them with
//! `max by`, not `sum by`. CTR by position is
//! `rate(attune_rail_clicks_total[5m]) / rate(attune_rail_impressions_total[5m])`.
//!
//! Every label comes from a closed set: methods outside the standard seven
//! are `other`, routes are the router's templates (`unmatched` otherwise),
//! statuses are the server's own; sites are the configured ones; the rest
//! are enums of the code (rankers from serve ids a client sends back fall
//! into `unknown`, positions past 9 into `10+`).

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::AppState;

/// The process-wide recorder (metrics are global; one recorder per process).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
                .expect("valid buckets")
                .install_recorder()
                .expect("one recorder per process")
        })
        .clone()
}

/// Tower middleware: request count and latency by route.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("attune_http_requests_total", "method" => method, "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("attune_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed());
    response
}

/// A request method as a label from a closed set: clients choose the method
/// token, and every distinct label value is a series kept for ever.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
pub async fn render(State(state): State<AppState>) -> String {
    metrics::gauge!("attune_producer_queue_depth").set(state.log.queue_depth() as f64);
    for site in state.sites.keys() {
        let read = tokio::time::timeout(RAIL_READ_TIMEOUT, state.store.rail_counts(site)).await;
        // A store away keeps the last values: the counters only go up.
        let Ok(Ok(counts)) = read else { continue };
        for ((ranker, position), count) in counts {
            let labels = [
                ("site", site.to_owned()),
                ("ranker", ranker.as_str().to_owned()),
                ("position", position.to_owned()),
            ];
            metrics::counter!("attune_rail_impressions_total", &labels).absolute(count.shown);
            metrics::counter!("attune_rail_clicks_total", &labels).absolute(count.clicked);
        }
    }
    state.metrics.render()
}

/// How long a scrape waits for a site's rail counts.
const RAIL_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);
