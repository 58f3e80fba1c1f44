//! The pull-through cache itself (`registry::mirror`), on regapp's engine over plain HTTP in
//! front of a real upstream (Debian's docker-registry, `util::upstream`) or, where a real one
//! cannot misbehave on cue, a tiny upstream in the test ([`FakeUpstream`]: 429s, wrong bytes).
//!
//! What each test protects, counted where it happens (the upstream's access log, the token
//! issuer's log, regapp's `/metrics` and log): one upstream fetch per blob however many clients
//! ask, streamed to them while it runs, in flat memory; tags trusted for `tag_ttl`, then asked
//! again, served stale while the upstream is down or rate-limited; 429s passed on and
//! honoured; one token per upstream repository; bytes that do not match their digest never
//! reach a client whole nor the store.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::util::images::{big_layer_image, small_image};
use crate::util::layout::{self, Descriptor, OciLayout};
use crate::util::skopeo::oci_ref;
use crate::util::upstream::Upstream;
use crate::util::{eventually, noise, Regapp, Registry};

/// The `[[mirror]]` name every test uses (the `mirror` label of the metrics).
const MIRROR: &str = "hub";

/// What these tests ask a manifest in: every type regapp stores.
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// The log line regapp writes when its upstream starts failing, and when it is back.
const FAILS: &str = "the upstream fails";
const ANSWERS_AGAIN: &str = "the upstream answers again";

/// Protects the heart of the cache: sixteen clients asking at once for a 256 MiB layer that
/// is not cached cost exactly one upstream GET, all get the right bytes, the first bytes reach
/// them while the upstream fetch is still running (not after the blob was spooled whole), a
/// seventeenth client is served from the store, and regapp's memory stays flat.
#[test]
fn sixteen_clients_of_a_missing_256_mib_layer_cost_one_upstream_fetch() {
    const FILE_SIZE: u64 = 256 * 1024 * 1024;
    const CLIENTS: usize = 16;
    let work = tempfile::tempdir().expect("create a scratch dir");
    let upstream = Upstream::open();
    let (digest, size) = {
        let image = big_layer_image(&work.path().join("image"), FILE_SIZE);
        let pushed = upstream.push(&image.reference(), "library/big:big");
        assert_eq!(pushed, image.top.digest);
        let manifest: Value = serde_json::from_slice(&image.top_bytes()).expect("JSON");
        let layer = &manifest["layers"][0];
        let digest = layer["digest"].as_str().expect("a layer digest").to_owned();
        let size = layer["size"].as_u64().expect("a layer size");
        // Disk: the layer is upstream now; regapp will hold a spool copy and a stored one.
        std::fs::remove_dir_all(work.path().join("image")).expect("remove the image layout");
        (digest, size)
    };
    assert!(size > FILE_SIZE, "one layer of 256 MiB and its tar header");
    let root = work.path().join("regapp");
    let regapp = Regapp::start_with(&root, &mirror_config(&upstream.url(), "2s"));
    let url = format!("{}/v2/dockerhub/library/big/blobs/{digest}", regapp.url());

    let t0 = Instant::now();
    let fetched_at = {
        // When regapp's counter of upstream bytes reached the blob's size: the fetch's end.
        let metrics = regapp.metrics_port();
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            while Instant::now() < deadline {
                let fetched = scrape_metric(metrics, "regapp_mirror_upstream_bytes_total", &[]);
                if fetched >= size as f64 {
                    return Some(t0.elapsed());
                }
                thread::sleep(Duration::from_millis(5));
            }
            None
        })
    };
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (barrier, url) = (barrier.clone(), url.clone());
            thread::spawn(move || {
                barrier.wait();
                read_blob(&client(), &url, t0)
            })
        })
        .collect();
    let reads: Vec<BlobRead> = clients
        .into_iter()
        .map(|c| c.join().expect("a client thread"))
        .collect();
    let fetched_at = fetched_at
        .join()
        .expect("the metrics watcher")
        .expect("the upstream bytes reach the blob's size");

    let expected_hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    for (i, read) in reads.iter().enumerate() {
        assert_eq!(read.status, 200, "client {i}");
        assert_eq!(read.len, size, "client {i} read the whole blob");
        assert_eq!(read.sha256, expected_hex, "client {i}'s bytes");
    }
    assert_eq!(
        upstream.requests("GET", &format!("/blobs/{digest}")),
        1,
        "sixteen clients, one upstream GET"
    );
    let first_byte = reads.iter().map(|r| r.first_byte).min().expect("16 reads");
    let last_first_byte = reads.iter().map(|r| r.first_byte).max().expect("16 reads");
    let done = reads.iter().map(|r| r.done).max().expect("16 reads");
    eprintln!(
        "256 MiB layer, {CLIENTS} clients: first byte after {first_byte:?} (slowest client's \
         first byte {last_first_byte:?}); upstream fetch done after {fetched_at:?}; every \
         client done after {done:?}"
    );
    assert!(
        first_byte * 4 < fetched_at,
        "clients get bytes while the upstream fetch runs: first byte at {first_byte:?}, the \
         fetch ended at {fetched_at:?}"
    );
    assert_eq!(
        metric(&regapp, "regapp_mirror_upstream_bytes_total", &[]),
        size as f64,
        "the blob's bytes crossed from the upstream once"
    );

    // The fetch goes on into the store on its own; then a 17th client reads it from there.
    let stored = blob_data_path(&root, &digest);
    eventually(
        Duration::from_secs(120),
        "the blob lands in the store",
        || std::fs::metadata(&stored).is_ok_and(|m| m.len() == size),
    );
    let again = read_blob(&client(), &url, Instant::now());
    assert_eq!((again.status, again.len), (200, size));
    assert_eq!(again.sha256, expected_hex, "the 17th client's bytes");
    assert_eq!(
        upstream.requests("GET", &format!("/blobs/{digest}")),
        1,
        "the 17th client was served from the store"
    );
    assert_eq!(
        metric(&regapp, "regapp_mirror_misses_total", &[("kind", "blob")]),
        1.0
    );
    assert_eq!(
        metric(&regapp, "regapp_mirror_hits_total", &[("kind", "blob")]),
        CLIENTS as f64,
        "15 clients joined the fetch, the 17th found the store"
    );
    let peak = vm_hwm_kib(&regapp);
    eprintln!(
        "regapp's peak RSS (VmHWM) after 17 reads of 256 MiB: {} MiB",
        peak / 1024
    );
    assert!(
        peak < 200 * 1024,
        "regapp's peak RSS {peak} KiB: memory does not grow with the blob"
    );
}

