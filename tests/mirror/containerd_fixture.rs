//! The containerd fixture (`util::containerd`) against the reference registry: a `hosts.toml`
//! mirror for `docker.io` really sends containerd's pulls to the mirror, with `?ns=docker.io`,
//! and the fixture reads back what containerd stored. The mirror tests rely on all of this.

use std::path::{Path, PathBuf};

use super::support::HUB;
use crate::util::containerd::{hosts_toml, write_hosts_dir, Containerd};
use crate::util::images::{small_image, Image};
use crate::util::skopeo::docker_ref;
use crate::util::{DockerRegistry, Registry, Skopeo};

/// Protects the fixture the mirror tests stand on: `ctr images pull docker.io/library/alpine:3`
/// with a `hosts.toml` naming a docker-registry as mirror fetches everything from it, asks with
/// `?ns=docker.io`, and stores the very manifest and blobs skopeo pushed there.
#[test]
fn pulls_a_docker_hub_name_through_a_hosts_toml_mirror() {
    let work = tempfile::tempdir().expect("create a scratch dir");
    let (mirror, image, pushed, hosts) =
        docker_io_mirror(work.path(), "containerd-fixture", "library/alpine:3");
    assert_eq!(pushed, image.top.digest, "skopeo kept the manifest digest");

    let containerd = Containerd::start();
    let said = containerd
        .pull(&hosts, "docker.io/library/alpine:3", None)
        .unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(
        containerd.image_digest("docker.io/library/alpine:3"),
        Some(pushed.clone()),
        "the image containerd recorded; ctr said:\n{said}"
    );
    assert_eq!(
        containerd.content(&pushed),
        image.top_bytes(),
        "the manifest bytes containerd stored"
    );
    let blobs: Vec<String> = image.layout.blob_digests().into_iter().collect();
    assert_eq!(
        containerd.content_digests(),
        blobs,
        "containerd's content store holds the manifest, config and layers, nothing else"
    );
    assert_mirror_asked(&mirror.log(), &pushed, &blobs);
    // ctr's own dump of what it sent says the same.
    let tag_request = "HEAD /v2/library/alpine/manifests/3?ns=docker.io HTTP/1.1";
    assert!(
        said.contains(tag_request),
        "ctr sent no `{tag_request}`:\n{said}"
    );

    // After remove_image the next pull fetches every blob again, as the mirror tests expect.
    containerd.remove_image("docker.io/library/alpine:3");
    assert_eq!(containerd.content_digests(), Vec::<String>::new());
    containerd
        .pull(&hosts, "docker.io/library/alpine:3", None)
        .unwrap_or_else(|e| panic!("{e}"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&image.top_bytes()).expect("the test manifest is JSON");
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .expect("a layer digest");
    let layer_get = format!("GET /v2/library/alpine/blobs/{layer}?ns=docker.io ");
    assert_eq!(
        mirror.log().matches(&layer_get).count(),
        2,
        "`{layer_get}` once per pull; the mirror's log:\n{}",
        mirror.log()
    );
}

/// Protects the no-unpack path: `ctr content fetch` goes through the same mirror and records
/// the image without the snapshotter.
#[test]
fn fetches_without_unpacking_through_the_same_mirror() {
    let work = tempfile::tempdir().expect("create a scratch dir");
    let (mirror, image, pushed, hosts) =
        docker_io_mirror(work.path(), "containerd-fetch", "library/busybox:1");

    let containerd = Containerd::start();
    containerd
        .fetch(&hosts, "docker.io/library/busybox:1", None)
        .unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(
        containerd.images(),
        vec![("docker.io/library/busybox:1".to_owned(), pushed.clone())]
    );
    let blobs: Vec<String> = image.layout.blob_digests().into_iter().collect();
    assert_eq!(containerd.content_digests(), blobs);
    assert!(
        mirror.log().contains(&format!(
            "GET /v2/library/busybox/manifests/{pushed}?ns=docker.io "
        )),
        "no manifest GET with ?ns=docker.io in the mirror's log:\n{}",
        mirror.log()
    );
}

/// Protects the hosts.toml the mirror tests write: the keys containerd reads, quoted.
#[test]
fn hosts_toml_names_the_mirror_before_the_server() {
    assert_eq!(
        hosts_toml(
            HUB,
            "https://127.0.0.1:5443/hub/v2",
            Some(Path::new("/etc/regapp/ca.pem")),
            true,
            true
        ),
        "server = \"https://registry-1.docker.io\"\n\
         \n\
         [host.\"https://127.0.0.1:5443/hub/v2\"]\n  \
           capabilities = [\"pull\", \"resolve\"]\n  \
           ca = \"/etc/regapp/ca.pem\"\n  \
           skip_verify = true\n  \
           override_path = true\n"
    );
}

/// A docker-registry under `work` holding [`small_image`] `image_name` as `name_and_tag`
/// (pushed by skopeo), and a hosts directory naming it the mirror of `docker.io`: the
/// registry, the image, the digest skopeo pushed and the hosts directory.
fn docker_io_mirror(
    work: &Path,
    image_name: &str,
    name_and_tag: &str,
) -> (DockerRegistry, Image, String, PathBuf) {
    let mirror = DockerRegistry::start(&work.join("root"));
    let image = small_image(&work.join("image"), image_name);
    let pushed = Skopeo::new().copy(&image.reference(), &docker_ref(mirror.host(), name_and_tag));
    let hosts = work.join("hosts");
    write_hosts_dir(&hosts, "docker.io", HUB, &mirror.url(), None, false, false);
    (mirror, image, pushed, hosts)
}

/// The docker-registry's access log shows the tag resolved and every blob fetched from the
/// mirror, each with `?ns=docker.io`.
fn assert_mirror_asked(log: &str, manifest: &str, blobs: &[String]) {
    let tag = "HEAD /v2/library/alpine/manifests/3?ns=docker.io ".to_owned();
    let by_digest = format!("GET /v2/library/alpine/manifests/{manifest}?ns=docker.io ");
    let mut expected = vec![tag, by_digest];
    expected.extend(
        blobs
            .iter()
            .filter(|digest| *digest != manifest)
            .map(|digest| format!("GET /v2/library/alpine/blobs/{digest}?ns=docker.io ")),
    );
    for request in &expected {
        assert!(
            log.contains(request.as_str()),
            "the mirror got no `{request}`; its log:\n{log}"
        );
    }
}
