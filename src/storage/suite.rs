//! One behaviour suite every storage driver must pass. Each driver's test module calls
//! [`run_all`] with a fresh, empty driver.

use bytes::Bytes;
use futures_util::TryStreamExt;

use super::{Publish, StorageDriver, StorageError};

pub(crate) async fn read_all(
    driver: &dyn StorageDriver,
    key: &str,
    offset: u64,
    len: Option<u64>,
) -> Vec<u8> {
    let chunks: Vec<Bytes> = driver
        .reader(key, offset, len)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    chunks.concat()
}

pub async fn run_all(driver: &dyn StorageDriver) {
    put_get_and_replace(driver).await;
    streaming_write_append_and_ranged_read(driver).await;
    list_hides_temporaries_and_delete_is_recursive(driver).await;
    put_if_absent_writes_only_the_first(driver).await;
    put_if_version_writes_only_over_the_version_read(driver).await;
    lookups_of_many_keys_answer_for_each_in_order(driver).await;
    rename_replaces_target(driver).await;
    publish_runs_its_steps_in_order(driver).await;
    publish_stops_at_the_first_failure(driver).await;
    missing_keys_are_not_found(driver).await;
    keys_cannot_escape_the_root(driver).await;
}

async fn put_get_and_replace(driver: &dyn StorageDriver) {
    driver
        .put("a/b/link", Bytes::from_static(b"one"))
        .await
        .unwrap();
    assert_eq!(driver.get("a/b/link").await.unwrap(), "one");
    driver
        .put("a/b/link", Bytes::from_static(b"two"))
        .await
        .unwrap();
    assert_eq!(driver.get("a/b/link").await.unwrap(), "two");
    let info = driver.stat("a/b/link").await.unwrap();
    assert_eq!((info.size, info.is_dir), (3, false));
    assert!(driver.stat("a/b").await.unwrap().is_dir);
}

async fn streaming_write_append_and_ranged_read(driver: &dyn StorageDriver) {
    let mut w = driver.writer("up/data", false).await.unwrap();
    w.write(Bytes::from_static(b"hello ")).await.unwrap();
    assert_eq!(w.size(), 6);
    w.close().await.unwrap();
    let mut w = driver.writer("up/data", true).await.unwrap();
    assert_eq!(w.size(), 6);
    w.write(Bytes::from_static(b"world")).await.unwrap();
    w.commit().await.unwrap();
    assert_eq!(read_all(driver, "up/data", 0, None).await, b"hello world");
    assert_eq!(read_all(driver, "up/data", 6, Some(3)).await, b"wor");
    // A fresh (non-append) writer starts the object over.
    let w = driver.writer("up/data", false).await.unwrap();
    assert_eq!(w.size(), 0);
    w.commit().await.unwrap();
    assert_eq!(driver.stat("up/data").await.unwrap().size, 0);
}

async fn list_hides_temporaries_and_delete_is_recursive(driver: &dyn StorageDriver) {
    driver.put("dir/x", Bytes::new()).await.unwrap();
    driver.put("dir/sub/y", Bytes::new()).await.unwrap();
    let mut names = driver.list("dir").await.unwrap();
    names.sort();
    assert_eq!(names, ["sub", "x"]);
    driver.delete("dir").await.unwrap();
    assert!(driver.stat("dir/x").await.unwrap_err().is_not_found());
}

async fn put_if_absent_writes_only_the_first(driver: &dyn StorageDriver) {
    let first = driver.put_if_absent("lease/holder", Bytes::from_static(b"a"));
    assert!(first.await.unwrap(), "nothing was there");
    let second = driver.put_if_absent("lease/holder", Bytes::from_static(b"b"));
    assert!(!second.await.unwrap(), "something was there");
    assert_eq!(driver.get("lease/holder").await.unwrap(), "a");
    assert_eq!(driver.list("lease").await.unwrap(), ["holder"]);
}

async fn put_if_version_writes_only_over_the_version_read(driver: &dyn StorageDriver) {
    assert!(driver.get_versioned("cas/lease").await.unwrap().is_none());
    driver
        .put("cas/lease", Bytes::from_static(b"one"))
        .await
        .unwrap();
    let (content, one) = driver.get_versioned("cas/lease").await.unwrap().unwrap();
    assert_eq!(content, "one");
    let first = driver.put_if_version("cas/lease", Bytes::from_static(b"two"), &one);
    assert!(first.await.unwrap(), "still at the version read");
    let second = driver.put_if_version("cas/lease", Bytes::from_static(b"three"), &one);
    assert!(!second.await.unwrap(), "replaced since");
    let (content, two) = driver.get_versioned("cas/lease").await.unwrap().unwrap();
    assert_eq!(content, "two");
    assert_ne!(one, two);
    driver.delete("cas/lease").await.unwrap();
    let gone = driver.put_if_version("cas/lease", Bytes::from_static(b"four"), &two);
    assert!(!gone.await.unwrap(), "removed since");
    assert!(driver.get_versioned("cas/lease").await.unwrap().is_none());
}

