//! Three nodes on one bucket in ACME mode: pebble validates HTTP-01 through HAProxy, which
//! balances the challenge port over n2 and n3 only, so that an order n1 places is always
//! answered by another node (from the token in the bucket).

use std::time::{Duration, Instant};

use super::{fingerprint, served_leaf, wait_until_served, AcmeRegapp, Pebble};
use crate::edge::free_port;
use crate::util::eventually;
use crate::util::haproxy::Haproxy;
use crate::util::seaweed::Seaweed;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One order for the cluster, one certificate on every node, `regapp cert status` naming the
/// node, the bucket and the lease, and a renewal forced on n1 (validated by n2 or n3) served
/// by all three within a minute.
#[test]
fn three_nodes_order_one_certificate_and_a_forced_renewal_reaches_all() {
    let http_ports = [free_port(), free_port(), free_port()];
    let challenge_port = Haproxy::start_plain_http(&[("n2", http_ports[1]), ("n3", http_ports[2])]);
    let mut pebble = Pebble::start(challenge_port.port());
    let root = pebble.issuing_root();
    let prefix = Seaweed::shared().fresh_prefix();
    let mut nodes: Vec<AcmeRegapp> = (0..3)
        .map(|i| {
            AcmeRegapp::configure_on_bucket(
                http_ports[i],
                &pebble.directory,
                &pebble.listener_ca,
                &prefix,
                &format!("n{}", i + 1),
            )
        })
        .collect();
    let started = Instant::now();
    // n1 last: it may order first only once n2 and n3 can answer for it.
    for i in [1, 2, 0] {
        nodes[i].start();
    }
    let first: Vec<String> = nodes
        .iter()
        .map(|node| {
            let (leaf, took) = wait_until_served(node, &root, started, Duration::from_secs(60));
            println!(
                "node on :{} served its first certificate after {took:?}",
                node.https_port
            );
            fingerprint(&leaf)
        })
        .collect();
    assert!(
        first.iter().all(|f| *f == first[0]),
        "one certificate: {first:?}"
    );
    let orders = |nodes: &[AcmeRegapp]| -> usize {
        nodes
            .iter()
            .map(|n| n.log().matches("ACME order starting").count())
            .sum()
    };
    assert_eq!(orders(&nodes), 1, "one order for the cluster");
    let accounts: usize = nodes
        .iter()
        .map(|n| n.log().matches("created an ACME account").count())
        .sum();
    assert_eq!(accounts, 1, "one account for the cluster");

    let status = nodes[1].cert(&["status"]);
    let text = stdout(&status);
    assert!(status.status.success(), "{text}");
    for expected in [
        "node:          n2",
        "kept in:       bucket object regapp-cluster/acme/",
        "acme lease:    free (node ",
        &first[0],
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }

    let renewed = Instant::now();
    let out = nodes[0].cert(&["renew"]);
    assert!(
        out.status.success(),
        "{}{}\n{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr),
        nodes[0].log()
    );
    let on_n1 = fingerprint(&served_leaf(nodes[0].https_port, &root).expect("n1 serves"));
    assert_ne!(on_n1, first[0], "n1 swapped at once");
    assert!(
        nodes[0]
            .log()
            .contains("renewal forced through the control socket"),
        "{}",
        nodes[0].log()
    );
    for node in &nodes[1..] {
        eventually(Duration::from_secs(60), "the renewal on every node", || {
            served_leaf(node.https_port, &root).is_some_and(|leaf| fingerprint(&leaf) == on_n1)
        });
        assert!(node
            .log()
            .contains("installed the certificate from the bucket"));
    }
    println!(
        "a renewal forced on n1 was served by all three nodes {:?} later",
        renewed.elapsed()
    );
    assert_eq!(orders(&nodes), 2, "one more order: n1's");
    let text = stdout(&nodes[2].cert(&["status"]));
    assert!(
        text.contains("acme lease:    free (node n1 last ordered"),
        "{text}"
    );
    // Stopped, a node reads the certificate and the lease from the bucket.
    nodes[2].stop();
    let text = stdout(&nodes[2].cert(&["status"]));
    for expected in [
        "server:        not running",
        "acme lease:    free (node n1 last ordered",
        "kept in:       bucket object",
        &on_n1,
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }
    drop(nodes);
    pebble.stop();
}
