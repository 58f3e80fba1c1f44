//! `kill -9` during pushes: whatever moment the process dies, the store holds no corrupt or
//! half-visible blob, manifest, link or tag, and an upload session survives the restart; on
//! disk and in a bucket (the store is read back through regapp's own drivers).

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use reqwest::blocking::{Body, Client};
use sha2::{Digest as _, Sha256};

use regapp::storage::{FsDriver, S3Driver, StorageDriver};

use crate::util::seaweed::Seaweed;
use crate::util::{Regapp, Registry};

/// Where the regapp of a crash test keeps its registry.
enum Backend {
    Disk,
    /// A prefix of the bucket of the test process's SeaweedFS.
    S3(String),
}

impl Backend {
    fn s3() -> Backend {
        Backend::S3(Seaweed::shared().fresh_prefix())
    }

    /// Starts regapp on this store (`root`: its storage root or, with S3, its state).
    fn start(&self, root: &Path) -> Regapp {
        match self {
            Backend::Disk => Regapp::start(root),
            Backend::S3(prefix) => Regapp::start_on_s3_prefix(root, prefix),
        }
    }

    /// The store as regapp's own driver reads it.
    fn driver(&self, root: &Path) -> Arc<dyn StorageDriver> {
        match self {
            Backend::Disk => Arc::new(FsDriver::new(root)),
            Backend::S3(prefix) => {
                let settings = crate::util::s3_settings(Seaweed::shared(), prefix.clone());
                Arc::new(S3Driver::new(&settings).expect("an S3 driver"))
            }
        }
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a plain-HTTP client builds")
}

fn content(seed: u64, len: usize) -> Vec<u8> {
    crate::util::noise(len, seed)
}

/// A request body that trickles out in small reads, so a kill lands mid-upload.
struct Trickle {
    data: Vec<u8>,
    at: usize,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(64 * 1024).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        if n > 0 {
            thread::sleep(Duration::from_millis(1));
        }
        Ok(n)
    }
}

/// Pushes images in a loop (chunked layer uploads, monolithic configs, tagged manifests) until
/// a request fails, which it does once the server is killed.
fn push_until_it_fails(base: String, seed: u64, stop: Arc<AtomicBool>, pushed: Arc<AtomicUsize>) {
    let http = client();
    let repo = format!("crash/r{}", seed % 3);
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let layer = content(seed * 1000 + i, 4 * 1024 * 1024 + i as usize);
        let config = content(seed * 1000 + i + 500, 300);
        let (layer_digest, config_digest) = (sha256(&layer), sha256(&config));
        let Ok(r) = http.post(format!("{base}/v2/{repo}/blobs/uploads/")).send() else {
            return;
        };
        let Some(location) = r.headers().get("location").and_then(|l| l.to_str().ok()) else {
            return;
        };
        let location = format!("{base}{location}");
        let size = layer.len() as u64;
        let body = Body::sized(Trickle { data: layer, at: 0 }, size);
        if http.patch(&location).body(body).send().is_err() {
            return;
        }
        let sent = http.put(format!("{location}?digest={layer_digest}")).send();
        let sent = sent.and_then(|_| {
            http.post(format!(
                "{base}/v2/{repo}/blobs/uploads/?digest={config_digest}"
            ))
            .body(config.clone())
            .send()
        });
        if sent.is_err() {
            return;
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": size}],
        });
        let put = http
            .put(format!("{base}/v2/{repo}/manifests/t{}", i % 4))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.to_string())
            .send();
        if put.is_err() {
            return;
        }
        pushed.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn kill_9_at_any_moment_of_a_push_leaves_a_consistent_store() {
    kill_9_during_pushes(&Backend::Disk, 6);
}

#[test]
fn kill_9_at_any_moment_of_a_push_leaves_a_consistent_bucket() {
    kill_9_during_pushes(&Backend::s3(), 4);
}

fn kill_9_during_pushes(backend: &Backend, rounds: u64) {
    let root = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for round in 0..rounds {
        let mut regapp = backend.start(root.path());
        let stop = Arc::new(AtomicBool::new(false));
        let pushed = Arc::new(AtomicUsize::new(0));
        let pushers: Vec<_> = (0..3)
            .map(|k| {
                let (base, stop, pushed) = (regapp.url(), stop.clone(), pushed.clone());
                thread::spawn(move || push_until_it_fails(base, round * 10 + k, stop, pushed))
            })
            .collect();
        // Each round dies at another moment: after `round` completed images (however slow the
        // machine is), plus a different fraction of the next push.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while pushed.load(Ordering::Relaxed) < round as usize
            && std::time::Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(10));
        }
        thread::sleep(Duration::from_millis(40 + 61 * round));
        regapp.kill_hard();
        stop.store(true, Ordering::Relaxed);
        for p in pushers {
            p.join().unwrap();
        }
        let visible = assert_store_consistent(backend.driver(root.path()));
        eprintln!("round {round}: {visible} visible files checked after kill -9");
        checked += visible;
    }
    assert!(
        checked > 0,
        "the pushes never got far enough to test anything"
    );
}

#[test]
fn an_upload_session_survives_kill_9_and_restart() {
    upload_survives_kill_9(&Backend::Disk, 1024 * 1024 + 17);
}

