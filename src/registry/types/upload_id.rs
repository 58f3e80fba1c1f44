//! Upload session ids: UUIDs, which also name the session's directory.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct UploadId(uuid::Uuid);

impl UploadId {
    pub fn new_random() -> UploadId {
        UploadId(uuid::Uuid::new_v4())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("upload id {0:?} is not a hyphenated UUID")]
pub struct UploadIdError(String);

impl FromStr for UploadId {
    type Err = UploadIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Only the hyphenated lowercase form: the one we hand out and the one on disk.
        let id = uuid::Uuid::try_parse(s).map_err(|_| UploadIdError(s.to_owned()))?;
        if id.hyphenated().to_string() != s {
            return Err(UploadIdError(s.to_owned()));
        }
        Ok(UploadId(id))
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
