//! What can go wrong getting a certificate, in the words an operator needs: which name, what the
//! CA said (its problem detail, verbatim), and what to check. The instant-acme error stays
//! reachable through `source()` where there is one.

use std::path::PathBuf;
use std::time::SystemTime;

use instant_acme::Problem;

use crate::certs::CertError;

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The CA tried to fetch the HTTP-01 answer and failed or got the wrong one.
    #[error(
        "the CA could not validate {name} over HTTP-01: {detail} — check that {name} resolves \
         to this host and that port 80 from the internet reaches regapp's edge.http_listen"
    )]
    Validation { name: String, detail: String },
    /// Too many orders, failures or certificates: the CA says when to come back.
    #[error("the CA's rate limit was hit: {detail}{}", retry_after_text(.retry_after))]
    RateLimited {
        detail: String,
        retry_after: Option<SystemTime>,
    },
    /// The CA wants External Account Binding, or refused the one given.
    #[error(
        "the CA refused the account's External Account Binding: {detail} — check acme.eab_kid \
         and acme.eab_hmac_key (as the CA handed them out; the key is base64url)"
    )]
    ExternalAccount { detail: String },
    /// The CA requires External Account Binding and none is configured.
    #[error(
        "the CA requires External Account Binding: {detail} — set acme.eab_kid and \
         acme.eab_hmac_key to the values the CA handed out"
    )]
    ExternalAccountRequired { detail: String },
    /// `acme.profile` names a profile the CA's directory does not list.
    #[error("acme.profile = {profile:?}: the CA offers {}", offered_text(.offered))]
    UnknownProfile {
        profile: String,
        offered: Vec<String>,
    },
    /// Any other problem document from the CA.
    #[error("{what}: the CA answered: {problem}")]
    Refused {
        what: &'static str,
        problem: Problem,
    },
    /// The CA could not be reached, or answered something that is not ACME.
    #[error("{what}: {source}")]
    Protocol {
        what: &'static str,
        #[source]
        source: instant_acme::Error,
    },
    /// The order did not finish in time.
    #[error("{what}: no answer from the CA within {seconds} s")]
    Timeout { what: &'static str, seconds: u64 },
    #[error("{}: {message}", path.display())]
    State { path: PathBuf, message: String },
    /// The bucket that keeps the account and certificate for several nodes failed.
    #[error("the bucket: {source}")]
    Bucket {
        #[source]
        source: crate::storage::StorageError,
    },
    /// Several nodes: another node holds the ACME lease and is ordering; its certificate
    /// reaches this node through the bucket.
    #[error(
        "node {node} is ordering the certificate now (it holds the acme lease); this node picks \
         it up from the bucket within a minute"
    )]
    OrderedElsewhere { node: String },
    /// Several nodes: the `acme` lease could not be renewed during the order (the bucket did
    /// not answer, or another node took it over after it expired).
    #[error("the acme lease was lost during the order; it is tried again")]
    LeaseLost,
    #[error(transparent)]
    Certificate(#[from] CertError),
    #[error("creating the certificate's key or signing request: {0}")]
    Key(#[from] rcgen::Error),
}

fn retry_after_text(at: &Option<SystemTime>) -> String {
    match at {
        Some(at) => format!(
            " (retrying after {})",
            humantime::format_rfc3339_seconds(*at)
        ),
        None => String::new(),
    }
}

fn offered_text(offered: &[String]) -> String {
    match offered {
        [] => "no profiles; remove acme.profile".to_owned(),
        names => format!("only {}", names.join(", ")),
    }
}

const RATE_LIMITED: &str = "urn:ietf:params:acme:error:rateLimited";
const EAB_REQUIRED: &str = "urn:ietf:params:acme:error:externalAccountRequired";
const UNAUTHORIZED: &str = "urn:ietf:params:acme:error:unauthorized";
const MALFORMED: &str = "urn:ietf:params:acme:error:malformed";

impl AcmeError {
    /// Classifies an instant-acme error met while doing `what`.
    pub fn from_acme(what: &'static str, error: instant_acme::Error) -> AcmeError {
        match error {
            instant_acme::Error::Api(problem) => AcmeError::from_problem(what, problem),
            instant_acme::Error::Timeout(_) => AcmeError::Timeout {
                what,
                seconds: super::ORDER_TIMEOUT.as_secs(),
            },
            source => AcmeError::Protocol { what, source },
        }
    }

    pub fn from_problem(what: &'static str, problem: Problem) -> AcmeError {
        match problem.r#type.as_deref() {
            Some(RATE_LIMITED) => {
                let detail = problem.detail.clone().unwrap_or_default();
                AcmeError::RateLimited {
                    retry_after: retry_after_in(&detail),
                    detail,
                }
            }
            Some(EAB_REQUIRED) => AcmeError::ExternalAccountRequired {
                detail: problem
                    .detail
                    .unwrap_or_else(|| "External Account Binding is required".to_owned()),
            },
            _ => AcmeError::Refused { what, problem },
        }
    }

    /// While creating an account with EAB, "unauthorized" and "malformed" mean the binding.
    pub fn from_account_creation(error: instant_acme::Error, with_eab: bool) -> AcmeError {
        match error {
            instant_acme::Error::Api(problem)
                if with_eab
                    && matches!(problem.r#type.as_deref(), Some(UNAUTHORIZED | MALFORMED)) =>
            {
                AcmeError::ExternalAccount {
                    detail: problem.to_string(),
                }
            }
            other => AcmeError::from_acme("creating the ACME account", other),
        }
    }

    /// The earliest moment the CA said a retry may succeed, if it said.
    pub fn retry_not_before(&self) -> Option<SystemTime> {
        match self {
            AcmeError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short label for logs and the attempts counter.
    pub fn kind(&self) -> &'static str {
        match self {
            AcmeError::Validation { .. } => "validation",
            AcmeError::RateLimited { .. } => "rate_limited",
            AcmeError::ExternalAccount { .. } | AcmeError::ExternalAccountRequired { .. } => {
                "external_account"
            }
            AcmeError::UnknownProfile { .. } => "profile",
            AcmeError::Refused { .. } => "refused",
            AcmeError::Protocol { .. } => "unreachable",
            AcmeError::Timeout { .. } => "timeout",
            AcmeError::State { .. } | AcmeError::Bucket { .. } => "state",
            AcmeError::OrderedElsewhere { .. } => "elsewhere",
            AcmeError::LeaseLost => "lease_lost",
            AcmeError::Certificate(_) | AcmeError::Key(_) => "certificate",
        }
    }
}

/// Let's Encrypt writes the moment in the detail: "… retry after 2025-01-02 03:04:05 UTC: see …".
fn retry_after_in(detail: &str) -> Option<SystemTime> {
    let at = detail.find("retry after ")? + "retry after ".len();
    let stamp = detail.get(at..at + 19)?;
    humantime::parse_rfc3339(&format!("{}Z", stamp.replacen(' ', "T", 1))).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(kind: &str, detail: &str) -> Problem {
        serde_json::from_value(serde_json::json!({
            "type": kind, "detail": detail, "status": 429
        }))
        .unwrap()
    }

    #[test]
    fn a_rate_limit_says_when_to_come_back() {
        let e = AcmeError::from_problem(
            "ordering",
            problem(
                RATE_LIMITED,
                "too many certificates (5) already issued for this exact set of identifiers in \
                 the last 168h0m0s, retry after 2025-01-02 03:04:05 UTC: see https://letsencrypt.org/docs/rate-limits/",
            ),
        );
        let expected = humantime::parse_rfc3339("2025-01-02T03:04:05Z").unwrap();
        assert_eq!(e.retry_not_before(), Some(expected));
        let text = e.to_string();
        assert!(text.contains("too many certificates"), "{text}");
        assert!(
            text.contains("retrying after 2025-01-02T03:04:05Z"),
            "{text}"
        );
        assert_eq!(e.kind(), "rate_limited");
    }

    #[test]
    fn a_wrong_binding_is_named_as_such() {
        let e = AcmeError::from_account_creation(
            instant_acme::Error::Api(problem(UNAUTHORIZED, "EAB key not found")),
            true,
        );
        assert!(e.to_string().contains("External Account Binding"), "{e}");
        assert!(e.to_string().contains("EAB key not found"), "{e}");
        let e = AcmeError::from_account_creation(
            instant_acme::Error::Api(problem(UNAUTHORIZED, "something else")),
            false,
        );
        assert_eq!(e.kind(), "refused");
        let e = AcmeError::from_problem("x", problem(EAB_REQUIRED, "bind it"));
        assert_eq!(e.kind(), "external_account");
    }
}
