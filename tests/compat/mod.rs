//! Two-way on-disk compatibility with docker-registry 2.8 (CNCF distribution): a store written
//! by one implementation is served unchanged by the other, so operators can switch either way
//! by pointing the other server at the same root directory.

pub mod corpus;

use std::path::Path;

use tempfile::TempDir;

use self::corpus::Corpus;
use crate::util::seaweed::Seaweed;
use crate::util::{catalog, registry_under_test, DockerRegistry, Regapp, Registry, Skopeo};

/// A scratch directory, the storage root inside it, a skopeo and the images.
fn setup() -> (TempDir, Skopeo, Corpus) {
    let work = tempfile::tempdir().expect("create a scratch dir");
    let skopeo = Skopeo::new();
    let corpus = Corpus::build(work.path(), &skopeo);
    (work, skopeo, corpus)
}

fn root(work: &TempDir) -> std::path::PathBuf {
    work.path().join("root")
}

/// Pushes the corpus with `writer`, checks its catalog and tags, and stops it.
fn write_with(writer: &mut dyn Registry, skopeo: &Skopeo, corpus: &Corpus) {
    corpus.push(skopeo, writer);
    assert_eq!(
        catalog(writer),
        Corpus::repositories(),
        "catalog of {} right after the pushes",
        writer.name()
    );
    writer.stop();
}

/// Reads the corpus back with `reader`: every manifest and blob byte-identical, tags and
/// catalog as written.
fn read_with(reader: &dyn Registry, skopeo: &Skopeo, corpus: &Corpus, root: &Path) {
    corpus.verify(skopeo, reader);
    assert_eq!(
        catalog(reader),
        Corpus::repositories(),
        "catalog {} serves from {}",
        reader.name(),
        root.display()
    );
}

/// Protects migrating from docker-registry to regapp: everything docker-registry 2.8 stored
/// (OCI images and indexes, Docker schema2, shared blobs, nested names, several tags) is served
/// by the registry under test from the same root, byte for byte.
#[test]
fn reads_what_docker_registry_wrote() {
    let (work, skopeo, corpus) = setup();
    let root = root(&work);
    let mut reference = DockerRegistry::start(&root);
    write_with(&mut reference, &skopeo, &corpus);

    let registry = registry_under_test(&root);
    read_with(&*registry, &skopeo, &corpus, &root);
}

/// Protects migrating back: everything the registry under test stored is served by
/// docker-registry 2.8 from the same root, byte for byte, with the same tags and catalog —
/// which needs every link file, `_layers` included, in registry:2's format.
#[test]
fn docker_registry_reads_what_we_wrote() {
    let (work, skopeo, corpus) = setup();
    let root = root(&work);
    let mut registry = registry_under_test(&root);
    write_with(&mut *registry, &skopeo, &corpus);

    let reference = DockerRegistry::start(&root);
    read_with(&reference, &skopeo, &corpus, &root);
}

/// The same both ways on S3: one prefix of one bucket, written by docker-registry's `s3-aws`
/// driver and served by regapp's S3 backend, then the reverse in another prefix.
#[test]
fn both_ways_on_the_same_bucket() {
    let (work, skopeo, corpus) = setup();
    let server = Seaweed::shared();

    let prefix = server.fresh_prefix();
    let mut reference = DockerRegistry::start_on_s3(&prefix);
    write_with(&mut reference, &skopeo, &corpus);
    let registry = Regapp::start_on_s3_prefix(&work.path().join("node-1"), &prefix);
    read_with(&registry, &skopeo, &corpus, Path::new(&prefix));
    drop(registry);

    let prefix = server.fresh_prefix();
    let mut registry = Regapp::start_on_s3_prefix(&work.path().join("node-2"), &prefix);
    write_with(&mut registry, &skopeo, &corpus);
    let reference = DockerRegistry::start_on_s3(&prefix);
    read_with(&reference, &skopeo, &corpus, Path::new(&prefix));
}
