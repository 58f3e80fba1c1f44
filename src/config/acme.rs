//! `[acme]` → the certificate manager's [`AcmeOptions`]: the CA's directory (with shortcuts), names, account binding and
//! where the state lives. Every problem names its key and line.

use std::path::PathBuf;

use base64::Engine;

use super::diagnostics::{ConfigError, Locator};
use super::raw::RawAcme;
use crate::certs::acme::{
    AcmeOptions, DEFAULT_STATE_DIR, LETSENCRYPT, LETSENCRYPT_STAGING, ZEROSSL,
};

/// The directory URL a value names: a shortcut or an `https://` URL.
fn directory_url(value: &str) -> Result<String, String> {
    match value {
        "" | "letsencrypt" => Ok(LETSENCRYPT.to_owned()),
        "letsencrypt-staging" => Ok(LETSENCRYPT_STAGING.to_owned()),
        "zerossl" => Ok(ZEROSSL.to_owned()),
        url if url.starts_with("https://") && url.len() > "https://".len() => Ok(url.to_owned()),
        other => Err(format!(
            "{other:?} is neither an https:// directory URL nor one of \"letsencrypt\", \
             \"letsencrypt-staging\", \"zerossl\""
        )),
    }
}

/// A name HTTP-01 can validate: a DNS name, no wildcard, no IP address, no port.
fn check_domain(name: &str) -> Result<(), String> {
    if name.starts_with("*.") {
        return Err(format!(
            "{name:?}: wildcard names need DNS-01, which regapp does not do; list the names"
        ));
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "{name:?}: an IP address; ACME certificates here are for DNS names"
        ));
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
        return Err(format!("{name:?} is not a DNS name"));
    }
    Ok(())
}

pub(super) fn acme_settings(
    raw: RawAcme,
    hostname: &str,
    locator: &Locator<'_>,
) -> Result<AcmeOptions, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let error = |key, message: String| locator.error("acme", Some(key), message);
    let directory = match directory_url(raw.directory.as_deref().unwrap_or("")) {
        Ok(url) => url,
        Err(message) => {
            errors.push(error("directory", message));
            String::new()
        }
    };
    let contact = raw.contact.unwrap_or_default();
    for c in &contact {
        if !c.starts_with("mailto:") || c.len() == "mailto:".len() {
            errors.push(error(
                "contact",
                format!("{c:?}: contacts are \"mailto:address\" URIs"),
            ));
        }
    }
    let domains = match raw.domains {
        Some(domains) if !domains.is_empty() => domains,
        // A missing edge.hostname is reported on its own.
        _ if hostname.is_empty() => Vec::new(),
        _ => vec![hostname.to_owned()],
    };
    for d in &domains {
        if let Err(message) = check_domain(d) {
            errors.push(error("domains", message));
        }
    }
    let ca_root = raw.ca_root.filter(|p| !p.as_os_str().is_empty());
    let eab = match (
        raw.eab_kid.filter(|k| !k.is_empty()),
        raw.eab_hmac_key.filter(|k| !k.is_empty()),
    ) {
        (None, None) => None,
        (Some(kid), Some(key)) => {
            let trimmed = key.trim_end_matches('=');
            match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(trimmed) {
                Ok(bytes) if !bytes.is_empty() => Some((kid, bytes)),
                _ => {
                    errors.push(error(
                        "eab_hmac_key",
                        "not base64url, as CAs hand it out (letters, digits, '-' and '_')"
                            .to_owned(),
                    ));
                    None
                }
            }
        }
        (Some(_), None) => {
            errors.push(error(
                "eab_kid",
                "External Account Binding needs eab_hmac_key as well".to_owned(),
            ));
            None
        }
        (None, Some(_)) => {
            errors.push(error(
                "eab_hmac_key",
                "External Account Binding needs eab_kid as well".to_owned(),
            ));
            None
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(AcmeOptions {
        directory,
        contact,
        domains,
        ca_root,
        eab,
        profile: raw.profile.filter(|p| !p.is_empty()),
        state_dir: raw
            .state_dir
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
    })
}
