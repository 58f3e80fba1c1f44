//! The mirrors' cache limits (`[[mirror]] max_bytes`, `max_unused`, `gc::eviction`) as an
//! operator meets them: regapp's engine over plain HTTP mirroring an open docker-registry
//! under the prefix `hub`, filled by pulls, then `regapp gc` and `regapp du` through the
//! running server's socket.
//!
//! What each test protects, counted where it happens (the upstream's access log, the store's
//! blob files, `du`'s mirror line, the collection's summary): the least recently pulled
//! manifests go first until the cache fits `max_bytes`; `max_unused` drops what nobody pulled
//! for that long; a layer a local image shares stays; nothing pulled within the grace period
//! is dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::layout::{self, OciLayout};
use crate::util::skopeo::{docker_ref, oci_ref};
use crate::util::upstream::Upstream;
use crate::util::{eventually, noise, Regapp, Registry, Skopeo};

/// The `[[mirror]]` name, as `du` and the summary print it.
const MIRROR: &str = "hub";
/// Each image's one layer: this many bytes of noise (in a tar).
const LAYER_BYTES: usize = 1024 * 1024;
/// Room for about one image of [`LAYER_BYTES`], not two.
const MAX_BYTES: u64 = 1024 * 1024 * 3 / 2;
/// Between two pulls, so that their pull stamps' times differ.
const BETWEEN_PULLS: Duration = Duration::from_millis(1100);
/// The smallest grace these tests collect with (`[gc] grace = "1s"`), and a wait past it.
const GRACE: &str = "1s";
const PAST_GRACE: Duration = Duration::from_millis(1300);
/// How long after a pull returned (its blobs in the store) an evicted image is pulled again:
/// past the 5 s a finished upstream fetch stays joinable once its blob is stored
/// (`mirror::flights::LINGER`), during which a GET of the blob is answered from the fetch's
/// spool, neither asking the upstream nor storing it again.
const PAST_FLIGHT: Duration = Duration::from_millis(6000);

/// Protects `max_bytes`: three cached images of ~1 MiB pulled A, B, C in that order with room
/// for one; `regapp gc` through the server evicts two manifests, A's and B's blobs leave the
/// store, C stays and is served without asking the upstream, A is fetched again when pulled,
/// and `du`'s mirror line drops from three images to one, within `max_bytes`.
#[test]
fn the_least_recently_pulled_go_until_the_cache_fits_max_bytes() {
    let work = tempfile::tempdir().expect("create a scratch dir");
    let upstream = Upstream::open();
    let images: Vec<Pushed> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let layer = noise_layer(LAYER_BYTES, 100 + i as u64);
            push_upstream(&upstream, work.path(), name, &layer)
        })
        .collect();
    let root = work.path().join("regapp");
    let regapp = Regapp::start_with(
        &root,
        &config(
            &upstream,
            &format!("grace = \"{GRACE}\"\n"),
            "max_bytes = \"1.5MiB\"\n",
        ),
    );
    let client = client();
    let mut a_stored = None;
    for (i, image) in images.iter().enumerate() {
        if i > 0 {
            thread::sleep(BETWEEN_PULLS);
        }
        let pulled = pull(&client, &regapp, &root, &image.mirrored(), "v1");
        assert_eq!(pulled, image.digest, "{} through the mirror", image.name);
        a_stored.get_or_insert_with(Instant::now);
    }
    thread::sleep(PAST_GRACE);

    let (a, b, c) = (&images[0], &images[1], &images[2]);
    let before = mirror_usage(&regapp);
    assert_eq!(
        before.bytes,
        a.bytes() + b.bytes() + c.bytes(),
        "du counts the three cached images"
    );
    assert_eq!(before.blobs, 9, "three manifests, configs and layers");
    assert!(before.bytes > MAX_BYTES, "the cache is over its limit");

    let summary = gc(&regapp);
    assert!(
        summary.contains("collected by the running server"),
        "{summary}"
    );
    assert_eq!(evicted(&summary), 2, "A and B go, C fits:\n{summary}");
    let removed = blobs_removed(&summary);
    assert_eq!(
        removed, 6,
        "A's and B's manifest, config and layer:\n{summary}"
    );

    let after = mirror_usage(&regapp);
    eprintln!(
        "max_bytes {MAX_BYTES}: du of mirror {MIRROR} {} bytes in {} blobs before gc, {} bytes \
         in {} blobs after; {} manifests evicted, {removed} blobs removed",
        before.bytes,
        before.blobs,
        after.bytes,
        after.blobs,
        evicted(&summary)
    );
    assert!(
        after.bytes <= MAX_BYTES,
        "{} bytes left, over max_bytes",
        after.bytes
    );
    assert_eq!((after.bytes, after.blobs), (c.bytes(), 3), "only C is left");
    for gone in [a, b] {
        for blob in &gone.blobs {
            assert!(
                !blob_data_path(&root, &blob.0).exists(),
                "{}'s blob {} left the store",
                gone.name,
                blob.0
            );
        }
    }
    for blob in &c.blobs {
        assert!(
            blob_data_path(&root, &blob.0).exists(),
            "C's {} stays",
            blob.0
        );
    }

    let asked = upstream_total(&upstream);
    assert_eq!(pull(&client, &regapp, &root, &c.mirrored(), "v1"), c.digest);
    assert_eq!(
        upstream_total(&upstream),
        asked,
        "C is served from the cache, the upstream is not asked"
    );
    let layer_gets = upstream.requests("GET", &format!("/blobs/{}", a.layer()));
    sleep_until(a_stored.expect("A was pulled") + PAST_FLIGHT);
    assert_eq!(pull(&client, &regapp, &root, &a.mirrored(), "v1"), a.digest);
    assert_eq!(
        upstream.requests("GET", &format!("/blobs/{}", a.layer())),
        layer_gets + 1,
        "A's layer is fetched again"
    );
    assert!(
        upstream.requests("GET", "/v2/library/a/manifests/") >= 2,
        "A's manifest is fetched again"
    );
}