async fn lookups_of_many_keys_answer_for_each_in_order(driver: &dyn StorageDriver) {
    for (key, content) in [("many/one", "1"), ("many/three", "333")] {
        driver.put(key, Bytes::from(content)).await.unwrap();
    }
    let keys = ["many/three", "many/missing", "../outside", "many/one"].map(String::from);

    let got = driver.get_each(&keys).await;
    assert_eq!(got.len(), 4);
    assert_eq!(got[0].as_ref().unwrap(), "333");
    assert!(got[1].as_ref().unwrap_err().is_not_found());
    assert!(matches!(got[2], Err(StorageError::InvalidKey(_))));
    assert_eq!(got[3].as_ref().unwrap(), "1");

    let stats = driver.stat_each(&keys).await;
    assert_eq!(stats.len(), 4);
    assert_eq!(stats[0].as_ref().unwrap().size, 3);
    assert!(stats[1].as_ref().unwrap_err().is_not_found());
    assert!(matches!(stats[2], Err(StorageError::InvalidKey(_))));
    assert_eq!(stats[3].as_ref().unwrap().size, 1);
    assert!(driver.get_each(&[]).await.is_empty());
}

async fn rename_replaces_target(driver: &dyn StorageDriver) {
    driver
        .put("m/src", Bytes::from_static(b"new"))
        .await
        .unwrap();
    driver
        .put("m/dst/data", Bytes::from_static(b"old"))
        .await
        .unwrap();
    driver.rename("m/src", "m/dst/data").await.unwrap();
    assert_eq!(driver.get("m/dst/data").await.unwrap(), "new");
    assert!(driver.get("m/src").await.unwrap_err().is_not_found());
    driver.rename("m/dst/data", "n/o/p/data").await.unwrap();
    assert_eq!(driver.get("n/o/p/data").await.unwrap(), "new");
}

async fn publish_runs_its_steps_in_order(driver: &dyn StorageDriver) {
    let mut w = driver.writer("pub/upload", false).await.unwrap();
    w.write(Bytes::from_static(b"blob")).await.unwrap();
    w.commit().await.unwrap();
    driver
        .publish(vec![
            Publish::Move {
                from: "pub/upload".into(),
                to: "pub/blobs/b/data".into(),
            },
            Publish::Put {
                key: "pub/links/b/link".into(),
                content: Bytes::from_static(b"b"),
            },
            Publish::Put {
                key: "pub/links/b/link".into(),
                content: Bytes::from_static(b"b again"),
            },
        ])
        .await
        .unwrap();
    assert_eq!(driver.get("pub/blobs/b/data").await.unwrap(), "blob");
    assert_eq!(driver.get("pub/links/b/link").await.unwrap(), "b again");
    assert!(driver.stat("pub/upload").await.unwrap_err().is_not_found());
}

async fn publish_stops_at_the_first_failure(driver: &dyn StorageDriver) {
    let failed = driver
        .publish(vec![
            Publish::Put {
                key: "half/first".into(),
                content: Bytes::from_static(b"1"),
            },
            Publish::Move {
                from: "half/missing".into(),
                to: "half/moved".into(),
            },
            Publish::Put {
                key: "half/never".into(),
                content: Bytes::from_static(b"n"),
            },
        ])
        .await
        .unwrap_err();
    assert!(failed.is_not_found(), "{failed}");
    assert!(failed.to_string().contains("half/missing"), "{failed}");
    assert_eq!(driver.get("half/first").await.unwrap(), "1");
    assert!(driver.get("half/never").await.unwrap_err().is_not_found());
}

async fn missing_keys_are_not_found(driver: &dyn StorageDriver) {
    assert!(driver.get("nope").await.unwrap_err().is_not_found());
    assert!(driver.stat("nope/x").await.unwrap_err().is_not_found());
    assert!(driver.list("nope").await.unwrap_err().is_not_found());
    assert!(driver.delete("nope").await.unwrap_err().is_not_found());
    assert!(driver.reader("nope", 0, None).await.is_err());
}

async fn keys_cannot_escape_the_root(driver: &dyn StorageDriver) {
    for key in ["../x", "a/../../x", "/etc/passwd", ""] {
        assert!(driver.get(key).await.is_err(), "{key:?} was read");
        assert!(
            driver.put(key, Bytes::new()).await.is_err(),
            "{key:?} was written"
        );
    }
}

#[tokio::test]
async fn fs_driver_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    run_all(&super::FsDriver::new(dir.path())).await;
    let left: Vec<String> = files_under(dir.path())
        .into_iter()
        .filter(|path| path.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");
}

/// Every file below `dir`, relative to it, sorted (test stores and what they leave behind).
pub(crate) fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                pending.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}
