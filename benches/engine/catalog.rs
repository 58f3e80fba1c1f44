//! The catalog phase: thousands of repositories written straight into the registry:2 layout
//! before a registry starts (pushing them through the API would take far longer than the walk
//! being measured), and the walk a client makes, page by page, following `Link` headers.
//!
//! Every seeded repository is a complete one-tag image, the same files a push leaves:
//!
//! ```text
//! blobs/sha256/<cc>/<config>/data, blobs/sha256/<mm>/<manifest>/data      (once)
//! repositories/catalog/rNNNNN/_layers/sha256/<config>/link
//!                            /_manifests/revisions/sha256/<manifest>/link
//!                            /_manifests/tags/latest/current/link
//!                            /_manifests/tags/latest/index/sha256/<manifest>/link
//! ```
//!
//! so both registry:2.8 (which counts a directory with `_layers`) and v3 (with `_manifests`)
//! see a repository, and a garbage collector would keep everything.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::client::{Client, OCI_MANIFEST};
use crate::content::Blob;
use crate::BenchResult;

/// The name of seeded repository `i`.
pub fn repo_name(i: usize) -> String {
    format!("catalog/r{i:05}")
}

/// The config blob and the manifest that every seeded repository holds.
fn seed_blobs() -> (Blob, Blob) {
    let config = Blob::new(Bytes::from_static(
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    ));
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.digest,
            "size": config.len(),
        },
        "layers": [],
    });
    let manifest = Blob::new(Bytes::from(manifest.to_string()));
    (config, manifest)
}

fn hex(digest: &str) -> &str {
    digest
        .strip_prefix("sha256:")
        .expect("seed digests are sha256")
}

fn write(path: &Path, content: &[u8]) -> BenchResult<()> {
    fs::create_dir_all(path.parent().expect("layout paths have parents"))?;
    fs::write(path, content)?;
    Ok(())
}

/// Writes `count` repositories into the registry:2 layout under `root` (a storage root).
pub fn seed(root: &Path, count: usize) -> BenchResult<()> {
    let v2 = root.join("docker/registry/v2");
    let (config, manifest) = seed_blobs();
    for blob in [&config, &manifest] {
        let hex = hex(&blob.digest);
        write(
            &v2.join(format!("blobs/sha256/{}/{hex}/data", &hex[..2])),
            &blob.data,
        )?;
    }
    let (config_hex, manifest_hex) = (hex(&config.digest), hex(&manifest.digest));
    for i in 0..count {
        let repo = v2.join("repositories").join(repo_name(i));
        let links = [
            (format!("_layers/sha256/{config_hex}/link"), &config),
            (
                format!("_manifests/revisions/sha256/{manifest_hex}/link"),
                &manifest,
            ),
            ("_manifests/tags/latest/current/link".to_owned(), &manifest),
            (
                format!("_manifests/tags/latest/index/sha256/{manifest_hex}/link"),
                &manifest,
            ),
        ];
        for (path, blob) in links {
            // A link holds `sha256:<hex>` with no newline.
            write(&repo.join(path), blob.digest.as_bytes())?;
        }
    }
    Ok(())
}

/// One full walk of the catalog.
pub struct Walk {
    pub names: usize,
    pub pages: usize,
    pub first_page: Duration,
    pub total: Duration,
}

/// Walks `/v2/_catalog?n=<page>` to the end. Bounded: at most `max_pages` pages and `limit` time.
pub async fn walk(
    client: &Client,
    page: usize,
    max_pages: usize,
    limit: Duration,
) -> BenchResult<Walk> {
    let start = Instant::now();
    let mut next = Some(format!("/v2/_catalog?n={page}"));
    let (mut names, mut pages, mut first_page) = (0, 0, None);
    while let Some(path) = next.take() {
        let (count, link) = client.catalog_page(&path).await?;
        first_page.get_or_insert_with(|| start.elapsed());
        names += count;
        pages += 1;
        if count > page {
            return Err(format!("{path}: {count} names on a page of {page}").into());
        }
        if pages >= max_pages || start.elapsed() > limit {
            return Err(format!(
                "the catalog walk at n={page} stopped after {pages} pages and {:.0?}",
                start.elapsed()
            )
            .into());
        }
        // registry:2.8 may end on an empty page that still carries a Link; stop there.
        next = link.filter(|_| count > 0);
    }
    Ok(Walk {
        names,
        pages,
        first_page: first_page.unwrap_or_default(),
        total: start.elapsed(),
    })
}
