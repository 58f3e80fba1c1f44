//! A minimal registry client over HTTP (reqwest), as a real client pushes: HEAD each blob, upload
//! the missing ones, PUT the manifest — so the window between "the blob exists" and "the
//! manifest names it" is the real one.

use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::json;

use crate::util::layout::sha256_digest;

pub struct Pusher {
    client: Client,
    base: String,
}

/// An image as pushed: its manifest digest and every blob it references.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub repo: String,
    pub tag: String,
    pub digest: String,
    pub manifest_len: u64,
    pub blobs: Vec<(String, Vec<u8>)>,
}

/// What a manifest PUT may answer while a collection runs besides success.
#[derive(Debug)]
pub enum PushError {
    /// The collector deleted a blob between our HEAD and our PUT: push again.
    BlobGone(String),
}

impl Pusher {
    pub fn new(host: &str) -> Pusher {
        Pusher {
            client: Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("a reqwest client builds"),
            base: format!("http://{host}/v2"),
        }
    }

    /// Pushes an image with a config and `layers`; existing blobs are not uploaded again.
    pub fn push(&self, repo: &str, tag: &str, layers: &[Vec<u8>]) -> Result<Pushed, PushError> {
        let config = serde_json::to_vec(
            &json!({"architecture": "amd64", "os": "linux", "tag": tag, "repo": repo}),
        )
        .unwrap();
        let mut blobs = vec![(sha256_digest(&config), config)];
        blobs.extend(layers.iter().map(|l| (sha256_digest(l), l.clone())));
        for (digest, bytes) in &blobs {
            if !self.has_blob(repo, digest) {
                self.upload(repo, digest, bytes);
            }
        }
        let descriptor = |(digest, bytes): &(String, Vec<u8>), media_type: &str| json!({"mediaType": media_type, "digest": digest, "size": bytes.len()});
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor(&blobs[0], "application/vnd.oci.image.config.v1+json"),
            "layers": blobs[1..].iter().map(|b| descriptor(b, "application/vnd.oci.image.layer.v1.tar")).collect::<Vec<_>>(),
        }))
        .unwrap();
        let response = self
            .client
            .put(format!("{}/{repo}/manifests/{tag}", self.base))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.clone())
            .send()
            .expect("PUT manifest");
        let status = response.status();
        let body = response.text().unwrap_or_default();
        if status == StatusCode::BAD_REQUEST && body.contains("MANIFEST_BLOB_UNKNOWN") {
            return Err(PushError::BlobGone(body));
        }
        assert_eq!(status, StatusCode::CREATED, "PUT {repo}:{tag}: {body}");
        Ok(Pushed {
            repo: repo.to_owned(),
            tag: tag.to_owned(),
            digest: sha256_digest(&manifest),
            manifest_len: manifest.len() as u64,
            blobs,
        })
    }

    pub fn has_blob(&self, repo: &str, digest: &str) -> bool {
        let status = self
            .client
            .head(format!("{}/{repo}/blobs/{digest}", self.base))
            .send()
            .expect("HEAD blob")
            .status();
        assert!(
            status == StatusCode::OK || status == StatusCode::NOT_FOUND,
            "HEAD {repo}@{digest}: {status}"
        );
        status == StatusCode::OK
    }

    fn upload(&self, repo: &str, digest: &str, bytes: &[u8]) {
        let response = self
            .client
            .post(format!(
                "{}/{repo}/blobs/uploads/?digest={digest}",
                self.base
            ))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .expect("POST blob");
        let status = response.status();
        assert_eq!(
            status,
            StatusCode::CREATED,
            "upload {repo}@{digest}: {}",
            response.text().unwrap_or_default()
        );
    }

    /// Two images in `{prefix}/kept` and `{prefix}/gone`, the second's manifest deleted: one
    /// to keep and garbage for the next collection (a manifest, a config and a layer).
    pub fn push_kept_and_gone(&self, prefix: &str) -> (Pushed, Pushed) {
        let [kept, gone] = ["kept", "gone"].map(|which| {
            let layer = format!("{which} layer").into_bytes();
            self.push(&format!("{prefix}/{which}"), "v1", &[layer])
                .unwrap_or_else(|e| panic!("{e:?}"))
        });
        self.delete_manifest(&gone.repo, &gone.digest);
        (kept, gone)
    }

    /// Deletes a tag, or a manifest by digest.
    pub fn delete_manifest(&self, repo: &str, reference: &str) {
        let status = self
            .client
            .delete(format!("{}/{repo}/manifests/{reference}", self.base))
            .send()
            .expect("DELETE manifest")
            .status();
        assert_eq!(status, StatusCode::ACCEPTED, "DELETE {repo}:{reference}");
    }

    /// Pulls an image back over HTTP: the manifest by tag has the pushed digest, every blob
    /// has its bytes.
    pub fn verify(&self, image: &Pushed) {
        let response = self
            .client
            .get(format!(
                "{}/{}/manifests/{}",
                self.base, image.repo, image.tag
            ))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .expect("GET manifest");
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{}:{}",
            image.repo,
            image.tag
        );
        let body = response.bytes().unwrap();
        assert_eq!(
            sha256_digest(&body),
            image.digest,
            "{}:{}",
            image.repo,
            image.tag
        );
        for (digest, bytes) in &image.blobs {
            let response = self
                .client
                .get(format!("{}/{}/blobs/{digest}", self.base, image.repo))
                .send()
                .expect("GET blob");
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "{}:{} lost blob {digest}",
                image.repo,
                image.tag
            );
            assert_eq!(&response.bytes().unwrap()[..], &bytes[..], "{digest}");
        }
    }
}
