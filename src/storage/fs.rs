//! The filesystem driver: keys are paths below a root directory.
//!
//! Visible files only ever appear by `rename` of a fully written temporary file named
//! `<path>.<uuid>.tmp` (the form registry:2 v3 uses), fsynced first unless a writer is only
//! closed (upload-session state, `ObjectWriter::close`), so a crash leaves at worst a `*.tmp`
//! file that `list` hides. Writers run on a blocking thread fed by a small channel, so the caller goes on with
//! the next chunk while the thread writes this one. Readers read what the page cache holds on
//! the caller's task and only go to a blocking thread for what is on disk (`fs_reader`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::fs_reader::FileChunks;
use super::{
    ByteStream, ObjectInfo, ObjectWriter, Publish, StorageDriver, StorageError, StorageResult,
    Version,
};

/// Chunks queued between the caller and the writing thread: bounds memory per writer. 8 rides
/// out throttled writes better than 2 (BENCHMARKS.md); a caller with many writers at once
/// bounds what they queue together.
const WRITE_QUEUE: usize = 8;
/// How often a writer asks the kernel to start writing back what it has written, so that the
/// fsync before a blob becomes visible waits only for the tail.
const WRITEBACK_EVERY: u64 = 32 * 1024 * 1024;

pub struct FsDriver {
    root: PathBuf,
}

impl FsDriver {
    pub fn new(root: impl Into<PathBuf>) -> FsDriver {
        FsDriver { root: root.into() }
    }

    /// Makes sure `root` can hold a store before anything else uses it: creates it if missing
    /// and writes and removes a file in it, so a root that is a file or on a read-only mount is
    /// reported as the storage root's problem (and not, later, as `gc.sock`'s).
    pub fn prepare_root(root: &Path) -> io::Result<()> {
        let not_a_directory = || io::Error::other("it exists and is not a directory");
        match fs::metadata(root) {
            Ok(meta) if !meta.is_dir() => return Err(not_a_directory()),
            Ok(_) => {}
            Err(_) => fs::create_dir_all(root)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot create it: {e}")))?,
        }
        let probe = root.join(format!(".regapp-probe-{}", uuid::Uuid::new_v4().simple()));
        let written = fs::write(&probe, b"");
        let _ = fs::remove_file(&probe);
        written.map_err(|e| io::Error::new(e.kind(), format!("cannot write in it: {e}")))
    }

    fn path(&self, key: &str) -> StorageResult<PathBuf> {
        key_path(&self.root, key)
    }

    /// Each key with its path (or why it has none), for work on another thread.
    fn paths(&self, keys: &[String]) -> Vec<(String, StorageResult<PathBuf>)> {
        keys.iter()
            .map(|key| (key.clone(), self.path(key)))
            .collect()
    }

    /// `op` on each key's path, all on one blocking thread: one result per key, in order.
    async fn on_each<T: Send + 'static>(
        &self,
        keys: &[String],
        op: fn(&Path) -> io::Result<T>,
    ) -> Vec<StorageResult<T>> {
        let paths = self.paths(keys);
        let done = tokio::task::spawn_blocking(move || {
            paths
                .into_iter()
                .map(|(key, path)| {
                    path.and_then(|path| op(&path).map_err(|e| StorageError::from_io(&key, e)))
                })
                .collect()
        })
        .await;
        done.unwrap_or_else(|e| each_failed(keys, &e.to_string()))
    }
}

/// The same error for every key, where a whole batch failed (its thread is gone).
fn each_failed<T>(keys: &[String], message: &str) -> Vec<StorageResult<T>> {
    keys.iter()
        .map(|key| {
            Err(StorageError::from_io(
                key,
                io::Error::other(message.to_owned()),
            ))
        })
        .collect()
}

fn object_info(meta: &fs::Metadata) -> ObjectInfo {
    ObjectInfo {
        size: meta.len(),
        modified: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
        is_dir: meta.is_dir(),
    }
}

/// A file's version: the hash of its content (objects compared this way are small).
fn content_version(content: &[u8]) -> Version {
    use sha2::Digest as _;
    Version(hex::encode(sha2::Sha256::digest(content)))
}