/// Protects ranges on a miss: `Range: bytes=1000-1999` of a blob nobody fetched yet answers
/// 206 with those bytes (read from the fetch as it arrives), and the fetch it started goes on
/// to fill the cache, so the whole blob afterwards costs no second upstream GET.
#[test]
fn a_range_of_a_blob_not_yet_cached_is_answered_and_the_blob_is_cached() {
    let work = tempfile::tempdir().expect("create a scratch dir");
    let upstream = Upstream::open();
    let (image, layer, tar) = noise_image(&work.path().join("image"), 4 * 1024 * 1024, 7);
    upstream.push(&oci_ref(image.dir(), "v1"), "library/noise:v1");
    let root = work.path().join("regapp");
    let regapp = Regapp::start_with(&root, &mirror_config(&upstream.url(), "2s"));
    let url = format!(
        "{}/v2/dockerhub/library/noise/blobs/{}",
        regapp.url(),
        layer.digest
    );
    let client = client();

    let ranged = client
        .get(&url)
        .header("range", "bytes=1000-1999")
        .send()
        .expect("a ranged GET");
    assert_eq!(ranged.status(), 206);
    assert_eq!(
        header(ranged.headers(), "content-range"),
        format!("bytes 1000-1999/{}", layer.size)
    );
    let body = ranged.bytes().expect("the range's body");
    assert!(body[..] == tar[1000..2000], "the range's bytes");
    assert_eq!(
        metric(&regapp, "regapp_mirror_misses_total", &[("kind", "blob")]),
        1.0
    );

    let stored = blob_data_path(&root, &layer.digest);
    eventually(
        Duration::from_secs(30),
        "the blob lands in the store",
        || std::fs::metadata(&stored).is_ok_and(|m| m.len() == layer.size),
    );
    let whole = client.get(&url).send().expect("a GET of the whole blob");
    assert_eq!(whole.status(), 200);
    assert!(whole.bytes().expect("the blob") == tar, "the whole blob");
    assert_eq!(
        upstream.requests("GET", &format!("/blobs/{}", layer.digest)),
        1,
        "the range's fetch filled the cache"
    );
}

