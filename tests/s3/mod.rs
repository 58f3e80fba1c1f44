//! What only a bucket can do to the engine: its S3 server going away in the middle of an
//! upload. (The API, skopeo and registry:2 tests run on S3 too: tests/run-all.sh, `compat`.)

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use regapp::registry::api::Api;
use regapp::registry::store::Store;
use regapp::storage::{S3Driver, S3Settings};

use crate::api::{sha256, Engine};
use crate::util::seaweed::{Seaweed, ACCESS_KEY, BUCKET, SECRET_KEY};

/// While the S3 server is down a chunk gets the spec's JSON error with a 5xx and nothing
/// becomes visible; once it is back the same upload goes on from where it was and commits.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_s3_server_fails_a_chunk_cleanly_and_the_upload_resumes() {
    let mut server = tokio::task::spawn_blocking(Seaweed::start).await.unwrap();
    let settings = crate::util::s3_settings(&server, String::new());
    let driver = Arc::new(S3Driver::new(&settings).unwrap());
    let e = Engine {
        api: Api::new(Arc::new(Store::new(driver, Default::default()))),
        _dir: None,
    };
    let content: Vec<u8> = (0..9 * 1024 * 1024 + 5).map(|i| (i % 249) as u8).collect();
    let (head, tail) = content.split_at(9 * 1024 * 1024);
    let digest = sha256(&content);
    let r = e
        .call(Method::POST, "/v2/a/blobs/uploads/", &[], Bytes::new())
        .await;
    let location = r.header("location").to_owned();
    let range = format!("0-{}", head.len() - 1);
    let patch = |body: &[u8], range: &str| {
        let (body, range) = (Bytes::copy_from_slice(body), range.to_owned());
        let (e, location) = (&e, &location);
        async move {
            e.call(Method::PATCH, location, &[("content-range", &range)], body)
                .await
        }
    };
    assert_eq!(patch(head, &range).await.status, StatusCode::ACCEPTED);

    let mut server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .unwrap();
    let tail_range = format!("{}-{}", head.len(), content.len() - 1);
    let r = patch(tail, &tail_range).await;
    assert!(r.status.is_server_error(), "{} {:?}", r.status, r.body);
    assert_eq!(r.error_code(), "UNKNOWN");
    let put = format!("{location}?digest={digest}");
    let r = e.call(Method::PUT, &put, &[], Bytes::new()).await;
    assert!(r.status.is_server_error(), "{}", r.status);

    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    // Its S3 port answers before its volumes are back: a client retries until the upload's
    // status does.
    let started = std::time::Instant::now();
    let status = loop {
        let status = e.get(&location).await;
        if !status.status.is_server_error() || started.elapsed().as_secs() > 30 {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    assert_eq!(status.status, StatusCode::NO_CONTENT, "{:?}", status.body);
    assert_eq!(
        status.header("range"),
        range,
        "the failed chunk added nothing"
    );
    let blob = format!("/v2/a/blobs/{digest}");
    let visible = e.get(&blob).await.status;
    assert_eq!(visible, StatusCode::NOT_FOUND, "nothing visible");
    assert_eq!(patch(tail, &tail_range).await.status, StatusCode::ACCEPTED);
    let r = e.call(Method::PUT, &put, &[], Bytes::new()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert!(e.get(&blob).await.body == content, "the blob differs");
    drop(server);
}

/// A bucket regapp cannot use stops `serve` at start with the bucket's location and what S3
/// answered, not at the first push: a dead endpoint, then wrong credentials.
#[test]
fn an_unusable_bucket_is_a_clear_error_at_start() {
    let server = Seaweed::shared();
    let dir = tempfile::tempdir().unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let credentials = dir.path().join("creds");
    for (endpoint, secret, expect) in [
        (
            format!("http://127.0.0.1:{dead_port}"),
            SECRET_KEY,
            "Connection refused",
        ),
        (server.endpoint(), "wrong", "SignatureDoesNotMatch"),
    ] {
        std::fs::write(
            &credentials,
            format!(
                "[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {secret}\n"
            ),
        )
        .unwrap();
        let config = dir.path().join("regapp.toml");
        std::fs::write(
            &config,
            format!(
                "[storage]\nroot = {:?}\nbackend = \"s3\"\n[storage.s3]\nbucket = \"{BUCKET}\"\n\
                 endpoint = \"{endpoint}\"\ncredentials_file = {credentials:?}\n\
                 [engine]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
                dir.path().join("state")
            ),
        )
        .unwrap();
        let stderr = crate::util::regapp_fails("serve", &config);
        assert!(
            stderr.contains(&format!("storage {endpoint}/{BUCKET}")) && stderr.contains(expect),
            "{stderr}"
        );
    }
}

/// A collection over a bucket: an untagged image's manifest and layer go, the tagged image
/// stays whole and pullable.
#[tokio::test(flavor = "multi_thread")]
async fn a_collection_in_a_bucket_removes_only_what_nothing_keeps() {
    use regapp::registry::gc::{GcPolicy, RunOptions};

    let e = tokio::task::spawn_blocking(Engine::on_s3).await.unwrap();
    let (kept, _) = e.push_image("a", "v1", b"kept layer").await;
    let (gone, _) = e.push_image("a", "v2", b"gone layer").await;
    let r = e
        .call(Method::DELETE, "/v2/a/manifests/v2", &[], Bytes::new())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);

    let (collector, _state) = collector_of(&e, GcPolicy::default(), std::time::Duration::ZERO);
    let options = RunOptions {
        dry_run: false,
        delete_untagged: true,
    };
    let report = collector.run_once(options).await.unwrap();
    assert_eq!(
        (report.manifests_removed, report.blobs_removed),
        (1, 2),
        "the untagged manifest and its layer: {report:?}"
    );
    let layer = |content: &[u8]| format!("/v2/a/blobs/{}", sha256(content));
    assert_eq!(
        e.get(&layer(b"gone layer")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        e.get(&format!("/v2/a/manifests/{gone}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(e.get(&layer(b"kept layer")).await.body, "kept layer");
    assert_eq!(
        e.get("/v2/a/manifests/v1")
            .await
            .header("docker-content-digest"),
        kept
    );
}

/// Retention on a bucket: tags are ordered by their links' LastModified (whole seconds on S3,
/// hence the pauses), the newest stays and the older ones go with what only they held; `du`
/// counts what is left.
#[tokio::test(flavor = "multi_thread")]
async fn retention_in_a_bucket_keeps_the_newest_tags_and_du_counts_what_stays() {
    use regapp::auth::access::RepoGlob;
    use regapp::registry::gc::{GcPolicy, RetentionRule, RunOptions};

    let e = tokio::task::spawn_blocking(Engine::on_s3).await.unwrap();
    for tag in ["n1", "n2", "n3"] {
        e.push_image("ci/app", tag, format!("layer of {tag}").as_bytes())
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    let rule = RetentionRule::new(RepoGlob::parse("ci/**").unwrap(), Some(1), None, None);
    let policy = GcPolicy {
        retention: vec![rule],
        ..GcPolicy::default()
    };
    let (collector, _state) = collector_of(&e, policy, std::time::Duration::ZERO);
    let report = collector.run_once(RunOptions::default()).await.unwrap();
    let mut removed: Vec<_> = report.tags_removed.iter().map(|(_, t)| t.clone()).collect();
    removed.sort();
    assert_eq!(removed, ["n1", "n2"], "{report:?}");
    let tags = e.get("/v2/ci/app/tags/list").await.json();
    assert_eq!(tags["tags"], serde_json::json!(["n3"]));
    let layer = |tag: &str| {
        format!(
            "/v2/ci/app/blobs/{}",
            sha256(format!("layer of {tag}").as_bytes())
        )
    };
    assert_eq!(e.get(&layer("n1")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(e.get(&layer("n3")).await.body, "layer of n3");

    let usage = collector.usage().await.unwrap();
    let app = &usage.repositories["ci/app"];
    assert_eq!(
        (usage.total_blobs, app.blobs),
        (3, 3),
        "n3's manifest, config and layer: {usage:?}"
    );
    assert_eq!(app.referenced_bytes, usage.total_bytes, "{usage:?}");
}

/// With `redirect`, a blob GET answers 307 to a presigned URL of the bucket that serves the
/// bytes to a client without credentials; HEAD and manifests are still answered by regapp.
#[tokio::test(flavor = "multi_thread")]
async fn with_redirect_a_blob_get_goes_to_the_bucket() {
    let server = tokio::task::spawn_blocking(Seaweed::shared).await.unwrap();
    let settings = S3Settings {
        redirect: true,
        ..crate::util::s3_settings(server, server.fresh_prefix())
    };
    let driver = Arc::new(S3Driver::new(&settings).unwrap());
    let e = Engine {
        api: Api::new(Arc::new(Store::new(driver, Default::default()))),
        _dir: None,
    };
    let (manifest, _) = e.push_image("a", "v1", b"layer bytes").await;
    let blob = format!("/v2/a/blobs/{}", sha256(b"layer bytes"));
    let r = e.get(&blob).await;
    assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT);
    let url = r.header("location").to_owned();
    assert!(url.starts_with(&server.endpoint()), "{url}");
    assert!(url.contains("X-Amz-Expires=1200"), "20 minutes: {url}");
    let fetched = reqwest::get(&url).await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.bytes().await.unwrap(), "layer bytes");
    let head = e.call(Method::HEAD, &blob, &[], Bytes::new()).await;
    assert_eq!(head.status, StatusCode::OK);
    let r = e.get("/v2/a/manifests/v1").await;
    assert_eq!(r.header("docker-content-digest"), manifest);
}

/// An upload's state is in the bucket, not in a process: three engines on one prefix take
/// turns at one upload (POST on one, PATCHes and status on each, PUT on another) and every one
/// serves the blob whole.
#[tokio::test(flavor = "multi_thread")]
async fn an_upload_goes_on_across_engines_sharing_a_bucket() {
    let engines = tokio::task::spawn_blocking(|| engines_on_one_prefix(3))
        .await
        .unwrap();
    let content: Vec<u8> = (0..13 * 1024 * 1024 + 3).map(|i| (i % 241) as u8).collect();
    let digest = sha256(&content);
    let r = engines[0]
        .call(Method::POST, "/v2/a/blobs/uploads/", &[], Bytes::new())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let location = r.header("location").to_owned();
    let mut at = 0;
    for (node, len) in [
        (1, 6 * 1024 * 1024),
        (2, 3 * 1024 * 1024),
        (0, 4 * 1024 * 1024),
    ] {
        let status = engines[(node + 1) % 3].get(&location).await;
        assert_eq!(status.status, StatusCode::NO_CONTENT);
        let range = if at == 0 {
            "0-0".to_owned()
        } else {
            format!("0-{}", at - 1)
        };
        assert_eq!(status.header("range"), range, "the status on any engine");
        let chunk = Bytes::copy_from_slice(&content[at..at + len]);
        let range = format!("{at}-{}", at + len - 1);
        let r = engines[node]
            .call(
                Method::PATCH,
                &location,
                &[("content-range", &range)],
                chunk,
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
        at += len;
    }
    let put = format!("{location}?digest={digest}");
    let rest = Bytes::copy_from_slice(&content[at..]);
    let r = engines[1].call(Method::PUT, &put, &[], rest).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    for e in &engines {
        assert!(e.get(&format!("/v2/a/blobs/{digest}")).await.body == content);
    }
}

/// `/readyz` writes into the bucket: not ready, naming the bucket, while its S3 server is
/// down; ready again once it is back, with no restart.
#[test]
fn readyz_follows_the_bucket() {
    use crate::ops::get;
    use crate::util::{eventually, Regapp};
    use std::time::Duration;

    let mut server = Seaweed::start();
    let state = tempfile::tempdir().unwrap();
    let regapp = Regapp::start_on_s3_server(state.path(), &server, "ready", "");
    let port = regapp.metrics_port();
    eventually(Duration::from_secs(10), "ready at start", || {
        get(port, "/readyz").0 == 200
    });
    assert!(get(port, "/readyz").1.contains("storage: ok"));

    server.stop();
    let (status, body) = get(port, "/readyz");
    assert_eq!(status, 503, "{body}");
    let bucket = format!("storage: FAIL: {}/{BUCKET}", server.endpoint());
    assert!(body.contains(&bucket), "{body}");
    assert_eq!(get(port, "/healthz").0, 200, "still alive");

    server.restart();
    eventually(
        Duration::from_secs(60),
        "ready once the bucket is back",
        || get(port, "/readyz").0 == 200,
    );
}

/// `n` engines (nodes, as far as the store can tell) on one fresh prefix of the shared bucket,
/// with S3's smallest parts.
fn engines_on_one_prefix(n: usize) -> Vec<Engine> {
    let server = Seaweed::shared();
    let settings = S3Settings {
        part_size: regapp::storage::s3::MIN_PART_SIZE,
        ..crate::util::s3_settings(server, server.fresh_prefix())
    };
    (0..n)
        .map(|_| Engine {
            api: Api::new(Arc::new(Store::new(
                Arc::new(S3Driver::new(&settings).unwrap()),
                Default::default(),
            ))),
            _dir: None,
        })
        .collect()
}

/// What one node writes another reads on the next request (a tag, a deletion), and a new
/// repository is in every node's catalog within 2 s, though each had listed its catalog
/// before.
#[tokio::test(flavor = "multi_thread")]
async fn nodes_on_one_bucket_read_each_others_writes() {
    let engines = tokio::task::spawn_blocking(|| engines_on_one_prefix(2))
        .await
        .unwrap();
    let (a, b) = (&engines[0], &engines[1]);
    for e in &engines {
        assert_eq!(
            e.get("/v2/_catalog").await.json()["repositories"],
            serde_json::json!([])
        );
    }
    let (digest, manifest) = a.push_image("team/app", "v1", b"layer").await;
    let pushed = std::time::Instant::now();
    let r = b.get("/v2/team/app/manifests/v1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body == manifest);

    let listed = loop {
        let catalog = b.get("/v2/_catalog").await.json();
        if catalog["repositories"] == serde_json::json!(["team/app"]) {
            break pushed.elapsed();
        }
        assert!(
            pushed.elapsed() < std::time::Duration::from_secs(5),
            "{catalog}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(
        listed <= std::time::Duration::from_millis(2500),
        "listed after {listed:?}"
    );

    let r = a
        .call(
            Method::DELETE,
            &format!("/v2/team/app/manifests/{digest}"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        b.get("/v2/team/app/manifests/v1").await.status,
        StatusCode::NOT_FOUND
    );
    let by_digest = format!("/v2/team/app/manifests/{digest}");
    assert_eq!(b.get(&by_digest).await.status, StatusCode::NOT_FOUND);
}

/// A push on one node never loses a blob to a collection on another (grace 0): node A pushes
/// images that reuse a layer, skipping its upload when a HEAD finds it, and deletes every
/// image but each third before the next push, so the reused layer is garbage between pushes;
/// node B collects meanwhile, again and again. A push that finds a blob gone fails cleanly and
/// is retried as a client would; afterwards every kept image pulls whole from B.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_collection_on_one_node_never_takes_a_blob_from_a_push_on_another() {
    use regapp::registry::gc::{GcPolicy, RunOptions};
    use std::sync::atomic::{AtomicBool, Ordering};

    let engines = tokio::task::spawn_blocking(|| engines_on_one_prefix(2))
        .await
        .unwrap();
    let (a, b) = (&engines[0], &engines[1]);
    // The default skew (10 s): with none, pushes here would starve (every blob collected
    // between its upload and its manifest), which is grace 0 working, not a lost blob.
    let policy = GcPolicy::default();
    let skew = policy.clock_skew;
    let (collector, _state) = collector_of(b, policy, skew);
    let done = AtomicBool::new(false);

    let shared: &[u8] = b"the layer every image reuses";
    let config = b"{}";
    let pushes = async {
        let mut kept = Vec::new();
        for i in 0..30 {
            let unique = format!("layer {i}").into_bytes();
            let manifest = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": crate::api::OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": sha256(config), "size": config.len()},
                "layers": [
                    {"mediaType": "application/vnd.oci.image.layer.v1.tar",
                     "digest": sha256(shared), "size": shared.len()},
                    {"mediaType": "application/vnd.oci.image.layer.v1.tar",
                     "digest": sha256(&unique), "size": unique.len()},
                ],
            }))
            .unwrap();
            let tag = format!("/v2/app/manifests/v{i}");
            let mut attempts = 0;
            let digest = loop {
                attempts += 1;
                assert!(attempts < 20, "v{i} never went in");
                // As a client does: upload what a HEAD does not find, then the manifest.
                for blob in [&config[..], shared, &unique] {
                    let head = format!("/v2/app/blobs/{}", sha256(blob));
                    if a.call(Method::HEAD, &head, &[], Bytes::new()).await.status != StatusCode::OK
                    {
                        a.push_blob("app", blob).await;
                    }
                }
                let r = a
                    .call(
                        Method::PUT,
                        &tag,
                        &[("content-type", crate::api::OCI_MANIFEST)],
                        manifest.clone(),
                    )
                    .await;
                match r.status {
                    StatusCode::CREATED => break r.header("docker-content-digest").to_owned(),
                    _ => assert_eq!(r.error_code(), "MANIFEST_BLOB_UNKNOWN", "{:?}", r.body),
                }
            };
            if i % 3 == 0 {
                kept.push((i, unique));
            } else {
                let r = a
                    .call(
                        Method::DELETE,
                        &format!("/v2/app/manifests/{digest}"),
                        &[],
                        Bytes::new(),
                    )
                    .await;
                assert_eq!(r.status, StatusCode::ACCEPTED);
            }
        }
        done.store(true, Ordering::SeqCst);
        kept
    };
    let collections = async {
        let (mut runs, mut failed) = (0, Vec::new());
        while !done.load(Ordering::SeqCst) {
            if let Err(e) = collector.run_once(RunOptions::default()).await {
                failed.push(e.to_string());
            }
            runs += 1;
        }
        (runs, failed)
    };
    let (kept, (runs, failed)) = tokio::join!(pushes, collections);
    // A collection may fail on a busy store (the next one goes on); what counts is that
    // collections ran and no kept image lost a blob.
    eprintln!("{runs} collections, failed: {failed:?}");
    assert!(
        runs > failed.len() + 1,
        "{runs} collections, failed: {failed:?}"
    );
    for (i, unique) in kept {
        let r = b.get(&format!("/v2/app/manifests/v{i}")).await;
        assert_eq!(r.status, StatusCode::OK, "v{i}");
        for blob in [&config[..], shared, &unique] {
            let r = b.get(&format!("/v2/app/blobs/{}", sha256(blob))).await;
            assert!(
                r.status == StatusCode::OK && r.body == blob,
                "v{i}: a blob is gone"
            );
        }
    }
}

/// A collector over `e`'s store deleting in place, with `policy` at grace 0 and `clock_skew`
/// (zero: one machine, one clock). Its state directory goes with it.
fn collector_of(
    e: &Engine,
    policy: regapp::registry::gc::GcPolicy,
    clock_skew: std::time::Duration,
) -> (regapp::registry::gc::Collector, tempfile::TempDir) {
    use regapp::registry::gc::{Collector, GcPolicy, InPlace};
    let state = tempfile::tempdir().unwrap();
    let store = e.api.store().clone();
    let disposal = Arc::new(InPlace(store.driver().clone()));
    let policy = GcPolicy {
        grace: std::time::Duration::ZERO,
        clock_skew,
        ..policy
    };
    (Collector::new(store, disposal, policy, state.path()), state)
}
