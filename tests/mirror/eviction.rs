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
use std::thread;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;

use super::support::{client, mirror_table, pull_stored, sleep_until, MIRROR};
use crate::util::images::{noise_tar, one_layer_image};
use crate::util::skopeo::{docker_ref, oci_ref};
use crate::util::store::{blob_data_path, repository_path};
use crate::util::upstream::Upstream;
use crate::util::{Regapp, Registry, Skopeo};

/// Each image's one layer: this many bytes of noise (in a tar).
const LAYER_BYTES: usize = 1024 * 1024;
/// Room for about one image of [`LAYER_BYTES`], not two: [`MAX_BYTES`] as the config says it.
const ROOM_FOR_ONE: &str = "max_bytes = \"1.5MiB\"\n";
const MAX_BYTES: u64 = 1024 * 1024 * 3 / 2;
/// Between two pulls, so that their pull stamps' times differ.
const BETWEEN_PULLS: Duration = Duration::from_millis(1100);
/// The smallest grace these tests collect with, and a wait past it.
const SHORT_GRACE: &str = "grace = \"1s\"\n";
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
    let images = push_abc(&upstream, work.path(), 100);
    let cache = Cache::start(work.path(), &upstream, SHORT_GRACE, ROOM_FOR_ONE);
    let mut a_stored = None;
    for (i, image) in images.iter().enumerate() {
        if i > 0 {
            thread::sleep(BETWEEN_PULLS);
        }
        let pulled = cache.pull_mirrored(image);
        assert_eq!(pulled, image.digest, "{} through the mirror", image.name);
        a_stored.get_or_insert_with(Instant::now);
    }
    thread::sleep(PAST_GRACE);

    let (a, b, c) = (&images[0], &images[1], &images[2]);
    let collection = cache.collect();
    let (before, after, summary) = (collection.before, collection.after, &collection.summary);
    assert_eq!(
        before.bytes,
        a.bytes() + b.bytes() + c.bytes(),
        "du counts the three cached images"
    );
    assert_eq!(before.blobs, 9, "three manifests, configs and layers");
    assert!(before.bytes > MAX_BYTES, "the cache is over its limit");
    assert!(
        summary.contains("collected by the running server"),
        "{summary}"
    );
    assert_eq!(evicted(summary), 2, "A and B go, C fits:\n{summary}");
    assert_eq!(
        blobs_removed(summary),
        6,
        "A's and B's manifest, config and layer:\n{summary}"
    );

    eprintln!("max_bytes {MAX_BYTES}: {}", collection.describe());
    assert!(
        after.bytes <= MAX_BYTES,
        "{} bytes left, over max_bytes",
        after.bytes
    );
    assert_eq!((after.bytes, after.blobs), (c.bytes(), 3), "only C is left");
    for gone in [a, b] {
        for blob in &gone.blobs {
            assert!(
                !cache.holds(&blob.0),
                "{}'s blob {} left the store",
                gone.name,
                blob.0
            );
        }
    }
    for blob in &c.blobs {
        assert!(cache.holds(&blob.0), "C's {} stays", blob.0);
    }

    let asked = upstream.total_requests();
    assert_eq!(cache.pull_mirrored(c), c.digest);
    assert_eq!(
        upstream.total_requests(),
        asked,
        "C is served from the cache, the upstream is not asked"
    );
    let layer_gets = upstream.requests("GET", &format!("/blobs/{}", a.layer()));
    sleep_until(a_stored.expect("A was pulled") + PAST_FLIGHT);
    assert_eq!(cache.pull_mirrored(a), a.digest);
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
    let old = push_upstream(&upstream, work.path(), "old", &noise_tar(64 * 1024, 200));
    let recent = push_upstream(&upstream, work.path(), "recent", &noise_tar(64 * 1024, 201));
    let cache = Cache::start(work.path(), &upstream, SHORT_GRACE, "max_unused = \"3s\"\n");
    assert_eq!(cache.pull_mirrored(&old), old.digest);
    let old_stored = Instant::now();
    thread::sleep(Duration::from_millis(2000));
    let recent_pulled = Instant::now();
    assert_eq!(cache.pull_mirrored(&recent), recent.digest);
    // `old` unused for more than 3.3 s, `recent` for ~1.3 s: past the grace, within max_unused.
    thread::sleep(PAST_GRACE);

    let collection = cache.collect();
    let summary = &collection.summary;
    let recent_age = collection.ended.duration_since(recent_pulled);
    eprintln!(
        "max_unused 3s: recent pulled {recent_age:?} before the gc ended; {}",
        collection.describe()
    );
    assert_eq!(evicted(summary), 1, "only the old one:\n{summary}");
    assert_eq!(blobs_removed(summary), 3, "{summary}");
    assert_eq!(
        (collection.before.bytes, collection.after.bytes),
        (old.bytes() + recent.bytes(), recent.bytes())
    );
    assert!(!cache.holds(&old.layer()));

    let asked = upstream.total_requests();
    assert_eq!(cache.pull_mirrored(&recent), recent.digest);
    assert_eq!(
        upstream.total_requests(),
        asked,
        "the recent one is still cached"
    );
    let manifest_gets = upstream.requests("GET", "/v2/library/old/manifests/");
    sleep_until(old_stored + PAST_FLIGHT);
    assert_eq!(cache.pull_mirrored(&old), old.digest);
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
    let shared = noise_tar(LAYER_BYTES, 300);
    let a = push_upstream(&upstream, work.path(), "a", &shared);
    let b = push_upstream(&upstream, work.path(), "b", &noise_tar(LAYER_BYTES, 301));
    let cache = Cache::start(work.path(), &upstream, SHORT_GRACE, ROOM_FOR_ONE);
    assert_eq!(cache.pull_mirrored(&a), a.digest);
    let a_stored = Instant::now();
    // The local image, with A's layer bytes and a config of its own, pushed after the mirror
    // brought the layer into the store.
    let local_dir = work.path().join("local");
    let local = image_layout(&local_dir, "local", &shared);
    let pushed = Skopeo::new().copy(
        &oci_ref(&local_dir, "v1"),
        &docker_ref(cache.regapp.host(), "team/app:1"),
    );
    assert_eq!(pushed, local.digest);
    assert_eq!(local.layer(), a.layer(), "the local image shares A's layer");
    thread::sleep(BETWEEN_PULLS);
    assert_eq!(cache.pull_mirrored(&b), b.digest);
    thread::sleep(PAST_GRACE);

    let collection = cache.collect();
    let summary = &collection.summary;
    let (total_before, total_after) = (
        total_bytes(&collection.du_before),
        total_bytes(&collection.du_after),
    );
    eprintln!(
        "shared layer: {}; store total {total_before} -> {total_after}",
        collection.describe()
    );
    assert_eq!(evicted(summary), 1, "A goes, B fits:\n{summary}");
    assert_eq!(
        blobs_removed(summary),
        2,
        "A's manifest and config, not the shared layer:\n{summary}"
    );
    assert_eq!(collection.after.bytes, b.bytes());
    assert!(cache.holds(&a.layer()), "the shared layer stays");
    assert!(!cache.holds(&a.blobs[1].0), "A's config goes");
    assert_eq!(
        total_after,
        total_before - a.blobs[0].1 - a.blobs[1].1,
        "the store lost A's manifest and config only"
    );

    assert_eq!(cache.pull("team/app", "1"), local.digest);
    let layer_gets = upstream.requests("GET", &format!("/blobs/{}", a.layer()));
    assert_eq!(
        layer_gets, 1,
        "the layer was fetched once, when A was first pulled"
    );
    sleep_until(a_stored + PAST_FLIGHT);
    assert_eq!(cache.pull_mirrored(&a), a.digest);
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
    let images = push_abc(&upstream, work.path(), 400);
    let cache = Cache::start(work.path(), &upstream, "", ROOM_FOR_ONE);
    for image in &images {
        assert_eq!(cache.pull_mirrored(image), image.digest);
    }
    thread::sleep(PAST_GRACE);

    let collection = cache.collect();
    let (before, after, summary) = (collection.before, collection.after, &collection.summary);
    eprintln!("grace 1h: {}", collection.describe());
    assert!(before.bytes > MAX_BYTES, "over the limit");
    assert!(summary.contains("settings: grace 1h,"), "{summary}");
    assert!(!summary.contains("mirror caches:"), "{summary}");
    assert_eq!(blobs_removed(summary), 0, "{summary}");
    assert_eq!((after.bytes, after.blobs), (before.bytes, before.blobs));
    let asked = upstream.total_requests();
    for image in &images {
        assert_eq!(cache.pull_mirrored(image), image.digest);
    }
    assert_eq!(upstream.total_requests(), asked, "all three still cached");
}

