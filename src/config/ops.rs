//! `[metrics]` and `[log]` → [`MetricsSettings`], [`LogSettings`]: where metrics and probes are
//! served, and how regapp logs.

use super::diagnostics::{ConfigError, Locator};
use super::raw::{RawLog, RawLogFormat, RawMetrics};
use crate::metrics::MetricsSettings;
use crate::ops::logging::{LogFormat, LogSettings, DEFAULT_LOG_LEVEL};

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