/// An exclusive `flock` on `file`, held until it is closed.
fn lock_exclusive(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own; it blocks until the lock is ours.
    match unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

async fn blocking<T: Send + 'static>(
    key: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> StorageResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::from_io(key, io::Error::other(e)))?
        .map_err(|e| StorageError::from_io(key, e))
}

/// The path of `key` in the store at `root`: keys are relative paths that cannot climb out
/// (no `..`, not absolute, not empty). Also what the collector's filesystem trash uses.
pub fn key_path(root: &Path, key: &str) -> StorageResult<PathBuf> {
    let relative = Path::new(key);
    let plain = !key.is_empty()
        && relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(StorageError::InvalidKey(key.to_owned()));
    }
    Ok(root.join(relative))
}

fn temp_path_for(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}.tmp", uuid::Uuid::new_v4()));
    PathBuf::from(name)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes a file, or a directory and everything in it. The cheap cases are tried first: a
/// file is one `unlink` (Linux answers `EISDIR` for a directory), and an empty directory one
/// `rmdir`.
pub fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::IsADirectory => match fs::remove_dir(path) {
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => fs::remove_dir_all(path),
            result => result,
        },
        result => result,
    }
}

/// A [`Publish`] step with its keys resolved to paths; the key names the step in errors.
enum Step {
    Put {
        key: String,
        path: PathBuf,
        content: Bytes,
    },
    Move {
        key: String,
        from: PathBuf,
        to: PathBuf,
    },
}

fn parent(path: &Path) -> &Path {
    path.parent().expect("a storage key always has a parent")
}

/// Carries out publish steps: every new file is written under a temporary name, then all are
/// synced, then everything is renamed into place in order, then each directory that gained a
/// name is synced. On a journaled filesystem (ext4's default)
/// the first file sync and the first directory sync each commit the journal, and the syncs
/// after them find nothing left to commit. Temporary files of a failed call are removed.
fn publish_steps(steps: &[Step]) -> Result<(), (String, io::Error)> {
    let mut temps = Vec::new();
    let result = write_sync_rename(steps, &mut temps);
    if result.is_err() {
        for temp in &temps {
            let _ = fs::remove_file(temp);
        }
    }
    result
}

fn write_sync_rename(steps: &[Step], temps: &mut Vec<PathBuf>) -> Result<(), (String, io::Error)> {
    let mut written = Vec::new();
    for step in steps {
        if let Step::Put { key, path, content } = step {
            let at = |e| (key.clone(), e);
            fs::create_dir_all(parent(path)).map_err(at)?;
            let temp = temp_path_for(path);
            let mut file = File::create(&temp).map_err(at)?;
            temps.push(temp);
            file.write_all(content).map_err(at)?;
            written.push((key, file));
        }
    }
    for (key, file) in &written {
        file.sync_data().map_err(|e| ((*key).clone(), e))?;
    }
    let mut temps_in_order = temps.iter();
    let mut dirs: Vec<(&String, &Path)> = Vec::new();
    for step in steps {
        let (key, from, to) = match step {
            Step::Put { key, path, .. } => {
                let temp = temps_in_order.next().expect("one temporary file per put");
                (key, temp.as_path(), path.as_path())
            }
            Step::Move { key, from, to } => (key, from.as_path(), to.as_path()),
        };
        let at = |e| (key.clone(), e);
        fs::create_dir_all(parent(to)).map_err(at)?;
        fs::rename(from, to).map_err(at)?;
        if !dirs.iter().any(|(_, dir)| *dir == parent(to)) {
            dirs.push((key, parent(to)));
        }
    }
    for (key, dir) in dirs {
        sync_dir(dir).map_err(|e| (key.clone(), e))?;
    }
    Ok(())
}

impl FsDriver {
    fn resolve(&self, step: Publish) -> StorageResult<Step> {
        Ok(match step {
            Publish::Put { key, content } => Step::Put {
                path: self.path(&key)?,
                key,
                content,
            },
            Publish::Move { from, to } => Step::Move {
                from: self.path(&from)?,
                to: self.path(&to)?,
                key: from,
            },
        })
    }

    /// Resolves the steps' keys, then carries them out on one blocking thread.
    async fn publish_steps(&self, steps: Vec<Publish>) -> StorageResult<()> {
        let steps = steps
            .into_iter()
            .map(|step| self.resolve(step))
            .collect::<StorageResult<Vec<Step>>>()?;
        tokio::task::spawn_blocking(move || publish_steps(&steps))
            .await
            .map_err(|e| StorageError::from_io("(publish)", io::Error::other(e)))?
            .map_err(|(key, e)| StorageError::from_io(&key, e))
    }
}