/// Protects the grace period for `max_unused` too: the module's promise is that "a manifest
/// cached or pulled within the grace period is never dropped". With the default grace (1 h)
/// and `max_unused = "2s"`, an image pulled 2.5 s ago is within the grace: `regapp gc` must
/// neither evict it nor remove its tag, so pulling it by tag asks nothing of the upstream.
#[test]
fn max_unused_spares_what_was_pulled_within_the_grace_period() {
    let work = tempfile::tempdir().expect("create a scratch dir");
    let upstream = Upstream::open();
    let image = push_upstream(&upstream, work.path(), "a", &noise_tar(64 * 1024, 500));
    let cache = Cache::start(work.path(), &upstream, "", "max_unused = \"2s\"\n");
    assert_eq!(cache.pull_mirrored(&image), image.digest);
    thread::sleep(Duration::from_millis(2500));

    let summary = cache.gc();
    let tag_dir = repository_path(&cache.root, "hub/library/a").join("_manifests/tags/v1");
    let tag_kept = tag_dir.exists();
    eprintln!(
        "grace 1h, max_unused 2s: {} manifests evicted, {} blobs removed; tag v1 {}",
        evicted(&summary),
        blobs_removed(&summary),
        if tag_kept { "kept" } else { "removed" }
    );
    let asked = upstream.total_requests();
    assert_eq!(cache.pull_mirrored(&image), image.digest);
    let asked_again = upstream.total_requests() - asked;
    assert!(
        !summary.contains("mirror caches:") && tag_kept && asked_again == 0,
        "pulled 2.5 s ago, within the 1 h grace: {} manifests evicted, tag {} {} by the gc, the \
         next pull asked the upstream {asked_again} times; summary:\n{summary}",
        evicted(&summary),
        tag_dir.display(),
        if tag_kept { "kept" } else { "removed" }
    );
}