/// Protects serving stale: with the upstream stopped, a cached tag past `tag_ttl` is served
/// from the cache (counted stale and as an unreachable upstream, logged once), an image not
/// cached answers 503 UNAVAILABLE, and once the upstream is back the tag is asked again and
/// regapp says so.
#[test]
fn a_cached_tag_is_served_stale_while_the_upstream_is_down() {
    const TTL: Duration = Duration::from_secs(1);
    let work = tempfile::tempdir().expect("create a scratch dir");
    let mut upstream = Upstream::open();
    let image = small_image(&work.path().join("image"), "stale");
    let pushed = upstream.push(&image.reference(), "library/alpine:3");
    let regapp = Regapp::start_with(
        &work.path().join("regapp"),
        &mirror_config(&upstream.url(), "1s"),
    );
    let client = client();

    let pulled_at = Instant::now();
    assert_eq!(
        pull(&client, &regapp, "dockerhub/library/alpine", "3"),
        pushed
    );
    upstream.stop();
    sleep_until(pulled_at + TTL + Duration::from_millis(200));

    assert_eq!(
        pull(&client, &regapp, "dockerhub/library/alpine", "3"),
        pushed,
        "the cached image, past tag_ttl, with the upstream down"
    );
    assert_eq!(metric(&regapp, "regapp_mirror_stale_total", &[]), 1.0);
    assert_eq!(
        metric(
            &regapp,
            "regapp_mirror_upstream_errors_total",
            &[("kind", "unreachable")]
        ),
        1.0
    );

    let missing = get(
        &client,
        &manifest_url(&regapp, "dockerhub/library/other", "1"),
        &[],
    );
    assert_eq!(missing.status, 503, "{}", missing.text());
    assert_error_code(&missing, "UNAVAILABLE");
    assert_eq!(
        metric(
            &regapp,
            "regapp_mirror_upstream_errors_total",
            &[("kind", "unreachable")]
        ),
        2.0
    );
    assert_eq!(
        log_lines(&regapp, FAILS),
        1,
        "two failed upstream requests, one warning:\n{}",
        regapp.log()
    );
    assert_eq!(log_lines(&regapp, ANSWERS_AGAIN), 0);

    let heads = upstream.requests("HEAD", "/v2/library/alpine/manifests/3");
    upstream.start();
    assert_eq!(
        pull(&client, &regapp, "dockerhub/library/alpine", "3"),
        pushed
    );
    assert_eq!(
        upstream.requests("HEAD", "/v2/library/alpine/manifests/3"),
        heads + 1,
        "the tag, still past its TTL, is confirmed with the upstream back"
    );
    assert_eq!(metric(&regapp, "regapp_mirror_stale_total", &[]), 1.0);
    eventually(Duration::from_secs(5), "regapp logs the recovery", || {
        log_lines(&regapp, ANSWERS_AGAIN) == 1
    });
    assert_eq!(log_lines(&regapp, FAILS), 1);
    eprintln!(
        "stale: 1 answer served stale, 2 unreachable errors, 1 failure logged, upstream HEADs \
         of the tag {} -> {}",
        heads,
        heads + 1
    );
}

