//! Read-after-write across nodes: what skopeo pushed to one node another serves by tag at once,
//! and the third lists the repository in its catalog within 2 s.

use std::time::{Duration, Instant};

use super::Cluster;
use crate::util::images::small_image;
use crate::util::skopeo::{docker_ref, oci_ref};

#[test]
fn a_push_on_one_node_pulls_from_another_at_once_and_is_in_the_third_ones_catalog() {
    let cluster = Cluster::start("");
    let work = tempfile::tempdir().unwrap();
    let host = |i: usize| format!("localhost:{}", cluster.nodes[i].https_port);
    let catalog = |i: usize| {
        let r = cluster.request(
            "GET",
            &format!("{}/v2/_catalog", cluster.node_url(i)),
            &[],
            None,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let page: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        page["repositories"].clone()
    };
    // The third node has listed its catalog before (anything it keeps must not go stale).
    assert_eq!(catalog(2), serde_json::json!([]));

    let image = small_image(&work.path().join("image"), "read-after-write");
    let on_a = docker_ref(&host(0), "team/raw:v1");
    assert_eq!(
        cluster.skopeo_copy(&image.reference(), &on_a),
        image.top.digest
    );
    let pushed = Instant::now();

    let on_b = docker_ref(&host(1), "team/raw:v1");
    let pulled = cluster.skopeo_copy(&on_b, &oci_ref(&work.path().join("pulled"), "v1"));
    assert_eq!(pulled, image.top.digest);
    println!("pulled from n2 {:?} after the push on n1", pushed.elapsed());

    crate::util::eventually(Duration::from_secs(5), "team/raw in n3's catalog", || {
        catalog(2) == serde_json::json!(["team/raw"])
    });
    let listed = pushed.elapsed();
    println!("in n3's catalog {listed:?} after the push on n1");
    assert!(listed <= Duration::from_secs(2), "listed after {listed:?}");
}
