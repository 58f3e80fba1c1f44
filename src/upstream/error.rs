//! What went wrong with an upstream, sorted the way the mirror acts on it: not there (404 to
//! the client), or unusable now (serve what is cached, else an error), and by kind for metrics.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The client could not be built (password or CA file).
    #[error("{0}")]
    Setup(String),
    #[error("the upstream has no such manifest or blob")]
    NotFound,
    #[error("the upstream asks to wait {}", humantime::format_duration(*retry_after))]
    RateLimited { retry_after: Duration },
    #[error(
        "the upstream refused (HTTP {0}): no such repository, or regapp's credentials lack access"
    )]
    Denied(u16),
    #[error("the upstream answered HTTP {0}")]
    Status(u16),
    #[error("the upstream did not answer in time")]
    TimedOut,
    #[error("the upstream is unreachable: {0}")]
    Unreachable(String),
    #[error("the upstream's answer is unusable: {0}")]
    Invalid(String),
}

impl UpstreamError {
    pub(super) fn transport(e: reqwest_s3::Error) -> UpstreamError {
        if e.is_timeout() {
            return UpstreamError::TimedOut;
        }
        // The chain names the cause (refused, reset, TLS): the top level only says "error
        // sending request".
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        UpstreamError::Unreachable(text)
    }

    /// The metrics label: few values.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Setup(_) => "setup",
            UpstreamError::NotFound => "not_found",
            UpstreamError::RateLimited { .. } => "rate_limited",
            UpstreamError::Denied(_) => "denied",
            UpstreamError::Status(_) => "status",
            UpstreamError::TimedOut => "timeout",
            UpstreamError::Unreachable(_) => "unreachable",
            UpstreamError::Invalid(_) => "invalid",
        }
    }
}
