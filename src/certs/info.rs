//! What a certificate says about itself, read once from its DER: names, issuer, validity,
//! fingerprint and whether it is self-signed.
//!
//! The edge asks `self_signed` to decide on HSTS; `regapp cert status`, renewal scheduling and the
//! expiry metric read the dates. Pure parsing: no I/O, no clock (callers pass `now`).

use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::SignatureVerificationAlgorithm;
use sha2::{Digest, Sha256};
use x509_parser::asn1_rs::{Any, FromDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::error::X509Error;

/// The facts about one (leaf) certificate that the rest of regapp needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject as `CN=…, O=…`.
    pub subject: String,
    /// The issuer as `CN=…, O=…`.
    pub issuer: String,
    /// DNS names from the subjectAltName extension, as written (wildcards kept).
    pub dns_names: Vec<String>,
    /// IP addresses from the subjectAltName extension.
    pub ip_addresses: Vec<IpAddr>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The serial number as colon-separated hex, as `openssl x509 -serial` shows it (lowercase).
    pub serial: String,
    /// SHA-256 of the DER, lowercase hex: what `openssl x509 -fingerprint -sha256` prints.
    pub sha256_fingerprint: String,
    /// Issuer equals subject and the signature verifies with the certificate's own key: no CA
    /// vouches for it, so clients trust it only when told to (no HSTS for these).
    pub self_signed: bool,
}