/// Protects `max_unused`: an image nobody pulled for longer than it is dropped by `regapp gc`
/// (and fetched from the upstream when pulled again); one pulled since, past the grace but
/// within `max_unused`, stays and is served from the cache. (`max_unused = "3s"`, not 2 s:
/// the recent image's age at the collection is the 1 s grace plus whatever the machine adds,
/// which in a loaded parallel run passed 2 s.)
#[test]
fn max_unused_drops_what_nobody_pulled_for_that_long() {
    let work = tempfile::tempdir().expect("create a scratch dir");
    let upstream = Upstream::open();
    let old = push_upstream(&upstream, work.path(), "old", &noise_layer(64 * 1024, 200));
    let recent = push_upstream(
        &upstream,
        work.path(),
        "recent",
        &noise_layer(64 * 1024, 201),
    );
    let root = work.path().join("regapp");
    let regapp = Regapp::start_with(
        &root,
        &config(
            &upstream,
            &format!("grace = \"{GRACE}\"\n"),
            "max_unused = \"3s\"\n",
        ),
    );
    let client = client();
    assert_eq!(
        pull(&client, &regapp, &root, &old.mirrored(), "v1"),
        old.digest
    );
    let old_stored = Instant::now();
    thread::sleep(Duration::from_millis(2000));
    let recent_pulled = Instant::now();
    assert_eq!(
        pull(&client, &regapp, &root, &recent.mirrored(), "v1"),
        recent.digest
    );
    // `old` unused for more than 3.3 s, `recent` for ~1.3 s: past the grace, within max_unused.
    thread::sleep(PAST_GRACE);

    let before = mirror_usage(&regapp);
    let summary = gc(&regapp);
    let recent_age = recent_pulled.elapsed();
    let after = mirror_usage(&regapp);
    eprintln!(
        "max_unused 3s: recent pulled {recent_age:?} before the gc ended; du of mirror \
         {MIRROR} {} bytes in {} blobs before gc, {} bytes in {} blobs after; {} manifests \
         evicted, {} blobs removed",
        before.bytes,
        before.blobs,
        after.bytes,
        after.blobs,
        evicted(&summary),
        blobs_removed(&summary)
    );
    assert_eq!(evicted(&summary), 1, "only the old one:\n{summary}");
    assert_eq!(blobs_removed(&summary), 3, "{summary}");
    assert_eq!(
        (before.bytes, after.bytes),
        (old.bytes() + recent.bytes(), recent.bytes())
    );
    assert!(!blob_data_path(&root, &old.layer()).exists());

    let asked = upstream_total(&upstream);
    assert_eq!(
        pull(&client, &regapp, &root, &recent.mirrored(), "v1"),
        recent.digest
    );
    assert_eq!(
        upstream_total(&upstream),
        asked,
        "the recent one is still cached"
    );
    let manifest_gets = upstream.requests("GET", "/v2/library/old/manifests/");
    sleep_until(old_stored + PAST_FLIGHT);
    assert_eq!(
        pull(&client, &regapp, &root, &old.mirrored(), "v1"),
        old.digest
    );
    assert_eq!(
        upstream.requests("GET", "/v2/library/old/manifests/"),
        manifest_gets + 1,
        "the evicted one is asked of the upstream again"
    );
    assert_eq!(
        upstream.requests("GET", &format!("/blobs/{}", old.layer())),
        2,
        "its layer too"
    );
}

