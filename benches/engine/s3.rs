//! `--s3` and `--cluster`: regapp and docker-registry on one SeaweedFS (the tests' harness,
//! `tests/util/seaweed.rs`, started once for the run and gone with it), each in a prefix of
//! its own (a cluster's nodes share theirs); the catalog's repositories are written into the
//! bucket with regapp's S3 driver.

use std::path::Path;

use futures_util::StreamExt;

use crate::seaweed::{Seaweed, ACCESS_KEY, BUCKET, SECRET_KEY};
use crate::server::Kind;
use crate::BenchResult;

/// The prefix `kind`'s store lives under in the bucket.
fn prefix(kind: Kind) -> String {
    // regapp with and without redirect serve the same store shape; each has its own.
    format!("bench-{}-{}", std::process::id(), kind.name())
}

/// The `[storage]` lines of `kind` (nothing on disk); credentials go into `dir`.
pub fn regapp_storage(kind: Kind, dir: &Path) -> BenchResult<String> {
    if kind == Kind::Regapp {
        return Ok(String::new());
    }
    let server = Seaweed::shared();
    let credentials = dir.join("s3-credentials");
    std::fs::write(
        &credentials,
        format!(
            "[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        ),
    )?;
    Ok(format!(
        "backend = \"s3\"\n[storage.s3]\nbucket = \"{BUCKET}\"\nendpoint = \"{}\"\nprefix = \"{}\"\n\
         credentials_file = {:?}\nredirect = {}\n",
        server.endpoint(),
        prefix(kind),
        credentials,
        kind == Kind::RegappS3Redirect,
    ))
}

/// docker-registry's `storage:` entries for its `s3-aws` driver.
pub fn docker_registry_storage(kind: Kind) -> String {
    let server = Seaweed::shared();
    format!(
        "  s3:\n    region: us-east-1\n    regionendpoint: \"{}\"\n    bucket: {BUCKET}\n    \
         accesskey: {ACCESS_KEY}\n    secretkey: {SECRET_KEY}\n    secure: false\n    \
         v4auth: true\n    rootdirectory: /{}\n  redirect:\n    disable: true\n",
        server.endpoint(),
        prefix(kind),
    )
}

/// Whether `kind` keeps its registry in the bucket.
pub fn in_bucket(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::RegappS3 | Kind::RegappS3Redirect | Kind::DockerRegistryS3
    ) || kind.cluster_nodes().is_some()
}

/// Copies the layout seeded under `root` into `kind`'s prefix, 32 objects at a time.
pub fn upload_seeded(kind: Kind, root: &Path) -> BenchResult<()> {
    let server = Seaweed::shared();
    let settings = regapp::storage::S3Settings {
        bucket: BUCKET.to_owned(),
        endpoint: server.endpoint(),
        prefix: prefix(kind),
        access_key_id: Some(ACCESS_KEY.to_owned()),
        secret_access_key: Some(SECRET_KEY.to_owned()),
        ..Default::default()
    };
    let driver = regapp::storage::S3Driver::new(&settings)?;
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let driver = &driver;
        let puts = futures_util::stream::iter(files.iter().map(|path| async move {
            let key = path
                .strip_prefix(root)?
                .to_str()
                .ok_or("UTF-8 paths")?
                .to_owned();
            let content = std::fs::read(path)?;
            use regapp::storage::StorageDriver;
            driver.put(&key, content.into()).await?;
            BenchResult::Ok(())
        }));
        let results: Vec<_> = puts.buffer_unordered(32).collect().await;
        results.into_iter().collect::<BenchResult<Vec<()>>>()
    })?;
    std::fs::remove_dir_all(root)?;
    Ok(())
}
