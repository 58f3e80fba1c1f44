//! What a collection through the running server leaves in its `/metrics`: the run, what it
//! removed, and the storage of each repository and of the whole store.

use std::collections::HashMap;

use super::push::{Pushed, Pusher};
use super::regapp_ok;
use crate::ops::{get, sample};
use crate::util::{Regapp, Registry};

#[test]
fn a_collection_through_the_server_shows_in_its_metrics() {
    let work = tempfile::tempdir().unwrap();
    let server = Regapp::start_with(
        &work.path().join("root"),
        "[gc]\ngrace = \"0s\"\ninterval = \"\"\ndelete_untagged = true\n",
    );
    let pusher = Pusher::new(server.host());
    let replaced = pusher
        .push("team/app", "v1", &[b"old layer".to_vec()])
        .unwrap();
    let app = pusher
        .push("team/app", "v1", &[b"shared layer".to_vec()])
        .unwrap();
    let other = pusher
        .push("team/other", "v1", &[b"shared layer".to_vec()])
        .unwrap();

    let summary = regapp_ok(&["gc"], &server.config());
    assert!(
        summary.contains("collected by the running server"),
        "{summary}"
    );

    // Each blob with its size, the manifest counted as a blob, as registry:2 stores it.
    let sizes = |image: &Pushed| -> HashMap<String, u64> {
        let blobs = image.blobs.iter().map(|(d, b)| (d.clone(), b.len() as u64));
        blobs
            .chain([(image.digest.clone(), image.manifest_len)])
            .collect()
    };
    let kept: HashMap<String, u64> = sizes(&app).into_iter().chain(sizes(&other)).collect();
    let removed: HashMap<String, u64> = sizes(&replaced)
        .into_iter()
        .filter(|(digest, _)| !kept.contains_key(digest))
        .collect();
    assert_eq!(removed.len(), 2, "the untagged manifest and its own layer");

    let (status, scrape) = get(server.metrics_port(), "/metrics");
    assert_eq!(status, 200);
    let total = |blobs: &HashMap<String, u64>| blobs.values().sum::<u64>() as f64;
    for (series, want) in [
        ("regapp_gc_runs_total", 1.0),
        ("regapp_gc_removed_blobs_total", removed.len() as f64),
        ("regapp_gc_removed_bytes_total", total(&removed)),
        (
            r#"regapp_storage_repository_bytes{repository="team/app"}"#,
            total(&sizes(&app)),
        ),
        (
            r#"regapp_storage_repository_bytes{repository="team/other"}"#,
            total(&sizes(&other)),
        ),
        // The shared layer once.
        ("regapp_storage_bytes", total(&kept)),
    ] {
        assert_eq!(sample(&scrape, series), want, "{series}:\n{scrape}");
    }
}
