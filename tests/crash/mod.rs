//! `kill -9` during pushes: whatever moment the process dies, the store holds no corrupt or
//! half-visible blob, manifest, link or tag, and an upload session survives the restart.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use reqwest::blocking::{Body, Client};
use sha2::{Digest as _, Sha256};

use crate::util::{Regapp, Registry};

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a plain-HTTP client builds")
}

/// Deterministic bytes that differ per `seed`.
fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
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
    let root = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for round in 0..6u64 {
        let mut regapp = Regapp::start(root.path());
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
        let visible = assert_store_consistent(root.path());
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
    let root = tempfile::tempdir().unwrap();
    let data = content(7, 3 * 1024 * 1024);
    let (first, rest) = data.split_at(1024 * 1024 + 17);
    let http = client();
    let mut regapp = Regapp::start(root.path());
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

    let regapp = Regapp::start(root.path());
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

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if !path.to_string_lossy().ends_with(".tmp") {
                out.push(path);
            }
        }
    }
    out
}

fn link_target(link: &Path) -> String {
    let text = std::fs::read_to_string(link).unwrap();
    let hex = text
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("{link:?} holds {text:?}"));
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{link:?} holds {text:?}"
    );
    text
}

/// Checks every visible file of the layout; returns how many it checked.
fn assert_store_consistent(root: &Path) -> usize {
    let v2 = root.join("docker/registry/v2");
    let blob = |digest: &str| {
        v2.join(format!(
            "blobs/sha256/{}/{}/data",
            &digest[7..9],
            &digest[7..]
        ))
    };
    let mut checked = 0;
    for path in files(&v2.join("blobs")) {
        let hex = path
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            sha256(&bytes),
            format!("sha256:{hex}"),
            "{path:?} is corrupt"
        );
        checked += 1;
    }
    for path in files(&v2.join("repositories")) {
        let p = path.to_string_lossy().into_owned();
        if p.contains("/_uploads/") {
            continue;
        }
        let target = link_target(&path);
        assert!(
            blob(&target).exists(),
            "{p} points at a missing blob {target}"
        );
        if p.contains("/_layers/") || p.contains("/_manifests/revisions/") {
            let dir_hex = path
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap();
            assert_eq!(&target[7..], dir_hex, "{p} names another digest");
        }
        if p.ends_with("/current/link") {
            let repo = p
                .split("/repositories/")
                .nth(1)
                .unwrap()
                .split("/_manifests/")
                .next()
                .unwrap();
            let repo_dir = v2.join("repositories").join(repo);
            let revision =
                repo_dir.join(format!("_manifests/revisions/sha256/{}/link", &target[7..]));
            assert!(
                revision.exists(),
                "tag {p} points at a manifest that is not in the repository"
            );
            let manifest: serde_json::Value =
                serde_json::from_slice(&std::fs::read(blob(&target)).unwrap()).unwrap();
            let config = manifest["config"]["digest"].as_str().unwrap().to_owned();
            let layers = manifest["layers"].as_array().unwrap().iter();
            for digest in layers
                .map(|l| l["digest"].as_str().unwrap().to_owned())
                .chain([config])
            {
                let link = repo_dir.join(format!("_layers/sha256/{}/link", &digest[7..]));
                assert!(
                    link.exists(),
                    "tag {p} needs {digest}, which the repository lacks"
                );
            }
        }
        checked += 1;
    }
    checked
}
