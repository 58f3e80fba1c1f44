//! Store behaviour over the real filesystem driver in a temporary directory.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;

use super::*;
use crate::registry::types::{Digest, Reference, RepoName};
use crate::storage::suite::files_under;
use crate::storage::FsDriver;

fn store_in(dir: &std::path::Path) -> Store {
    Store::new(Arc::new(FsDriver::new(dir)), StoreOptions::default())
}

fn body(bytes: &'static [u8]) -> Body {
    futures_util::stream::iter([Ok(Bytes::from_static(bytes))]).boxed()
}

fn name(s: &str) -> RepoName {
    s.parse().unwrap()
}

/// Every file below `dir`, as sorted relative paths (also used by the GC's tests).
async fn push_blob(store: &Store, repo: &RepoName, content: &'static [u8]) -> Digest {
    let digest = Digest::sha256_of(content);
    store
        .upload_monolithic(repo, &digest, body(content))
        .await
        .unwrap();
    digest
}

fn image_manifest(config: &Digest, layer: &Digest, subject: Option<&Digest>) -> Bytes {
    let subject = subject
        .map(|s| format!(r#","subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{s}","size":1}}"#))
        .unwrap_or_default();
    Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/x-test","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":5}}]{subject}}}"#
    ))
}

#[tokio::test]
async fn a_digest_mismatch_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let repo = name("a");
    let wrong = Digest::sha256_of(b"something else");
    let err = store
        .upload_monolithic(&repo, &wrong, body(b"hello"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }));
    assert!(
        files_under(dir.path()).is_empty(),
        "{:?}",
        files_under(dir.path())
    );
}

#[tokio::test]
async fn an_upload_survives_a_restart_and_rejects_out_of_order_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let repo = name("a");
    let id = {
        let store = store_in(dir.path());
        let id = store.upload_start(&repo).await.unwrap();
        assert_eq!(
            store
                .upload_append(&repo, &id, Some(0), body(b"hel"))
                .await
                .unwrap(),
            3
        );
        id
    };
    // A new store has no hash state: it must rebuild it from the bytes on disk.
    let store = store_in(dir.path());
    assert_eq!(store.upload_size(&repo, &id).await.unwrap(), 3);
    let err = store
        .upload_append(&repo, &id, Some(1), body(b"xx"))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::UploadOutOfOrder {
            requested: 1,
            size: 3
        }
    ));
    store
        .upload_append(&repo, &id, Some(3), body(b"lo"))
        .await
        .unwrap();
    let digest = Digest::sha256_of(b"hello");
    store
        .upload_finish(&repo, &id, &digest, None)
        .await
        .unwrap();
    assert_eq!(store.blob_size(&repo, &digest).await.unwrap(), 5);
    assert!(matches!(
        store.upload_size(&repo, &id).await.unwrap_err(),
        StoreError::UploadUnknown
    ));
}

#[tokio::test]
async fn sha512_uploads_are_verified_with_sha512() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let repo = name("a");
    let digest = Digest::of(crate::registry::types::Algorithm::Sha512, b"hello");
    store
        .upload_monolithic(&repo, &digest, body(b"hello"))
        .await
        .unwrap();
    assert_eq!(store.blob_size(&repo, &digest).await.unwrap(), 5);
}

#[tokio::test]
async fn manifests_need_their_blobs_and_deleting_one_removes_its_tags() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let repo = name("team/app");
    let config = push_blob(&store, &repo, b"{}").await;
    let missing = Digest::sha256_of(b"hello");
    let tag = Reference::Tag("v1".parse().unwrap());
    let manifest = image_manifest(&config, &missing, None);
    let err = store
        .manifest_put(&repo, &tag, None, manifest.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ManifestBlobUnknown(d) if d == missing));
    assert!(store.tags(&repo, None, None).await.unwrap().is_empty());

    let layer = push_blob(&store, &repo, b"hello").await;
    let manifest = image_manifest(&config, &layer, None);
    let put = store
        .manifest_put(&repo, &tag, None, manifest.clone())
        .await
        .unwrap();
    let got = store.manifest_get(&repo, &tag).await.unwrap();
    assert_eq!(
        (got.digest.clone(), got.body),
        (put.digest.clone(), manifest)
    );
    assert_eq!(got.media_type, "application/vnd.oci.image.manifest.v1+json");

    store
        .manifest_delete(&repo, &Reference::Digest(put.digest.clone()))
        .await
        .unwrap();
    assert!(store.tags(&repo, None, None).await.unwrap().is_empty());
    assert!(matches!(
        store.manifest_get(&repo, &tag).await,
        Err(StoreError::ManifestUnknown(_))
    ));
}

