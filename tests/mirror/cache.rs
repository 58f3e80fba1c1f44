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

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::fake_upstream::{Canned, FakeUpstream};
use super::support::{
    assert_error_code, client, get, get_manifest, header, hits, log_lines, metric, misses,
    prefixed_mirror_table, pull, read_blob, read_body, scrape_metric, sleep_until, upstream_errors,
    BlobRead, MIRROR,
};
use crate::util::images::{big_layer_image, noise_tar, one_layer_image, small_image};
use crate::util::layout::{self, OciLayout};
use crate::util::store::{blob_data_path, files_named};
use crate::util::upstream::Upstream;
use crate::util::{eventually, noise, Regapp, Registry};

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
    let regapp = start_mirroring(&root, &upstream.url(), "2s");
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
    assert_eq!(misses(&regapp, "blob"), 1.0);
    assert_eq!(
        hits(&regapp, "blob"),
        CLIENTS as f64,
        "15 clients joined the fetch, the 17th found the store"
    );
    let peak = crate::edge::peak_rss_kib(regapp.pid());
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
    let tar = noise_tar(4 * 1024 * 1024, 7);
    let noisy = one_layer_image(&work.path().join("image"), &tar, &[]);
    let layer = noisy.layer;
    upstream.push(&noisy.image.reference(), "library/noise:v1");
    let root = work.path().join("regapp");
    let regapp = start_mirroring(&root, &upstream.url(), "2s");
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
    assert_eq!(misses(&regapp, "blob"), 1.0);

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
    let regapp = start_mirroring(&work.path().join("regapp"), &upstream.url(), "1s");
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
    assert_eq!(upstream_errors(&regapp, "unreachable"), 1.0);

    let missing = get_manifest(&client, &regapp, "dockerhub/library/other", "1");
    assert_eq!(missing.status, 503, "{}", missing.text());
    assert_error_code(&missing, "UNAVAILABLE");
    assert_eq!(upstream_errors(&regapp, "unreachable"), 2.0);
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

/// Protects `tag_ttl`: a tag first fetched with one GET (nothing to confirm), moved upstream,
/// is not seen (nor asked) within it, is seen after it with one HEAD and one GET of the new
/// manifest, and manifests by digest, old and new,
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
    let regapp = start_mirroring(&work.path().join("regapp"), &upstream.url(), "2s");
    let client = client();
    let tag_path = "/v2/library/app/manifests/v";

    let pulled_at = Instant::now();
    assert_eq!(
        pull(&client, &regapp, "dockerhub/library/app", "v"),
        digest_a
    );
    // Nothing cached to confirm: one GET, no HEAD first.
    assert_eq!(upstream.requests("HEAD", tag_path), 0);
    assert_eq!(upstream.requests("GET", tag_path), 1);

    // Move the tag upstream: one PUT of B's manifest (its blobs are there already).
    let moved = client
        .put(format!("{}{tag_path}", upstream.url()))
        .header("content-type", layout::OCI_MANIFEST)
        .body(b.top_bytes())
        .send()
        .expect("PUT the manifest upstream");
    assert_eq!(moved.status(), 201);
    let before = upstream.total_requests();
    let within = get_manifest(&client, &regapp, "dockerhub/library/app", "v");
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
        upstream.total_requests(),
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
        1,
        "one HEAD to confirm the tag"
    );
    assert_eq!(
        upstream.requests("GET", tag_path),
        2,
        "one GET of the new manifest"
    );

    let before = upstream.total_requests();
    for (digest, bytes) in [(&digest_a, a.top_bytes()), (&digest_b, b.top_bytes())] {
        let by_digest = get_manifest(&client, &regapp, "dockerhub/library/app", digest);
        assert_eq!(by_digest.status, 200);
        assert!(by_digest.body == bytes, "{digest}: the manifest's bytes");
        assert_eq!(by_digest.digest(), *digest);
    }
    let confirmed = get_manifest(&client, &regapp, "dockerhub/library/app", "v");
    assert_eq!(
        confirmed.digest(),
        digest_b,
        "the tag, confirmed, within its new TTL"
    );
    assert_eq!(
        upstream.total_requests(),
        before,
        "digests (and a tag within its TTL) are served without asking upstream"
    );
    assert_eq!(misses(&regapp, "manifest"), 2.0);
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
    let regapp = start_mirroring(&work.path().join("regapp"), &fake.url(), "1s");
    let client = client();
    let pulled_at = Instant::now();
    assert_eq!(
        pull(&client, &regapp, "dockerhub/library/app", "v1"),
        image.top.digest
    );

    limited.store(true, Ordering::SeqCst);
    let served = fake.requests("", "");
    let refused = get_manifest(&client, &regapp, "dockerhub/library/other", "1");
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_error_code(&refused, "TOOMANYREQUESTS");
    assert_eq!(header(&refused.headers, "retry-after"), "30");
    assert_eq!(
        fake.requests("", ""),
        served + 1,
        "regapp asked once and was refused"
    );
    assert_eq!(upstream_errors(&regapp, "rate_limited"), 1.0);

    let again = get_manifest(&client, &regapp, "dockerhub/library/other", "1");
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
        upstream_errors(&regapp, "rate_limited"),
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
    let regapp = start_mirroring(&work.path().join("regapp"), &upstream.url(), "2s");
    let client = client();
    let issued_before = issuer.requests().len();
    let denied_before = upstream.total_with_status(401);

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
        upstream.total_with_status(401),
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
        upstream.total_with_status(401),
        denied_before + 1,
        "the scheme is known: no second challenge"
    );
    eprintln!(
        "tokens: 3 pulls of library/busybox and 1 of library/alpine took {} tokens; {} upstream 401",
        asked.len(),
        upstream.total_with_status(401) - denied_before
    );
}