/// Protects `tag_ttl`: a tag moved upstream is not seen (nor asked) within it, is seen after
/// it with one HEAD and one GET of the new manifest, and manifests by digest, old and new,
/// come from the cache without any upstream request.
#[test]
fn a_tag_moved_upstream_is_seen_after_tag_ttl_and_digests_never_ask() {
    const TTL: Duration = Duration::from_secs(2);
    let work = tempfile::tempdir().expect("create a scratch dir");
    let upstream = Upstream::open();
    let a = small_image(&work.path().join("a"), "tag-a");
    let b = small_image(&work.path().join("b"), "tag-b");
    let digest_a = upstream.push(&a.reference(), "library/app:v");
    let digest_b = upstream.push(&b.reference(), "library/app:b");
    assert_ne!(digest_a, digest_b);
    let regapp = Regapp::start_with(
        &work.path().join("regapp"),
        &mirror_config(&upstream.url(), "2s"),
    );
    let client = client();
    let tag_path = "/v2/library/app/manifests/v";

    let pulled_at = Instant::now();
    assert_eq!(
        pull(&client, &regapp, "dockerhub/library/app", "v"),
        digest_a
    );
    assert_eq!(upstream.requests("HEAD", tag_path), 1);
    assert_eq!(upstream.requests("GET", tag_path), 1);

    // Move the tag upstream: one PUT of B's manifest (its blobs are there already).
    let moved = client
        .put(format!("{}{tag_path}", upstream.url()))
        .header("content-type", layout::OCI_MANIFEST)
        .body(b.top_bytes())
        .send()
        .expect("PUT the manifest upstream");
    assert_eq!(moved.status(), 201);
    let before = upstream_total(&upstream);
    let within = get(
        &client,
        &manifest_url(&regapp, "dockerhub/library/app", "v"),
        &[],
    );
    assert!(
        pulled_at.elapsed() < TTL,
        "the test was too slow to ask within tag_ttl ({:?})",
        pulled_at.elapsed()
    );
    assert_eq!(within.status, 200);
    assert_eq!(
        within.digest(),
        digest_a,
        "within tag_ttl the cached tag is trusted"
    );
    assert_eq!(
        upstream_total(&upstream),
        before,
        "nothing asked upstream within tag_ttl"
    );

    sleep_until(pulled_at + TTL + Duration::from_millis(200));
    assert_eq!(
        pull(&client, &regapp, "dockerhub/library/app", "v"),
        digest_b,
        "after tag_ttl the moved tag"
    );
    assert_eq!(
        upstream.requests("HEAD", tag_path),
        2,
        "one HEAD to confirm the tag"
    );
    assert_eq!(
        upstream.requests("GET", tag_path),
        2,
        "one GET of the new manifest"
    );

    let before = upstream_total(&upstream);
    for (digest, bytes) in [(&digest_a, a.top_bytes()), (&digest_b, b.top_bytes())] {
        let by_digest = get(
            &client,
            &manifest_url(&regapp, "dockerhub/library/app", digest),
            &[],
        );
        assert_eq!(by_digest.status, 200);
        assert!(by_digest.body == bytes, "{digest}: the manifest's bytes");
        assert_eq!(by_digest.digest(), *digest);
    }
    let confirmed = get(
        &client,
        &manifest_url(&regapp, "dockerhub/library/app", "v"),
        &[],
    );
    assert_eq!(
        confirmed.digest(),
        digest_b,
        "the tag, confirmed, within its new TTL"
    );
    assert_eq!(
        upstream_total(&upstream),
        before,
        "digests (and a tag within its TTL) are served without asking upstream"
    );
    assert_eq!(
        metric(
            &regapp,
            "regapp_mirror_misses_total",
            &[("kind", "manifest")]
        ),
        2.0
    );
}

