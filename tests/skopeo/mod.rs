//! skopeo pushes images into the registry under test and pulls them back: digests, manifest
//! bytes and blob bytes must survive the round trip unchanged.

use std::path::Path;
use std::time::Instant;

use tempfile::TempDir;

use crate::util::images::{self, Image};
use crate::util::layout::{assert_same_blobs, assert_same_bytes, assert_same_dir, OciLayout};
use crate::util::skopeo::{dir_ref, docker_ref, oci_ref};
use crate::util::{registry_under_test, Registry, Skopeo};

/// A scratch directory, the registry under test on `<scratch>/root`, and a skopeo.
fn setup() -> (TempDir, Box<dyn Registry>, Skopeo) {
    let work = tempfile::tempdir().expect("create a scratch dir");
    let registry = registry_under_test(&work.path().join("root"));
    (work, registry, Skopeo::new())
}

/// Pushes `image` to `name:tag`, checks the digest skopeo reports and the raw manifest the
/// registry serves, pulls it back into a new layout under `work` and compares every blob.
fn round_trip(skopeo: &Skopeo, registry: &dyn Registry, image: &Image, name: &str, work: &Path) {
    let remote = docker_ref(registry.host(), &format!("{name}:{}", image.tag));
    let pushed = skopeo.copy_all(&image.reference(), &remote);
    assert_eq!(
        pushed, image.top.digest,
        "digest skopeo reports for pushing {remote}"
    );
    assert_same_bytes(
        &format!("`skopeo inspect --raw {remote}`"),
        &image.top_bytes(),
        &skopeo.inspect_raw(&remote),
    );

    let pulled_dir = work.join(format!("pulled-{}", name.replace('/', "_")));
    let pulled = skopeo.copy_all(&remote, &oci_ref(&pulled_dir, image.tag));
    assert_eq!(
        pulled, image.top.digest,
        "digest skopeo reports for pulling {remote}"
    );
    let pulled = OciLayout::open(&pulled_dir);
    assert_eq!(
        pulled.tagged(image.tag).digest,
        image.top.digest,
        "pulled tag's digest"
    );
    assert_same_blobs(&image.layout, &pulled);
}

/// Protects the basic push and pull of a single-arch OCI image with a gzip'd and a plain-tar
/// layer into a nested repository name, pulling by tag and by digest, and `tags/list`.
#[test]
fn small_oci_image_round_trips() {
    let (work, registry, skopeo) = setup();
    let image = images::small_image(&work.path().join("small"), "small");
    round_trip(&skopeo, &*registry, &image, "team/app/small", work.path());

    let by_digest = docker_ref(
        registry.host(),
        &format!("team/app/small@{}", image.top.digest),
    );
    assert_same_bytes(
        "manifest fetched by digest",
        &image.top_bytes(),
        &skopeo.inspect_raw(&by_digest),
    );
    let pulled_dir = work.path().join("pulled-by-digest");
    let pulled = skopeo.copy(&by_digest, &oci_ref(&pulled_dir, "v1"));
    assert_eq!(
        pulled, image.top.digest,
        "digest of the image pulled by digest"
    );
    assert_same_blobs(&image.layout, &OciLayout::open(&pulled_dir));

    let repository = docker_ref(registry.host(), "team/app/small");
    assert_eq!(
        skopeo.list_tags(&repository),
        ["v1"],
        "tags of {repository}"
    );
}

/// Protects pushing an image whose blobs already live in another repository: skopeo's
/// blob-info cache remembers where it pushed them, so it HEADs them there and then asks for a
/// cross-repository mount (`POST …/uploads/?from=…&mount=…`); the image must come out whole
/// whether the registry mounts (201) or asks for an upload (202).
#[test]
fn second_repository_reuses_blobs() {
    let (work, registry, skopeo) = setup();
    let image = images::small_image(&work.path().join("small"), "mounted");
    round_trip(&skopeo, &*registry, &image, "mount/first", work.path());
    round_trip(&skopeo, &*registry, &image, "mount/second", work.path());
}

/// Protects multi-arch images: `skopeo copy --all` of an OCI index for linux/amd64 and
/// linux/arm64 whose images share a layer; the index and each child manifest are served
/// byte-identical and by digest.
#[test]
fn multi_arch_index_round_trips_with_all() {
    let (work, registry, skopeo) = setup();
    let image = images::multi_arch_index(&work.path().join("multi"));
    round_trip(&skopeo, &*registry, &image, "multi/arch", work.path());

    let index: serde_json::Value =
        serde_json::from_slice(&image.top_bytes()).expect("the test index is JSON");
    let children = index["manifests"].as_array().expect("index has manifests");
    assert_eq!(children.len(), 2, "the test index has two images");
    for child in children {
        let digest = child["digest"].as_str().expect("child digest");
        let remote = docker_ref(registry.host(), &format!("multi/arch@{digest}"));
        assert_same_bytes(
            &format!("child manifest {digest}"),
            &image.layout.read_blob(digest),
            &skopeo.inspect_raw(&remote),
        );
    }
}

/// Protects Docker schema2 images (`application/vnd.docker.distribution.manifest.v2+json`,
/// with a gzip'd and an uncompressed Docker layer): stored and served unchanged, same digest.
#[test]
fn docker_schema2_image_round_trips() {
    let (work, registry, skopeo) = setup();
    let source = images::small_image(&work.path().join("source"), "docker");
    let image = images::docker_schema2(&skopeo, &source, &work.path().join("v2s2"));

    let remote = docker_ref(registry.host(), "docker/schema2:v1");
    let pushed = skopeo.copy(&image.reference(), &remote);
    assert_eq!(
        pushed, image.digest,
        "digest skopeo reports for pushing {remote}"
    );
    assert_same_bytes(
        &format!("`skopeo inspect --raw {remote}`"),
        &image.manifest,
        &skopeo.inspect_raw(&remote),
    );

    let pulled_dir = work.path().join("pulled");
    let pulled = skopeo.copy(&remote, &dir_ref(&pulled_dir));
    assert_eq!(
        pulled, image.digest,
        "digest skopeo reports for pulling {remote}"
    );
    assert_same_dir(&image.dir, &pulled_dir);
}

/// Size of the big layer's one file: just over 200 MiB and not a multiple of any power of two,
/// so that chunk and buffer boundaries never line up with the end.
const BIG_FILE_SIZE: u64 = 200 * 1024 * 1024 + 4097;

/// Protects streaming of large blobs: a layer over 200 MiB is pushed (one chunked upload) and
/// pulled back byte-identical, in bounded time.
#[test]
fn big_layer_round_trips() {
    let (work, registry, skopeo) = setup();
    let image = images::big_layer_image(&work.path().join("big"), BIG_FILE_SIZE);
    let started = Instant::now();
    round_trip(&skopeo, &*registry, &image, "big/layer", work.path());
    eprintln!(
        "{}: pushed and pulled back a {BIG_FILE_SIZE}-byte layer in {:?}",
        registry.name(),
        started.elapsed()
    );
}
