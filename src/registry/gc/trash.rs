//! Garbage moved aside, on a filesystem store: what the collector condemned is renamed into
//! `<root>/regapp-trash/<uuid>`, and a thread of its own purges the trash one entry at a time
//! once the collection is over ([`FsTrash`], the collector's [`Disposal`] for the filesystem
//! driver). The driver itself only deletes; this pacing is the collector's, above it.
//!
//! Why: on a filesystem mounted with `discard`, every `unlink` that frees a block waits for the
//! device, and a collection deleting in place kept the disk from the pushes' `fsync`s; a
//! `rename` frees no block. The purge runs only after the collection (`purge_soon`) and pauses
//! while anything is being retired, because deleting in the trash directory locks it while the
//! device discards, and a rename into it would wait holding the filesystem's rename lock that
//! every push takes to publish. The renames have a thread made at start, at the server's
//! priority (the collector's threads run at nice 10 and a nice value cannot be lowered again),
//! which yields its core after each rename so a waiting push runs at once.
//!
//! Why it is safe: nothing refers into the trash. An object is gone for every reader from the
//! moment of its rename (one that opened the file before reads on). A stop or crash before the
//! purge leaves entries that the next start purges; a crash before the rename reached the disk
//! puts the garbage back for the next collection. registry:2 never looks outside `docker/`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;

use super::Disposal;
use crate::storage::fs::{key_path, remove};
use crate::storage::{StorageError, StorageResult};

/// The trash directory's name under the storage root.
pub const DIR: &str = "regapp-trash";

/// How often `retire` tries to rename before it deletes in place: the trash can be missing,
/// and be removed by the purge again between making it and the rename.
const ATTEMPTS: usize = 3;

/// How long nothing must be retired before the background purge deletes (again).
const QUIET: Duration = Duration::from_secs(1);

pub struct Trash {
    root: PathBuf,
    shared: Arc<Shared>,
    /// Wakes the purging thread, started the first time there is something to purge. Dropping
    /// it (with the driver) lets the thread finish what is due and end.
    purger: Mutex<Option<SyncSender<()>>>,
    /// Hands work to the renaming thread; `None` if it could not be started.
    renamer: Option<Sender<Renames>>,
}

/// A batch of renames for the renaming thread.
type Renames = Box<dyn FnOnce() + Send>;

/// What `retire`, the purging thread and `purge_now` share.
struct Shared {
    dir: PathBuf,
    /// When `retire` last ran: the background purge holds off until `QUIET` has passed since.
    last_retire: Mutex<Option<Instant>>,
    /// Set while `purge_now` waits for a background purge: that one then neither pauses nor
    /// rests.
    hurry: AtomicBool,
    /// One purge at a time: two would only take turns on the trash directory's lock.
    purging: Mutex<()>,
}

/// How a purge goes about it.
#[derive(Clone, Copy, PartialEq)]
enum Pace {
    /// In the background of a serving process: pauses while objects are retired.
    Background,
    /// For a process that waits for the space (`regapp gc` without a server).
    Now,
}

impl Trash {
    /// The trash of the store at `root`. What a stop or crash left in it is purged now.
    pub fn new(root: &Path) -> Trash {
        let trash = Trash {
            root: root.to_owned(),
            shared: Arc::new(Shared {
                dir: root.join(DIR),
                last_retire: Mutex::new(None),
                hurry: AtomicBool::new(false),
                purging: Mutex::new(()),
            }),
            purger: Mutex::new(None),
            renamer: spawn_renamer(),
        };
        if trash.shared.dir.exists() {
            trash.purge_soon();
        }
        trash
    }

