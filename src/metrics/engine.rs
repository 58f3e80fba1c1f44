//! What the registry engine counts: requests by route class, method and status, their latency,
//! bytes in and out, uploads streaming now, blobs pushed and pulled.

use std::time::Duration;

use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry};

use super::{counter, counter_vec, gauge, histogram_vec, seconds};

/// Which kind of endpoint a request was for; a label with few values, unlike the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    Base,
    Catalog,
    Tags,
    Manifest,
    Blob,
    Upload,
    Referrers,
    /// Paths that name no endpoint (answered 404) and requests refused before routing.
    Other,
}

impl RouteClass {
    pub fn label(self) -> &'static str {
        match self {
            RouteClass::Base => "base",
            RouteClass::Catalog => "catalog",
            RouteClass::Tags => "tags",
            RouteClass::Manifest => "manifest",
            RouteClass::Blob => "blob",
            RouteClass::Upload => "upload",
            RouteClass::Referrers => "referrers",
            RouteClass::Other => "other",
        }
    }
}

/// Latency buckets from a cached HEAD (sub-millisecond) to a multi-GB push (minutes).
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// The engine's handles. Cheap to clone.
#[derive(Clone)]
pub struct EngineMetrics {
    requests: IntCounterVec,
    latency: HistogramVec,
    received: IntCounter,
    sent: IntCounter,
    uploads_in_progress: IntGauge,
    blobs_pushed: IntCounter,
    blobs_pulled: IntCounter,
}

impl EngineMetrics {
    pub(super) fn register(registry: &Registry) -> EngineMetrics {
        EngineMetrics {
            requests: counter_vec(
                registry,
                "regapp_engine_requests_total",
                "Requests answered by the registry engine, by route class, method and status.",
                &["route", "method", "status"],
            ),
            latency: histogram_vec(
                registry,
                "regapp_engine_request_duration_seconds",
                "Time from a request's arrival to its answer's headers (bodies stream after).",
                &["route", "method"],
                LATENCY_BUCKETS.to_vec(),
            ),
            received: counter(
                registry,
                "regapp_engine_received_bytes_total",
                "Request body bytes the engine read.",
            ),
            sent: counter(
                registry,
                "regapp_engine_sent_bytes_total",
                "Response body bytes the engine sent.",
            ),
            uploads_in_progress: gauge(
                registry,
                "regapp_engine_uploads_in_progress",
                "Upload requests whose body is streaming now.",
            ),
            blobs_pushed: counter(
                registry,
                "regapp_engine_blobs_pushed_total",
                "Blobs committed by an upload (or mounted from another repository).",
            ),
            blobs_pulled: counter(
                registry,
                "regapp_engine_blobs_pulled_total",
                "Blob downloads answered 200 or 206.",
            ),
        }
    }

    /// One answered request; `method` is the HTTP method's name.
    pub fn request(&self, route: RouteClass, method: &str, status: u16, took: Duration) {
        let method = method_label(method);
        self.requests
            .with_label_values(&[route.label(), method, status_label(status)])
            .inc();
        self.latency
            .with_label_values(&[route.label(), method])
            .observe(seconds(took));
    }

    pub fn received(&self, bytes: u64) {
        self.received.inc_by(bytes);
    }

    pub fn sent(&self, bytes: u64) {
        self.sent.inc_by(bytes);
    }

    /// Counts an upload as streaming until the returned guard is dropped.
    pub fn upload_started(&self) -> UploadInProgress {
        self.uploads_in_progress.inc();
        UploadInProgress(self.uploads_in_progress.clone())
    }

    pub fn blob_pushed(&self) {
        self.blobs_pushed.inc();
    }

    pub fn blob_pulled(&self) {
        self.blobs_pulled.inc();
    }
}

/// Decrements `regapp_engine_uploads_in_progress` when dropped, however the request ends.
pub struct UploadInProgress(IntGauge);

impl Drop for UploadInProgress {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Methods outside the registry's set share one label, so a client cannot grow the series.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "PUT" => "PUT",
        "POST" => "POST",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// Status codes as static labels (the engine answers only a few dozen distinct ones).
fn status_label(status: u16) -> &'static str {
    const LABELS: &[(u16, &str)] = &[
        (200, "200"),
        (201, "201"),
        (202, "202"),
        (204, "204"),
        (206, "206"),
        (301, "301"),
        (307, "307"),
        (308, "308"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (408, "408"),
        (409, "409"),
        (413, "413"),
        (416, "416"),
        (429, "429"),
        (500, "500"),
        (501, "501"),
        (502, "502"),
        (503, "503"),
    ];
    LABELS.iter().find(|(code, _)| *code == status).map_or(
        match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        },
        |(_, label)| label,
    )
}
