//! One upstream fetch per blob, however many clients ask for it at once.
//!
//! The first request for a missing blob starts a *flight*: a task that streams the upstream's
//! body into an unnamed spool file, hashing it, and publishes how far the file is written.
//! Every client of that blob (the first included) reads the file behind the writer, so each
//! gets bytes as they arrive and memory stays flat. The last bytes are published only once the
//! digest is verified: a client never receives a whole blob that does not match. Then the
//! spool is copied into the store through an ordinary upload (verified again, made visible
//! atomically) and the flight ends; later requests find the blob in the store.
//!
//! The task does not depend on any client: when they all go away, the fetch still completes
//! and fills the cache.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{watch, OnceCell};

use super::{Mirror, MirrorError, Target};
use crate::registry::store::batcher::Batcher;
use crate::registry::store::Store;
use crate::registry::types::{Digest, RepoName};
use crate::storage::ByteStream;
use crate::upstream::UpstreamError;

/// How long a finished flight stays joinable after its blob is in the store.
const LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// The longest the store's copy of a fetched blob waits for the clients reading it.
const COMMIT_WAITS_AT_MOST: std::time::Duration = std::time::Duration::from_secs(30);

/// How much a reader reads from the spool at once.
const READ_CHUNK: usize = 256 * 1024;

pub(super) struct Flights {
    spool: PathBuf,
    running: Mutex<HashMap<Digest, Arc<OnceCell<Arc<Flight>>>>>,
}

/// One blob being fetched.
pub struct Flight {
    pub size: u64,
    file: Arc<std::fs::File>,
    progress: watch::Receiver<Progress>,
    /// One clone per client stream reading the spool (the count is how many read now).
    readers: Arc<()>,
}

#[derive(Debug, Clone)]
enum Progress {
    /// This many bytes of the file may be read (never all of them before verification).
    Readable(u64),
    /// Whole and verified.
    Verified,
    Failed(Arc<str>),
}

impl Flights {
    pub(super) fn new(spool: PathBuf) -> Flights {
        Flights {
            spool,
            running: Mutex::default(),
        }
    }

    /// The flight fetching `digest` now, if there is one.
    pub(super) fn running(&self, digest: &Digest) -> Option<Arc<Flight>> {
        let running = self.running.lock().expect("not poisoned");
        running.get(digest)?.get().cloned()
    }

    /// Joins the flight of `digest`, or starts it: `started` is told whether this call did
    /// (a miss) or joined (a hit on the flight). Concurrent callers wait for one start.
    pub(super) async fn join_or_start(
        &self,
        target: &Target,
        store: &Arc<Store>,
        digest: &Digest,
    ) -> Result<(Arc<Flight>, bool), MirrorError> {
        let cell = {
            let mut running = self.running.lock().expect("not poisoned");
            running.entry(digest.clone()).or_default().clone()
        };
        let mut started = false;
        let result = cell
            .get_or_try_init(|| {
                started = true;
                self.start(target, store, digest)
            })
            .await;
        match result {
            Ok(flight) => Ok((flight.clone(), started)),
            Err(e) => {
                // Nobody holds a flight for it: the next request tries again.
                let mut running = self.running.lock().expect("not poisoned");
                if running
                    .get(digest)
                    .is_some_and(|c| Arc::ptr_eq(c, &cell) && c.get().is_none())
                {
                    running.remove(digest);
                }
                Err(e)
            }
        }
    }

    async fn start(
        &self,
        target: &Target,
        store: &Arc<Store>,
        digest: &Digest,
    ) -> Result<Arc<Flight>, MirrorError> {
        let mirror = &target.mirror;
        let answer = mirror
            .upstream
            .blob(&target.remote, &digest.to_string())
            .await;
        mirror.upstream_result(&answer);
        let blob = answer.map_err(|source| MirrorError::Upstream {
            what: format!("blob {digest}"),
            name: mirror.name().to_owned(),
            source,
        })?;
        let file = tempfile::tempfile_in(&self.spool).map_err(MirrorError::Spool)?;
        let (publish, progress) = watch::channel(Progress::Readable(0));
        let flight = Arc::new(Flight {
            size: blob.length,
            file: Arc::new(file),
            progress,
            readers: Arc::new(()),
        });
        let task = Fetch {
            mirror: mirror.clone(),
            store: store.clone(),
            local: target.local.clone(),
            digest: digest.clone(),
            flight: flight.clone(),
            publish,
        };
        tokio::spawn(task.run(blob.body));
        Ok(flight)
    }

    fn finished(&self, digest: &Digest) {
        self.running.lock().expect("not poisoned").remove(digest);
    }
}

struct Fetch {
    mirror: Arc<Mirror>,
    store: Arc<Store>,
    local: RepoName,
    digest: Digest,
    flight: Arc<Flight>,
    publish: watch::Sender<Progress>,
}