    /// Runs `renames` (calls of `retire`) on the renaming thread, at the priority of the thread
    /// that made the trash, and returns what they returned. Batches run one at a time:
    /// renames across directories all take one lock of the filesystem's, and threads renaming
    /// at once spin on it and make the pushes' renames queue longer. Without a renaming thread they run on a
    /// blocking thread of the caller's.
    pub async fn renaming<T: Send + 'static>(
        &self,
        renames: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<T> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let batch: Renames = Box::new(move || {
            let _ = answer.send(renames());
        });
        match &self.renamer {
            Some(renamer) => renamer
                .send(batch)
                .map_err(|_| io::Error::other("the trash's renaming thread is gone"))?,
            None => tokio::task::spawn_blocking(batch)
                .await
                .map_err(io::Error::other)?,
        }
        answered
            .await
            .map_err(|_| io::Error::other("a batch of renames into the trash panicked"))
    }

    /// Moves the file or directory at `path` into the trash (see [`retire`]).
    pub fn retire_path(&self, path: &Path) -> io::Result<()> {
        retire(&self.shared, path)
    }

    /// Wakes the purging thread (starting it the first time). A wake while it purges makes it
    /// look again when done, so nothing retired meanwhile waits for the next collection.
    pub fn purge_soon(&self) {
        let mut purger = self.purger.lock().expect("trash lock poisoned");
        if purger.is_none() {
            match spawn_purger(self.shared.clone()) {
                Ok(wake) => *purger = Some(wake),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the trash purge; it is tried again after the next collection");
                    return;
                }
            }
        }
        if let Some(wake) = purger.as_ref() {
            // Full: a purge is already due, and it will list what was just retired.
            let _ = wake.try_send(());
        }
    }

    /// Purges the trash on this thread and returns when it is empty (`regapp gc` without a
    /// server, which exits right after). A background purge under way is hurried and waited
    /// for first.
    pub fn purge_now(&self) -> io::Result<()> {
        self.shared.hurry.store(true, Ordering::Relaxed);
        let result = self.shared.purge(Pace::Now);
        self.shared.hurry.store(false, Ordering::Relaxed);
        result
    }
}

/// Moves the file or directory at `path` into the trash. Where it can't be moved (the
/// trash on another filesystem, a full disk that has no room for one more name) it is
/// deleted in place instead. Nothing is purged until `purge_soon`.
fn retire(shared: &Shared, path: &Path) -> io::Result<()> {
    *shared.last_retire.lock().expect("trash lock poisoned") = Some(Instant::now());
    let dir = &shared.dir;
    for _ in 0..ATTEMPTS {
        let target = dir.join(uuid::Uuid::new_v4().simple().to_string());
        match fs::rename(path, &target) {
            Ok(()) => return Ok(()),
            // The object is missing, or the trash is (never made, or purged and removed).
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::symlink_metadata(path)?;
                match fs::create_dir(dir) {
                    // Made here, or by a `retire` on another thread meanwhile: again.
                    Ok(()) => {}
                    Err(made) if made.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(_) => return remove(path),
                }
            }
            Err(_) => return remove(path),
        }
    }
    remove(path)
}

/// Starts the thread that runs batches of renames. It ends when the trash is dropped.
fn spawn_renamer() -> Option<Sender<Renames>> {
    let (renamer, batches) = mpsc::channel::<Renames>();
    let spawned = std::thread::Builder::new()
        .name("regapp-retire".to_owned())
        .spawn(move || {
            while let Ok(batch) = batches.recv() {
                // A panicking batch drops its answer (its caller gets an error); the thread
                // stays for the next.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(batch));
            }
        });
    match spawned {
        Ok(_) => Some(renamer),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the trash's renaming thread; collections rename on their own threads");
            None
        }
    }
}

fn spawn_purger(shared: Arc<Shared>) -> io::Result<SyncSender<()>> {
    let (wake, woken) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("regapp-purge".to_owned())
        .spawn(move || {
            // Whoever started it (the server at start, a collection), the purge is background
            // work: it gets the CPU when requests leave it.
            crate::plumbing::background::yield_cpu_to_requests();
            while woken.recv().is_ok() {
                if let Err(e) = shared.purge(Pace::Background) {
                    tracing::warn!(trash = %shared.dir.display(), error = %e, "trash purge stopped; it is tried again after the next collection");
                }
            }
        })?;
    Ok(wake)
}