#[tokio::test]
async fn referrers_are_derived_from_subjects() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let repo = name("a");
    let config = push_blob(&store, &repo, b"{}").await;
    let layer = push_blob(&store, &repo, b"hello").await;
    let image = store
        .manifest_put(
            &repo,
            &Reference::Tag("1".parse().unwrap()),
            None,
            image_manifest(&config, &layer, None),
        )
        .await
        .unwrap()
        .digest;
    let signature = image_manifest(&config, &layer, Some(&image));
    let sig = store
        .manifest_put(
            &repo,
            &Reference::Digest(Digest::sha256_of(&signature)),
            None,
            signature,
        )
        .await
        .unwrap();
    assert_eq!(sig.subject.as_ref(), Some(&image));
    // A fresh store (empty cache) derives the same answer from disk.
    let store = store_in(dir.path());
    let found = store.referrers(&repo, &image, None).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].digest, sig.digest);
    assert_eq!(
        found[0].artifact_type.as_deref(),
        Some("application/x-test")
    );
    assert!(store
        .referrers(&repo, &image, Some("other/type"))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn catalog_lists_nested_names_in_order_and_follows_new_pushes() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    for repo in ["b", "a/x", "a", "c/d/e"] {
        push_blob(&store, &name(repo), b"x").await;
    }
    assert_eq!(
        store.catalog(None, None).await.unwrap(),
        ["a", "a/x", "b", "c/d/e"]
    );
    assert_eq!(store.catalog(Some("a/x"), Some(1)).await.unwrap(), ["b"]);
    push_blob(&store, &name("aa"), b"x").await;
    assert_eq!(
        store.catalog(Some("a/x"), None).await.unwrap(),
        ["aa", "b", "c/d/e"]
    );
}

#[tokio::test]
async fn concurrent_pushes_of_one_blob_into_many_repositories_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(store_in(dir.path()));
    let digest = Digest::sha256_of(b"shared layer");
    let pushes = (0..16).map(|i| {
        let store = store.clone();
        let digest = digest.clone();
        tokio::spawn(async move {
            let repo = name(&format!("r{}", i % 4));
            store
                .upload_monolithic(&repo, &digest, body(b"shared layer"))
                .await
        })
    });
    for push in pushes {
        push.await.unwrap().unwrap();
    }
    for i in 0..4 {
        assert_eq!(
            store
                .blob_size(&name(&format!("r{i}")), &digest)
                .await
                .unwrap(),
            12
        );
    }
}

#[tokio::test]
async fn an_immutable_tag_takes_its_own_digest_again_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let rules = ImmutableTags::new(vec![ImmutableRule {
        repositories: crate::auth::access::RepoGlob::parse("**").unwrap(),
        tags: regex::Regex::new(r"^v[0-9]+\.[0-9]+\.[0-9]+$").unwrap(),
    }]);
    let store = Store::new(
        Arc::new(FsDriver::new(dir.path())),
        StoreOptions {
            immutable: rules,
            ..StoreOptions::default()
        },
    );
    let repo = name("team/app");
    let config = push_blob(&store, &repo, b"{}").await;
    let one = push_blob(&store, &repo, b"hello").await;
    let two = push_blob(&store, &repo, b"world").await;
    let release = Reference::parse("v1.0.0").unwrap();
    let latest = Reference::parse("latest").unwrap();
    let (first, second) = (
        image_manifest(&config, &one, None),
        image_manifest(&config, &two, None),
    );
    let pushed = store
        .manifest_put(&repo, &release, None, first.clone())
        .await
        .unwrap();
    // A CI retry of the same push.
    store
        .manifest_put(&repo, &release, None, first.clone())
        .await
        .unwrap();
    let refused = store
        .manifest_put(&repo, &release, None, second.clone())
        .await
        .unwrap_err();
    let StoreError::TagImmutable { rule, current, .. } = &refused else {
        panic!("{refused:?}")
    };
    assert!(
        rule.starts_with("[[immutable]] #1 (repositories \"**\""),
        "{rule}"
    );
    assert_eq!(current.as_ref(), Some(&pushed.digest));
    assert!(
        refused.to_string().contains("team/app:v1.0.0 is immutable"),
        "{refused}"
    );
    // A mutable tag moves as ever.
    store
        .manifest_put(&repo, &latest, None, first.clone())
        .await
        .unwrap();
    store
        .manifest_put(&repo, &latest, None, second.clone())
        .await
        .unwrap();
    // Neither the tag nor the manifest it names can be deleted.
    assert!(matches!(
        store.manifest_delete(&repo, &release).await,
        Err(StoreError::TagImmutable { .. })
    ));
    let by_digest = Reference::Digest(pushed.digest.clone());
    assert!(matches!(
        store.manifest_delete(&repo, &by_digest).await,
        Err(StoreError::TagImmutable { .. })
    ));
    let kept = store.manifest_get(&repo, &release).await.unwrap();
    assert_eq!(kept.digest, pushed.digest);
}