impl Fetch {
    async fn run(self, body: ByteStream) {
        match self.spool(body).await {
            Ok(()) => {
                self.publish.send_replace(Progress::Verified);
                self.clients_done().await;
                let whole = self.flight.read_unseen(0, self.flight.size);
                if let Err(e) = self
                    .store
                    .upload_monolithic(&self.local, &self.digest, whole)
                    .await
                {
                    // The clients were served; the next request fetches it again.
                    tracing::warn!(mirror = self.mirror.name(), digest = %self.digest, error = %e,
                        "a fetched blob could not be stored");
                }
                // A request that looked in the store just before the commit joins this flight
                // (whole and verified) rather than fetching the blob again.
                tokio::time::sleep(LINGER).await;
                self.mirror.flights.finished(&self.digest);
            }
            Err(e) => {
                tracing::warn!(mirror = self.mirror.name(), digest = %self.digest, error = %e,
                    "fetching a blob failed");
                // Gone first, so that no request joins a flight that failed: the next one
                // fetches afresh.
                self.mirror.flights.finished(&self.digest);
                self.publish.send_replace(Progress::Failed(e.into()));
            }
        }
    }

    /// Waits (a while at most) for the clients still reading the spool: the store's copy hashes
    /// and writes the blob again, CPU better left to them until they have it.
    async fn clients_done(&self) {
        let deadline = tokio::time::Instant::now() + COMMIT_WAITS_AT_MOST;
        while Arc::strong_count(&self.flight.readers) > 1 && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Streams the upstream's body into the spool file, publishing progress; Ok once the
    /// whole length is written and the digest verified.
    async fn spool(&self, mut body: ByteStream) -> Result<(), String> {
        let size = self.flight.size;
        let mut hasher = self.digest.algorithm().hasher();
        let mut batcher = Batcher::default();
        let mut written = 0u64;
        let mut ended = false;
        while !ended {
            let chunk = match body.next().await {
                Some(Ok(chunk)) => batcher.add(chunk),
                Some(Err(e)) => {
                    let e = UpstreamError::Unreachable(e.to_string());
                    self.mirror.upstream_result::<()>(&Err(e));
                    return Err(format!("the upstream's body failed after {written} bytes"));
                }
                None => {
                    ended = true;
                    batcher.rest()
                }
            };
            let Some(chunk) = chunk else { continue };
            if written + chunk.len() as u64 > size {
                return Err(format!(
                    "the upstream sent more than its Content-Length of {size}"
                ));
            }
            let len = chunk.len() as u64;
            self.mirror.fetched(len);
            // The write runs on a blocking thread while this task hashes the same bytes.
            let write = write_at(&self.flight.file, chunk.clone(), written);
            hasher.update(&chunk);
            write
                .await
                .map_err(|e| format!("writing the spool file: {e}"))?;
            written += len;
            if written < size {
                self.publish.send_replace(Progress::Readable(written));
            }
        }
        if written != size {
            return Err(format!(
                "the upstream's body ended after {written} of {size} bytes"
            ));
        }
        let actual = hasher.finish();
        if actual != self.digest {
            return Err(format!("the upstream sent content of digest {actual}"));
        }
        Ok(())
    }
}

/// Starts writing `chunk` at `at` on a blocking thread; the future is its result.
fn write_at(
    file: &Arc<std::fs::File>,
    chunk: Bytes,
    at: u64,
) -> impl std::future::Future<Output = std::io::Result<()>> {
    let file = file.clone();
    let write = tokio::task::spawn_blocking(move || file.write_all_at(&chunk, at));
    async move { write.await.map_err(std::io::Error::other)? }
}

impl Flight {
    /// The bytes `start..end` as they become readable, for a client; fails if the fetch does.
    pub fn read(self: &Arc<Self>, start: u64, end: u64) -> ByteStream {
        let reading = self.readers.clone();
        Box::pin(self.read_unseen(start, end).map(move |chunk| {
            let _counted = &reading;
            chunk
        }))
    }

    /// [`Flight::read`] without counting as a client (the store's copy).
    fn read_unseen(self: &Arc<Self>, start: u64, end: u64) -> ByteStream {
        let state = (self.clone(), self.progress.clone(), start);
        Box::pin(futures_util::stream::unfold(
            Some(state),
            move |state| async move {
                let (flight, mut progress, at) = state?;
                if at >= end {
                    return None;
                }
                loop {
                    let readable = match &*progress.borrow_and_update() {
                        Progress::Readable(n) => *n,
                        Progress::Verified => flight.size,
                        Progress::Failed(why) => {
                            let e = std::io::Error::other(format!("the fetch failed: {why}"));
                            return Some((Err(e), None));
                        }
                    };
                    if readable > at {
                        let len = (readable.min(end) - at).min(READ_CHUNK as u64) as usize;
                        let file = flight.file.clone();
                        let read = tokio::task::spawn_blocking(move || {
                            let mut buf = vec![0; len];
                            file.read_exact_at(&mut buf, at).map(|()| Bytes::from(buf))
                        })
                        .await
                        .map_err(std::io::Error::other)
                        .and_then(|r| r);
                        return Some(match read {
                            Ok(bytes) => (Ok(bytes), Some((flight, progress, at + len as u64))),
                            Err(e) => (Err(e), None),
                        });
                    }
                    if progress.changed().await.is_err() {
                        // The task ended without a last word: it panicked.
                        let e = std::io::Error::other("the fetch stopped");
                        return Some((Err(e), None));
                    }
                }
            },
        ))
    }
}
