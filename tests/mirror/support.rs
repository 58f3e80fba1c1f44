//! What the mirror tests share: `[[mirror]]` tables, a plain-HTTP client that pulls through
//! regapp's engine as a registry client does (every digest checked), and what regapp says
//! about its mirrors (`/metrics`, its log). Clients through the edge: [`super::edge_clients`].

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::util::layout;
use crate::util::store::blob_data_path;
use crate::util::{eventually, Regapp, Registry};

/// The `[[mirror]]` name of the cache and eviction tests: the `mirror` label of the metrics,
/// the name `du` and the collection's summary print.
pub const MIRROR: &str = "hub";

/// Docker Hub's registry host: unreachable from the tests (no internet), and never tried when
/// the mirror answers.
pub const HUB: &str = "https://registry-1.docker.io";

/// What these tests ask a manifest in: every type regapp stores.
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// One `[[mirror]]` table: `<name>/<repository>` mirrors `<repository>` of `url`; `extra` adds
/// keys (`namespace = …`, `tag_ttl = …`, limits).
pub fn mirror_table(name: &str, url: &str, extra: &str) -> String {
    prefixed_mirror_table(name, name, url, extra)
}

/// [`mirror_table`] under a prefix other than its name.
pub fn prefixed_mirror_table(name: &str, prefix: &str, url: &str, extra: &str) -> String {
    format!("\n[[mirror]]\nname = {name:?}\nurl = {url:?}\nprefix = {prefix:?}\n{extra}\n")
}

/// A plain-HTTP client patient enough for sixteen reads of a 256 MiB blob at once.
pub fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("a plain-HTTP reqwest client builds")
}

pub fn sleep_until(when: Instant) {
    if let Some(left) = when.checked_duration_since(Instant::now()) {
        thread::sleep(left);
    }
}

/// An answer read whole.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `Docker-Content-Digest`, checked against the body.
    pub fn digest(&self) -> String {
        let said = header(&self.headers, "docker-content-digest");
        assert_eq!(
            said,
            layout::sha256_digest(&self.body),
            "the digest header names the body"
        );
        said
    }
}

/// GETs `url` asking for any manifest type, with `headers` added; the answer, whatever it is.
pub fn get(client: &Client, url: &str, headers: &[(&str, &str)]) -> Answer {
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

pub fn header(headers: &reqwest::header::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
        .to_str()
        .expect("an ASCII header")
        .to_owned()
}

/// GETs manifest `name:reference` from regapp, as [`get`].
pub fn get_manifest(client: &Client, regapp: &Regapp, name: &str, reference: &str) -> Answer {
    let url = format!("{}/v2/{name}/manifests/{reference}", regapp.url());
    get(client, &url, &[])
}

/// Pulls `name:reference` through regapp as a client does: the manifest, then its config and
/// layers, each checked against its digest. Returns the manifest's digest.
pub fn pull(client: &Client, regapp: &Regapp, name: &str, reference: &str) -> String {
    pull_blobs(client, regapp, name, reference).0
}

/// Like [`pull`], then waits until every blob is in the store under `root` (a mirror stores a
/// fetched blob behind the client's read).
pub fn pull_stored(
    client: &Client,
    regapp: &Regapp,
    root: &Path,
    name: &str,
    reference: &str,
) -> String {
    let (digest, blobs) = pull_blobs(client, regapp, name, reference);
    for blob in &blobs {
        eventually(
            Duration::from_secs(30),
            &format!("{name}'s blob {blob} lands in the store"),
            || blob_data_path(root, blob).exists(),
        );
    }
    digest
}

/// [`pull`]: the manifest's digest and its blobs' (config, then layers).
fn pull_blobs(
    client: &Client,
    regapp: &Regapp,
    name: &str,
    reference: &str,
) -> (String, Vec<String>) {
    let manifest = get_manifest(client, regapp, name, reference);
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
    let mut blobs = Vec::new();
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
        blobs.push(blob_digest.to_owned());
    }
    (digest, blobs)
}

/// `{"errors": [{"code": CODE, ...}]}`, as the distribution spec writes errors.
pub fn assert_error_code(answer: &Answer, code: &str) {
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
pub struct BlobRead {
    pub status: u16,
    pub first_byte: Duration,
    pub done: Duration,
    pub len: u64,
    pub sha256: String,
}

/// GETs `url` and reads the body through, hashing it, noting when its first byte came.
pub fn read_blob(client: &Client, url: &str, t0: Instant) -> BlobRead {
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
pub struct BodyRead {
    pub status: u16,
    pub bytes: Vec<u8>,
    pub error: Option<String>,
}

pub fn read_body(client: &Client, url: &str) -> BodyRead {
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
pub fn metric(regapp: &Regapp, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape_metric(regapp.metrics_port(), name, labels)
}

/// [`metric`] from the `/metrics` on `port`; the labels match as a set, in any order.
pub fn scrape_metric(port: u16, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (_, text) = crate::ops::get(port, "/metrics");
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

/// `regapp_mirror_hits_total` of `kind` (`blob`, `manifest`).
pub fn hits(regapp: &Regapp, kind: &str) -> f64 {
    metric(regapp, "regapp_mirror_hits_total", &[("kind", kind)])
}

/// `regapp_mirror_misses_total` of `kind` (`blob`, `manifest`).
pub fn misses(regapp: &Regapp, kind: &str) -> f64 {
    metric(regapp, "regapp_mirror_misses_total", &[("kind", kind)])
}

/// `regapp_mirror_upstream_errors_total` of `kind` (`unreachable`, `rate_limited`, …).
pub fn upstream_errors(regapp: &Regapp, kind: &str) -> f64 {
    metric(
        regapp,
        "regapp_mirror_upstream_errors_total",
        &[("kind", kind)],
    )
}

/// Lines of regapp's output containing `needle`.
pub fn log_lines(regapp: &Regapp, needle: &str) -> usize {
    regapp.log().lines().filter(|l| l.contains(needle)).count()
}
