//! `[metrics]` and `[log]` → [`MetricsSettings`], [`LogSettings`]: where metrics and probes are
//! served, and how regapp logs.

use std::net::SocketAddr;

use ipnet::IpNet;

use super::diagnostics::{ConfigError, Locator};
use super::raw::{RawLog, RawLogFormat, RawMetrics};

pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9102";
pub const DEFAULT_LOG_LEVEL: &str = "info";

#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSettings {
    /// `/metrics`, `/healthz` and `/readyz`, plain HTTP.
    pub listen: SocketAddr,
    /// Clients that may also read `/metrics` through the edge; empty = not on the edge.
    pub allow: Vec<IpNet>,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            listen: DEFAULT_METRICS_LISTEN.parse().expect("the default parses"),
            allow: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    /// A tracing filter: `"info"`, `"debug"`, or per module (`"info,regapp::access=warn"`).
    /// `RUST_LOG` (or `REGAPP_LOG`) wins when set.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: DEFAULT_LOG_LEVEL.to_owned(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One line per event; colours only on a terminal (journald gets plain lines).
    Text,
    /// One JSON object per line.
    Json,
}

pub(super) fn metrics_settings(raw: RawMetrics) -> MetricsSettings {
    let default = MetricsSettings::default();
    MetricsSettings {
        listen: raw.listen.unwrap_or(default.listen),
        allow: raw.allow.unwrap_or_default(),
    }
}

pub(super) fn log_settings(raw: RawLog, locator: &Locator<'_>) -> Result<LogSettings, ConfigError> {
    let level = raw.level.unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned());
    // tracing-subscriber 0.3's filter parser panics on some non-ASCII input (found by
    // fuzzing, fuzz/regressions/config): targets, spans and levels are ASCII anyway.
    if !level.is_ascii() {
        return Err(locator.error(
            "log",
            Some("level"),
            format!("{level:?} has characters that are not ASCII; levels and module paths are"),
        ));
    }
    // As `ops::logging` reads it: field values as plain strings. As regular expressions, a
    // 250-byte value took minutes to compile (found by fuzzing too).
    let parsed = tracing_subscriber::EnvFilter::builder()
        .with_regex(false)
        .parse(&level);
    if let Err(e) = parsed {
        return Err(locator.error(
            "log",
            Some("level"),
            format!("{level:?} is not a level (error, warn, info, debug, trace) or filter: {e}"),
        ));
    }
    Ok(LogSettings {
        level,
        format: match raw.format.unwrap_or(RawLogFormat::Text) {
            RawLogFormat::Text => LogFormat::Text,
            RawLogFormat::Json => LogFormat::Json,
        },
    })
}
