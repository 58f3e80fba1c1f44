//! Pure value types of the registry: parsed once at the HTTP boundary, trusted everywhere after.
//! Nothing here does I/O.

pub mod accept;
pub mod digest;
pub mod manifest;
pub mod name;
pub mod range;
pub mod reference;
pub mod sha256;
pub mod upload_id;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use manifest::{Descriptor, ManifestKind, ParsedManifest};
pub use name::{NameError, RepoName, Tag};
pub use range::ByteRange;
pub use reference::Reference;
pub use upload_id::UploadId;