/// Protects the authenticated token flow (Docker Hub with `username`): a private upstream
/// refuses regapp without credentials (the client gets 404 `NAME_UNKNOWN`, as Docker Hub's
/// refusal reads), and with `username` and `password_file` regapp gets its token with Basic
/// credentials (`account=` the user) and pulls.
#[test]
fn a_private_token_upstream_is_pulled_with_the_mirrors_credentials() {
    let work = tempfile::tempdir().expect("create a scratch dir");
    let upstream = Upstream::token_auth();
    let issuer = upstream
        .token_issuer()
        .expect("a token upstream has an issuer");
    let image = small_image(&work.path().join("private"), "private");
    let digest = upstream.push(&image.reference(), "team/private:1");
    issuer.set_anonymous_pull(false);
    let client = client();

    let anonymous = start_mirroring(&work.path().join("anonymous"), &upstream.url(), "1m");
    let refused = get_manifest(&client, &anonymous, "dockerhub/team/private", "1");
    assert_eq!(refused.status, 404, "a refused repository reads as unknown");
    assert_error_code(&refused, "NAME_UNKNOWN");
    drop(anonymous);

    let (user, password) = issuer.credentials();
    let password_file = work.path().join("upstream-password");
    std::fs::write(&password_file, format!("{password}\n")).expect("write the password file");
    let mirror = prefixed_mirror_table(
        MIRROR,
        "dockerhub",
        &upstream.url(),
        &format!("username = {user:?}\npassword_file = {password_file:?}\n"),
    );
    let regapp = Regapp::start_with(&work.path().join("with-credentials"), &mirror);
    let issued_before = issuer.requests().len();
    assert_eq!(
        pull(&client, &regapp, "dockerhub/team/private", "1"),
        digest
    );
    let asked: Vec<_> = issuer.requests()[issued_before..].to_vec();
    assert_eq!(asked.len(), 1, "one token for the repository: {asked:?}");
    assert_eq!(asked[0].user.as_deref(), Some(user.as_str()));
    assert_eq!(asked[0].scopes, ["repository:team/private:pull"]);
    assert_eq!(asked[0].status, 200);
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
    let regapp = start_mirroring(&root, &fake.url(), "2s");
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
    assert_eq!(misses(&regapp, "blob"), 2.0);
    assert_eq!(hits(&regapp, "blob"), 0.0);
}

/// regapp on `root` with the mirror these tests use: `dockerhub/<name>` is `<name>` of `url`.
fn start_mirroring(root: &Path, url: &str, tag_ttl: &str) -> Regapp {
    let mirror = prefixed_mirror_table(
        MIRROR,
        "dockerhub",
        url,
        &format!(
            "namespace = \"docker.io\"\ndefault = false\ntag_ttl = \"{tag_ttl}\"\n\
             max_concurrent = 8\n"
        ),
    );
    Regapp::start_with(root, &mirror)
}
