//! Writing certificate material: temp file + fsync + rename, with the file mode set before any
//! byte is written, so a reader (or a crash) sees the old file or the new one, never a partial
//! key, and a key is never readable by others even for a moment.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::error::CertError;

/// Mode for private keys and the state they live in.
pub const PRIVATE_FILE: u32 = 0o600;
pub const PRIVATE_DIR: u32 = 0o700;
/// Mode for certificates clients must be able to read.
pub const PUBLIC_FILE: u32 = 0o644;
pub const PUBLIC_DIR: u32 = 0o755;

/// Replaces `path` with `bytes` atomically; the new file has exactly `mode` (umask ignored).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertError> {
    let error = |source| CertError::Write {
        path: path.to_owned(),
        source,
    };
    let name = path
        .file_name()
        .ok_or_else(|| error(io::Error::other("not a file name")))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", uuid::Uuid::new_v4()));
    let temp = path.with_file_name(temp_name);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        file.set_permissions(Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        sync_parent(path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written.map_err(error)
}

/// Creates `dir` (and missing parents) with `mode`; an existing directory is left as it is.
pub fn ensure_dir(dir: &Path, mode: u32) -> Result<(), CertError> {
    DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|source| CertError::Write {
            path: dir.to_owned(),
            source,
        })
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => File::open(parent)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_atomically_with_the_given_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_atomic(&path, b"one", PRIVATE_FILE).unwrap();
        write_atomic(&path, b"two", PUBLIC_FILE).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, PUBLIC_FILE);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failure_names_the_file() {
        let err = write_atomic(Path::new("/nonexistent/dir/ca.crt"), b"x", PUBLIC_FILE);
        assert!(err
            .unwrap_err()
            .to_string()
            .starts_with("/nonexistent/dir/ca.crt: "));
    }
}
