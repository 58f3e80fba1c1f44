//! One upload driven by hand across the nodes' edges, past a node killed with `kill -9` while a
//! chunk streams to it: the client asks another node where the upload stands and goes on from
//! there, and the blob comes out whole through HAProxy.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{noise, sha256, Cluster};

const MIB: usize = 1024 * 1024;

/// The `Range` every live node reports for the upload at `location` (all the same); the
/// number of bytes it holds.
fn range_on_every_node(cluster: &mut Cluster, location: &str) -> usize {
    let mut ends = Vec::new();
    for i in cluster.live_nodes() {
        let r = cluster.request(
            "GET",
            &format!("{}{location}", cluster.node_url(i)),
            &[],
            None,
        );
        assert_eq!(r.status, 204, "status on n{}: {}", i + 1, r.text());
        let range = r.header("range");
        let end: usize = range
            .strip_prefix("0-")
            .and_then(|end| end.parse().ok())
            .unwrap_or_else(|| panic!("n{}: Range {range:?}", i + 1));
        ends.push(end);
    }
    assert!(
        ends.windows(2).all(|w| w[0] == w[1]),
        "the nodes disagree on the Range: {ends:?}"
    );
    // `0-0` is what an empty upload reports too; the spec's status has no empty range.
    ends[0] + 1
}

/// PATCHes `content[from..to]` with its Content-Range on node `i`.
fn patch(cluster: &Cluster, i: usize, location: &str, content: &[u8], from: usize, to: usize) {
    let url = format!("{}{location}", cluster.node_url(i));
    let range = format!("{from}-{}", to - 1);
    let r = cluster.request(
        "PATCH",
        &url,
        &[("Content-Range", &range)],
        Some(&content[from..to]),
    );
    assert_eq!(r.status, 202, "PATCH {range} on n{}: {}", i + 1, r.text());
    assert_eq!(r.header("range"), format!("0-{}", to - 1));
}

#[test]
fn an_upload_goes_on_across_nodes_and_past_a_node_killed_mid_patch() {
    let started = Instant::now();
    let mut cluster = Cluster::start("");
    let content = noise(30 * MIB + 7, 32);
    let digest = sha256(&content);
    let (n1, n2, n3) = (0, 1, 2);

    // POST on n1, a first chunk on n2; every node knows where it stands.
    let url = format!("{}/v2/team/big/blobs/uploads/", cluster.node_url(n1));
    let r = cluster.request("POST", &url, &[], None);
    assert_eq!(r.status, 202, "{}", r.text());
    let location = r.header("location");
    assert!(
        location.starts_with("/v2/team/big/blobs/uploads/"),
        "{location}"
    );
    patch(&cluster, n2, &location, &content, 0, 6 * MIB);
    assert_eq!(range_on_every_node(&mut cluster, &location), 6 * MIB);

    // The rest streams to n3 (chunked, no Content-Range), killed once curl has 12 MiB of it.
    let fed = Arc::new(AtomicUsize::new(0));
    let url = format!("{}{location}", cluster.node_url(n3));
    let mut curl = Command::new("curl")
        .args(["-sS", "--http1.1", "--cacert"])
        .arg(cluster.ca())
        .args(["-u", &Cluster::creds(), "-X", "PATCH", "-T", "-"])
        .args(["-H", "Content-Type: application/octet-stream"])
        .args(["-w", "%{http_code}", "-o", "/dev/null"])
        .arg(&url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl runs");
    let mut stdin = curl.stdin.take().unwrap();
    let rest = content[6 * MIB..].to_vec();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let feeder = {
        let fed = Arc::clone(&fed);
        std::thread::spawn(move || {
            for piece in rest.chunks(64 * 1024) {
                if stdin.write_all(piece).is_err() {
                    return;
                }
                fed.fetch_add(piece.len(), Ordering::SeqCst);
            }
            // The body never ends before the node is killed: keep it open until then.
            let _ = stopped.recv_timeout(Duration::from_secs(60));
        })
    };
    crate::util::eventually(Duration::from_secs(60), "12 MiB fed to curl", || {
        fed.load(Ordering::SeqCst) >= 12 * MIB
    });
    cluster.nodes[n3].process.kill_hard();
    let out = curl.wait_with_output().unwrap();
    let fed = 6 * MIB + fed.load(Ordering::SeqCst);
    println!(
        "n3 killed with {} MiB of the stream fed; curl: {} {}",
        (fed - 6 * MIB) / MIB,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    assert_ne!(
        String::from_utf8_lossy(&out.stdout),
        "202",
        "the PATCH did not finish"
    );
    drop(stop);
    feeder.join().unwrap();

    // Where it stands, asked of n1 and n2; the client goes on from there: a PATCH on n1, one
    // on n2, the last bytes with the PUT on n1.
    let at = range_on_every_node(&mut cluster, &location);
    println!(
        "after the kill the upload holds {at} bytes ({} MiB)",
        at / MIB
    );
    assert!((6 * MIB..=fed).contains(&at), "Range {at}, fed {fed}");
    let middle = at + (content.len() - at) / 2;
    patch(&cluster, n1, &location, &content, at, middle);
    assert_eq!(range_on_every_node(&mut cluster, &location), middle);
    let last = content.len() - 1000;
    patch(&cluster, n2, &location, &content, middle, last);
    assert_eq!(range_on_every_node(&mut cluster, &location), last);
    let separator = if location.contains('?') { '&' } else { '?' };
    let put = format!(
        "{}{location}{separator}digest={digest}",
        cluster.node_url(n1)
    );
    let r = cluster.request("PUT", &put, &[], Some(&content[last..]));
    assert_eq!(r.status, 201, "PUT on n1: {}", r.text());
    assert_eq!(r.header("docker-content-digest"), digest);

    // Through HAProxy, which takes n3 out once its checks fail (and meanwhile sends a request
    // that could not connect to it to another node).
    crate::util::eventually(Duration::from_secs(10), "haproxy taking n3 out", || {
        cluster.haproxy.log().contains("regapp/n3 is DOWN")
    });
    for _ in 0..3 {
        let blob = format!("{}/v2/team/big/blobs/{digest}", cluster.url());
        let r = cluster.request("GET", &blob, &[], None);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("docker-content-digest"), digest);
        assert!(r.body == content, "the blob's bytes through HAProxy");
    }
    println!("kill -9 upload test: {:?}", started.elapsed());
}
