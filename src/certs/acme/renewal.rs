//! When the certificate in use is due: the CA's renewal window (ARI, RFC 9773) when its
//! directory offers one, else the lifetime rule; right away when there is no usable certificate.
//! The dates come from [`super::schedule`]; this file adds the CA's answer.

use std::time::{Duration, SystemTime};

use instant_acme::{Account, CertificateIdentifier};
use rustls::pki_types::CertificateDer;

use super::error::AcmeError;
use super::schedule::{ari_check_after, ari_renewal_at, lifetime_renewal_at, random_fraction};
use crate::certs::CertInfo;

/// Why a certificate is due when it is.
#[derive(Debug, Clone, PartialEq)]
pub enum Basis {
    /// No certificate yet (or the stored one does not load).
    Missing,
    /// The certificate in use lacks a configured name.
    NamesChanged,
    /// Inside the CA's suggested window.
    Ari { start: SystemTime, end: SystemTime },
    /// A third of the lifetime left (half for short-lived certificates).
    Lifetime,
    /// `regapp cert renew`.
    Forced,
}

impl std::fmt::Display for Basis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Basis::Missing => f.write_str("no certificate yet"),
            Basis::NamesChanged => f.write_str("acme.domains names a name the certificate lacks"),
            Basis::Ari { start, end } => write!(
                f,
                "inside the CA's renewal window {} .. {} (ARI)",
                humantime::format_rfc3339_seconds(*start),
                humantime::format_rfc3339_seconds(*end)
            ),
            Basis::Lifetime => f.write_str("1/3 of the lifetime left (1/2 below 10 days)"),
            Basis::Forced => f.write_str("forced by `regapp cert renew`"),
        }
    }
}

/// The CA's answer about one certificate, kept until it is time to ask again.
#[derive(Debug, Clone)]
pub struct AriAnswer {
    /// The certificate asked about (SHA-256 of its DER, as `CertInfo` has it).
    pub fingerprint: String,
    pub renew_at: SystemTime,
    pub basis: Basis,
    /// Sent as `replaces` with the renewal's order.
    pub replaces: CertificateIdentifier<'static>,
    pub ask_again_at: SystemTime,
}

/// Asks the CA for the renewal window of `leaf`. `Ok(None)`: the CA does not offer ARI, or the
/// certificate carries no Authority Key Identifier to name it by.
pub async fn ask_ari(
    account: &Account,
    leaf: &CertificateDer<'_>,
    fingerprint: &str,
    now: SystemTime,
) -> Result<Option<AriAnswer>, AcmeError> {
    let id = match CertificateIdentifier::try_from(leaf) {
        Ok(id) => id.into_owned(),
        Err(reason) => {
            tracing::debug!(%reason, "no ARI for this certificate");
            return Ok(None);
        }
    };
    let (info, hint) = match account.renewal_info(&id).await {
        Ok(answer) => answer,
        Err(instant_acme::Error::Unsupported(_)) => return Ok(None),
        Err(e) => {
            return Err(AcmeError::from_acme(
                "asking for the renewal window (ARI)",
                e,
            ))
        }
    };
    let start = SystemTime::from(info.suggested_window.start);
    let end = SystemTime::from(info.suggested_window.end);
    Ok(Some(AriAnswer {
        fingerprint: fingerprint.to_owned(),
        renew_at: ari_renewal_at(start, end, random_fraction()),
        basis: Basis::Ari { start, end },
        replaces: id,
        ask_again_at: now + ari_check_after(hint),
    }))
}

/// When `info` is due by the lifetime rule, or now if it lacks one of `domains`.
pub fn without_ari(info: &CertInfo, domains: &[String], now: SystemTime) -> (SystemTime, Basis) {
    if !domains.iter().all(|d| info.covers(d)) {
        return (now, Basis::NamesChanged);
    }
    (
        lifetime_renewal_at(info.not_before, info.not_after),
        Basis::Lifetime,
    )
}

/// How long to trust a failed ARI check's absence before asking again.
pub const ARI_ERROR_BACKOFF: Duration = Duration::from_secs(3600);