/// Protects what eviction must not touch: a layer that an evicted mirrored image shares with a
/// local image (pushed to `team/app:1`, outside the prefix) stays in the store, the local
/// image pulls whole after the collection, and pulling the evicted image again fetches its
/// manifest and config but links the layer the store still has.
#[test]
fn a_layer_a_local_image_shares_stays_when_its_mirrored_image_is_evicted() {
    let work = tempfile::tempdir().expect("create a scratch dir");
    let upstream = Upstream::open();
    let shared = noise_layer(LAYER_BYTES, 300);
    let a = push_upstream(&upstream, work.path(), "a", &shared);
    let b = push_upstream(&upstream, work.path(), "b", &noise_layer(LAYER_BYTES, 301));
    let root = work.path().join("regapp");
    let regapp = Regapp::start_with(
        &root,
        &config(
            &upstream,
            &format!("grace = \"{GRACE}\"\n"),
            "max_bytes = \"1.5MiB\"\n",
        ),
    );
    let client = client();
    assert_eq!(pull(&client, &regapp, &root, &a.mirrored(), "v1"), a.digest);
    let a_stored = Instant::now();
    // The local image, with A's layer bytes and a config of its own, pushed after the mirror
    // brought the layer into the store.
    let local_dir = work.path().join("local");
    let local = image_layout(&local_dir, "local", &shared);
    let pushed = Skopeo::new().copy(
        &oci_ref(&local_dir, "v1"),
        &docker_ref(regapp.host(), "team/app:1"),
    );
    assert_eq!(pushed, local.digest);
    assert_eq!(local.layer(), a.layer(), "the local image shares A's layer");
    thread::sleep(BETWEEN_PULLS);
    assert_eq!(pull(&client, &regapp, &root, &b.mirrored(), "v1"), b.digest);
    thread::sleep(PAST_GRACE);

    let before = usage(&regapp);
    let summary = gc(&regapp);
    let after = usage(&regapp);
    let (mirror_before, mirror_after) = (mirror_line(&before), mirror_line(&after));
    eprintln!(
        "shared layer: du of mirror {MIRROR} {} bytes in {} blobs before gc, {} bytes in {} \
         blobs after (store total {} -> {}); {} manifests evicted, {} blobs removed",
        mirror_before.bytes,
        mirror_before.blobs,
        mirror_after.bytes,
        mirror_after.blobs,
        total_bytes(&before),
        total_bytes(&after),
        evicted(&summary),
        blobs_removed(&summary)
    );
    assert_eq!(evicted(&summary), 1, "A goes, B fits:\n{summary}");
    assert_eq!(
        blobs_removed(&summary),
        2,
        "A's manifest and config, not the shared layer:\n{summary}"
    );
    assert_eq!(mirror_after.bytes, b.bytes());
    assert!(
        blob_data_path(&root, &a.layer()).exists(),
        "the shared layer stays"
    );
    assert!(
        !blob_data_path(&root, &a.blobs[1].0).exists(),
        "A's config goes"
    );
    assert_eq!(
        total_bytes(&after),
        total_bytes(&before) - a.blobs[0].1 - a.blobs[1].1,
        "the store lost A's manifest and config only"
    );

    assert_eq!(pull(&client, &regapp, &root, "team/app", "1"), local.digest);
    let layer_gets = upstream.requests("GET", &format!("/blobs/{}", a.layer()));
    assert_eq!(
        layer_gets, 1,
        "the layer was fetched once, when A was first pulled"
    );
    sleep_until(a_stored + PAST_FLIGHT);
    assert_eq!(pull(&client, &regapp, &root, &a.mirrored(), "v1"), a.digest);
    assert_eq!(
        upstream.requests("GET", &format!("/blobs/{}", a.blobs[1].0)),
        2,
        "A's config is fetched again"
    );
    assert_eq!(
        upstream.requests("GET", &format!("/blobs/{}", a.layer())),
        layer_gets,
        "the shared layer comes from the store"
    );
}