impl Shared {
    /// Deletes every entry of the trash, one after the other, then the trash directory itself
    /// (only if empty: a `retire` racing with that finds it missing and makes it again).
    /// Entries someone else purged meanwhile count as done.
    fn purge(&self, pace: Pace) -> io::Result<()> {
        let _purging = self.purging.lock().expect("trash lock poisoned");
        let started = Instant::now();
        let entries = match fs::read_dir(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            entries => entries?,
        };
        let mut purged = 0_u64;
        for entry in entries {
            let entry = entry?;
            if pace == Pace::Background {
                self.wait_while_retiring();
            }
            // Entries are almost always whole directories (a blob's, a link's): the listing
            // says which, so `remove`'s cheap-first guesses would be two failed calls each.
            let deleting = Instant::now();
            let removed = match entry.file_type() {
                Ok(kind) if kind.is_dir() => fs::remove_dir_all(entry.path()),
                Ok(_) => fs::remove_file(entry.path()),
                Err(e) => Err(e),
            };
            if pace == Pace::Background && !self.hurry.load(Ordering::Relaxed) {
                // Rest as long as the deletion took: the device's discards are the purge's at
                // most half the time, whatever the disk, and the rest is the pushes' fsyncs'.
                std::thread::sleep(deleting.elapsed());
            }
            match removed {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => purged += 1,
            }
        }
        tracing::info!(
            entries = purged,
            seconds = started.elapsed().as_secs_f64(),
            "trash purged"
        );
        // Last, so that whoever sees the directory gone also finds the line above.
        let _ = fs::remove_dir(&self.dir);
        Ok(())
    }

    /// Returns once nothing has been retired for `QUIET` (or a `purge_now` is waiting).
    fn wait_while_retiring(&self) {
        loop {
            let last = *self.last_retire.lock().expect("trash lock poisoned");
            let since = last.map_or(QUIET, |t| t.elapsed());
            if since >= QUIET || self.hurry.load(Ordering::Relaxed) {
                return;
            }
            // In steps, so that a `purge_now` arriving meanwhile does not wait out the pause.
            std::thread::sleep((QUIET - since).min(Duration::from_millis(50)));
        }
    }
}

/// The filesystem store's disposal: renames into the trash (one batch at a time, on the
/// renaming thread), purges when told, and removes the temporary files a crash left.
pub type FsTrash = Trash;

#[async_trait]
impl Disposal for Trash {
    async fn retire(&self, keys: &[String]) -> Vec<StorageResult<()>> {
        let paths: Vec<(String, StorageResult<PathBuf>)> = keys
            .iter()
            .map(|key| (key.clone(), key_path(&self.root, key)))
            .collect();
        let shared = self.shared.clone();
        let retiring = self.renaming(move || {
            paths
                .into_iter()
                .map(|(key, path)| {
                    let retired = path.and_then(|path| {
                        retire(&shared, &path).map_err(|e| StorageError::from_io(&key, e))
                    });
                    // Between two renames this thread holds no lock: the moment to give its
                    // core to a request thread that woke meanwhile, rather than make it wait
                    // out the rest of this thread's time slice (see the module's doc).
                    std::thread::yield_now();
                    retired
                })
                .collect::<Vec<StorageResult<()>>>()
        });
        retiring.await.unwrap_or_else(|e| {
            keys.iter()
                .map(|key| Err(StorageError::from_io(key, io::Error::other(e.to_string()))))
                .collect()
        })
    }

    fn reclaim_in_background(&self) {
        self.purge_soon();
    }