/// regapp mirroring an upstream under [`MIRROR`], its store under `root`, and a client pulling
/// through it.
struct Cache {
    regapp: Regapp,
    root: PathBuf,
    client: Client,
}

impl Cache {
    /// regapp in `work/regapp` with `[gc]` unscheduled (`gc` lines added) and the mirror of
    /// `upstream` (`limits` added).
    fn start(work: &Path, upstream: &Upstream, gc: &str, limits: &str) -> Cache {
        let root = work.join("regapp");
        let config = format!(
            "\n[gc]\ninterval = \"\"\n{gc}{}",
            mirror_table(MIRROR, &upstream.url(), limits)
        );
        Cache {
            regapp: Regapp::start_with(&root, &config),
            root,
            client: client(),
        }
    }

    /// Pulls `name:reference` as a client does and waits until its blobs are stored; the
    /// manifest's digest.
    fn pull(&self, name: &str, reference: &str) -> String {
        pull_stored(&self.client, &self.regapp, &self.root, name, reference)
    }

    /// [`Cache::pull`] of `image`'s `v1` through the mirror.
    fn pull_mirrored(&self, image: &Pushed) -> String {
        self.pull(&image.mirrored(), "v1")
    }

    /// Whether the store has blob `digest`'s bytes.
    fn holds(&self, digest: &str) -> bool {
        blob_data_path(&self.root, digest).exists()
    }

    /// `regapp gc` through the server; its summary.
    fn gc(&self) -> String {
        self.regapp.cli_ok(&["gc"])
    }

    /// `regapp du`, `regapp gc` and `regapp du` again, through the server.
    fn collect(&self) -> Collection {
        let du_before = self.regapp.cli_ok(&["du"]);
        let summary = self.gc();
        let ended = Instant::now();
        let du_after = self.regapp.cli_ok(&["du"]);
        Collection {
            before: mirror_line(&du_before),
            after: mirror_line(&du_after),
            du_before,
            du_after,
            summary,
            ended,
        }
    }
}

/// One collection and what `du` said around it.
struct Collection {
    du_before: String,
    du_after: String,
    /// The mirror's lines of `du_before` and `du_after`.
    before: Line,
    after: Line,
    summary: String,
    /// When `regapp gc` returned.
    ended: Instant,
}

impl Collection {
    /// The figures the tests print.
    fn describe(&self) -> String {
        format!(
            "du of mirror {MIRROR} {} bytes in {} blobs before gc, {} bytes in {} blobs after; \
             {} manifests evicted, {} blobs removed",
            self.before.bytes,
            self.before.blobs,
            self.after.bytes,
            self.after.blobs,
            evicted(&self.summary),
            blobs_removed(&self.summary)
        )
    }
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

/// An OCI layout at `dir` whose image (tagged `v1`) has `layer` and a config naming `name`.
fn image_layout(dir: &Path, name: &'static str, layer: &[u8]) -> Pushed {
    let built = one_layer_image(dir, layer, &[format!("REGAPP_EVICTION_IMAGE={name}")]);
    let manifest = built.image.top;
    Pushed {
        name,
        digest: manifest.digest.clone(),
        blobs: vec![
            (manifest.digest, manifest.size),
            (built.config.digest, built.config.size),
            (built.layer.digest, built.layer.size),
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

/// A, B and C pushed upstream, each over a layer of its own: [`LAYER_BYTES`] of noise seeded
/// `seed`, `seed + 1`, `seed + 2`.
fn push_abc(upstream: &Upstream, work: &Path, seed: u64) -> Vec<Pushed> {
    ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let layer = noise_tar(LAYER_BYTES, seed + i as u64);
            push_upstream(upstream, work, name, &layer)
        })
        .collect()
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