/// Protects rate limits: an upstream 429 with `Retry-After: 30` becomes a 429 TOOMANYREQUESTS
/// with `Retry-After` for the client, regapp does not call the upstream again while it runs
/// (a second request, a blob, a cached tag past its TTL), and the cached tag is served stale.
#[test]
fn an_upstream_429_is_passed_on_and_honoured_while_cached_tags_go_stale() {
    const TTL: Duration = Duration::from_secs(1);
    let work = tempfile::tempdir().expect("create a scratch dir");
    let image = small_image(&work.path().join("image"), "rate-limited");
    let manifest = image.top_bytes();
    let top = image.top.digest.clone();
    let limited = Arc::new(AtomicBool::new(false));
    let fake = {
        let limited = limited.clone();
        let layout = OciLayout::open(image.layout.dir());
        FakeUpstream::start(move |_method, path| {
            if path == "/v2/" {
                return Canned::json(200, json!({}));
            }
            if limited.load(Ordering::SeqCst) {
                let mut answer = Canned::json(
                    429,
                    json!({"errors": [{"code": "TOOMANYREQUESTS", "message": "pull rate limit"}]}),
                );
                answer.headers.push(("Retry-After", "30".to_owned()));
                return answer;
            }
            if path == "/v2/library/app/manifests/v1"
                || path == format!("/v2/library/app/manifests/{top}")
            {
                return Canned {
                    status: 200,
                    headers: vec![
                        ("Content-Type", layout::OCI_MANIFEST.to_owned()),
                        ("Docker-Content-Digest", top.clone()),
                    ],
                    body: manifest.clone(),
                };
            }
            match path.strip_prefix("/v2/library/app/blobs/") {
                Some(digest) if layout.blob_path(digest).is_file() => Canned {
                    status: 200,
                    headers: vec![("Content-Type", "application/octet-stream".to_owned())],
                    body: layout.read_blob(digest),
                },
                _ => Canned::json(404, json!({"errors": [{"code": "NOT_FOUND"}]})),
            }
        })
    };
    let regapp = Regapp::start_with(
        &work.path().join("regapp"),
        &mirror_config(&fake.url(), "1s"),
    );
    let client = client();
    let pulled_at = Instant::now();
    assert_eq!(
        pull(&client, &regapp, "dockerhub/library/app", "v1"),
        image.top.digest
    );

    limited.store(true, Ordering::SeqCst);
    let served = fake.requests("", "");
    let refused = get(
        &client,
        &manifest_url(&regapp, "dockerhub/library/other", "1"),
        &[],
    );
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_error_code(&refused, "TOOMANYREQUESTS");
    assert_eq!(header(&refused.headers, "retry-after"), "30");
    assert_eq!(
        fake.requests("", ""),
        served + 1,
        "regapp asked once and was refused"
    );
    assert_eq!(
        metric(
            &regapp,
            "regapp_mirror_upstream_errors_total",
            &[("kind", "rate_limited")]
        ),
        1.0
    );

    let again = get(
        &client,
        &manifest_url(&regapp, "dockerhub/library/other", "1"),
        &[],
    );
    assert_eq!(again.status, 429, "{}", again.text());
    assert_error_code(&again, "TOOMANYREQUESTS");
    let wait: u64 = header(&again.headers, "retry-after")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=30).contains(&wait), "Retry-After: {wait}");
    let blob = get(
        &client,
        &format!(
            "{}/v2/dockerhub/library/app/blobs/sha256:{}",
            regapp.url(),
            "0".repeat(64)
        ),
        &[],
    );
    assert_eq!(
        blob.status,
        429,
        "a blob not cached, while rate-limited: {}",
        blob.text()
    );
    assert_eq!(
        fake.requests("", ""),
        served + 1,
        "no request reaches the upstream while its Retry-After runs"
    );

    sleep_until(pulled_at + TTL + Duration::from_millis(200));
    assert_eq!(
        pull(&client, &regapp, "dockerhub/library/app", "v1"),
        image.top.digest,
        "the cached tag past its TTL, served stale while rate-limited"
    );
    assert_eq!(
        fake.requests("", ""),
        served + 1,
        "still nothing asked upstream"
    );
    assert_eq!(metric(&regapp, "regapp_mirror_stale_total", &[]), 1.0);
    assert_eq!(
        metric(
            &regapp,
            "regapp_mirror_upstream_errors_total",
            &[("kind", "rate_limited")]
        ),
        4.0,
        "the 429 and three requests held back (manifest, blob, stale tag)"
    );
    eprintln!(
        "429: upstream asked {} times in all, once while limited; Retry-After 30 then {wait}",
        fake.requests("", "")
    );
}

/// Protects token reuse: three images pulled from one repository of a token-auth upstream
/// cost regapp one token request (one 401 in all), and another repository gets a token of its
/// own, scoped to it.
#[test]
fn one_token_per_upstream_repository_serves_several_pulls() {
    let work = tempfile::tempdir().expect("create a scratch dir");
    let upstream = Upstream::token_auth();
    let issuer = upstream
        .token_issuer()
        .expect("a token upstream has an issuer");
    issuer.set_expires_in(60);
    let mut digests = Vec::new();
    for tag in ["1", "2", "3"] {
        let image = small_image(
            &work.path().join(format!("busybox-{tag}")),
            &format!("busybox-{tag}"),
        );
        digests.push(upstream.push(&image.reference(), &format!("library/busybox:{tag}")));
    }
    let alpine = small_image(&work.path().join("alpine"), "alpine");
    let alpine_digest = upstream.push(&alpine.reference(), "library/alpine:1");
    let regapp = Regapp::start_with(
        &work.path().join("regapp"),
        &mirror_config(&upstream.url(), "2s"),
    );
    let client = client();
    let issued_before = issuer.requests().len();
    let denied_before = status_count(&upstream, 401);

    for (tag, digest) in ["1", "2", "3"].iter().zip(&digests) {
        assert_eq!(
            pull(&client, &regapp, "dockerhub/library/busybox", tag),
            *digest
        );
    }
    let asked: Vec<_> = issuer.requests()[issued_before..].to_vec();
    assert_eq!(asked.len(), 1, "three pulls, one token: {asked:?}");
    assert_eq!(asked[0].method, "GET");
    assert_eq!(asked[0].user, None, "regapp has no credentials: anonymous");
    assert_eq!(asked[0].scopes, ["repository:library/busybox:pull"]);
    assert_eq!(asked[0].status, 200);
    assert_eq!(
        status_count(&upstream, 401),
        denied_before + 1,
        "one challenge, then the token for everything"
    );

    assert_eq!(
        pull(&client, &regapp, "dockerhub/library/alpine", "1"),
        alpine_digest
    );
    let asked: Vec<_> = issuer.requests()[issued_before..].to_vec();
    assert_eq!(
        asked.len(),
        2,
        "another repository, another token: {asked:?}"
    );
    assert_eq!(asked[1].scopes, ["repository:library/alpine:pull"]);
    assert_eq!(
        status_count(&upstream, 401),
        denied_before + 1,
        "the scheme is known: no second challenge"
    );
    eprintln!(
        "tokens: 3 pulls of library/busybox took 1 token, library/alpine 1 more; 1 upstream 401"
    );
}