/// Protects the grace period: with the default grace (1 h) the same over-limit cache as in
/// the `max_bytes` test is left as it is by `regapp gc` — nothing evicted, nothing removed,
/// every image still served without asking the upstream.
#[test]
fn nothing_pulled_within_the_grace_period_is_evicted() {
    let work = tempfile::tempdir().expect("create a scratch dir");
    let upstream = Upstream::open();
    let images: Vec<Pushed> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let layer = noise_layer(LAYER_BYTES, 400 + i as u64);
            push_upstream(&upstream, work.path(), name, &layer)
        })
        .collect();
    let root = work.path().join("regapp");
    let regapp = Regapp::start_with(&root, &config(&upstream, "", "max_bytes = \"1.5MiB\"\n"));
    let client = client();
    for image in &images {
        assert_eq!(
            pull(&client, &regapp, &root, &image.mirrored(), "v1"),
            image.digest
        );
    }
    thread::sleep(PAST_GRACE);

    let before = mirror_usage(&regapp);
    let summary = gc(&regapp);
    let after = mirror_usage(&regapp);
    eprintln!(
        "grace 1h: du of mirror {MIRROR} {} bytes in {} blobs before gc, {} bytes in {} blobs \
         after; {} manifests evicted, {} blobs removed",
        before.bytes,
        before.blobs,
        after.bytes,
        after.blobs,
        evicted(&summary),
        blobs_removed(&summary)
    );
    assert!(before.bytes > MAX_BYTES, "over the limit");
    assert!(summary.contains("settings: grace 1h,"), "{summary}");
    assert!(!summary.contains("mirror caches:"), "{summary}");
    assert_eq!(blobs_removed(&summary), 0, "{summary}");
    assert_eq!((after.bytes, after.blobs), (before.bytes, before.blobs));
    let asked = upstream_total(&upstream);
    for image in &images {
        assert_eq!(
            pull(&client, &regapp, &root, &image.mirrored(), "v1"),
            image.digest
        );
    }
    assert_eq!(upstream_total(&upstream), asked, "all three still cached");
}

/// Protects the grace period for `max_unused` too: the module's promise is that "a manifest
/// cached or pulled within the grace period is never dropped". With the default grace (1 h)
/// and `max_unused = "2s"`, an image pulled 2.5 s ago is within the grace: `regapp gc` must
/// neither evict it nor remove its tag, so pulling it by tag asks nothing of the upstream.
#[test]
fn max_unused_spares_what_was_pulled_within_the_grace_period() {
    let work = tempfile::tempdir().expect("create a scratch dir");
    let upstream = Upstream::open();
    let image = push_upstream(&upstream, work.path(), "a", &noise_layer(64 * 1024, 500));
    let root = work.path().join("regapp");
    let regapp = Regapp::start_with(&root, &config(&upstream, "", "max_unused = \"2s\"\n"));
    let client = client();
    assert_eq!(
        pull(&client, &regapp, &root, &image.mirrored(), "v1"),
        image.digest
    );
    thread::sleep(Duration::from_millis(2500));

    let summary = gc(&regapp);
    let tag_dir = root.join("docker/registry/v2/repositories/hub/library/a/_manifests/tags/v1");
    let tag_kept = tag_dir.exists();
    eprintln!(
        "grace 1h, max_unused 2s: {} manifests evicted, {} blobs removed; tag v1 {}",
        evicted(&summary),
        blobs_removed(&summary),
        if tag_kept { "kept" } else { "removed" }
    );
    let asked = upstream_total(&upstream);
    assert_eq!(
        pull(&client, &regapp, &root, &image.mirrored(), "v1"),
        image.digest
    );
    let asked_again = upstream_total(&upstream) - asked;
    assert!(
        !summary.contains("mirror caches:") && tag_kept && asked_again == 0,
        "pulled 2.5 s ago, within the 1 h grace: {} manifests evicted, tag {} {} by the gc, the \
         next pull asked the upstream {asked_again} times; summary:\n{summary}",
        evicted(&summary),
        tag_dir.display(),
        if tag_kept { "kept" } else { "removed" }
    );
}

