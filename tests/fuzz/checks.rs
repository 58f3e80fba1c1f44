//! What each fuzz target checks of one input: no panic, and where a parser has a printed form,
//! that printing what it parsed and parsing that again gives the same value. Shared by the fuzz
//! targets (`fuzz/fuzz_targets/*.rs` include this file) and by `cargo test`, which runs every
//! seed and every input a fuzzer ever found against the same checks (`tests/fuzz/mod.rs`).

// Each fuzz binary uses one of these functions.
#![allow(dead_code)]

use regapp::registry::types::{range, Digest, ParsedManifest, Reference, RepoName, Tag};

/// One target's check of one input.
pub type Check = fn(&[u8]);

/// The targets by name: the fuzz crate's binaries and the corpus directories are named so.
pub const TARGETS: &[(&str, Check)] = &[
    ("digest", digest),
    ("name", name),
    ("reference", reference),
    ("range", range_header),
    ("content_range", content_range),
    ("accept", accept),
    ("manifest", manifest),
    ("htpasswd", htpasswd),
    ("basic_auth", basic_auth),
    ("config", config),
];

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

pub fn digest(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Ok(digest) = text.parse::<Digest>() {
        let again: Digest = digest.to_string().parse().expect("a printed digest parses");
        assert_eq!(again, digest);
        assert_eq!(digest.to_string(), text, "a digest has one spelling");
    }
}

pub fn name(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Ok(name) = text.parse::<RepoName>() {
        assert_eq!(name.as_str(), text);
        assert!(!name.as_str().contains(".."), "names cannot climb out");
    }
    if let Ok(tag) = text.parse::<Tag>() {
        assert_eq!(tag.to_string(), text);
    }
}

pub fn reference(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Ok(reference) = Reference::parse(text) {
        let again = Reference::parse(&reference.to_string()).expect("a printed reference parses");
        assert_eq!(again, reference);
    }
}

/// The first 8 bytes are the blob's size, the rest the header value.
pub fn range_header(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let size = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
    let Some(value) = text(&data[8..]) else {
        return;
    };
    if let range::RangeRequest::Partial(r) = range::parse_range_header(value, size) {
        assert!(r.start <= r.end && r.end < size, "{r:?} inside {size}");
        assert_ne!(r.len(), 0, "{r:?} overflowed");
    }
}

pub fn content_range(data: &[u8]) {
    let Some(value) = text(data) else { return };
    if let Some(r) = range::parse_upload_content_range(value) {
        assert!(r.start <= r.end);
        assert_ne!(r.len(), 0, "{r:?} overflowed");
    }
}

/// Lines separated by newlines; the media type asked for is the first line.
pub fn accept(data: &[u8]) {
    let mut lines = data.split(|b| *b == b'\n');
    let wanted = lines.next().and_then(text).unwrap_or("");
    let lines: Vec<&[u8]> = lines.collect();
    let allowed = regapp::registry::types::accept::accepts(lines.iter().copied(), wanted);
    if lines.is_empty() {
        assert!(allowed, "no Accept allows anything");
    }
}

/// The first byte picks the `Content-Type` the manifest is pushed with.
pub fn manifest(data: &[u8]) {
    const TYPES: [Option<&str>; 5] = [
        None,
        Some("application/vnd.oci.image.manifest.v1+json"),
        Some("application/vnd.oci.image.index.v1+json"),
        Some("application/vnd.docker.distribution.manifest.v2+json"),
        Some("application/vnd.docker.distribution.manifest.list.v2+json"),
    ];
    let Some((first, body)) = data.split_first() else {
        return;
    };
    let content_type = TYPES[usize::from(*first) % TYPES.len()];
    if let Ok(manifest) = ParsedManifest::parse(body, content_type) {
        // What a push looks at: every referenced blob, the children, the subject.
        let _ = manifest.referenced_blobs().count();
        for descriptor in manifest.manifests.iter().chain(&manifest.subject) {
            let _ = descriptor.digest.to_string();
        }
        // A stored manifest is read back without its Content-Type: it must still parse.
        ParsedManifest::parse(body, None).expect("an accepted manifest parses when read back");
    }
}

pub fn htpasswd(data: &[u8]) {
    if let Ok(file) = regapp::auth::htpasswd::Htpasswd::parse(data) {
        for refused in file.refused() {
            let _ = refused.to_string();
        }
        assert_eq!(file.is_blank(), data.iter().all(u8::is_ascii_whitespace));
    }
}

pub fn basic_auth(data: &[u8]) {
    let Some(header) = text(data) else { return };
    if let Some(credentials) = regapp::auth::basic::parse_basic(header) {
        assert!(
            !credentials.user.contains(':'),
            "the user ends at the first colon"
        );
    }
}

pub fn config(data: &[u8]) {
    let Some(text) = text(data) else { return };
    match regapp::config::Settings::parse(text, "fuzz.toml") {
        Ok(settings) => {
            let _ = settings.to_string();
        }
        Err(errors) => {
            let _ = errors.to_string();
        }
    }
}