/// Protects integrity: an upstream that sends bytes other than the digest names (the right
/// length) gets the client's body cut before its end, and the blob is not stored: no file in
/// regapp's storage has its digest, and the next request fetches it again.
#[test]
fn a_blob_whose_bytes_do_not_match_its_digest_is_cut_off_and_never_stored() {
    const LEN: usize = 1024 * 1024;
    let work = tempfile::tempdir().expect("create a scratch dir");
    let right = noise(LEN, 1);
    let digest = layout::sha256_digest(&right);
    let wrong = noise(LEN, 2);
    let fake = {
        let (digest, wrong) = (digest.clone(), wrong.clone());
        FakeUpstream::start(move |_method, path| {
            if path == format!("/v2/library/bad/blobs/{digest}") {
                Canned {
                    status: 200,
                    headers: vec![("Content-Type", "application/octet-stream".to_owned())],
                    body: wrong.clone(),
                }
            } else {
                Canned::json(404, json!({"errors": [{"code": "NOT_FOUND"}]}))
            }
        })
    };
    let root = work.path().join("regapp");
    let regapp = Regapp::start_with(&root, &mirror_config(&fake.url(), "2s"));
    let url = format!("{}/v2/dockerhub/library/bad/blobs/{digest}", regapp.url());
    let hex = digest.strip_prefix("sha256:").expect("sha256").to_owned();

    for attempt in 1..=2 {
        let read = read_body(&client(), &url);
        let got = read.bytes.len();
        eprintln!(
            "wrong bytes, attempt {attempt}: status {}, read {got} of {LEN} bytes, error: {:?}",
            read.status, read.error
        );
        assert!(
            read.error.is_some() || got < LEN,
            "the client got the whole body of wrong bytes ({got} bytes, no error)"
        );
        assert!(
            got < LEN,
            "never the last bytes of a blob that does not match"
        );
        assert!(
            read.bytes[..] == wrong[..got],
            "what came through is the upstream's bytes as sent"
        );
        eventually(
            Duration::from_secs(10),
            "regapp logs the failed fetch",
            || log_lines(&regapp, "fetching a blob failed") == attempt,
        );
        // The fetch publishes its failure, then forgets its flight: give it that moment.
        thread::sleep(Duration::from_millis(200));
        assert_eq!(
            fake.requests("GET", &format!("/blobs/{digest}")),
            attempt,
            "each request fetches again: nothing was kept"
        );
        let named = files_named(&root, &hex);
        assert!(named.is_empty(), "regapp's storage holds {named:?}");
    }
    assert_eq!(
        metric(&regapp, "regapp_mirror_misses_total", &[("kind", "blob")]),
        2.0
    );
    assert_eq!(
        metric(&regapp, "regapp_mirror_hits_total", &[("kind", "blob")]),
        0.0
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// The `[[mirror]]` table: `dockerhub/<name>` mirrors `<name>` of `url`.
fn mirror_config(url: &str, tag_ttl: &str) -> String {
    format!(
        "\n[[mirror]]\nname = \"{MIRROR}\"\nurl = \"{url}\"\nprefix = \"dockerhub\"\n\
         namespace = \"docker.io\"\ndefault = false\ntag_ttl = \"{tag_ttl}\"\nmax_concurrent = 8\n"
    )
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("a plain-HTTP reqwest client builds")
}

fn sleep_until(when: Instant) {
    if let Some(left) = when.checked_duration_since(Instant::now()) {
        thread::sleep(left);
    }
}

/// An answer read whole.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `Docker-Content-Digest`, checked against the body.
    fn digest(&self) -> String {
        let said = header(&self.headers, "docker-content-digest");
        assert_eq!(
            said,
            layout::sha256_digest(&self.body),
            "the digest header names the body"
        );
        said
    }
}

fn get(client: &reqwest::blocking::Client, url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = client.get(url).header("accept", ACCEPT);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .unwrap_or_else(|e| panic!("GET {url}: the body: {e}"))
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

fn header(headers: &reqwest::header::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
        .to_str()
        .expect("an ASCII header")
        .to_owned()
}

fn manifest_url(regapp: &Regapp, name: &str, reference: &str) -> String {
    format!("{}/v2/{name}/manifests/{reference}", regapp.url())
}

/// Pulls `name:reference` through regapp as a client does: the manifest, then its config and
/// layers, each checked against its digest. Returns the manifest's digest.
fn pull(
    client: &reqwest::blocking::Client,
    regapp: &Regapp,
    name: &str,
    reference: &str,
) -> String {
    let manifest = get(client, &manifest_url(regapp, name, reference), &[]);
    assert_eq!(
        manifest.status,
        200,
        "manifest {name}:{reference}: {}",
        manifest.text()
    );
    let digest = manifest.digest();
    let parsed: Value = serde_json::from_slice(&manifest.body).expect("the manifest is JSON");
    let layers = parsed["layers"]
        .as_array()
        .expect("an image manifest's layers");
    for descriptor in std::iter::once(&parsed["config"]).chain(layers) {
        let blob_digest = descriptor["digest"]
            .as_str()
            .expect("a descriptor's digest");
        let blob = get(
            client,
            &format!("{}/v2/{name}/blobs/{blob_digest}", regapp.url()),
            &[],
        );
        assert_eq!(
            blob.status,
            200,
            "blob {blob_digest} of {name}: {}",
            blob.text()
        );
        assert_eq!(
            layout::sha256_digest(&blob.body),
            blob_digest,
            "blob {blob_digest}'s bytes"
        );
    }
    digest
}

/// `{"errors": [{"code": CODE, ...}]}`, as the distribution spec writes errors.
fn assert_error_code(answer: &Answer, code: &str) {
    let body: Value = serde_json::from_slice(&answer.body)
        .unwrap_or_else(|e| panic!("the error body is not JSON ({e}): {}", answer.text()));
    assert_eq!(body["errors"][0]["code"], code, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "an error message: {body}"
    );
}

/// One client's read of a blob: times since `t0`, what it got.
struct BlobRead {
    status: u16,
    first_byte: Duration,
    done: Duration,
    len: u64,
    sha256: String,
}

/// GETs `url` and reads the body through, hashing it, noting when its first byte came.
fn read_blob(client: &reqwest::blocking::Client, url: &str, t0: Instant) -> BlobRead {
    let mut response = client
        .get(url)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let mut buf = vec![0u8; 1 << 20];
    let mut hasher = Sha256::new();
    let (mut len, mut first_byte) = (0u64, None);
    loop {
        let n = response
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("GET {url}: the body after {len} bytes: {e}"));
        if n == 0 {
            break;
        }
        first_byte.get_or_insert_with(|| t0.elapsed());
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    BlobRead {
        status,
        first_byte: first_byte.unwrap_or_else(|| t0.elapsed()),
        done: t0.elapsed(),
        len,
        sha256: hex::encode(hasher.finalize()),
    }
}

/// A body read until its end or its first error.
struct BodyRead {
    status: u16,
    bytes: Vec<u8>,
    error: Option<String>,
}

fn read_body(client: &reqwest::blocking::Client, url: &str) -> BodyRead {
    let mut response = client
        .get(url)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let mut bytes = Vec::new();
    let error = response
        .read_to_end(&mut bytes)
        .err()
        .map(|e| e.to_string());
    BodyRead {
        status,
        bytes,
        error,
    }
}

/// The value of the sample `name{mirror="hub", labels…}` in regapp's `/metrics`; 0 when absent.
fn metric(regapp: &Regapp, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape_metric(regapp.metrics_port(), name, labels)
}

fn scrape_metric(port: u16, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = reqwest::blocking::get(format!("http://127.0.0.1:{port}/metrics"))
        .and_then(|r| r.text())
        .expect("scrape /metrics");
    let mut wanted: HashMap<&str, &str> = labels.iter().copied().collect();
    wanted.insert("mirror", MIRROR);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (series_name, label_text) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        let found: HashMap<&str, &str> = label_text
            .split(',')
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                Some((k, v.trim_matches('"')))
            })
            .collect();
        if found == wanted {
            return value.parse().expect("a sample value");
        }
    }
    0.0
}

