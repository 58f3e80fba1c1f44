//! Pushes from several threads — new layers and layers shared across repositories — while
//! collections with no grace period run back to back through `regapp gc`. Afterwards every
//! image that was pushed pulls complete and digest-exact, and the garbage made before the run
//! is gone.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::push::{PushError, Pushed, Pusher};
use super::{blob_path, regapp, Path};
use crate::util::layout::sha256_digest;
use crate::util::skopeo::{docker_ref, oci_ref};
use crate::util::{Regapp, Registry, Skopeo};

const WORKERS: usize = 4;
const PUSHING_FOR: Duration = Duration::from_secs(8);
const SHARED_LAYERS: usize = 3;

#[test]
fn pushes_survive_collections_running_back_to_back() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let server = Regapp::start_with(
        &root,
        "[gc]\ninterval = \"0s\"\ngrace = \"0s\"\ndelete_untagged = true\n",
    );
    let host = server.host().to_owned();
    let config = server.config();

    // Garbage made before the run: images whose tags are deleted, with layers of their own.
    let pusher = Pusher::new(&host);
    let mut doomed = Vec::new();
    for n in 0..5 {
        let image = pusher
            .push(
                "doomed/app",
                &format!("d{n}"),
                &[format!("doomed layer {n}").into_bytes()],
            )
            .unwrap_or_else(|e| panic!("{e:?}"));
        pusher.delete_manifest("doomed/app", &image.tag);
        doomed.push(image);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let retries = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let (host, stop, retries) = (host.clone(), stop.clone(), retries.clone());
            std::thread::spawn(move || push_until(&host, worker, &stop, &retries))
        })
        .collect();

    let started = Instant::now();
    let mut collections = 0;
    let mut removed = 0;
    while started.elapsed() < PUSHING_FOR {
        let out = regapp(&["gc"], &config);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "regapp gc: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("collected by the running server"),
            "{stdout}"
        );
        removed += super::blobs_removed(&stdout);
        collections += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let pushed: Vec<Pushed> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("a pusher panicked"))
        .collect();
    // One more, after the last push: nothing pushed may go.
    let last = super::regapp_ok(&["gc"], &config);
    eprintln!(
        "{} images pushed by {WORKERS} threads during {collections} collections \
         ({removed} blobs removed, {} pushes retried after MANIFEST_BLOB_UNKNOWN); last run:\n{last}",
        pushed.len(),
        retries.load(Ordering::Relaxed)
    );
    assert!(collections >= 3, "only {collections} collections ran");
    assert!(pushed.len() >= WORKERS * 3, "only {} pushes", pushed.len());

    for image in &pushed {
        pusher.verify(image);
    }
    for image in &doomed {
        for (digest, _) in &image.blobs {
            assert!(
                !blob_path(&root, digest).exists(),
                "{digest} of a deleted image survived"
            );
        }
        assert!(!blob_path(&root, &image.digest).exists());
    }
    pull_with_skopeo(&host, &pushed, work.path());
}

/// Pushes `stress/wN:tK` until told to stop: a layer of its own and one of the shared ones.
/// A push the collector raced (MANIFEST_BLOB_UNKNOWN) is pushed again, as a client would.
fn push_until(host: &str, worker: usize, stop: &AtomicBool, retries: &AtomicU64) -> Vec<Pushed> {
    let pusher = Pusher::new(host);
    let repo = format!("stress/w{worker}");
    let mut pushed = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let own = format!("layer {n} of worker {worker}\n")
            .repeat(64)
            .into_bytes();
        let shared = format!("shared layer {}\n", n % SHARED_LAYERS)
            .repeat(64)
            .into_bytes();
        let tag = format!("t{n}");
        let mut attempts = 0;
        loop {
            match pusher.push(&repo, &tag, &[own.clone(), shared.clone()]) {
                Ok(image) => {
                    pushed.push(image);
                    break;
                }
                Err(PushError::BlobGone(body)) => {
                    attempts += 1;
                    retries.fetch_add(1, Ordering::Relaxed);
                    assert!(attempts < 10, "{repo}:{tag} refused 10 times: {body}");
                }
            }
        }
        n += 1;
    }
    pushed
}

/// The last image of each repository through skopeo into an OCI layout, digest-exact.
fn pull_with_skopeo(host: &str, pushed: &[Pushed], work: &Path) {
    let skopeo = Skopeo::new();
    for worker in 0..WORKERS {
        let repo = format!("stress/w{worker}");
        let Some(image) = pushed.iter().rev().find(|i| i.repo == repo) else {
            continue;
        };
        let dir = work.join(format!("pulled-{worker}"));
        let digest = skopeo.copy(
            &docker_ref(host, &format!("{repo}:{}", image.tag)),
            &oci_ref(&dir, "pulled"),
        );
        assert_eq!(digest, image.digest, "{repo}:{}", image.tag);
        for (digest, bytes) in &image.blobs {
            let hex = digest.strip_prefix("sha256:").unwrap();
            let pulled = std::fs::read(dir.join("blobs/sha256").join(hex))
                .unwrap_or_else(|e| panic!("{repo}:{} blob {digest}: {e}", image.tag));
            assert_eq!(sha256_digest(&pulled), sha256_digest(bytes));
        }
    }
}
