//! Editing an htpasswd file in place of Apache's `htpasswd` tool: set, remove and list users,
//! then save atomically. What `regapp user` runs on.
//!
//! Every line the edit is not about stays byte for byte — comments, blank lines, users in schemes
//! regapp refuses — so the file stays Apache's format and an operator's notes survive. Saving
//! writes a temporary file beside the original (same directory, so the rename cannot cross a
//! filesystem), fsyncs it, gives it the original's mode and owner, renames it over the original
//! and fsyncs the directory: a reader (the server's watcher, `htpasswd -v`) sees the old file or
//! the new one, never a half-written one, and a crash leaves one of the two.
//!
//! Two `regapp user` runs at once would each read the file and the second rename would drop the
//! first one's edit, so [`HtpasswdFile::open`] takes an exclusive `flock` on the file's directory
//! and holds it until the value is dropped. (Apache's `htpasswd` takes no lock; editing with both
//! at the same moment can still lose one edit, never corrupt the file.)
//!
//! Owns no password hashing (`password.rs`) and no prompting (`user_command.rs`).

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use super::htpasswd::Htpasswd;
use super::password::PasswordHash;

/// The mode of a file `regapp user` creates: the owner writes, the group (the service's) reads.
pub const NEW_FILE_MODE: u32 = 0o640;

/// An htpasswd file read into memory, edited, and saved whole.
#[derive(Debug)]
pub struct HtpasswdFile {
    /// The file itself, symlinks resolved, so saving replaces the target and not the link.
    path: PathBuf,
    lines: Vec<Vec<u8>>,
    /// Mode and owner to keep; `None` when the file does not exist yet.
    existing: Option<Ownership>,
    /// The directory, `flock`ed from open to drop: one `regapp user` edit at a time.
    _lock: File,
}

#[derive(Debug, Clone, Copy)]
struct Ownership {
    mode: u32,
    uid: u32,
    gid: u32,
}

/// Why an edit or a save failed.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot keep the owner of {path} ({uid}:{gid}): {source}; run as root or as its owner"
    )]
    Owner {
        path: PathBuf,
        uid: u32,
        gid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid user name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
}