#[async_trait]
impl StorageDriver for FsDriver {
    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        let path = self.path(key)?;
        // Called for links and manifests (small files whose inodes are hot): read them on the
        // calling thread, as a hop to the blocking pool costs more than the read itself. See
        // ARCHITECTURE.md ("small metadata I/O").
        std::fs::read(&path)
            .map(Bytes::from)
            .map_err(|e| StorageError::from_io(key, e))
    }

    async fn put(&self, key: &str, content: Bytes) -> StorageResult<()> {
        let key = key.to_owned();
        self.publish(vec![Publish::Put { key, content }]).await
    }

    async fn put_if_absent(&self, key: &str, content: Bytes) -> StorageResult<bool> {
        let path = self.path(key)?;
        let key = key.to_owned();
        blocking(&key.clone(), move || {
            // Written and synced aside, then linked in: a link fails if the name exists, so
            // of two writers exactly one wins, and a reader never sees a partial file.
            fs::create_dir_all(parent(&path))?;
            let temp = temp_path_for(&path);
            let written = File::create(&temp).and_then(|mut file| {
                file.write_all(&content)?;
                file.sync_data()
            });
            let linked = written.and_then(|()| fs::hard_link(&temp, &path));
            let _ = fs::remove_file(&temp);
            match linked {
                Ok(()) => sync_dir(parent(&path)).map(|()| true),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn get_versioned(&self, key: &str) -> StorageResult<Option<(Bytes, Version)>> {
        match self.get(key).await {
            Ok(bytes) => {
                let version = content_version(&bytes);
                Ok(Some((bytes, version)))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn put_if_version(
        &self,
        key: &str,
        content: Bytes,
        version: &Version,
    ) -> StorageResult<bool> {
        let path = self.path(key)?;
        let version = version.clone();
        blocking(key, move || {
            // The file is locked, compared and replaced under its lock; a writer that took the
            // lock on a file replaced meanwhile (a rename leaves the lock on the old one)
            // opens the new one.
            let mut current = loop {
                let file = match File::open(&path) {
                    Ok(file) => file,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                    Err(e) => return Err(e),
                };
                lock_exclusive(&file)?;
                let locked = file.metadata()?.ino();
                match fs::metadata(&path) {
                    Ok(now) if now.ino() == locked => break file,
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                    Err(e) => return Err(e),
                }
            };
            let mut bytes = Vec::new();
            io::Read::read_to_end(&mut current, &mut bytes)?;
            if content_version(&bytes) != version {
                return Ok(false);
            }
            let temp = temp_path_for(&path);
            let written = File::create(&temp).and_then(|mut file| {
                file.write_all(&content)?;
                file.sync_data()
            });
            let renamed = written.and_then(|()| fs::rename(&temp, &path));
            if renamed.is_err() {
                let _ = fs::remove_file(&temp);
            }
            renamed?;
            sync_dir(parent(&path))?;
            Ok(true)
        })
        .await
    }

    async fn reader(&self, key: &str, offset: u64, len: Option<u64>) -> StorageResult<ByteStream> {
        let path = self.path(key)?;
        let file = blocking(key, move || File::open(&path)).await?;
        Ok(Box::pin(FileChunks::new(file, offset, len)))
    }

    async fn writer(&self, key: &str, append: bool) -> StorageResult<Box<dyn ObjectWriter>> {
        let path = self.path(key)?;
        let (file, size) = blocking(key, move || {
            fs::create_dir_all(path.parent().expect("a storage key always has a parent"))?;
            let mut file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(!append)
                .open(&path)?;
            let size = file.seek(SeekFrom::End(0))?;
            Ok((file, size))
        })
        .await?;
        Ok(Box::new(FsWriter::start(key.to_owned(), file, size)))
    }

    async fn stat(&self, key: &str) -> StorageResult<ObjectInfo> {
        let path = self.path(key)?;
        // A stat is one metadata lookup: cheaper on this thread than a blocking-pool hop.
        let meta = std::fs::metadata(&path).map_err(|e| StorageError::from_io(key, e))?;
        Ok(object_info(&meta))
    }

    async fn stat_each(&self, keys: &[String]) -> Vec<StorageResult<ObjectInfo>> {
        self.on_each(keys, |path| {
            fs::metadata(path).map(|meta| object_info(&meta))
        })
        .await
    }

    async fn get_each(&self, keys: &[String]) -> Vec<StorageResult<Bytes>> {
        self.on_each(keys, |path| fs::read(path).map(Bytes::from))
            .await
    }

    async fn list(&self, key: &str) -> StorageResult<Vec<String>> {
        let path = self.path(key)?;
        blocking(key, move || {
            let mut names = Vec::new();
            for entry in fs::read_dir(&path)? {
                let name = entry?.file_name();
                let Some(name) = name.to_str() else { continue };
                if !name.ends_with(".tmp") {
                    names.push(name.to_owned());
                }
            }
            Ok(names)
        })
        .await
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        let path = self.path(key)?;
        blocking(key, move || remove(&path)).await
    }

    async fn rename(&self, from: &str, to: &str) -> StorageResult<()> {
        let (from, to) = (from.to_owned(), to.to_owned());
        self.publish(vec![Publish::Move { from, to }]).await
    }

    async fn publish(&self, steps: Vec<Publish>) -> StorageResult<()> {
        self.publish_steps(steps).await
    }
}

enum WriteCommand {
    Data(Bytes),
    Finish { durable: bool },
}

/// A writer whose file lives on a blocking thread; the channel gives backpressure.
struct FsWriter {
    key: String,
    size: u64,
    commands: mpsc::Sender<WriteCommand>,
    /// `None` once the thread's result has been collected.
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl FsWriter {
    fn start(key: String, file: File, size: u64) -> FsWriter {
        let (commands, mut queue) = mpsc::channel(WRITE_QUEUE);
        let thread = tokio::task::spawn_blocking(move || {
            let mut out = file;
            let mut written = size;
            let mut flushed_to = size;
            while let Some(command) = queue.blocking_recv() {
                match command {
                    WriteCommand::Data(chunk) => {
                        out.write_all(&chunk)?;
                        written += chunk.len() as u64;
                        if written - flushed_to >= WRITEBACK_EVERY {
                            start_writeback(&out, flushed_to, written - flushed_to);
                            flushed_to = written;
                        }
                    }
                    WriteCommand::Finish { durable } => {
                        if durable {
                            out.sync_data()?;
                        }
                        return Ok(());
                    }
                }
            }
            // The writer was dropped: the upload was abandoned; what was written stays for a retry.
            Ok(())
        });
        FsWriter {
            key,
            size,
            commands,
            thread: Some(thread),
        }
    }

    async fn finish(self, durable: bool) -> StorageResult<()> {
        // If the thread already failed, the send fails and the join below reports why.
        let _ = self.commands.send(WriteCommand::Finish { durable }).await;
        drop(self.commands);
        join_writer(&self.key, self.thread).await
    }
}

/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`: starts writeback of a range without waiting for it.
/// Only a hint; an error changes nothing (the final fsync still makes the data durable).
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor belongs to `file`, which outlives the call; the call reads no memory.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

async fn join_writer(key: &str, thread: Option<JoinHandle<io::Result<()>>>) -> StorageResult<()> {
    let Some(thread) = thread else {
        return Err(StorageError::from_io(
            key,
            io::Error::other("writer already failed"),
        ));
    };
    thread
        .await
        .map_err(|e| StorageError::from_io(key, io::Error::other(e)))?
        .map_err(|e| StorageError::from_io(key, e))
}

#[async_trait]
impl ObjectWriter for FsWriter {
    async fn write(&mut self, chunk: Bytes) -> StorageResult<()> {
        let len = chunk.len() as u64;
        if self.commands.send(WriteCommand::Data(chunk)).await.is_err() {
            // The thread stopped, which it only does on an I/O error: surface that error.
            join_writer(&self.key, self.thread.take()).await?;
            return Err(StorageError::from_io(
                &self.key,
                io::Error::other("writer thread stopped"),
            ));
        }
        self.size += len;
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn close(self: Box<Self>) -> StorageResult<()> {
        self.finish(false).await
    }

    async fn commit(self: Box<Self>) -> StorageResult<()> {
        self.finish(true).await
    }
}
