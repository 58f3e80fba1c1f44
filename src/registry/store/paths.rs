//! The on-disk layout, registry:2's, built in this one place. Every storage key the registry
//! uses comes from a function here.
//!
//! ```text
//! docker/registry/v2/
//!   blobs/<alg>/<hex[0:2]>/<hex>/data                      layers, configs and manifest bodies
//!   repositories/<name…>/                                  names nest: team/app
//!     _layers/<alg>/<hex>/link                             the repository may serve this blob
//!     _manifests/revisions/<alg>/<hex>/link                a manifest of the repository
//!     _manifests/tags/<tag>/current/link                   what the tag points to now
//!     _manifests/tags/<tag>/index/<alg>/<hex>/link         every digest the tag pointed to
//!     _uploads/<uuid>/data | startedat                     an upload in progress
//! regapp-mirror/pulled/<name…>/<alg>/<hex>                 a mirrored manifest's last pull
//! ```
//!
//! A link file holds `<alg>:<hex>` with no newline. Names, tags, digests and upload ids are
//! parsed types, so no key built here can leave the layout.

use crate::registry::types::{Algorithm, Digest, RepoName, Tag, UploadId};

const V2: &str = "docker/registry/v2";

pub fn blob_data(digest: &Digest) -> String {
    let hex = digest.hex();
    format!(
        "{V2}/blobs/{}/{}/{hex}/data",
        digest.algorithm().as_str(),
        &hex[..2]
    )
}

/// `blobs/<alg>`: its children are the two-hex-digit fan-out directories.
pub fn blobs_dir(algorithm: Algorithm) -> String {
    format!("{V2}/blobs/{}", algorithm.as_str())
}

/// The directory holding one blob's `data` (what garbage collection deletes).
pub fn blob_dir(digest: &Digest) -> String {
    let data = blob_data(digest);
    data.strip_suffix("/data")
        .expect("blob keys end in /data")
        .to_owned()
}

pub fn repositories() -> String {
    format!("{V2}/repositories")
}

pub fn repository(name: &RepoName) -> String {
    format!("{V2}/repositories/{name}")
}

pub fn layer_link(name: &RepoName, digest: &Digest) -> String {
    format!(
        "{V2}/repositories/{name}/_layers/{}/{}/link",
        digest.algorithm().as_str(),
        digest.hex()
    )
}

pub fn layers_dir(name: &RepoName, algorithm: Algorithm) -> String {
    format!("{V2}/repositories/{name}/_layers/{}", algorithm.as_str())
}

/// The directory holding a link file (what deleting the link removes).
pub fn link_dir(link: &str) -> &str {
    link.strip_suffix("/link").expect("link keys end in /link")
}

pub fn revisions_dir(name: &RepoName, algorithm: Algorithm) -> String {
    format!(
        "{V2}/repositories/{name}/_manifests/revisions/{}",
        algorithm.as_str()
    )
}

pub fn revision_link(name: &RepoName, digest: &Digest) -> String {
    format!(
        "{}/{}/link",
        revisions_dir(name, digest.algorithm()),
        digest.hex()
    )
}

pub fn tags_dir(name: &RepoName) -> String {
    format!("{V2}/repositories/{name}/_manifests/tags")
}

pub fn tag_dir(name: &RepoName, tag: &Tag) -> String {
    format!("{}/{tag}", tags_dir(name))
}

pub fn tag_current_link(name: &RepoName, tag: &Tag) -> String {
    format!("{}/current/link", tag_dir(name, tag))
}

/// The tag's history: a link for every digest it ever pointed to.
pub fn tag_index_dir(name: &RepoName, tag: &Tag, algorithm: Algorithm) -> String {
    format!("{}/index/{}", tag_dir(name, tag), algorithm.as_str())
}

/// Where `put` and `publish` write the tag's current link before renaming it.
pub fn tag_current_dir(name: &RepoName, tag: &Tag) -> String {
    format!("{}/current", tag_dir(name, tag))
}

pub fn tag_index_link(name: &RepoName, tag: &Tag, digest: &Digest) -> String {
    format!(
        "{}/index/{}/{}/link",
        tag_dir(name, tag),
        digest.algorithm().as_str(),
        digest.hex()
    )
}

pub fn uploads_dir(name: &RepoName) -> String {
    format!("{V2}/repositories/{name}/_uploads")
}

pub fn upload_dir(name: &RepoName, id: &UploadId) -> String {
    format!("{V2}/repositories/{name}/_uploads/{id}")
}

pub fn upload_data(name: &RepoName, id: &UploadId) -> String {
    format!("{}/data", upload_dir(name, id))
}

pub fn upload_started_at(name: &RepoName, id: &UploadId) -> String {
    format!("{}/startedat", upload_dir(name, id))
}

/// The SHA-256 state of an upload's bytes so far, where they cannot be read back (a bucket):
/// regapp's own format, beside registry:2's `hashstates/` (which regapp neither reads nor writes).
/// One per size the upload had (as registry:2 keeps its own), so that whichever of a state and
/// its write a crash separates, the state of the size the upload has is there.
pub fn upload_hash_state(name: &RepoName, id: &UploadId, offset: u64) -> String {
    format!("{}/regapp-hashstates/{offset}", upload_dir(name, id))
}

/// When a mirrored repository's manifest was last pulled: the object's modification time
/// (regapp's own, outside registry:2's tree, which ignores it). Read by the collector for the
/// mirrors' cache limits.
pub fn mirror_pulled(name: &RepoName, digest: &Digest) -> String {
    format!(
        "{}/{}/{}",
        mirror_pulled_dir(name),
        digest.algorithm().as_str(),
        digest.hex()
    )
}

/// The pull stamps of one mirrored repository: a repository without them was pushed, not
/// cached.
pub fn mirror_pulled_dir(name: &RepoName) -> String {
    format!("regapp-mirror/pulled/{name}")
}

/// Directory names inside a repository that mark it as one (v2.8 looks for `_layers`, v3 for
/// `_manifests`).
pub const REPOSITORY_MARKERS: [&str; 2] = ["_layers", "_manifests"];

/// The directory of a repository's upload sessions (a repository with only an abandoned
/// upload has nothing else).
pub const UPLOADS_MARKER: &str = "_uploads";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_registry_2() {
        let name: RepoName = "team/app".parse().unwrap();
        let d: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        let hex = "ab".repeat(32);
        assert_eq!(
            blob_data(&d),
            format!("docker/registry/v2/blobs/sha256/ab/{hex}/data")
        );
        assert_eq!(
            layer_link(&name, &d),
            format!("docker/registry/v2/repositories/team/app/_layers/sha256/{hex}/link")
        );
        assert_eq!(
            revision_link(&name, &d),
            format!(
                "docker/registry/v2/repositories/team/app/_manifests/revisions/sha256/{hex}/link"
            )
        );
        let tag: Tag = "1.0".parse().unwrap();
        assert_eq!(
            tag_current_link(&name, &tag),
            "docker/registry/v2/repositories/team/app/_manifests/tags/1.0/current/link"
        );
        assert_eq!(
            tag_index_link(&name, &tag, &d),
            format!("docker/registry/v2/repositories/team/app/_manifests/tags/1.0/index/sha256/{hex}/link")
        );
    }
}
