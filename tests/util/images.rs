//! Test images built on disk without a container engine: deterministic tar layers (one gzip'd,
//! one plain), configs whose `diff_ids` are right, manifests and an index, all in OCI layouts.
//!
//! Layers pushed by skopeo keep their digests only with `--preserve-digests` (see
//! [`super::skopeo::CopyOptions`]): without it skopeo 1.9 gzips plain-tar layers on the way to a
//! registry and into an OCI layout.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};

use super::layout::{self, Descriptor, OciLayout};
use super::skopeo::{dir_ref, oci_ref, CopyOptions, Skopeo};

/// An image (or index) in an OCI layout, under one tag.
pub struct Image {
    pub layout: OciLayout,
    pub tag: &'static str,
    /// The tagged manifest or index.
    pub top: Descriptor,
}

impl Image {
    /// `oci:DIR:TAG` for skopeo.
    pub fn reference(&self) -> String {
        oci_ref(self.layout.dir(), self.tag)
    }

    /// The raw bytes of the tagged manifest or index.
    pub fn top_bytes(&self) -> Vec<u8> {
        self.layout.read_blob(&self.top.digest)
    }
}

/// A Docker schema2 image in skopeo's `dir:` format.
pub struct DockerImage {
    pub dir: PathBuf,
    /// `sha256:` of `manifest.json`, the digest a registry must serve it under.
    pub digest: String,
    pub manifest: Vec<u8>,
}

impl DockerImage {
    /// `dir:DIR` for skopeo.
    pub fn reference(&self) -> String {
        dir_ref(&self.dir)
    }
}

/// A linux/amd64 image with two layers — a gzip'd tar and a plain tar — whose files mention
/// `name`, so different names give different blobs. Tagged `v1`.
pub fn small_image(dir: &Path, name: &str) -> Image {
    let layout = OciLayout::create(dir);
    let text = format!("regapp test image {name}\n");
    let gzipped = add_layer(&layout, &[("etc/regapp/name", text.as_bytes())], true);
    let plain = add_layer(
        &layout,
        &[("usr/share/regapp/readme", b"plain tar layer\n")],
        false,
    );
    let manifest = add_manifest(&layout, "amd64", name, &[gzipped, plain]);
    layout.tag("v1", &manifest);
    Image {
        layout,
        tag: "v1",
        top: manifest,
    }
}

/// An OCI index for linux/amd64 and linux/arm64; each image has its own config and layer and
/// both share a first layer. Tagged `multi`.
pub fn multi_arch_index(dir: &Path) -> Image {
    let layout = OciLayout::create(dir);
    let shared = add_layer(&layout, &[("etc/os-release", b"ID=regapp-test\n")], true);
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let own = format!("built for {arch}\n");
        let layer = add_layer(&layout, &[("etc/arch", own.as_bytes())], true);
        let manifest = add_manifest(&layout, arch, "multi", &[shared.clone(), layer]);
        let mut entry = manifest.to_json();
        entry["platform"] = json!({ "architecture": arch, "os": "linux" });
        entries.push(entry);
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": layout::OCI_INDEX,
        "manifests": entries,
    });
    let top = layout.put_json(layout::OCI_INDEX, &index);
    layout.tag("multi", &top);
    Image {
        layout,
        tag: "multi",
        top,
    }
}

/// Converts `image` to Docker schema2 (`skopeo copy --format v2s2`) into `dir`.
pub fn docker_schema2(skopeo: &Skopeo, image: &Image, dir: &Path) -> DockerImage {
    let options = CopyOptions {
        format: Some("v2s2"),
        ..CopyOptions::default()
    };
    let digest = skopeo
        .copy_with(&image.reference(), &dir_ref(dir), options)
        .unwrap_or_else(|e| panic!("convert to Docker schema2: {e}"));
    let manifest = std::fs::read(dir.join("manifest.json")).expect("read the v2s2 manifest");
    assert_eq!(
        digest,
        layout::sha256_digest(&manifest),
        "skopeo's digest of the v2s2 manifest"
    );
    let parsed: Value = serde_json::from_slice(&manifest).expect("the v2s2 manifest is JSON");
    assert_eq!(
        parsed["mediaType"], "application/vnd.docker.distribution.manifest.v2+json",
        "skopeo --format v2s2 gave another manifest type"
    );
    DockerImage {
        dir: dir.to_owned(),
        digest,
        manifest,
    }
}

