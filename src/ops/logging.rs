//! Logging through tracing: plain lines on a terminal (coloured) or for journald (no colours,
//! no timestamp of our own: the journal stamps each line), JSON lines with `log.format = "json"`.
//! The level comes from `log.level`, unless `REGAPP_LOG` or `RUST_LOG` is set (they win, for a
//! one-off debug session), and can change on SIGHUP.
//!
//! The subscriber is process-wide by nature (tracing's global default), so the handle that
//! changes its level is kept here, set once by [`init`].

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

pub const DEFAULT_LOG_LEVEL: &str = "info";

/// `[log]` (checked by `config`).
#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    /// A tracing filter: `"info"`, `"debug"`, or per module (`"info,regapp::auth::access=warn"`).
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

type FilterHandle = reload::Handle<EnvFilter, Registry>;

static LEVEL: OnceLock<FilterHandle> = OnceLock::new();

/// Installs the global subscriber. Call once, early; later calls do nothing.
pub fn init(settings: &LogSettings) {
    let from_env = env_filter();
    let env_decides = from_env.is_some();
    let filter = from_env
        .or_else(|| parse_filter(&settings.level))
        .unwrap_or_else(|| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::stderr().is_terminal();
    // systemd sets JOURNAL_STREAM when stderr goes to the journal, which has its own timestamps.
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let output = match settings.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text if journal => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .without_time()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    if tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .is_ok()
    {
        let _ = LEVEL.set(handle);
        if env_decides {
            tracing::info!("REGAPP_LOG/RUST_LOG is set: it decides the log level, not log.level");
        }
    }
}

/// Applies `log.level` (SIGHUP). Does nothing when the environment decides the level.
pub fn set_level(level: &str) -> Result<(), String> {
    if env_filter().is_some() {
        return Ok(());
    }
    let Some(handle) = LEVEL.get() else {
        return Ok(());
    };
    let filter =
        parse_filter(level).ok_or_else(|| format!("log.level {level:?}: not a level or filter"))?;
    handle.reload(filter).map_err(|e| format!("log.level: {e}"))
}

/// A filter from `log.level` or the environment, as `config` checks it: ASCII only (the
/// parser panics on some other input), and field values (`regapp[user=alice]`) matched as plain
/// strings (compiled as regular expressions, some took minutes). Fuzzing found both.
fn parse_filter(text: &str) -> Option<EnvFilter> {
    if !text.is_ascii() {
        return None;
    }
    EnvFilter::builder().with_regex(false).parse(text).ok()
}

fn env_filter() -> Option<EnvFilter> {
    ["REGAPP_LOG", "RUST_LOG"]
        .iter()
        .find_map(|var| std::env::var(var).ok().and_then(|text| parse_filter(&text)))
}
