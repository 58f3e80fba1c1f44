//! PEM certificate chain + private key → a checked `CertifiedKey`.
//!
//! The chain is every `CERTIFICATE` block in order, the server's own certificate first; the key is
//! the first PKCS#8, SEC1 or PKCS#1 block (ECDSA P-256/P-384, RSA, Ed25519 — whatever rustls' ring
//! provider signs with). A key that does not match the first certificate is refused, so a
//! half-finished renewal (new chain, old key) can never be served. Errors name the file.

use std::fs;
use std::path::Path;

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{Error as TlsError, InconsistentKeys};

use super::error::{CertError, X509Error};

/// Reads `cert_file` (chain) and `key_file` (key) and checks they belong together.
pub fn load_files(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, CertError> {
    let cert_pem = read(cert_file)?;
    let key_pem = read(key_file)?;
    parse(&cert_pem, cert_file, &key_pem, key_file)
}

/// The same checks over PEM already in memory (an ACME answer, a generated certificate);
/// `cert_origin` and `key_origin` name them in errors.
pub fn parse(
    cert_pem: &[u8],
    cert_origin: &Path,
    key_pem: &[u8],
    key_origin: &Path,
) -> Result<CertifiedKey, CertError> {
    let chain = certificates(cert_pem, cert_origin)?;
    let key = private_key(key_pem, key_origin)?;
    let signing_key = any_supported_type(&key).map_err(|source| CertError::UnsupportedKey {
        path: key_origin.to_owned(),
        source,
    })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(TlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(CertError::KeyMismatch {
                cert_path: cert_origin.to_owned(),
                key_path: key_origin.to_owned(),
            })
        }
        // ring's signing keys always expose their public key, so `Unknown` cannot happen; if a
        // future provider's did, refusing is the safe answer too.
        Err(e) => Err(CertError::BadCertificate {
            path: cert_origin.to_owned(),
            source: X509Error(e.to_string()),
        }),
    }
}

/// Every certificate in `pem`, in order; at least one.
pub fn certificates(pem: &[u8], origin: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|source| CertError::Pem {
            path: origin.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate {
            path: origin.to_owned(),
        });
    }
    Ok(chain)
}

fn private_key(pem: &[u8], origin: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        pem::Error::NoItemsFound => CertError::NoKey {
            path: origin.to_owned(),
        },
        source => CertError::Pem {
            path: origin.to_owned(),
            source,
        },
    })
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    fs::read(path).map_err(|source| CertError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};
    use std::path::PathBuf;

    fn pair(alg: &'static rcgen::SignatureAlgorithm) -> (String, KeyPair) {
        let key = KeyPair::generate_for(alg).unwrap();
        let params = CertificateParams::new(vec!["registry.test".to_owned()]).unwrap();
        (params.self_signed(&key).unwrap().pem(), key)
    }

    fn parse_str(cert: &str, key: &str) -> Result<CertifiedKey, CertError> {
        parse(
            cert.as_bytes(),
            Path::new("fullchain.pem"),
            key.as_bytes(),
            Path::new("privkey.pem"),
        )
    }

    #[test]
    fn loads_every_supported_key_type() {
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ] {
            let (cert, key) = pair(alg);
            let loaded = parse_str(&cert, &key.serialize_pem()).unwrap();
            assert_eq!(loaded.cert.len(), 1);
        }
    }

    #[test]
    fn loads_sec1_and_pkcs1_keys_written_by_openssl() {
        // Fixed pairs in the "traditional" key encodings, made with `openssl ecparam -genkey
        // -noout` and `openssl genrsa -traditional` (rcgen's ring backend writes only PKCS#8).
        for (cert, key) in [
            (
                include_str!("testdata/ec-sec1.crt"),
                include_str!("testdata/ec-sec1.key"),
            ),
            (
                include_str!("testdata/rsa-pkcs1.crt"),
                include_str!("testdata/rsa-pkcs1.key"),
            ),
        ] {
            let loaded = parse_str(cert, key).unwrap();
            let info = crate::certs::CertInfo::from_der(&loaded.cert[0]).unwrap();
            assert!(info.covers("registry.test") && info.self_signed, "{info:?}");
        }
    }

    #[test]
    fn key_of_another_certificate_is_refused() {
        let (cert_a, _) = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (_, key_b) = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        let err = parse_str(&cert_a, &key_b.serialize_pem()).unwrap_err();
        assert!(matches!(err, CertError::KeyMismatch { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("privkey.pem") && message.contains("fullchain.pem"));
    }

    #[test]
    fn chain_in_wrong_order_is_refused() {
        let (leaf, key) = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (other, _) = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        let reversed = format!("{other}{leaf}");
        assert!(matches!(
            parse_str(&reversed, &key.serialize_pem()),
            Err(CertError::KeyMismatch { .. })
        ));
        let ordered = format!("{leaf}{other}");
        assert_eq!(
            parse_str(&ordered, &key.serialize_pem())
                .unwrap()
                .cert
                .len(),
            2
        );
    }

    #[test]
    fn errors_name_the_file() {
        let (cert, key) = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        let key = key.serialize_pem();
        let no_cert = parse_str("", &key).unwrap_err();
        assert!(matches!(no_cert, CertError::NoCertificate { .. }));
        assert!(no_cert.to_string().starts_with("fullchain.pem: "));
        let no_key = parse_str(&cert, &cert).unwrap_err();
        assert!(matches!(no_key, CertError::NoKey { .. }));
        assert!(no_key.to_string().starts_with("privkey.pem: "));
        let truncated = &cert[..cert.len() - 30];
        assert!(matches!(
            parse_str(truncated, &key),
            Err(CertError::Pem { .. })
        ));
        let missing = load_files(&PathBuf::from("/nonexistent/fullchain.pem"), Path::new("k"));
        let missing = missing.unwrap_err().to_string();
        assert!(
            missing.starts_with("/nonexistent/fullchain.pem: cannot read"),
            "{missing}"
        );
    }
}
