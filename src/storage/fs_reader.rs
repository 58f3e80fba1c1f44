//! Reading a file as a stream of chunks, from the page cache on the caller's task when it can.
//!
//! A pull is mostly a blob that is already in the page cache (pushed or pulled a moment ago).
//! Reading it on a blocking thread cost a wake-up of that thread and of the request task for
//! every chunk, and on a 2-core machine those context switches cost more of the edge's CPU per
//! GiB pulled than the copy they moved off the task. So each
//! chunk is first read with `preadv2(RWF_NOWAIT)`, which copies what the page cache holds and
//! refuses (`EAGAIN`) rather than wait for the disk; only a chunk that would wait goes to a
//! blocking thread. Chunks are read into fresh buffers without zeroing them first.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::task::JoinHandle;

/// Well below glibc's mmap threshold as `main` sets it (1 MiB), so chunk buffers are recycled
/// from the heap; 128 KiB pulled faster than 256 KiB with a reading thread (more overlap of
/// read and send).
const CHUNK: usize = 128 * 1024;

/// The chunks of `file` from `offset`, `len` bytes or to its end.
pub(super) struct FileChunks {
    file: Arc<File>,
    at: u64,
    left: u64,
    /// A chunk being read on a blocking thread because the page cache did not hold it.
    waiting: Option<JoinHandle<io::Result<Bytes>>>,
}

impl FileChunks {
    pub(super) fn new(file: File, offset: u64, len: Option<u64>) -> FileChunks {
        FileChunks {
            file: Arc::new(file),
            at: offset,
            left: len.unwrap_or(u64::MAX),
            waiting: None,
        }
    }

    fn next_want(&self) -> usize {
        CHUNK.min(usize::try_from(self.left).unwrap_or(CHUNK))
    }

    /// Counts a chunk read; an empty one is the end of the file.
    fn advance(&mut self, chunk: io::Result<Bytes>) -> Option<io::Result<Bytes>> {
        match chunk {
            Ok(chunk) if chunk.is_empty() => {
                self.left = 0;
                None
            }
            Ok(chunk) => {
                self.at += chunk.len() as u64;
                self.left -= chunk.len() as u64;
                Some(Ok(chunk))
            }
            Err(e) => {
                // Nothing after an error: the reader sees a short body, never a wrong one.
                self.left = 0;
                Some(Err(e))
            }
        }
    }
}

impl Stream for FileChunks {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(waiting) = &mut self.waiting {
            let read =
                ready!(Pin::new(waiting).poll(cx)).unwrap_or_else(|e| Err(io::Error::other(e)));
            self.waiting = None;
            return Poll::Ready(self.advance(read));
        }
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let want = self.next_want();
        match read_chunk(&self.file, self.at, want, Wait::No) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            read => return Poll::Ready(self.advance(read)),
        }
        let (file, at) = (Arc::clone(&self.file), self.at);
        self.waiting = Some(tokio::task::spawn_blocking(move || {
            read_chunk(&file, at, want, Wait::Yes)
        }));
        self.poll_next(cx)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Only what the page cache holds now (`RWF_NOWAIT`); `WouldBlock` if that is nothing.
    No,
    Yes,
}

/// Up to `want` bytes at `at`, read straight into a new buffer; empty at the end of the file.
fn read_chunk(file: &File, at: u64, want: usize, wait: Wait) -> io::Result<Bytes> {
    let offset = libc::off_t::try_from(at).map_err(io::Error::other)?;
    let flags = if wait == Wait::No {
        libc::RWF_NOWAIT
    } else {
        0
    };
    let mut buf = BytesMut::with_capacity(want);
    loop {
        let spare = buf.spare_capacity_mut();
        let iov = libc::iovec {
            iov_base: spare.as_mut_ptr().cast(),
            iov_len: want,
        };
        // SAFETY: the kernel writes at most `want` bytes through `iov`, into the spare capacity
        // `buf` owns (at least `want`) and nothing else references during the call.
        let read = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset, flags) };
        match usize::try_from(read) {
            Ok(read) => {
                // SAFETY: `preadv2` initialised the first `read` bytes of the spare capacity.
                unsafe { buf.set_len(read) };
                return Ok(buf.freeze());
            }
            Err(_) => {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    // A kernel or filesystem without `RWF_NOWAIT` for reads: read and wait.
                    _ if e.raw_os_error() == Some(libc::EOPNOTSUPP) && wait == Wait::No => {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    _ => return Err(e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::io::Write;

    fn file_with(content: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut named = tempfile::NamedTempFile::new().unwrap();
        named.write_all(content).unwrap();
        named.flush().unwrap();
        let file = File::open(named.path()).unwrap();
        (named, file)
    }

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    async fn read_all(chunks: FileChunks) -> Vec<u8> {
        let chunks: Vec<Bytes> = chunks.map(|c| c.unwrap()).collect().await;
        assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= CHUNK));
        chunks.concat()
    }

    #[tokio::test]
    async fn a_cached_file_reads_whole_in_chunks() {
        let body = content(3 * CHUNK + 1000);
        let (_named, file) = file_with(&body);
        assert_eq!(read_all(FileChunks::new(file, 0, None)).await, body);
    }

    #[tokio::test]
    async fn a_range_reads_exactly_its_bytes() {
        let body = content(2 * CHUNK + 77);
        let (_named, file) = file_with(&body);
        let range = FileChunks::new(file, 1000, Some(CHUNK as u64 + 5));
        assert_eq!(read_all(range).await, &body[1000..1000 + CHUNK + 5]);
    }

    #[tokio::test]
    async fn reads_past_the_end_and_empty_files_end_at_once() {
        let (_named, file) = file_with(b"abc");
        assert_eq!(read_all(FileChunks::new(file, 3, None)).await, b"");
        let (_named, empty) = file_with(b"");
        assert_eq!(read_all(FileChunks::new(empty, 0, Some(10))).await, b"");
    }

    #[test]
    fn a_read_that_must_wait_is_refused_without_waiting_and_done_with_it() {
        let body = content(CHUNK);
        let (named, _) = file_with(&body);
        // Dropped from the page cache, the data is on disk only: a read that may not wait says
        // so (on filesystems with RWF_NOWAIT; others say so for every read).
        let file = File::open(named.path()).unwrap();
        file.sync_all().unwrap();
        // SAFETY: advice on a file this test owns.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        match read_chunk(&file, 0, CHUNK, Wait::No) {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
            // tmpfs and other memory-backed filesystems never wait.
            Ok(chunk) => assert_eq!(&chunk[..], &body[..chunk.len()]),
        }
        assert_eq!(
            &read_chunk(&file, 0, CHUNK, Wait::Yes).unwrap()[..],
            &body[..]
        );
    }
}
