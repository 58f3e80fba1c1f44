//! Manifests: which kinds the registry stores, and what it must know of one (its media type,
//! what it references, its `subject`). Parsing is the only validation; a [`ParsedManifest`]
//! is known to be one of the supported kinds.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    DockerManifest,
    DockerList,
    OciManifest,
    OciIndex,
}

impl ManifestKind {
    pub fn media_type(self) -> &'static str {
        match self {
            ManifestKind::DockerManifest => DOCKER_MANIFEST,
            ManifestKind::DockerList => DOCKER_LIST,
            ManifestKind::OciManifest => OCI_MANIFEST,
            ManifestKind::OciIndex => OCI_INDEX,
        }
    }

    fn from_media_type(media_type: &str) -> Option<ManifestKind> {
        Some(match media_type {
            DOCKER_MANIFEST => ManifestKind::DockerManifest,
            DOCKER_LIST => ManifestKind::DockerList,
            OCI_MANIFEST => ManifestKind::OciManifest,
            OCI_INDEX => ManifestKind::OciIndex,
            _ => return None,
        })
    }

    pub fn is_index(self) -> bool {
        matches!(self, ManifestKind::DockerList | ManifestKind::OciIndex)
    }
}

/// A content descriptor as it appears in manifests and in the referrers answer.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<Map<String, Value>>,
}

/// What the registry knows of a stored or incoming manifest.
#[derive(Debug, Clone)]
pub struct ParsedManifest {
    pub kind: ManifestKind,
    pub artifact_type: Option<String>,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub annotations: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("schema1 manifests are not supported; push the image again with a current client (schema2 or OCI)")]
    Schema1,
    #[error("manifest schemaVersion must be 2")]
    SchemaVersion,
    #[error("manifest media type {0:?} is not supported")]
    UnsupportedMediaType(String),
    #[error("Content-Type {header:?} does not match the manifest's mediaType {body:?}")]
    MediaTypeMismatch { header: String, body: String },
    #[error("manifest has no media type and its fields fit no known kind")]
    UnknownKind,
    #[error("{0} manifest needs a {1:?} field")]
    MissingField(&'static str, &'static str),
    #[error("the descriptor of {digest} says {declared} bytes, but the registry holds {actual}")]
    SizeMismatch {
        digest: Digest,
        declared: u64,
        actual: u64,
    },
}

impl ParsedManifest {
    /// Parses a manifest body. `content_type` is the request's `Content-Type` when pushing, or
    /// `None` for a stored manifest, whose media type then comes from the body alone.
    pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<ParsedManifest, ManifestError> {
        let header = content_type
            .map(|ct| ct.split(';').next().unwrap_or("").trim())
            .filter(|ct| !ct.is_empty());
        if matches!(header, Some(DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED)) {
            return Err(ManifestError::Schema1);
        }
        let raw: RawManifest =
            serde_json::from_slice(body).map_err(|e| ManifestError::Json(e.to_string()))?;
        if raw.schema_version == Some(1) {
            return Err(ManifestError::Schema1);
        }
        if raw.schema_version != Some(2) {
            return Err(ManifestError::SchemaVersion);
        }
        let media_type = match (header, raw.media_type.as_deref()) {
            (Some(h), Some(b)) if h != b => {
                return Err(ManifestError::MediaTypeMismatch {
                    header: h.to_owned(),
                    body: b.to_owned(),
                })
            }
            (_, Some(b)) => b.to_owned(),
            (Some(h), None) => h.to_owned(),
            (None, None) if raw.manifests.is_some() => OCI_INDEX.to_owned(),
            (None, None) if raw.config.is_some() => OCI_MANIFEST.to_owned(),
            (None, None) => return Err(ManifestError::UnknownKind),
        };
        if media_type == DOCKER_SCHEMA1 || media_type == DOCKER_SCHEMA1_SIGNED {
            return Err(ManifestError::Schema1);
        }
        let kind = ManifestKind::from_media_type(&media_type)
            .ok_or(ManifestError::UnsupportedMediaType(media_type))?;
        let name = kind.media_type();
        let (config, layers, manifests) = if kind.is_index() {
            let manifests = raw
                .manifests
                .ok_or(ManifestError::MissingField(name, "manifests"))?;
            (None, Vec::new(), manifests)
        } else {
            let config = raw
                .config
                .ok_or(ManifestError::MissingField(name, "config"))?;
            let layers = raw.layers.unwrap_or_default();
            (Some(config), layers, Vec::new())
        };
        Ok(ParsedManifest {
            kind,
            artifact_type: raw.artifact_type,
            config,
            layers,
            manifests,
            subject: raw.subject,
            annotations: raw.annotations,
        })
    }

    pub fn media_type(&self) -> &'static str {
        self.kind.media_type()
    }

    /// The artifact type a referrers answer reports: `artifactType`, else the config's media type
    /// (OCI 1.1, "Listing Referrers").
    pub fn effective_artifact_type(&self) -> Option<&str> {
        self.artifact_type
            .as_deref()
            .or_else(|| self.config.as_ref().map(|c| c.media_type.as_str()))
    }

    /// Blobs (config and layers) this manifest needs in its repository.
    pub fn referenced_blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(&self.layers)
    }
}

/// Layers that live outside the registry (Windows foreign layers, OCI non-distributable layers)
/// need not be present when they name where to fetch them.
pub fn is_external(descriptor: &Descriptor) -> bool {
    !descriptor.urls.is_empty()
        && (descriptor.media_type.contains(".foreign.")
            || descriptor.media_type.contains(".nondistributable."))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}"#;

    #[test]
    fn infers_oci_kinds_without_media_type() {
        let m = format!(r#"{{"schemaVersion":2,"config":{CONFIG},"layers":[]}}"#);
        assert_eq!(
            ParsedManifest::parse(m.as_bytes(), None).unwrap().kind,
            ManifestKind::OciManifest
        );
        let i = r#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(
            ParsedManifest::parse(i.as_bytes(), None).unwrap().kind,
            ManifestKind::OciIndex
        );
    }

    #[test]
    fn artifact_type_falls_back_to_config_media_type() {
        let m = format!(r#"{{"schemaVersion":2,"config":{CONFIG},"layers":[]}}"#);
        let p = ParsedManifest::parse(m.as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(
            p.effective_artifact_type(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn refuses_schema1_and_mismatches() {
        let s1 = r#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert_eq!(
            ParsedManifest::parse(s1.as_bytes(), None).unwrap_err(),
            ManifestError::Schema1
        );
        assert_eq!(
            ParsedManifest::parse(b"{}", Some(DOCKER_SCHEMA1_SIGNED)).unwrap_err(),
            ManifestError::Schema1
        );
        let m = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{CONFIG}}}"#);
        assert!(matches!(
            ParsedManifest::parse(m.as_bytes(), Some(DOCKER_MANIFEST)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        assert!(matches!(
            ParsedManifest::parse(b"not json", None),
            Err(ManifestError::Json(_))
        ));
        assert!(matches!(
            ParsedManifest::parse(br#"{"schemaVersion":2,"mediaType":"text/plain"}"#, None),
            Err(ManifestError::UnsupportedMediaType(_))
        ));
    }
}
