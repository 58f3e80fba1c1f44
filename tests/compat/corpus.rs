//! The set of images the compatibility tests push with one registry and read back with another:
//! every manifest kind skopeo produces (OCI image, OCI index, Docker schema2), two tags on one
//! manifest, blobs shared between repositories, and nested repository names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::util::images::{self, DockerImage, Image};
use crate::util::layout::{assert_same_blobs, assert_same_bytes, assert_same_dir, OciLayout};
use crate::util::skopeo::{dir_ref, docker_ref, oci_ref};
use crate::util::{Registry, Skopeo};

/// Where each image goes: (repository, tag).
const SMALL: [(&str, &str); 2] = [("compat/small", "v1"), ("compat/small", "latest")];
/// The same small image again, so that two repositories link the same blobs.
const SMALL_AGAIN: (&str, &str) = ("compat/team/app/small", "v1");
const MULTI: (&str, &str) = ("compat/team/multi", "multi");
const DOCKER: (&str, &str) = ("compat/docker", "v2s2");

/// The images, built once per test in its scratch directory.
pub struct Corpus {
    small: Image,
    multi: Image,
    docker: DockerImage,
    pulled: PathBuf,
}

impl Corpus {
    /// Builds every image under `work`; pulled copies will go to `work/pulled-*`.
    pub fn build(work: &Path, skopeo: &Skopeo) -> Self {
        let small = images::small_image(&work.join("small"), "compat");
        let multi = images::multi_arch_index(&work.join("multi"));
        let docker = images::docker_schema2(skopeo, &small, &work.join("docker"));
        Self {
            small,
            multi,
            docker,
            pulled: work.to_owned(),
        }
    }

    /// Every repository the corpus creates, in catalog (lexical) order.
    pub fn repositories() -> Vec<String> {
        let mut names: Vec<String> = Self::tags().into_keys().collect();
        names.sort();
        names
    }

    /// Every repository with its sorted tags.
    pub fn tags() -> BTreeMap<String, Vec<String>> {
        let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, tag) in SMALL.into_iter().chain([SMALL_AGAIN, MULTI, DOCKER]) {
            tags.entry(name.to_owned())
                .or_default()
                .push(tag.to_owned());
        }
        tags.values_mut().for_each(|list| list.sort());
        tags
    }

    /// Pushes every image to `registry` with skopeo, checking each reported digest.
    pub fn push(&self, skopeo: &Skopeo, registry: &dyn Registry) {
        let small = (self.small.reference(), self.small.top.digest.as_str());
        let multi = (self.multi.reference(), self.multi.top.digest.as_str());
        let docker = (self.docker.reference(), self.docker.digest.as_str());
        let pushes = [
            (&small, SMALL[0]),
            (&small, SMALL[1]),
            (&small, SMALL_AGAIN),
            (&multi, MULTI),
            (&docker, DOCKER),
        ];
        for ((source, expected), (name, tag)) in pushes {
            let remote = docker_ref(registry.host(), &format!("{name}:{tag}"));
            // `--all` only matters for the index; it is harmless for single images.
            let digest = skopeo.copy_all(source, &remote);
            let writer = registry.name();
            assert_eq!(digest, *expected, "digest of {remote} pushed to {writer}");
        }
    }

    /// Reads everything back from `registry`: raw manifests (by tag and digest) and every blob
    /// byte-identical to what was pushed, and the tags skopeo lists.
    pub fn verify(&self, skopeo: &Skopeo, registry: &dyn Registry) {
        let host = registry.host();
        for (name, tag) in SMALL.into_iter().chain([SMALL_AGAIN]) {
            self.verify_oci(skopeo, registry, &self.small, name, tag);
        }
        self.verify_oci(skopeo, registry, &self.multi, MULTI.0, MULTI.1);
        let index: serde_json::Value =
            serde_json::from_slice(&self.multi.top_bytes()).expect("the test index is JSON");
        for child in index["manifests"].as_array().expect("index has manifests") {
            let digest = child["digest"].as_str().expect("child digest");
            let remote = docker_ref(host, &format!("{}@{digest}", MULTI.0));
            assert_same_bytes(
                &format!("{remote} from {}", registry.name()),
                &self.multi.layout.read_blob(digest),
                &skopeo.inspect_raw(&remote),
            );
        }

        let remote = docker_ref(host, &format!("{}:{}", DOCKER.0, DOCKER.1));
        let raw = skopeo.inspect_raw(&remote);
        let what = format!("{remote} from {}", registry.name());
        assert_same_bytes(&what, &self.docker.manifest, &raw);
        let pulled = self
            .pulled
            .join(format!("pulled-{}-docker", registry.name()));
        let digest = skopeo.copy(&remote, &dir_ref(&pulled));
        assert_eq!(digest, self.docker.digest, "pulling {what}");
        assert_same_dir(&self.docker.dir, &pulled);

        for (name, tags) in Self::tags() {
            let repository = docker_ref(host, &name);
            assert_eq!(
                skopeo.list_tags(&repository),
                tags,
                "tags of {repository} on {}",
                registry.name()
            );
        }
    }

    /// Pulls `name:tag` into a fresh layout and compares it with `image`.
    fn verify_oci(
        &self,
        skopeo: &Skopeo,
        registry: &dyn Registry,
        image: &Image,
        name: &str,
        tag: &str,
    ) {
        let remote = docker_ref(registry.host(), &format!("{name}:{tag}"));
        let what = format!("{remote} from {}", registry.name());
        assert_same_bytes(&what, &image.top_bytes(), &skopeo.inspect_raw(&remote));
        let by_digest = docker_ref(registry.host(), &format!("{name}@{}", image.top.digest));
        assert_same_bytes(
            &format!("{what} by digest"),
            &image.top_bytes(),
            &skopeo.inspect_raw(&by_digest),
        );

        let dir_name = format!(
            "pulled-{}-{}-{tag}",
            registry.name(),
            name.replace('/', "_")
        );
        let pulled_dir = self.pulled.join(dir_name);
        let digest = skopeo.copy_all(&remote, &oci_ref(&pulled_dir, image.tag));
        assert_eq!(digest, image.top.digest, "pulling {what}");
        assert_same_blobs(&image.layout, &OciLayout::open(&pulled_dir));
    }
}
