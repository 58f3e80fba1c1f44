//! A store collected by regapp is still registry:2's: Debian's docker-registry 2.8 serves every
//! image of the compatibility corpus from it, byte for byte — the multi-arch index's platform
//! images included, though they are untagged and the run had `--delete-untagged`.

use super::{blob_files, blob_path, regapp_ok};
use crate::compat::corpus::Corpus;
use crate::util::images;
use crate::util::regapp::write_config;
use crate::util::skopeo::docker_ref;
use crate::util::{DockerRegistry, Regapp, Registry, Skopeo};

#[test]
fn docker_registry_serves_a_store_regapp_collected() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let skopeo = Skopeo::new();
    let corpus = Corpus::build(work.path(), &skopeo);
    let garbage = images::small_image(&work.path().join("garbage"), "garbage");

    let mut server = Regapp::start(&root);
    corpus.push(&skopeo, &server);
    let remote = docker_ref(server.host(), "compat/garbage:v1");
    skopeo.copy(&garbage.reference(), &remote);
    let status = reqwest::blocking::Client::new()
        .delete(format!("{}/v2/compat/garbage/manifests/v1", server.url()))
        .send()
        .unwrap()
        .status();
    assert_eq!(status, 202);
    server.stop();

    // No server now: `regapp gc` collects on the store itself.
    let (_dir, config) = write_config(&root, "[gc]\ngrace = \"0s\"\n");
    let before = blob_files(&root);
    let summary = regapp_ok(&["gc", "--delete-untagged"], &config);
    assert!(summary.contains("collected without a server"), "{summary}");
    // The garbage image: manifest, config and its name layer (the plain layer is shared with
    // the corpus's small image).
    assert_eq!(super::blobs_removed(&summary), 3, "{summary}");
    assert_eq!(blob_files(&root), before - 3);
    assert!(!blob_path(&root, &garbage.top.digest).exists());
    // Without a server, `regapp gc` gives the space back before it exits.
    assert!(!root.join("regapp-trash").exists());

    let reference = DockerRegistry::start(&root);
    corpus.verify(&skopeo, &reference);
}