/// An image pushed upstream: its manifest digest and blobs (manifest, config, layer).
struct Pushed {
    name: &'static str,
    digest: String,
    /// `(digest, size)`: the manifest, its config, its layer.
    blobs: Vec<(String, u64)>,
}

impl Pushed {
    /// Its name through the mirror.
    fn mirrored(&self) -> String {
        format!("{MIRROR}/library/{}", self.name)
    }

    fn layer(&self) -> String {
        self.blobs[2].0.clone()
    }

    /// What it holds, each blob once: what `du` counts for it.
    fn bytes(&self) -> u64 {
        self.blobs.iter().map(|(_, size)| size).sum()
    }
}

/// A plain tar of one file of `len` noise bytes (`seed` makes it distinct).
fn noise_layer(len: usize, seed: u64) -> Vec<u8> {
    let data = noise(len, seed);
    let mut header = tar::Header::new_gnu();
    header.set_size(len as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_data(&mut header, "data/noise.bin", &data[..])
        .expect("a tar in memory");
    builder.into_inner().expect("finish the tar")
}

/// An OCI layout at `dir` whose image (tagged `v1`) has `layer` and a config naming `name`.
fn image_layout(dir: &Path, name: &'static str, layer: &[u8]) -> Pushed {
    let layout = OciLayout::create(dir);
    let layer = layout.put_blob(layout::OCI_LAYER_TAR, layer);
    let config = layout.put_json(
        layout::OCI_CONFIG,
        &json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Env": [format!("REGAPP_EVICTION_IMAGE={name}")] },
            "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
        }),
    );
    let manifest = layout.put_json(
        layout::OCI_MANIFEST,
        &json!({
            "schemaVersion": 2,
            "mediaType": layout::OCI_MANIFEST,
            "config": config.to_json(),
            "layers": [layer.to_json()],
        }),
    );
    layout.tag("v1", &manifest);
    Pushed {
        name,
        digest: manifest.digest.clone(),
        blobs: vec![
            (manifest.digest, manifest.size),
            (config.digest, config.size),
            (layer.digest, layer.size),
        ],
    }
}

/// Builds the image `name` over `layer` and pushes it upstream as `library/<name>:v1`.
fn push_upstream(upstream: &Upstream, work: &Path, name: &'static str, layer: &[u8]) -> Pushed {
    let dir = work.join(format!("image-{name}"));
    let image = image_layout(&dir, name, layer);
    let pushed = upstream.push(&oci_ref(&dir, "v1"), &format!("library/{name}:v1"));
    assert_eq!(pushed, image.digest, "the push kept {name}'s digest");
    image
}

/// regapp's config after its storage and listeners: `[gc]` without a schedule (`gc` lines
/// added) and the mirror of `upstream` under the prefix `hub` (`limits` added).
fn config(upstream: &Upstream, gc: &str, limits: &str) -> String {
    format!(
        "\n[gc]\ninterval = \"\"\n{gc}\n[[mirror]]\nname = \"{MIRROR}\"\nurl = \"{}\"\n\
         prefix = \"{MIRROR}\"\n{limits}",
        upstream.url()
    )
}