/// In a bucket, with a first chunk over a part: its bytes cannot be read back, the restarted
/// process continues from the hash state stored with the upload.
#[test]
fn an_upload_session_in_a_bucket_survives_kill_9_and_restart() {
    upload_survives_kill_9(&Backend::s3(), 9 * 1024 * 1024 + 17);
}

fn upload_survives_kill_9(backend: &Backend, first_chunk: usize) {
    let root = tempfile::tempdir().unwrap();
    let data = content(7, first_chunk + 2 * 1024 * 1024);
    let (first, rest) = data.split_at(first_chunk);
    let http = client();
    let mut regapp = backend.start(root.path());
    let r = http
        .post(format!("{}/v2/s/blobs/uploads/", regapp.url()))
        .send()
        .unwrap();
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let r = http
        .patch(format!("{}{location}", regapp.url()))
        .header("content-range", format!("0-{}", first.len() - 1))
        .body(first.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    regapp.kill_hard();

    let regapp = backend.start(root.path());
    let url = format!("{}{location}", regapp.url());
    let r = http.get(&url).send().unwrap();
    assert_eq!(
        r.status(),
        204,
        "the old Location still works after a restart"
    );
    assert_eq!(
        r.headers()["range"],
        format!("0-{}", first.len() - 1).as_str()
    );
    let r = http
        .patch(&url)
        .header(
            "content-range",
            format!("{}-{}", first.len(), data.len() - 1),
        )
        .body(rest.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let digest = sha256(&data);
    let r = http.put(format!("{url}?digest={digest}")).send().unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap_or_default());
    let pulled = http
        .get(format!("{}/v2/s/blobs/{digest}", regapp.url()))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert!(pulled == data, "the resumed blob reads back byte-identical");
}

/// Every key below `prefix`, through the driver (an unfinished write's state is not one).
async fn keys_under(driver: &dyn StorageDriver, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![prefix.to_owned()];
    while let Some(dir) = pending.pop() {
        for name in driver.list(&dir).await.unwrap_or_default() {
            let key = format!("{dir}/{name}");
            match driver.stat(&key).await {
                Ok(info) if info.is_dir => pending.push(key),
                Ok(_) => out.push(key),
                // An emptied folder SeaweedFS still lists (S3 has none).
                Err(e) if e.is_not_found() => {}
                Err(e) => panic!("{key} is listed but: {e}"),
            }
        }
    }
    out
}

fn link_target(key: &str, text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text).into_owned();
    let hex = text
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("{key} holds {text:?}"));
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{key} holds {text:?}"
    );
    text
}

/// Checks every visible object of the layout; returns how many it checked.
fn assert_store_consistent(driver: Arc<dyn StorageDriver>) -> usize {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(check_store(driver.as_ref()))
}

async fn check_store(driver: &dyn StorageDriver) -> usize {
    let v2 = "docker/registry/v2";
    let blob = |digest: &str| format!("{v2}/blobs/sha256/{}/{}/data", &digest[7..9], &digest[7..]);
    let exists = |key: String| async move { driver.stat(&key).await.is_ok() };
    let mut checked = 0;
    for key in keys_under(driver, &format!("{v2}/blobs")).await {
        let hex = key.rsplit('/').nth(1).unwrap();
        let bytes = driver.get(&key).await.unwrap();
        assert_eq!(sha256(&bytes), format!("sha256:{hex}"), "{key} is corrupt");
        checked += 1;
    }
    for key in keys_under(driver, &format!("{v2}/repositories")).await {
        if key.contains("/_uploads/") {
            continue;
        }
        let target = link_target(&key, &driver.get(&key).await.unwrap());
        assert!(
            exists(blob(&target)).await,
            "{key} points at a missing blob {target}"
        );
        if key.contains("/_layers/") || key.contains("/_manifests/revisions/") {
            let dir_hex = key.rsplit('/').nth(1).unwrap();
            assert_eq!(&target[7..], dir_hex, "{key} names another digest");
        }
        if key.ends_with("/current/link") {
            let repo = key
                .split("/repositories/")
                .nth(1)
                .unwrap()
                .split("/_manifests/")
                .next()
                .unwrap();
            let repo_dir = format!("{v2}/repositories/{repo}");
            let revision = format!(
                "{repo_dir}/_manifests/revisions/sha256/{}/link",
                &target[7..]
            );
            assert!(
                exists(revision).await,
                "tag {key} points at a manifest that is not in the repository"
            );
            let manifest: serde_json::Value =
                serde_json::from_slice(&driver.get(&blob(&target)).await.unwrap()).unwrap();
            let config = manifest["config"]["digest"].as_str().unwrap().to_owned();
            let layers = manifest["layers"].as_array().unwrap().iter();
            for digest in layers
                .map(|l| l["digest"].as_str().unwrap().to_owned())
                .chain([config])
            {
                let link = format!("{repo_dir}/_layers/sha256/{}/link", &digest[7..]);
                assert!(
                    exists(link).await,
                    "tag {key} needs {digest}, which the repository lacks"
                );
            }
        }
        checked += 1;
    }
    checked
}
