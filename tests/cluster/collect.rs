//! Pushes through HAProxy while every node collects on its schedule (grace 0): a push finds a
//! blob gone at worst (and pushes again, as a client does), never an acknowledged tag with a
//! blob missing.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{metric_sum, noise, sha256, Cluster, NODES};

/// Every node collects each second with no grace; one at a time (the bucket's lease). The
/// clock skew a collection allows for is 2 s instead of 10, so that collections take the
/// deleted images' layers while the pushes still run.
const GC: &str =
    "clock_skew = \"2s\"\n\n[gc]\ninterval = \"1s\"\ngrace = \"0s\"\ndelete_untagged = true\n";

/// Pushers at once, and pushes each; a push takes about a second (a dozen requests, each a
/// curl process and a TLS handshake).
const PUSHERS: usize = 2;
const PUSHES: usize = 12;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A client's push through HAProxy: HEAD each blob, upload what is missing (POST on one node,
/// PUT with the bytes on the next), then the manifest. `None` when the manifest PUT found a
/// blob gone (`MANIFEST_BLOB_UNKNOWN`); the manifest's digest once acknowledged.
fn push(cluster: &Cluster, repo: &str, tag: &str, blobs: &[&[u8]]) -> Option<String> {
    let base = format!("{}/v2/{repo}", cluster.url());
    for blob in blobs {
        let digest = sha256(blob);
        let head = cluster.request("HEAD", &format!("{base}/blobs/{digest}"), &[], None);
        match head.status {
            200 => continue,
            404 => {}
            other => panic!("HEAD {repo}@{digest}: {other}"),
        }
        let r = cluster.request("POST", &format!("{base}/blobs/uploads/"), &[], None);
        assert_eq!(r.status, 202, "POST: {}", r.text());
        let location = r.header("location");
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{}{location}{separator}digest={digest}", cluster.url());
        let r = cluster.request("PUT", &url, &[], Some(blob));
        assert_eq!(r.status, 201, "PUT {digest}: {}", r.text());
    }
    let descriptor = |blob: &[u8], media_type: &str| json!({"mediaType": media_type, "digest": sha256(blob), "size": blob.len()});
    let layers: Vec<_> = blobs[1..]
        .iter()
        .map(|b| descriptor(b, "application/vnd.oci.image.layer.v1.tar"))
        .collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(blobs[0], "application/vnd.oci.image.config.v1+json"),
        "layers": layers,
    }))
    .unwrap();
    let url = format!("{base}/manifests/{tag}");
    let r = cluster.request(
        "PUT",
        &url,
        &[("Content-Type", OCI_MANIFEST)],
        Some(&manifest),
    );
    match r.status {
        201 => {
            assert_eq!(r.header("docker-content-digest"), sha256(&manifest));
            Some(sha256(&manifest))
        }
        400 if r.text().contains("MANIFEST_BLOB_UNKNOWN") => None,
        other => panic!("PUT {repo}:{tag}: {other}: {}", r.text()),
    }
}

/// The sum over the nodes of a counter, and each node's.
fn per_node(cluster: &Cluster, name: &str) -> (u64, Vec<u64>) {
    let counts: Vec<u64> = (0..NODES.len())
        .map(|i| metric_sum(&cluster.metrics(i), name, |_| true))
        .collect();
    (counts.iter().sum(), counts)
}

/// What one pusher's loop acknowledged and kept: tag, manifest digest, blobs.
type Kept = Vec<(String, String, Vec<Vec<u8>>)>;

/// Pusher `p`'s loop: images 0, 3, 6, … stay; the others are deleted once pushed, so their
/// layers are garbage. Each image also reuses the layer of the image two before it: garbage
/// when that one was deleted, and about as old as the collections' clock skew, so a HEAD may
/// find it and a collection take it before the manifest names it (the push then goes again,
/// as a client's would). Returns what it kept and how many pushes went again.
fn push_loop(cluster: &Cluster, p: usize) -> (Kept, usize) {
    let shared = noise(64 * 1024, 1);
    let layer = |i: usize| noise(256 * 1024, (1000 * (p + 1) + i) as u64);
    let (mut kept, mut retries) = (Vec::new(), 0);
    for i in 0..PUSHES {
        let config = serde_json::to_vec(&json!({"os": "linux", "pusher": p, "image": i})).unwrap();
        let (own, older) = (layer(i), layer(i.saturating_sub(2)));
        let blobs: Vec<&[u8]> = vec![&config, &shared, &own, &older];
        let tag = format!("p{p}-{i}");
        let mut attempts = 0;
        let digest = loop {
            attempts += 1;
            assert!(attempts <= 20, "{tag} never went in");
            match push(cluster, "team/loop", &tag, &blobs) {
                Some(digest) => break digest,
                None => retries += 1,
            }
        };
        if i % 3 == 0 {
            kept.push((tag, digest, blobs.iter().map(|b| b.to_vec()).collect()));
        } else {
            let url = format!("{}/v2/team/loop/manifests/{digest}", cluster.url());
            let r = cluster.request("DELETE", &url, &[], None);
            assert_eq!(r.status, 202, "DELETE {tag}: {}", r.text());
        }
    }
    (kept, retries)
}

#[test]
fn pushes_through_haproxy_while_every_node_collects_lose_no_acknowledged_tag() {
    let started = Instant::now();
    let cluster = Cluster::start(GC);
    let loops: Vec<(Kept, usize)> = std::thread::scope(|scope| {
        let pushers: Vec<_> = (0..PUSHERS)
            .map(|p| {
                let cluster = &cluster;
                scope.spawn(move || push_loop(cluster, p))
            })
            .collect();
        pushers.into_iter().map(|p| p.join().unwrap()).collect()
    });
    let retries: usize = loops.iter().map(|(_, r)| r).sum();
    let kept: Kept = loops.into_iter().flat_map(|(k, _)| k).collect();
    let pushed = started.elapsed();
    crate::util::eventually(
        Duration::from_secs(60),
        "a collection removing garbage",
        || per_node(&cluster, "regapp_gc_removed_blobs_total").0 > 0,
    );
    let (runs, runs_per_node) = per_node(&cluster, "regapp_gc_runs_total");
    let (removed, removed_per_node) = per_node(&cluster, "regapp_gc_removed_blobs_total");
    println!(
        "{PUSHERS}×{PUSHES} pushes in {pushed:?} ({retries} pushed again after MANIFEST_BLOB_UNKNOWN); \
         collections per node {runs_per_node:?}, blobs removed per node {removed_per_node:?}"
    );
    assert!(runs >= 2, "collections ran: {runs_per_node:?}");
    assert!(removed > 0);

    for (tag, digest, blobs) in &kept {
        let url = format!("{}/v2/team/loop/manifests/{tag}", cluster.url());
        let accept = [("Accept", OCI_MANIFEST)];
        let r = cluster.request("GET", &url, &accept, None);
        assert_eq!(r.status, 200, "{tag}: {}", r.text());
        assert_eq!(&sha256(&r.body), digest, "{tag}'s manifest");
        for blob in blobs {
            let digest = sha256(blob);
            let url = format!("{}/v2/team/loop/blobs/{digest}", cluster.url());
            let r = cluster.request("GET", &url, &[], None);
            assert_eq!(r.status, 200, "{tag}: blob {digest} is gone: {}", r.text());
            assert_eq!(sha256(&r.body), digest, "{tag}: blob {digest}'s bytes");
        }
    }
    println!("push loop test: {:?}", started.elapsed());
}
