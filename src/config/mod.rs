//! The configuration file: raw TOML → typed settings, with every problem reported by file, line
//! and key. No other part imports this module's raw types; `app` hands each part its settings.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod diagnostics;
mod raw;

pub use diagnostics::{ConfigError, ConfigErrors};

/// Everything regapp runs with, checked and typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub storage: StorageSettings,
    pub engine: EngineSettings,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StorageSettings {
    /// registry:2's layout lives under `<root>/docker/registry/v2`.
    pub root: PathBuf,
    pub delete_enabled: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EngineSettings {
    /// The engine's plain-HTTP listener; loopback unless it is meant to be reached directly.
    pub listen: SocketAddr,
    pub max_manifest_bytes: usize,
}

pub const DEFAULT_ROOT: &str = "/var/lib/regapp/registry";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5000";
pub const DEFAULT_MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

impl Settings {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Settings, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::single(ConfigError {
                origin: path.display().to_string(),
                line: None,
                key: None,
                message: format!("cannot read the file: {e}"),
            })
        })?;
        Settings::parse(&text, &path.display().to_string())
    }

    /// Checks configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Settings, ConfigErrors> {
        let raw = diagnostics::deserialize_reporting_every_key::<raw::RawConfig>(text, origin)?;
        Ok(Settings {
            storage: StorageSettings {
                root: raw
                    .storage
                    .root
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT)),
                delete_enabled: raw.storage.delete_enabled.unwrap_or(true),
            },
            engine: EngineSettings {
                listen: raw
                    .engine
                    .listen
                    .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("the default parses")),
                max_manifest_bytes: raw
                    .engine
                    .max_manifest_bytes
                    .unwrap_or(DEFAULT_MAX_MANIFEST_BYTES),
            },
        })
    }

    /// `regapp serve --dev`: data in `./regapp-data`, engine on 127.0.0.1:5000.
    pub fn dev() -> Settings {
        Settings {
            storage: StorageSettings {
                root: PathBuf::from("regapp-data"),
                delete_enabled: true,
            },
            engine: EngineSettings {
                listen: DEFAULT_LISTEN.parse().expect("the default parses"),
                max_manifest_bytes: DEFAULT_MAX_MANIFEST_BYTES,
            },
        }
    }
}

impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "storage.root = {}", self.storage.root.display())?;
        writeln!(
            f,
            "storage.delete_enabled = {}",
            self.storage.delete_enabled
        )?;
        writeln!(f, "engine.listen = {}", self.engine.listen)?;
        write!(
            f,
            "engine.max_manifest_bytes = {}",
            self.engine.max_manifest_bytes
        )
    }
}

#[cfg(test)]
mod tests;
