//! Where regapp's filesystem store keeps things under its root (registry:2's layout,
//! `docker/registry/v2/…`), for tests that look into the store rather than ask the server.

use std::path::{Path, PathBuf};

/// Where the store under `root` keeps a blob's bytes.
pub fn blob_data_path(root: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    root.join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

/// The directory of repository `name` in the store under `root`.
pub fn repository_path(root: &Path, name: &str) -> PathBuf {
    root.join("docker/registry/v2/repositories").join(name)
}

/// Every path under `dir` whose last component is `name`.
pub fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
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