/// Lines of regapp's output containing `needle`.
fn log_lines(regapp: &Regapp, needle: &str) -> usize {
    regapp.log().lines().filter(|l| l.contains(needle)).count()
}

/// regapp's peak resident set (`VmHWM`, KiB), found by its config file's path in `/proc`.
fn vm_hwm_kib(regapp: &Regapp) -> u64 {
    let config = regapp.config();
    let config = config.to_str().expect("UTF-8 temp paths");
    let pid = std::fs::read_dir("/proc")
        .expect("list /proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(config))
        })
        .expect("regapp's process in /proc");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"))
}

/// Where the store keeps a blob's bytes (registry:2's layout).
fn blob_data_path(root: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    root.join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

/// Every path under `dir` whose last component is `name`.
fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name() == name {
            found.push(path.clone());
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(files_named(&path, name));
        }
    }
    found
}

/// Every request the upstream answered, whatever the method.
fn upstream_total(upstream: &Upstream) -> usize {
    // Counting waits for the access log to catch up.
    upstream.requests("GET", "");
    upstream.access_log().len()
}

/// Requests the upstream answered with `status`.
fn status_count(upstream: &Upstream, status: u16) -> usize {
    // Counting waits for the access log to catch up.
    upstream.requests("GET", "");
    upstream
        .access_log()
        .iter()
        .filter(|r| r.status == status)
        .count()
}

