//! skopeo and podman through HAProxy: every request goes to the next node, the image comes back
//! whole, and each node's `/metrics` shows its share. Also HAProxy in plain HTTP in front of
//! the nodes' engine listeners.

use std::path::Path;
use std::process::{Command, Output};

use super::{metric_sum, Cluster, NODES};
use crate::util::haproxy::{self, Haproxy};
use crate::util::images::small_image;
use crate::util::seaweed::Seaweed;
use crate::util::skopeo::{docker_ref, oci_ref};
use crate::util::{Regapp, Registry};

/// Requests the nodes answered (health checks left out), per node, printed.
fn shares(cluster: &Cluster, what: &str) -> Vec<u64> {
    let counts: Vec<u64> = (0..NODES.len()).map(|i| cluster.requests_on(i)).collect();
    println!("{what}: requests per node (n1, n2, n3): {counts:?}");
    counts
}

/// Each node got some, none more than 60% of them.
fn assert_spread(counts: &[u64]) {
    let total: u64 = counts.iter().sum();
    for (name, &count) in NODES.iter().zip(counts) {
        assert!(count > 0, "{name} got no request: {counts:?}");
        assert!(
            count * 10 <= total * 6,
            "{name} got more than 60% of the requests: {counts:?}"
        );
    }
}

#[test]
fn skopeo_and_podman_push_and_pull_through_haproxy_over_every_node() {
    let started = std::time::Instant::now();
    let cluster = Cluster::start("");
    println!("haproxy.cfg:\n{}", cluster.haproxy.config());
    let work = tempfile::tempdir().unwrap();

    // skopeo: an OCI image in, and back out into another layout, digests unchanged.
    let image = small_image(&work.path().join("image"), "cluster");
    let remote = docker_ref(&cluster.haproxy.host(), "team/app:v1");
    let pushed = cluster.skopeo_copy(&image.reference(), &remote);
    assert_eq!(pushed, image.top.digest);
    let pulled_dir = work.path().join("pulled");
    let pulled = cluster.skopeo_copy(&remote, &oci_ref(&pulled_dir, "v1"));
    assert_eq!(pulled, image.top.digest);
    let skopeo = shares(&cluster, "after skopeo's push and pull");
    assert_spread(&skopeo);

    // podman: an image imported from a tar, pushed, removed, pulled again.
    let dir = work.path().join("podman");
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/hello"), "from the cluster\n").unwrap();
    let tar = dir.join("rootfs.tar");
    let tarred = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["-cf", tar.to_str().unwrap(), "."])
        .status()
        .unwrap();
    assert!(tarred.success());
    let local = "localhost/tiny:v1";
    ok(podman(
        &cluster,
        &dir,
        &["import", tar.to_str().unwrap(), local],
    ));
    let remote = format!("{}/team/tiny:v1", cluster.haproxy.host());
    let digest_file = dir.join("digest");
    let digest_arg = format!("--digestfile={}", digest_file.display());
    ok(podman(
        &cluster,
        &dir,
        &["push", &digest_arg, local, &format!("docker://{remote}")],
    ));
    let pushed = std::fs::read_to_string(&digest_file).unwrap();
    ok(podman(&cluster, &dir, &["rmi", "-a", "-f"]));
    ok(podman(&cluster, &dir, &["pull", &remote]));
    let out = ok(podman(
        &cluster,
        &dir,
        &["image", "inspect", "--format", "{{.Digest}}", &remote],
    ));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), pushed.trim());
    ok(podman(&cluster, &dir, &["rmi", "-a", "-f"]));

    let all = shares(&cluster, "after podman's push and pull too");
    let podman: Vec<u64> = all.iter().zip(&skopeo).map(|(a, s)| a - s).collect();
    println!("podman alone: {podman:?}");
    assert_spread(&podman);
    assert_spread(&all);

    // The nodes trust HAProxy's address: its X-Forwarded-For names the client.
    for node in &cluster.nodes {
        let log = node.process.log();
        let alices: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("user=\"alice\""))
            .collect();
        assert!(
            !alices.is_empty(),
            "{} logged no request of alice",
            node.name
        );
        for line in alices {
            assert!(line.contains("client=127.0.0.1 "), "{line}");
        }
    }
    println!("skopeo and podman test: {:?}", started.elapsed());
}

/// The same balancing in plain HTTP over three engines without an edge (whose engine
/// listeners take requests from their own edge only): six catalog requests, two per node.
#[test]
fn a_plain_http_haproxy_over_three_engines_takes_turns() {
    let server = Seaweed::shared();
    let prefix = server.fresh_prefix();
    let state = tempfile::tempdir().unwrap();
    let engines: Vec<Regapp> = NODES
        .iter()
        .map(|name| {
            let extra = format!("\n[cluster]\nnode = \"{name}\"\n");
            Regapp::start_on_s3_server(&state.path().join(name), server, &prefix, &extra)
        })
        .collect();
    let ports: Vec<u16> = engines
        .iter()
        .map(|e| e.host().rsplit_once(':').unwrap().1.parse().unwrap())
        .collect();
    let servers: Vec<(&str, u16)> = NODES.iter().copied().zip(ports).collect();
    let plain = Haproxy::start(&servers, &haproxy::Tls::Plain);
    let client = reqwest::blocking::Client::new();
    let url = format!("http://127.0.0.1:{}/v2/_catalog", plain.port());
    for _ in 0..6 {
        let response = client.get(&url).send().unwrap();
        assert_eq!(response.status(), 200);
    }
    let counts: Vec<u64> = engines
        .iter()
        .map(|e| {
            let url = format!("http://127.0.0.1:{}/metrics", e.metrics_port());
            let scrape = reqwest::blocking::get(&url).unwrap().text().unwrap();
            metric_sum(
                &scrape,
                "regapp_engine_request_duration_seconds_count",
                |labels| labels.contains("route=\"catalog\""),
            )
        })
        .collect();
    println!("plain HTTP: catalog requests per engine (n1, n2, n3): {counts:?}");
    assert_eq!(counts, [2, 2, 2]);
}

fn podman(cluster: &Cluster, dir: &Path, args: &[&str]) -> Output {
    crate::util::podman(dir, &cluster.trust_dir(), Some(&Cluster::creds()), args)
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "podman: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
