//! Where an upload's bytes gather until they are a part: an unnamed file on local disk, so that
//! a writer's memory is a small staging buffer whatever the part size and however slowly its
//! client sends (a part's worth of memory per upload would grow with the uploads in flight).
//! The file has no name: it is gone when the last handle drops, however the process ends.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::storage::ByteStream;

/// Bytes staged in memory before they go to the file, and read back at once.
const STAGE: usize = 256 * 1024;

/// A file being filled.
pub(super) struct Spool {
    file: Arc<File>,
    written: u64,
    staged: BytesMut,
}

impl Spool {
    pub(super) fn new(dir: &Path) -> io::Result<Spool> {
        Ok(Spool {
            file: Arc::new(tempfile::tempfile_in(dir)?),
            written: 0,
            staged: BytesMut::new(),
        })
    }

    pub(super) fn len(&self) -> u64 {
        self.written + self.staged.len() as u64
    }

    pub(super) async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.staged.extend_from_slice(chunk);
        if self.staged.len() >= STAGE {
            self.flush().await?;
        }
        Ok(())
    }

    /// Appends everything in `stream`.
    pub(super) async fn write_all(&mut self, mut stream: ByteStream) -> io::Result<()> {
        while let Some(chunk) = stream.next().await {
            self.write(&chunk?).await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let bytes = self.staged.split().freeze();
        let (file, at) = (self.file.clone(), self.written);
        let len = bytes.len() as u64;
        tokio::task::spawn_blocking(move || file.write_all_at(&bytes, at))
            .await
            .map_err(io::Error::other)??;
        self.written += len;
        Ok(())
    }

    /// The bytes written, to be read as often as needed (a retried request reads them again).
    pub(super) async fn seal(mut self) -> io::Result<Sealed> {
        self.flush().await?;
        Ok(Sealed {
            file: self.file,
            len: self.written,
        })
    }
}

/// A spool's finished content.
pub(super) struct Sealed {
    file: Arc<File>,
    len: u64,
}

impl Sealed {
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    pub(super) fn stream(&self) -> ByteStream {
        let (file, len) = (self.file.clone(), self.len);
        futures_util::stream::try_unfold(0u64, move |at| {
            let file = file.clone();
            async move {
                if at >= len {
                    return Ok(None);
                }
                let size = (len - at).min(STAGE as u64) as usize;
                let bytes = tokio::task::spawn_blocking(move || {
                    let mut buffer = vec![0; size];
                    file.read_exact_at(&mut buffer, at).map(|()| buffer)
                })
                .await
                .map_err(io::Error::other)??;
                Ok(Some((Bytes::from(bytes), at + size as u64)))
            }
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_spool_gives_back_what_was_written_as_often_as_asked() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new(dir.path()).unwrap();
        let content: Vec<u8> = (0..STAGE * 3 + 17).map(|i| (i % 251) as u8).collect();
        for chunk in content.chunks(10_000) {
            spool.write(chunk).await.unwrap();
        }
        assert_eq!(spool.len(), content.len() as u64);
        let sealed = spool.seal().await.unwrap();
        for _ in 0..2 {
            let read: Vec<Bytes> = sealed
                .stream()
                .map(Result::unwrap)
                .collect::<Vec<_>>()
                .await;
            assert_eq!(read.concat(), content);
        }
        // Nothing left behind in the directory: the file has no name.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