/// An image whose single plain-tar layer holds one file of `file_size` bytes, generated
/// deterministically and streamed to disk (hashed as written, never whole in memory).
/// Tagged `big`.
pub fn big_layer_image(dir: &Path, file_size: u64) -> Image {
    let started = Instant::now();
    let layout = OciLayout::create(dir);
    let mut header = tar::Header::new_gnu();
    header.set_size(file_size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    let mut builder = tar::Builder::new(layout.blob_writer());
    builder
        .append_data(&mut header, "data/big.bin", Pattern::new(file_size))
        .expect("stream the big file into the layer");
    let layer = builder
        .into_inner()
        .expect("finish the big layer's tar")
        .finish(layout::OCI_LAYER_TAR);
    // A plain tar is its own diff_id.
    let diff_id = layer.digest.clone();
    let manifest = add_manifest(&layout, "amd64", "big", &[(layer, diff_id)]);
    layout.tag("big", &manifest);
    eprintln!("built a {file_size}-byte layer in {:?}", started.elapsed());
    Image {
        layout,
        tag: "big",
        top: manifest,
    }
}

/// A plain tar of one file, `data/noise.bin`, of `len` bytes of [`super::noise`] (`seed`
/// makes it distinct).
pub fn noise_tar(len: usize, seed: u64) -> Vec<u8> {
    tar_bytes(&[("data/noise.bin", &super::noise(len, seed))])
}

/// An image of one plain-tar layer and its config, as [`one_layer_image`] writes it.
pub struct OneLayerImage {
    /// The image, tagged `v1`; its top is the manifest.
    pub image: Image,
    pub config: Descriptor,
    pub layer: Descriptor,
}

/// A linux/amd64 image at `dir`, tagged `v1`, whose one layer is the plain tar `layer`; a
/// non-empty `env` goes into its config (so that images over the same layer differ).
pub fn one_layer_image(dir: &Path, layer: &[u8], env: &[String]) -> OneLayerImage {
    let layout = OciLayout::create(dir);
    let layer = layout.put_blob(layout::OCI_LAYER_TAR, layer);
    // Keys in this order, as a `json!` literal writes them, whatever serde_json's map.
    let mut config = json!({ "architecture": "amd64", "os": "linux" });
    if !env.is_empty() {
        config["config"] = json!({ "Env": env });
    }
    // A plain tar is its own diff_id.
    config["rootfs"] = json!({ "type": "layers", "diff_ids": [layer.digest] });
    let config = layout.put_json(layout::OCI_CONFIG, &config);
    let manifest = layout.put_json(
        layout::OCI_MANIFEST,
        &json!({
            "schemaVersion": 2,
            "mediaType": layout::OCI_MANIFEST,
            "config": config.to_json(),
            "layers": [layer.to_json()],
        }),
    );
    layout.tag("v1", &manifest);
    OneLayerImage {
        image: Image {
            layout,
            tag: "v1",
            top: manifest,
        },
        config,
        layer,
    }
}

/// Deterministic bytes for a big file: 64 KiB of pseudo-random data repeated, each chunk
/// stamped with its index so that a reordered, repeated or dropped chunk changes the digest.
struct Pattern {
    remaining: u64,
    chunk_index: u64,
    chunk: Vec<u8>,
    offset_in_chunk: usize,
}

impl Pattern {
    const CHUNK: usize = 64 * 1024;

    fn new(size: u64) -> Self {
        let mut state = 0x5eed_u64;
        let mut chunk = Vec::with_capacity(Self::CHUNK);
        while chunk.len() < Self::CHUNK {
            chunk.extend_from_slice(&splitmix64(&mut state).to_le_bytes());
        }
        let mut pattern = Self {
            remaining: size,
            chunk_index: 0,
            chunk,
            offset_in_chunk: 0,
        };
        pattern.stamp();
        pattern
    }

    fn stamp(&mut self) {
        self.chunk[..8].copy_from_slice(&self.chunk_index.to_le_bytes());
    }
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.offset_in_chunk == Self::CHUNK {
            self.chunk_index += 1;
            self.offset_in_chunk = 0;
            self.stamp();
        }
        let available = (Self::CHUNK - self.offset_in_chunk) as u64;
        let n = buf.len().min(available.min(self.remaining) as usize);
        buf[..n].copy_from_slice(&self.chunk[self.offset_in_chunk..self.offset_in_chunk + n]);
        self.offset_in_chunk += n;
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Adds a layer holding `files`; returns its descriptor and its diff_id (the digest of the
/// uncompressed tar, which the config lists).
fn add_layer(layout: &OciLayout, files: &[(&str, &[u8])], gzip: bool) -> (Descriptor, String) {
    let tar = tar_bytes(files);
    let diff_id = layout::sha256_digest(&tar);
    let descriptor = if gzip {
        // flate2 writes mtime 0 and no file name: the same bytes every run.
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(&tar).expect("gzip into memory");
        let gz = encoder.finish().expect("finish gzip");
        layout.put_blob(layout::OCI_LAYER_TAR_GZIP, &gz)
    } else {
        layout.put_blob(layout::OCI_LAYER_TAR, &tar)
    };
    (descriptor, diff_id)
}

/// A tar of regular files, owned by root, dated 1970.
fn tar_bytes(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, path, *contents)
            .expect("append to an in-memory tar");
    }
    builder.into_inner().expect("finish an in-memory tar")
}

/// Writes a config for `arch` listing the layers' diff_ids, and the manifest over them.
fn add_manifest(
    layout: &OciLayout,
    arch: &str,
    name: &str,
    layers: &[(Descriptor, String)],
) -> Descriptor {
    let config = json!({
        "architecture": arch,
        "os": "linux",
        "config": { "Env": [format!("REGAPP_TEST_IMAGE={name}")], "Cmd": ["/bin/true"] },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|(_, diff_id)| diff_id).collect::<Vec<_>>(),
        },
    });
    let config = layout.put_json(layout::OCI_CONFIG, &config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": layout::OCI_MANIFEST,
        "config": config.to_json(),
        "layers": layers.iter().map(|(d, _)| d.to_json()).collect::<Vec<_>>(),
    });
    layout.put_json(layout::OCI_MANIFEST, &manifest)
}