/// An image of one plain-tar layer holding `len` bytes of noise, tagged `v1`: the layout, the
/// layer's descriptor and its bytes.
fn noise_image(dir: &Path, len: usize, seed: u64) -> (OciLayout, Descriptor, Vec<u8>) {
    let layout = OciLayout::create(dir);
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
    let tar = builder.into_inner().expect("finish the tar");
    let layer = layout.put_blob(layout::OCI_LAYER_TAR, &tar);
    let config = layout.put_json(
        layout::OCI_CONFIG,
        &json!({
            "architecture": "amd64",
            "os": "linux",
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
    (layout, layer, tar)
}

/// What [`FakeUpstream`] answers one request with (`Content-Length` is the body's; a HEAD
/// gets the head only).
struct Canned {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Canned {
    fn json(status: u16, body: Value) -> Canned {
        Canned {
            status,
            headers: vec![("Content-Type", "application/json".to_owned())],
            body: body.to_string().into_bytes(),
        }
    }
}

type Answerer = dyn Fn(&str, &str) -> Canned + Send + Sync;

/// An upstream registry that answers what the test says, one request per connection,
/// logging `(method, path)` of every request before answering it. Stops on drop.
struct FakeUpstream {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<(String, String)>>>,
    stopping: Arc<AtomicBool>,
}

impl FakeUpstream {
    fn start(answer: impl Fn(&str, &str) -> Canned + Send + Sync + 'static) -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake upstream");
        let addr = listener.local_addr().expect("its address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let answer: Arc<Answerer> = Arc::new(answer);
        {
            let (requests, stopping) = (requests.clone(), stopping.clone());
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (answer, requests) = (answer.clone(), requests.clone());
                    thread::spawn(move || serve_canned(stream, &*answer, &requests));
                }
            });
        }
        FakeUpstream {
            addr,
            requests,
            stopping,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests whose method is `method` (any if empty) and path contains `path_contains`.
    fn requests(&self, method: &str, path_contains: &str) -> usize {
        let requests = self.requests.lock().expect("the request log");
        requests
            .iter()
            .filter(|(m, p)| (method.is_empty() || m == method) && p.contains(path_contains))
            .count()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn serve_canned(stream: TcpStream, answer: &Answerer, requests: &Mutex<Vec<(String, String)>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return;
    };
    let (method, path) = (method.to_owned(), path.to_owned());
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => return,
            Ok(_) if header.trim().is_empty() => break,
            Ok(_) => {}
        }
    }
    requests
        .lock()
        .expect("the request log")
        .push((method.clone(), path.clone()));
    let canned = answer(&method, &path);
    let reason = match canned.status {
        200 => "OK",
        404 => "Not Found",
        429 => "Too Many Requests",
        _ => "Status",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n",
        canned.status,
        canned.body.len()
    );
    for (name, value) in &canned.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = out.write_all(head.as_bytes());
    if method != "HEAD" {
        let _ = out.write_all(&canned.body);
    }
    let _ = out.flush();
}
