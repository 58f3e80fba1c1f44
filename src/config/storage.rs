//! `[storage]` and `[storage.s3]` → the storage's [`StorageSettings`]. S3 credentials are read
//! here, from `credentials_file`, so that `check-config` reports an unreadable file.

use std::path::{Path, PathBuf};

use super::diagnostics::{ConfigError, Locator};
use super::raw::{RawS3, RawStorage};
use crate::storage::s3::{S3Settings, MAX_PART_SIZE, MIN_PART_SIZE};
use crate::storage::{Backend, StorageSettings, DEFAULT_ROOT};

pub(super) fn storage_settings(
    raw: RawStorage,
    locator: &Locator<'_>,
) -> Result<StorageSettings, Vec<ConfigError>> {
    let mut errors = Vec::new();
    if raw.root.as_ref().is_some_and(|r| r.as_os_str().is_empty()) {
        errors.push(locator.error(
            "storage",
            Some("root"),
            "an empty path would put the store (and gc.sock, gc.lock) in whatever directory \
             regapp starts in; name a directory",
        ));
    }
    let root = raw.root.unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
    let backend = match (raw.backend.as_deref(), raw.s3) {
        (None | Some("filesystem"), None) => Backend::Filesystem,
        (None | Some("filesystem"), Some(_)) => {
            errors.push(locator.error(
                "storage",
                Some("backend"),
                "[storage.s3] is set but the backend is the filesystem; set backend = \"s3\"",
            ));
            Backend::Filesystem
        }
        (Some("s3"), s3) => match s3_settings(s3.unwrap_or_default(), &root, locator) {
            Ok(s3) => Backend::S3(s3),
            Err(e) => {
                errors.extend(e);
                Backend::Filesystem
            }
        },
        (Some(other), _) => {
            errors.push(locator.error(
                "storage",
                Some("backend"),
                format!("unknown backend {other:?}: \"filesystem\" or \"s3\""),
            ));
            Backend::Filesystem
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(StorageSettings { root, backend })
}

fn s3_settings(
    raw: RawS3,
    root: &Path,
    locator: &Locator<'_>,
) -> Result<S3Settings, Vec<ConfigError>> {
    let error = |key: &str, message: String| locator.error("storage.s3", Some(key), message);
    let mut errors = Vec::new();
    let default = S3Settings::default();
    let bucket = raw.bucket.unwrap_or_default();
    if bucket.is_empty() {
        errors.push(locator.error(
            "storage.s3",
            None,
            "backend = \"s3\" needs [storage.s3] bucket = \"…\"",
        ));
    }
    let endpoint = raw.endpoint.unwrap_or_default();
    let url = ["http://", "https://"]
        .iter()
        .any(|s| endpoint.starts_with(s));
    if !endpoint.is_empty() && !url {
        errors.push(error(
            "endpoint",
            format!("{endpoint:?} is no URL: http://host:port or https://host (empty: AWS)"),
        ));
    }
    let part_size = raw.part_size.unwrap_or(default.part_size);
    if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
        errors.push(error(
            "part_size",
            format!("S3 takes parts of {MIN_PART_SIZE} to {MAX_PART_SIZE} bytes"),
        ));
    }
    let (access_key_id, secret_access_key) = match &raw.credentials_file {
        None => (None, None),
        Some(file) => match read_credentials(file) {
            Ok((id, secret)) => (Some(id), Some(secret)),
            Err(why) => {
                errors.push(error(
                    "credentials_file",
                    format!("{}: {why}", file.display()),
                ));
                (None, None)
            }
        },
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(S3Settings {
        bucket,
        endpoint,
        region: raw.region.unwrap_or(default.region),
        prefix: raw.prefix.unwrap_or_default(),
        path_style: raw.path_style.unwrap_or(default.path_style),
        access_key_id,
        secret_access_key,
        part_size,
        spool: root.join("s3-spool"),
        redirect: raw.redirect.unwrap_or(default.redirect),
    })
}

/// The access key id and secret in an AWS credentials file: `aws_access_key_id = …` and
/// `aws_secret_access_key = …` lines, in its `[default]` profile or before any profile.
fn read_credentials(file: &Path) -> Result<(String, String), String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let (mut id, mut secret) = (None, None);
    let mut profile = "default".to_owned();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            profile = name.trim().trim_start_matches("profile ").to_owned();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if profile != "default" {
            continue;
        }
        match key.trim() {
            "aws_access_key_id" => id = Some(value.trim().to_owned()),
            "aws_secret_access_key" => secret = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    match (id, secret) {
        (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => Ok((id, secret)),
        _ => Err(
            "no aws_access_key_id and aws_secret_access_key in its [default] profile".to_owned(),
        ),
    }
}
