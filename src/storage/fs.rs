//! The filesystem driver: keys are paths below a root directory.
//!
//! Visible files only ever appear by `rename` of a fully written, fsynced temporary file named
//! `<path>.<uuid>.tmp` (the form registry:2 v3 uses), so a crash leaves at worst a `*.tmp` file
//! that `list` hides. Writers run on a blocking thread fed by a small channel: the request task
//! hashes one chunk while the thread writes the previous one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::io::ReaderStream;

use super::{ByteStream, ObjectInfo, ObjectWriter, StorageDriver, StorageError, StorageResult};

const READ_CHUNK: usize = 256 * 1024;
const WRITE_BUFFER: usize = 1024 * 1024;
/// Chunks queued between the request task and the writing thread: bounds memory per upload.
const WRITE_QUEUE: usize = 8;

pub struct FsDriver {
    root: PathBuf,
}

impl FsDriver {
    pub fn new(root: impl Into<PathBuf>) -> FsDriver {
        FsDriver { root: root.into() }
    }

    fn path(&self, key: &str) -> StorageResult<PathBuf> {
        let relative = Path::new(key);
        let plain = !key.is_empty()
            && relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
        if !plain {
            return Err(StorageError::InvalidKey(key.to_owned()));
        }
        Ok(self.root.join(relative))
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

fn temp_path_for(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}.tmp", uuid::Uuid::new_v4()));
    PathBuf::from(name)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn write_atomically(path: &Path, content: &[u8]) -> io::Result<()> {
    let dir = path.parent().expect("a storage key always has a parent");
    fs::create_dir_all(dir)?;
    let temp = temp_path_for(path);
    let result = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(content)?;
        file.sync_data()?;
        fs::rename(&temp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
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
        let path = self.path(key)?;
        blocking(key, move || write_atomically(&path, &content)).await
    }

    async fn reader(&self, key: &str, offset: u64, len: Option<u64>) -> StorageResult<ByteStream> {
        let path = self.path(key)?;
        let io_err = |e| StorageError::from_io(key, e);
        let mut file = tokio::fs::File::open(&path).await.map_err(io_err)?;
        if offset > 0 {
            file.seek(SeekFrom::Start(offset)).await.map_err(io_err)?;
        }
        let stream = match len {
            Some(len) => ReaderStream::with_capacity(file.take(len), READ_CHUNK).boxed(),
            None => ReaderStream::with_capacity(file, READ_CHUNK).boxed(),
        };
        Ok(stream)
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
        Ok(ObjectInfo {
            size: meta.len(),
            modified: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
            is_dir: meta.is_dir(),
        })
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
        blocking(key, move || {
            if fs::symlink_metadata(&path)?.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            }
        })
        .await
    }

    async fn rename(&self, from: &str, to: &str) -> StorageResult<()> {
        let source = self.path(from)?;
        let target = self.path(to)?;
        blocking(from, move || {
            let dir = target.parent().expect("a storage key always has a parent");
            fs::create_dir_all(dir)?;
            fs::rename(&source, &target)?;
            sync_dir(dir)
        })
        .await
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
            let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
            while let Some(command) = queue.blocking_recv() {
                match command {
                    WriteCommand::Data(chunk) => out.write_all(&chunk)?,
                    WriteCommand::Finish { durable } => {
                        out.flush()?;
                        if durable {
                            out.get_ref().sync_data()?;
                        }
                        return Ok(());
                    }
                }
            }
            // The writer was dropped: the upload was abandoned; what was written stays for a retry.
            out.flush()
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