    async fn reclaim(&self) -> StorageResult<()> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            shared.hurry.store(true, Ordering::Relaxed);
            let result = shared.purge(Pace::Now);
            shared.hurry.store(false, Ordering::Relaxed);
            result
        })
        .await
        .map_err(io::Error::other)
        .and_then(|purged| purged)
        .map_err(|e| StorageError::from_io(DIR, e))
    }

    /// The `*.tmp` files the driver's `put` and `publish` write before their rename: one still
    /// there long after it was written belongs to a process that died between the two.
    async fn remove_leftovers(
        &self,
        dirs: &[String],
        older_than: SystemTime,
    ) -> StorageResult<u64> {
        let paths: Vec<StorageResult<PathBuf>> =
            dirs.iter().map(|key| key_path(&self.root, key)).collect();
        tokio::task::spawn_blocking(move || {
            let mut removed = 0;
            for dir in paths.into_iter().flatten() {
                let Ok(entries) = fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let stale = entry
                        .file_name()
                        .to_str()
                        .is_some_and(|n| n.ends_with(".tmp"))
                        && entry
                            .metadata()
                            .and_then(|m| m.modified())
                            .is_ok_and(|modified| modified < older_than);
                    if stale && fs::remove_file(entry.path()).is_ok() {
                        removed += 1;
                    }
                }
            }
            removed
        })
        .await
        .map_err(|e| StorageError::from_io("leftovers", io::Error::other(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> usize {
        fs::read_dir(dir).map_or(0, |entries| entries.count())
    }

    /// A blob's directory with its `data`, as the store lays it out.
    fn blob_at(dir: PathBuf) -> PathBuf {
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("data"), b"bytes").unwrap();
        dir
    }

    #[test]
    fn retired_objects_leave_their_place_at_once_and_the_purge_empties_the_trash() {
        let root = tempfile::tempdir().unwrap();
        let blob = blob_at(root.path().join("docker/blobs/ab/abcd"));
        fs::write(root.path().join("docker/link"), b"sha256:abcd").unwrap();
        let trash = Trash::new(root.path());

        trash.retire_path(&blob).unwrap();
        trash.retire_path(&root.path().join("docker/link")).unwrap();
        assert!(!blob.exists() && !root.path().join("docker/link").exists());
        assert!(root.path().join("docker/blobs/ab").is_dir());
        assert_eq!(entries(&root.path().join(DIR)), 2);

        trash.purge_now().unwrap();
        assert!(!root.path().join(DIR).exists());
    }

    #[test]
    fn a_missing_object_is_not_found_with_or_without_a_trash() {
        let root = tempfile::tempdir().unwrap();
        let trash = Trash::new(root.path());
        let missing = root.path().join("nothing/here");
        assert_eq!(
            trash.retire_path(&missing).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert!(!root.path().join(DIR).exists(), "not made for nothing");
        fs::create_dir(root.path().join(DIR)).unwrap();
        assert_eq!(
            trash.retire_path(&missing).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn threads_retiring_at_once_while_the_trash_is_made_all_succeed() {
        let root = tempfile::tempdir().unwrap();
        let trash = Trash::new(root.path());
        let objects: Vec<PathBuf> = (0..64)
            .map(|n| blob_at(root.path().join(format!("blobs/{n}"))))
            .collect();
        std::thread::scope(|scope| {
            for batch in objects.chunks(8) {
                let trash = &trash;
                scope.spawn(move || {
                    for object in batch {
                        trash.retire_path(object).unwrap();
                    }
                });
            }
        });
        assert_eq!(entries(&root.path().join("blobs")), 0);
        assert_eq!(entries(&root.path().join(DIR)), 64);
    }

    /// Waits (up to 10 s) for the background purge to remove the trash.
    fn wait_until_purged(root: &Path) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while root.join(DIR).exists() {
            assert!(Instant::now() < deadline, "the trash was not purged");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn retiring_starts_no_purge_and_the_purge_pauses_while_objects_are_retired() {
        let root = tempfile::tempdir().unwrap();
        let trash = Trash::new(root.path());
        trash
            .retire_path(&blob_at(root.path().join("first")))
            .unwrap();
        std::thread::sleep(QUIET + QUIET / 2);
        assert_eq!(entries(&root.path().join(DIR)), 1, "purged unasked");

        trash
            .retire_path(&blob_at(root.path().join("second")))
            .unwrap();
        trash.purge_soon();
        std::thread::sleep(QUIET / 2);
        assert_eq!(entries(&root.path().join(DIR)), 2, "purged while retiring");
        wait_until_purged(root.path());
    }

    #[test]
    fn purge_now_neither_waits_for_retiring_to_pause_nor_leaves_anything() {
        let root = tempfile::tempdir().unwrap();
        let trash = Trash::new(root.path());
        for n in 0..8 {
            trash
                .retire_path(&blob_at(root.path().join(format!("blob{n}"))))
                .unwrap();
        }
        trash.purge_soon();
        let started = Instant::now();
        trash.purge_now().unwrap();
        assert!(started.elapsed() < QUIET, "purge_now paused for retiring");
        assert!(!root.path().join(DIR).exists());
    }

    fn niceness() -> libc::c_int {
        // SAFETY: reads the calling thread's priority.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    #[tokio::test]
    async fn renames_run_at_the_priority_the_trash_was_made_with_and_outlive_a_panicking_batch() {
        let root = tempfile::tempdir().unwrap();
        let made_at = niceness();
        let trash = Arc::new(Trash::new(root.path()));
        crate::plumbing::background::yield_cpu_to_requests();
        if made_at < 10 {
            assert_ne!(niceness(), made_at, "the caller stayed at its priority");
        }
        let blob = blob_at(root.path().join("blob"));
        let (renamed_at, retired) = trash
            .renaming({
                let trash = trash.clone();
                move || (niceness(), trash.retire_path(&blob))
            })
            .await
            .unwrap();
        assert_eq!(renamed_at, made_at);
        retired.unwrap();

        let panicked = trash.renaming(|| panic!("a batch fails")).await;
        assert!(panicked.is_err());
        let after = trash.renaming(|| "the next batch runs").await.unwrap();
        assert_eq!(after, "the next batch runs");
    }

    #[test]
    fn what_a_crash_left_in_the_trash_is_purged_at_start() {
        let root = tempfile::tempdir().unwrap();
        let left = root.path().join(DIR).join("0123");
        fs::create_dir_all(&left).unwrap();
        fs::write(left.join("data"), vec![7; 100_000]).unwrap();

        let _trash = Trash::new(root.path());
        wait_until_purged(root.path());
    }

    #[test]
    fn where_it_cannot_be_moved_it_is_deleted_in_place() {
        let root = tempfile::tempdir().unwrap();
        // A file where the trash directory should be: no rename into it can succeed.
        fs::write(root.path().join(DIR), b"in the way").unwrap();
        let blob = blob_at(root.path().join("blob"));
        let trash = Trash::new(root.path());
        trash.retire_path(&blob).unwrap();
        assert!(!blob.exists());
    }

    /// Through the collector's interface: one answer per key, in order; a missing key is not
    /// found, a key that would climb out of the store is refused; `reclaim` empties the trash.
    #[tokio::test]
    async fn retire_answers_for_each_key_and_reclaim_empties_the_trash() {
        let root = tempfile::tempdir().unwrap();
        let driver = crate::storage::FsDriver::new(root.path());
        use crate::storage::StorageDriver as _;
        for key in ["many/file", "many/dir/data", "many/kept"] {
            driver.put(key, bytes::Bytes::new()).await.unwrap();
        }
        let trash = Trash::new(root.path());
        let keys = ["many/file", "many/dir", "many/missing", "../escape"].map(String::from);
        let results = Disposal::retire(&trash, &keys).await;
        assert_eq!(results.len(), 4);
        assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
        assert!(results[2].as_ref().unwrap_err().is_not_found());
        assert!(matches!(results[3], Err(StorageError::InvalidKey(_))));
        assert_eq!(driver.list("many").await.unwrap(), ["kept"]);
        Disposal::reclaim(&trash).await.unwrap();
        assert!(
            !root.path().join(DIR).exists(),
            "reclaim left the trash behind"
        );
    }
}