/// A user name Apache's `htpasswd` and regapp both read back as the same name: not empty, no
/// `:` (it ends the name), no control characters (a newline would start another line), no
/// surrounding spaces (the parser trims lines), at most 255 bytes (Apache's limit).
pub fn check_user_name(name: &str) -> Result<(), EditError> {
    let invalid = |reason| EditError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > 255 {
        return Err(invalid("it is longer than 255 bytes"));
    }
    if name.contains(':') {
        return Err(invalid("it contains `:`, which ends the name in htpasswd"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("it contains a control character"));
    }
    if name.trim() != name || name.starts_with('#') {
        return Err(invalid(
            "it starts or ends with a space, or starts with `#` (a comment)",
        ));
    }
    Ok(())
}

impl HtpasswdFile {
    /// Locks the file's directory and reads `path`; a missing file is an empty one, created on
    /// [`save`](Self::save). Waits while another `regapp user` holds the lock.
    pub fn open(path: &Path) -> Result<Self, EditError> {
        let read_error = |source| EditError::Read {
            path: path.to_owned(),
            source,
        };
        // Locked before the file is looked at, so its content, and whether it exists, stay as
        // read until the save. The directory of the name given (not of a symlink's target):
        // every `regapp user` on one configuration uses the same name.
        let lock = lock_dir(&parent_dir(path)).map_err(read_error)?;
        let resolved = match std::fs::canonicalize(path) {
            Ok(resolved) => resolved,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    _lock: lock,
                    path: path.to_owned(),
                    lines: Vec::new(),
                    existing: None,
                })
            }
            Err(e) => return Err(read_error(e)),
        };
        let content = std::fs::read(&resolved).map_err(read_error)?;
        let meta = std::fs::metadata(&resolved).map_err(read_error)?;
        let mut lines: Vec<Vec<u8>> = content.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        if lines.last().is_some_and(Vec::is_empty) {
            lines.pop(); // the final newline, added back on save
        }
        Ok(Self {
            _lock: lock,
            path: resolved,
            lines,
            existing: Some(Ownership {
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
            }),
        })
    }

    /// The file that [`save`](Self::save) replaces.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file existed when it was opened.
    pub fn exists(&self) -> bool {
        self.existing.is_some()
    }

    /// Whether a line for `user` exists, in any scheme (refused ones included).
    pub fn contains(&self, user: &str) -> bool {
        self.lines.iter().any(|line| line_user(line) == Some(user))
    }

    /// Sets `user`'s hash: replaces its line where it is (dropping any repeated lines for the
    /// same user, which would make the file invalid), or appends one.
    pub fn set(&mut self, user: &str, hash: &PasswordHash) -> Result<(), EditError> {
        check_user_name(user)?;
        let new_line = format!("{user}:{}", hash.as_str()).into_bytes();
        match self.lines.iter().position(|l| line_user(l) == Some(user)) {
            Some(first) => {
                self.lines[first] = new_line;
                let mut index = 0;
                self.lines.retain(|line| {
                    index += 1;
                    index - 1 == first || line_user(line) != Some(user)
                });
            }
            None => self.lines.push(new_line),
        }
        Ok(())
    }

    /// Removes every line for `user`; false if there was none.
    pub fn remove(&mut self, user: &str) -> bool {
        let before = self.lines.len();
        self.lines.retain(|line| line_user(line) != Some(user));
        self.lines.len() != before
    }

    /// The file as it would be saved.
    pub fn content(&self) -> Vec<u8> {
        let mut content = Vec::new();
        for line in &self.lines {
            content.extend_from_slice(line);
            content.push(b'\n');
        }
        content
    }

    /// The content parsed as the server will parse it.
    pub fn parsed(&self) -> Result<Htpasswd, super::htpasswd::ParseError> {
        Htpasswd::parse(&self.content())
    }

    /// Writes the content atomically (temp file + fsync + rename + directory fsync), keeping the
    /// original's mode and owner; a new file gets [`NEW_FILE_MODE`] and the caller's user and
    /// the directory's group (so a directory of group `regapp` yields a file the service reads).
    pub fn save(&self) -> Result<(), EditError> {
        let write_error = |source| EditError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = parent_dir(&self.path);
        let ownership = match self.existing {
            Some(ownership) => ownership,
            None => {
                let dir_meta = std::fs::metadata(&dir).map_err(write_error)?;
                Ownership {
                    mode: NEW_FILE_MODE,
                    // SAFETY: geteuid has no preconditions and cannot fail.
                    uid: unsafe { libc::geteuid() },
                    gid: dir_meta.gid(),
                }
            }
        };
        let temp = temp_path(&self.path);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            // Never more than the final mode while the content is written.
            .mode(0o600)
            .open(&temp)
            .map_err(write_error)?;
        let result = (|| {
            file.write_all(&self.content()).map_err(write_error)?;
            keep_ownership(&file, &temp, ownership)?;
            file.sync_all().map_err(write_error)?;
            std::fs::rename(&temp, &self.path).map_err(write_error)?;
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(write_error)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp); // may already be renamed; nothing else to do
        }
        result
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// An exclusive `flock` on a directory, released when the returned handle is dropped (or the
/// process dies, so a crashed edit never leaves a stale lock).
fn lock_dir(dir: &Path) -> std::io::Result<File> {
    use std::os::fd::AsRawFd as _;
    let handle = File::open(dir)?;
    // SAFETY: flock on a descriptor we own; it blocks until the lock is ours.
    if unsafe { libc::flock(handle.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(handle)
}

/// Gives the temp file the original's owner and mode: chown first, because changing the owner
/// clears set-id bits, then chmod.
fn keep_ownership(file: &File, temp: &Path, ownership: Ownership) -> Result<(), EditError> {
    let meta = file.metadata().map_err(|source| EditError::Write {
        path: temp.to_owned(),
        source,
    })?;
    if (meta.uid(), meta.gid()) != (ownership.uid, ownership.gid) {
        std::os::unix::fs::fchown(file, Some(ownership.uid), Some(ownership.gid)).map_err(
            |source| EditError::Owner {
                path: temp.to_owned(),
                uid: ownership.uid,
                gid: ownership.gid,
                source,
            },
        )?;
    }
    file.set_permissions(std::fs::Permissions::from_mode(ownership.mode))
        .map_err(|source| EditError::Write {
            path: temp.to_owned(),
            source,
        })
}

/// `.NAME.regapp-<random>` beside the file: hidden, and unique so two editors never share one.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_else(|| "htpasswd".as_ref()));
    name.push(format!(".regapp-{}", uuid::Uuid::new_v4().simple()));
    path.with_file_name(name)
}

/// The user a line is about, as the parser sees it; `None` for blank lines, comments and lines
/// that are not UTF-8 or have no colon.
fn line_user(line: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(line).ok()?.trim();
    if text.is_empty() || text.starts_with('#') {
        return None;
    }
    text.split_once(':').map(|(user, _)| user)
}

#[cfg(test)]
mod tests;