impl CertInfo {
    /// Reads a DER certificate. Trailing bytes after the certificate are refused.
    pub fn from_der(der: &[u8]) -> Result<CertInfo, X509Error> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| X509Error(format!("DER: {e}")))?;
        if !rest.is_empty() {
            return Err(X509Error(format!(
                "{} bytes after the certificate",
                rest.len()
            )));
        }
        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        let san = cert
            .subject_alternative_name()
            .map_err(|e| X509Error(format!("subjectAltName: {e}")))?;
        for name in san.iter().flat_map(|ext| ext.value.general_names.iter()) {
            match name {
                GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        ip_addresses.push(ip);
                    }
                }
                _ => {}
            }
        }
        let same_name = cert.subject().as_raw() == cert.issuer().as_raw();
        Ok(CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            dns_names,
            ip_addresses,
            not_before: system_time(cert.validity().not_before.timestamp()),
            not_after: system_time(cert.validity().not_after.timestamp()),
            serial: cert.raw_serial_as_string(),
            sha256_fingerprint: hex::encode(Sha256::digest(der)),
            self_signed: same_name && signed_by_own_key(der, &cert),
        })
    }

    /// Whether `name` (a DNS name or an IP address) is one this certificate is valid for.
    /// A wildcard covers exactly one label (`*.example.com` covers `a.example.com`).
    pub fn covers(&self, name: &str) -> bool {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return self.ip_addresses.contains(&ip);
        }
        let name = name.trim_end_matches('.');
        self.dns_names.iter().any(|pattern| {
            let pattern = pattern.trim_end_matches('.');
            if pattern.eq_ignore_ascii_case(name) {
                return true;
            }
            match (pattern.strip_prefix("*."), name.split_once('.')) {
                (Some(parent), Some((label, rest))) => {
                    !label.is_empty() && parent.eq_ignore_ascii_case(rest)
                }
                _ => false,
            }
        })
    }

    /// not_after − not_before: the lifetime the CA granted (never assume 90 days).
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or(Duration::ZERO)
    }

    /// Time left at `now`; zero once expired.
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.not_after.duration_since(now).unwrap_or(Duration::ZERO)
    }

    /// Whether `now` is inside [not_before, not_after].
    pub fn valid_at(&self, now: SystemTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

fn system_time(unix_seconds: i64) -> SystemTime {
    let magnitude = Duration::from_secs(unix_seconds.unsigned_abs());
    if unix_seconds >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// The signature algorithms rustls' ring provider verifies, matched the way webpki matches them:
/// by the DER contents of the key's and the signature's AlgorithmIdentifier.
static ALGORITHMS: LazyLock<&'static [&'static dyn SignatureVerificationAlgorithm]> =
    LazyLock::new(|| {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all
    });

/// Whether the certificate's signature verifies with its own public key. x509-parser's `verify`
/// feature is not enabled here, so this uses rustls' (ring) verification algorithms directly.
fn signed_by_own_key(der: &[u8], cert: &X509Certificate<'_>) -> bool {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
    let Some(signature_alg) = contents(der)
        .and_then(|(body, _)| contents(body))
        .and_then(|(_, after_tbs)| contents(after_tbs))
        .map(|(alg, _)| alg)
    else {
        return false;
    };
    // SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey }
    let spki = cert.public_key();
    let Some(key_alg) = contents(spki.raw)
        .and_then(|(body, _)| contents(body))
        .map(|(alg, _)| alg)
    else {
        return false;
    };
    let public_key: &[u8] = &spki.subject_public_key.data;
    let signature: &[u8] = &cert.signature_value.data;
    let message = cert.tbs_certificate.as_ref();
    ALGORITHMS
        .iter()
        .filter(|alg| {
            alg.public_key_alg_id().as_ref() == key_alg
                && alg.signature_alg_id().as_ref() == signature_alg
        })
        .any(|alg| alg.verify_signature(public_key, message, signature).is_ok())
}

/// The contents of the DER element at the start of `der`, and the bytes after it.
fn contents(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (rest, any) = Any::from_der(der).ok()?;
    Some((any.data, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    fn params(names: &[&str]) -> CertificateParams {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        // Only literal, valid names are passed in these tests.
        let mut params = CertificateParams::new(names).unwrap();
        params.not_before = system_time(1_700_000_000).into();
        params.not_after = system_time(1_700_000_000 + 90 * 86_400).into();
        params
    }

    #[test]
    fn reads_names_dates_and_fingerprint() {
        let key = KeyPair::generate().unwrap();
        let cert = params(&["registry.example.com", "*.example.org", "127.0.0.1", "::1"])
            .self_signed(&key)
            .unwrap();
        let info = CertInfo::from_der(cert.der()).unwrap();
        assert_eq!(info.dns_names, ["registry.example.com", "*.example.org"]);
        assert_eq!(
            info.ip_addresses,
            [
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert_eq!(info.not_after, system_time(1_700_000_000 + 90 * 86_400));
        assert_eq!(info.lifetime(), Duration::from_secs(90 * 86_400));
        assert_eq!(
            info.sha256_fingerprint,
            hex::encode(Sha256::digest(cert.der()))
        );
        assert!(info.covers("registry.example.com"));
        assert!(info.covers("REGISTRY.example.com."));
        assert!(info.covers("a.example.org"));
        assert!(!info.covers("a.b.example.org"));
        assert!(!info.covers("example.org"));
        assert!(info.covers("::1"));
        assert!(!info.covers("10.0.0.1"));
        assert!(info.self_signed);
    }

    #[test]
    fn issued_certificate_is_not_self_signed() {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = params(&[]);
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name = DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Test CA");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = params(&["registry.example.com"])
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let info = CertInfo::from_der(leaf.der()).unwrap();
        assert_eq!(info.issuer, "CN=Test CA");
        assert!(!info.self_signed);
    }

    #[test]
    fn same_names_but_foreign_signature_is_not_self_signed() {
        // Subject == issuer, but signed by another key: a CA re-keyed under the same name.
        let mut ca_params = params(&[]);
        ca_params.distinguished_name = DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Same");
        let issuer = rcgen::Issuer::new(ca_params.clone(), KeyPair::generate().unwrap());
        let leaf = ca_params
            .signed_by(&KeyPair::generate().unwrap(), &issuer)
            .unwrap();
        let info = CertInfo::from_der(leaf.der()).unwrap();
        assert_eq!(info.subject, info.issuer);
        assert!(!info.self_signed);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(CertInfo::from_der(b"not a certificate").is_err());
    }
}