fn sleep_until(when: Instant) {
    if let Some(left) = when.checked_duration_since(Instant::now()) {
        thread::sleep(left);
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("a plain-HTTP reqwest client builds")
}

/// GETs `url`; panics unless 200. Returns the body.
fn get_ok(client: &reqwest::blocking::Client, url: &str) -> Vec<u8> {
    let response = client
        .get(url)
        .header("accept", layout::OCI_MANIFEST)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status();
    let body = response
        .bytes()
        .unwrap_or_else(|e| panic!("GET {url}: the body: {e}"))
        .to_vec();
    assert_eq!(status, 200, "GET {url}: {}", String::from_utf8_lossy(&body));
    body
}

/// Pulls `name:reference` through regapp as a client does (the manifest, then its config and
/// layer, each checked against its digest) and waits until every blob is in the store under
/// `root` (a mirror stores a fetched blob behind the client's read). Returns the manifest's
/// digest.
fn pull(
    client: &reqwest::blocking::Client,
    regapp: &Regapp,
    root: &Path,
    name: &str,
    reference: &str,
) -> String {
    let manifest = get_ok(
        client,
        &format!("{}/v2/{name}/manifests/{reference}", regapp.url()),
    );
    let digest = layout::sha256_digest(&manifest);
    let parsed: Value = serde_json::from_slice(&manifest).expect("the manifest is JSON");
    let layers = parsed["layers"].as_array().expect("an image's layers");
    for descriptor in std::iter::once(&parsed["config"]).chain(layers) {
        let blob_digest = descriptor["digest"]
            .as_str()
            .expect("a descriptor's digest");
        let blob = get_ok(
            client,
            &format!("{}/v2/{name}/blobs/{blob_digest}", regapp.url()),
        );
        assert_eq!(
            layout::sha256_digest(&blob),
            blob_digest,
            "{name}'s blob {blob_digest}"
        );
        eventually(
            Duration::from_secs(30),
            &format!("{name}'s blob {blob_digest} lands in the store"),
            || blob_data_path(root, blob_digest).exists(),
        );
    }
    digest
}

/// `regapp ARGS… --config` of the running server (which collects for it); its stdout.
fn regapp_ok(regapp: &Regapp, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_regapp"))
        .args(args)
        .arg("--config")
        .arg(regapp.config())
        .env("REGAPP_LOG", "warn")
        .output()
        .expect("run the regapp binary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "regapp {args:?} failed ({}):\n{stdout}{}\n--- server ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        regapp.log()
    );
    stdout
}

/// `regapp gc` through the running server; its summary.
fn gc(regapp: &Regapp) -> String {
    regapp_ok(regapp, &["gc"])
}

/// `regapp du` through the running server.
fn usage(regapp: &Regapp) -> String {
    regapp_ok(regapp, &["du"])
}

/// One line of `du`: bytes referenced and blobs.
#[derive(Debug, Clone, Copy)]
struct Line {
    bytes: u64,
    blobs: u64,
}

/// The mirror's line of `du` ("<bytes> <exclusive> <blobs>  mirror hub (…)").
fn mirror_line(du: &str) -> Line {
    let marker = format!("  mirror {MIRROR} (");
    let line = du
        .lines()
        .find(|l| l.contains(&marker))
        .unwrap_or_else(|| panic!("no line for mirror {MIRROR} in du:\n{du}"));
    let numbers: Vec<u64> = line
        .split_whitespace()
        .take(3)
        .map(|n| n.parse().unwrap_or_else(|_| panic!("a number in {line:?}")))
        .collect();
    Line {
        bytes: numbers[0],
        blobs: numbers[2],
    }
}

fn mirror_usage(regapp: &Regapp) -> Line {
    mirror_line(&usage(regapp))
}

/// `total: N bytes in …` of `du`.
fn total_bytes(du: &str) -> u64 {
    du.lines()
        .find_map(|l| l.strip_prefix("total: "))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no total in du:\n{du}"))
}

/// The N of "mirror caches: N manifests over their limits"; 0 without that line.
fn evicted(summary: &str) -> u64 {
    summary
        .lines()
        .find_map(|l| l.strip_prefix("mirror caches: "))
        .map_or(0, |rest| {
            rest.split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no count in {rest:?}"))
        })
}

/// The number after `removed: ` in a summary: blobs removed.
fn blobs_removed(summary: &str) -> u64 {
    summary
        .lines()
        .find_map(|l| l.strip_prefix("removed: "))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no removed line in:\n{summary}"))
}

/// Every request the upstream answered, whatever the method.
fn upstream_total(upstream: &Upstream) -> usize {
    // Counting waits for the access log to catch up.
    upstream.requests("GET", "");
    upstream.access_log().len()
}

/// Where the store keeps a blob's bytes (registry:2's layout).
fn blob_data_path(root: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    root.join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}
