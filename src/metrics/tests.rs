use std::time::Duration;

use super::*;

#[test]
fn every_family_is_exported_with_its_type_before_any_traffic() {
    let metrics = Metrics::new("1.2.3", "abc");
    let text = metrics.render();
    assert!(
        text.contains("regapp_build_info{commit=\"abc\",version=\"1.2.3\"} 1"),
        "{text}"
    );
    for family in [
        "regapp_engine_received_bytes_total counter",
        "regapp_engine_uploads_in_progress gauge",
        "regapp_auth_successes_total counter",
        "regapp_auth_rate_limited_total counter",
        "regapp_gc_duration_seconds histogram",
        "regapp_storage_bytes gauge",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family}")),
            "{family}:\n{text}"
        );
    }
}

#[test]
fn engine_counts_by_route_class_method_and_status() {
    let metrics = Metrics::new("v", "c");
    metrics
        .engine
        .request(RouteClass::Blob, "GET", 200, Duration::from_millis(3));
    metrics
        .engine
        .request(RouteClass::Other, "BREW", 999, Duration::ZERO);
    let text = metrics.render();
    assert!(
        text.contains(r#"regapp_engine_requests_total{method="GET",route="blob",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"regapp_engine_requests_total{method="other",route="other",status="5xx"} 1"#
        ),
        "unknown methods and statuses share a label: {text}"
    );
}

#[test]
fn an_upload_counts_while_its_guard_lives() {
    let metrics = Metrics::new("v", "c");
    let guard = metrics.engine.upload_started();
    assert!(metrics
        .render()
        .contains("regapp_engine_uploads_in_progress 1"));
    drop(guard);
    assert!(metrics
        .render()
        .contains("regapp_engine_uploads_in_progress 0"));
}

#[test]
fn totals_kept_elsewhere_are_copied_at_scrape_time_and_never_go_down() {
    let metrics = Metrics::new("v", "c");
    let total = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(3));
    let seen = total.clone();
    metrics.on_scrape(move |m| {
        m.auth
            .set_htpasswd_reloads(seen.load(std::sync::atomic::Ordering::Relaxed), 0)
    });
    assert!(metrics
        .render()
        .contains("regapp_auth_htpasswd_reloads_total 3"));
    total.store(1, std::sync::atomic::Ordering::Relaxed);
    assert!(metrics
        .render()
        .contains("regapp_auth_htpasswd_reloads_total 3"));
}

#[test]
fn gc_and_storage_are_recorded_through_small_methods() {
    let metrics = Metrics::new("v", "c");
    metrics.gc.record_gc(Duration::from_secs(2), 3, 4096);
    metrics.gc.set_storage("team/app", 100);
    metrics.gc.set_storage_total(150);
    let text = metrics.render();
    for line in [
        "regapp_gc_runs_total 1",
        "regapp_gc_removed_blobs_total 3",
        "regapp_gc_removed_bytes_total 4096",
        "regapp_gc_duration_seconds_count 1",
        r#"regapp_storage_repository_bytes{repository="team/app"} 100"#,
        "regapp_storage_bytes 150",
    ] {
        assert!(text.contains(line), "{line}:\n{text}");
    }
    metrics.gc.forget_repository("team/app");
    assert!(!metrics.render().contains("team/app"));
}

#[test]
fn certificate_expiry_follows_the_names_served() {
    let metrics = Metrics::new("v", "c");
    metrics
        .tls
        .set_expiry(&[("a.example".to_owned(), 100), ("b.example".to_owned(), 100)]);
    metrics.tls.set_expiry(&[("b.example".to_owned(), 200)]);
    let text = metrics.render();
    assert!(!text.contains("a.example"), "{text}");
    assert!(
        text.contains(r#"regapp_tls_certificate_expiry_timestamp_seconds{name="b.example"} 200"#),
        "{text}"
    );
}

#[test]
fn the_node_and_the_leases_it_holds_are_labelled() {
    let metrics = Metrics::new("v", "c");
    metrics.cluster.set_node("n1");
    metrics.cluster.set_lease("gc", true);
    let text = metrics.render();
    assert!(
        text.contains("regapp_cluster_node_info{node=\"n1\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("regapp_cluster_lease_held{lease=\"gc\"} 1"),
        "{text}"
    );
    metrics.cluster.set_lease("gc", false);
    assert!(metrics
        .render()
        .contains("regapp_cluster_lease_held{lease=\"gc\"} 0"));
}
