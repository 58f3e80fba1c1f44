//! OCI image layouts on disk (image-spec `image-layout.md`): writing blobs with their digests
//! computed as the bytes pass, tagging them in `index.json`, and comparing what skopeo pulled
//! back with what the test wrote, byte for byte, without holding big blobs in memory.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// An OCI content descriptor: what a manifest or index says about a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

impl Descriptor {
    pub fn to_json(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.size })
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// An OCI image layout directory.
pub struct OciLayout {
    dir: PathBuf,
}

impl OciLayout {
    /// Creates an empty layout at `dir` (which may exist and be empty).
    pub fn create(dir: &Path) -> Self {
        fs::create_dir_all(dir.join("blobs/sha256")).expect("create the layout's blobs dir");
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("write oci-layout");
        let layout = Self {
            dir: dir.to_owned(),
        };
        layout.write_index(&json!({ "schemaVersion": 2, "manifests": [] }));
        layout
    }

    /// A layout something else (skopeo) wrote at `dir`.
    pub fn open(dir: &Path) -> Self {
        assert!(
            dir.join("oci-layout").is_file(),
            "{} is no OCI layout",
            dir.display()
        );
        Self {
            dir: dir.to_owned(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let (algorithm, hex) = digest
            .split_once(':')
            .unwrap_or_else(|| panic!("malformed digest {digest:?}"));
        self.dir.join("blobs").join(algorithm).join(hex)
    }

    pub fn put_blob(&self, media_type: &str, bytes: &[u8]) -> Descriptor {
        let mut writer = self.blob_writer();
        writer.write_all(bytes).expect("write a blob");
        writer.finish(media_type)
    }

    /// Stores `value` as compact JSON — the exact bytes the digest covers.
    pub fn put_json(&self, media_type: &str, value: &Value) -> Descriptor {
        let bytes = serde_json::to_vec(value).expect("serialize JSON");
        self.put_blob(media_type, &bytes)
    }

    /// A writer that streams a blob into the layout, hashing as it goes.
    pub fn blob_writer(&self) -> BlobWriter {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .dir
            .join(format!(".incoming-{}-{n}", std::process::id()));
        let file = File::create(&temp).expect("create a temp blob file");
        BlobWriter {
            file: BufWriter::with_capacity(1 << 20, file),
            temp,
            hasher: Sha256::new(),
            size: 0,
            layout_dir: self.dir.clone(),
        }
    }

    pub fn read_blob(&self, digest: &str) -> Vec<u8> {
        let path = self.blob_path(digest);
        fs::read(&path).unwrap_or_else(|e| panic!("read blob {}: {e}", path.display()))
    }

    /// Points `tag` at `descriptor` in `index.json` (replacing an older entry for the tag).
    pub fn tag(&self, tag: &str, descriptor: &Descriptor) {
        let mut index = self.index();
        let manifests = index["manifests"]
            .as_array_mut()
            .expect("index.json has a manifests array");
        manifests.retain(|m| m["annotations"]["org.opencontainers.image.ref.name"] != tag);
        let mut entry = descriptor.to_json();
        entry["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
        manifests.push(entry);
        self.write_index(&index);
    }

    /// The descriptor `index.json` holds for `tag`.
    pub fn tagged(&self, tag: &str) -> Descriptor {
        let index = self.index();
        let entry = index["manifests"]
            .as_array()
            .expect("index.json has a manifests array")
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap_or_else(|| panic!("no tag {tag} in {}: {index}", self.dir.display()));
        Descriptor {
            media_type: entry["mediaType"].as_str().unwrap_or_default().to_owned(),
            digest: entry["digest"]
                .as_str()
                .expect("descriptor digest")
                .to_owned(),
            size: entry["size"].as_u64().expect("descriptor size"),
        }
    }

    /// Every blob digest in the layout.
    pub fn blob_digests(&self) -> BTreeSet<String> {
        let mut digests = BTreeSet::new();
        for algorithm in fs::read_dir(self.dir.join("blobs")).expect("list blobs/") {
            let algorithm = algorithm.expect("read blobs/ entry");
            let name = algorithm.file_name().into_string().expect("UTF-8 names");
            for blob in fs::read_dir(algorithm.path()).expect("list blobs/<alg>/") {
                let blob = blob.expect("read blob entry").file_name();
                digests.insert(format!("{name}:{}", blob.to_string_lossy()));
            }
        }
        digests
    }

    fn index(&self) -> Value {
        let bytes = fs::read(self.dir.join("index.json")).expect("read index.json");
        serde_json::from_slice(&bytes).expect("index.json is JSON")
    }

    fn write_index(&self, index: &Value) {
        fs::write(self.dir.join("index.json"), index.to_string()).expect("write index.json");
    }
}

/// Streams one blob into a layout; [`BlobWriter::finish`] names it by its digest.
pub struct BlobWriter {
    file: BufWriter<File>,
    temp: PathBuf,
    hasher: Sha256,
    size: u64,
    layout_dir: PathBuf,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter {
    pub fn finish(mut self, media_type: &str) -> Descriptor {
        self.file.flush().expect("flush a blob");
        let hex = hex::encode(self.hasher.finalize());
        let target = self.layout_dir.join("blobs/sha256").join(&hex);
        fs::rename(&self.temp, &target).expect("move a blob into blobs/sha256");
        Descriptor {
            media_type: media_type.to_owned(),
            digest: format!("sha256:{hex}"),
            size: self.size,
        }
    }
}

/// Asserts that two small byte strings (manifests) are equal, showing both as text if not.
pub fn assert_same_bytes(what: &str, expected: &[u8], actual: &[u8]) {
    assert!(
        expected == actual,
        "{what} differs\n  expected: {}\n    actual: {}",
        String::from_utf8_lossy(expected),
        String::from_utf8_lossy(actual)
    );
}

/// Asserts that `actual` holds exactly the blobs of `expected`, byte for byte.
pub fn assert_same_blobs(expected: &OciLayout, actual: &OciLayout) {
    let want = expected.blob_digests();
    let got = actual.blob_digests();
    assert_eq!(
        want,
        got,
        "blob sets differ between {} and {}",
        expected.dir.display(),
        actual.dir.display()
    );
    for digest in &want {
        assert_same_file(&expected.blob_path(digest), &actual.blob_path(digest));
    }
}

/// Asserts that two directories hold the same file names with identical contents (one level).
pub fn assert_same_dir(expected: &Path, actual: &Path) {
    let names = |dir: &Path| -> BTreeSet<String> {
        fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
            .map(|entry| {
                entry
                    .expect("read dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into()
            })
            .collect()
    };
    let want = names(expected);
    assert_eq!(
        want,
        names(actual),
        "{} and {} hold different files",
        expected.display(),
        actual.display()
    );
    for name in &want {
        assert_same_file(&expected.join(name), &actual.join(name));
    }
}

/// Asserts two files are byte-identical, reading both in 1 MiB chunks.
pub fn assert_same_file(expected: &Path, actual: &Path) {
    let open = |p: &Path| File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let (mut a, mut b) = (open(expected), open(actual));
    let (mut buf_a, mut buf_b) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut offset = 0u64;
    loop {
        let n = read_full(&mut a, &mut buf_a);
        let m = read_full(&mut b, &mut buf_b);
        let same = buf_a[..n] == buf_b[..m];
        assert!(
            same,
            "{} and {} differ in the 1 MiB chunk at offset {offset} (read {n} and {m} bytes)",
            expected.display(),
            actual.display()
        );
        if n == 0 {
            return;
        }
        offset += n as u64;
    }
}

/// Reads until `buf` is full or the reader is at its end; returns the count read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read while comparing files: {e}"),
        }
    }
    filled
}
