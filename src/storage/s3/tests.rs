use bytes::Bytes;

use super::seaweed::{Seaweed, ACCESS_KEY, BUCKET, SECRET_KEY};
use super::{S3Driver, S3Settings, MIN_PART_SIZE};
use crate::storage::suite::{read_all, run_all};
use crate::storage::StorageDriver;

/// Settings for a fresh prefix in the shared bucket of `server`.
pub(crate) fn settings(server: &Seaweed) -> S3Settings {
    S3Settings {
        bucket: BUCKET.to_owned(),
        prefix: server.fresh_prefix(),
        endpoint: server.endpoint(),
        access_key_id: Some(ACCESS_KEY.to_owned()),
        secret_access_key: Some(SECRET_KEY.to_owned()),
        ..S3Settings::default()
    }
}

/// [`settings`] with S3's smallest parts, so that a few MiB make several.
fn small_parts(server: &Seaweed) -> S3Settings {
    S3Settings {
        part_size: MIN_PART_SIZE,
        ..settings(server)
    }
}

/// The suite every driver passes, against a real S3 server, with and without a prefix.
#[test]
fn s3_driver_passes_the_suite() {
    let server = Seaweed::shared();
    server.create_bucket("plain");
    let plain = S3Settings {
        bucket: "plain".to_owned(),
        prefix: String::new(),
        ..settings(server)
    };
    let mut prefixed = settings(server);
    prefixed.prefix = format!("/{}/root/", prefixed.prefix);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        run_all(&S3Driver::new(&plain).unwrap()).await;
        run_all(&S3Driver::new(&prefixed).unwrap()).await;
    });
}

/// A write of several parts, closed and continued by another writer (another process or node
/// would do the same: the state is in the bucket), committed into one object.
#[test]
fn a_multipart_write_survives_its_writer_and_commits_whole() {
    let settings = small_parts(Seaweed::shared());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let driver = S3Driver::new(&settings).unwrap();
        let part = MIN_PART_SIZE as usize;
        let content: Vec<u8> = (0..part * 2 + part / 2).map(|i| (i % 251) as u8).collect();
        let (first, rest) = content.split_at(part + 1000);

        let mut w = driver.writer("up/data", false).await.unwrap();
        for chunk in first.chunks(256 * 1024) {
            w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        w.close().await.unwrap();
        assert_eq!(
            driver.stat("up/data").await.unwrap().size,
            first.len() as u64
        );
        assert_eq!(driver.list("up").await.unwrap(), ["data"]);
        assert!(
            driver.reader("up/data", 0, None).await.is_err(),
            "parts cannot be read"
        );

        let again = S3Driver::new(&settings).unwrap();
        let mut w = again.writer("up/data", true).await.unwrap();
        assert_eq!(w.size(), first.len() as u64);
        for chunk in rest.chunks(300 * 1024) {
            w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        w.commit().await.unwrap();
        assert_eq!(
            driver.stat("up/data").await.unwrap().size,
            content.len() as u64
        );
        assert!(
            read_all(&driver, "up/data", 0, None).await == content,
            "bytes differ"
        );
        assert_eq!(driver.list("up").await.unwrap(), ["data"], "no state left");
        driver.delete("up").await.unwrap();
        assert!(driver.stat("up/data").await.unwrap_err().is_not_found());
    });
}

/// Deleting an unfinished write gives its parts back and leaves nothing.
#[test]
fn deleting_an_unfinished_write_leaves_nothing() {
    let settings = small_parts(Seaweed::shared());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let driver = S3Driver::new(&settings).unwrap();
        let mut w = driver.writer("u/1/data", false).await.unwrap();
        w.write(Bytes::from(vec![7u8; MIN_PART_SIZE as usize + 1]))
            .await
            .unwrap();
        w.close().await.unwrap();
        driver.delete("u").await.unwrap();
        assert!(driver.stat("u/1/data").await.unwrap_err().is_not_found());
        assert!(driver.objects_under("u").await.unwrap().is_empty());
        // Nor a folder SeaweedFS would otherwise list for minutes.
        assert!(driver.list("u").await.unwrap_err().is_not_found());
    });
}

/// An object too large for one copy (S3: over 5 GiB; here over 5 MiB) is renamed by copying
/// its ranges into the parts of a multipart upload, whole and byte-identical.
#[test]
fn a_rename_too_large_for_one_copy_goes_in_ranges() {
    let server = Seaweed::shared();
    let settings = settings(server);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let driver = S3Driver::new(&settings)
            .unwrap()
            .copying_whole_up_to(MIN_PART_SIZE);
        let content: Vec<u8> = (0..12 * 1024 * 1024 + 7).map(|i| (i % 241) as u8).collect();
        let mut w = driver.writer("up/data", false).await.unwrap();
        w.write(Bytes::from(content.clone())).await.unwrap();
        w.commit().await.unwrap();
        driver.rename("up/data", "blobs/x/data").await.unwrap();
        assert!(
            read_all(&driver, "blobs/x/data", 0, None).await == content,
            "bytes differ"
        );
        assert!(driver.stat("up/data").await.unwrap_err().is_not_found());
    });
}

/// A read outlives object_store's default 30 s bound on a whole request: a big blob streams
/// to a slow client for as long as it takes (only silence from the bucket ends it).
#[test]
fn a_slow_reader_is_not_cut_off() {
    let settings = settings(Seaweed::shared());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use futures_util::StreamExt;
        let driver = S3Driver::new(&settings).unwrap();
        let content: Vec<u8> = (0..12 << 20).map(|i| (i % 253) as u8).collect();
        driver
            .put("slow", Bytes::from(content.clone()))
            .await
            .unwrap();
        let mut stream = driver.reader("slow", 0, None).await.unwrap();
        let mut read = stream.next().await.unwrap().unwrap().to_vec();
        tokio::time::sleep(std::time::Duration::from_secs(32)).await;
        while let Some(chunk) = stream.next().await {
            read.extend_from_slice(&chunk.expect("the rest after a pause"));
        }
        assert!(read == content, "{} of {} bytes", read.len(), content.len());
    });
}
