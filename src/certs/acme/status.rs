//! What the certificate manager reports: the certificate in use, when it is due and why, and
//! counts of renewal attempts by result. Plain state owned by the manager; `regapp cert status`
//! prints it and the metrics endpoint (issue 6) will read [`Status::expiry_by_name`] and
//! [`Status::attempts`].

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use super::renewal::Basis;
use crate::certs::CertInfo;

/// A snapshot; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub domains: Vec<String>,
    pub directory: String,
    /// The certificate served, if any.
    pub certificate: Option<CertInfo>,
    /// The next renewal attempt (a retry after a failure, or the due date).
    pub next_renewal: Option<SystemTime>,
    pub basis: Option<Basis>,
    /// Attempts by result: "success", or the failure's kind ("validation", "rate_limited" …).
    pub attempts: BTreeMap<&'static str, u64>,
    pub failures_in_a_row: u32,
    /// After a failure: when the next attempt may run (the backoff, or the CA's time).
    pub retry_at: Option<SystemTime>,
    pub last_error: Option<String>,
    /// Where the certificate is kept (a file, or an object in the bucket).
    pub kept: String,
    /// Several nodes: this node's name, and who holds the `acme` lease.
    pub node: Option<String>,
    pub lease: Option<String>,
}

impl Status {
    /// Expiry (Unix seconds) per name on the certificate in use.
    pub fn expiry_by_name(&self) -> Vec<(String, u64)> {
        let Some(cert) = &self.certificate else {
            return Vec::new();
        };
        let expiry = unix_seconds(cert.not_after);
        cert.dns_names
            .iter()
            .map(|name| (name.clone(), expiry))
            .collect()
    }

    /// Human-readable, one fact per line (what `regapp cert status` prints).
    pub fn report(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "directory:     {}", self.directory);
        let _ = writeln!(out, "domains:       {}", self.domains.join(", "));
        match &self.certificate {
            Some(cert) => {
                let _ = writeln!(out, "names:         {}", cert.dns_names.join(", "));
                let _ = writeln!(out, "issuer:        {}", cert.issuer);
                let _ = writeln!(out, "not before:    {}", rfc3339(cert.not_before));
                let _ = writeln!(out, "not after:     {}", rfc3339(cert.not_after));
                let _ = writeln!(out, "sha256:        {}", cert.sha256_fingerprint);
            }
            None => {
                let _ = writeln!(out, "certificate:   none yet");
            }
        }
        if let Some(next) = self.next_renewal {
            let _ = writeln!(out, "renewal due:   {}", rfc3339(next));
        }
        if let Some(basis) = &self.basis {
            let _ = writeln!(out, "because:       {basis}");
        }
        if !self.attempts.is_empty() {
            let counts: Vec<String> = self
                .attempts
                .iter()
                .map(|(kind, n)| format!("{kind}={n}"))
                .collect();
            let _ = writeln!(out, "attempts:      {}", counts.join(" "));
        }
        if let Some(error) = &self.last_error {
            let _ = writeln!(
                out,
                "last error:    {error} ({} in a row)",
                self.failures_in_a_row
            );
        }
        if let Some(retry) = self.retry_at {
            let _ = writeln!(out, "retry after:   {}", rfc3339(retry));
        }
        if !self.kept.is_empty() {
            let _ = writeln!(out, "kept in:       {}", self.kept);
        }
        if let Some(node) = &self.node {
            let _ = writeln!(out, "node:          {node}");
        }
        if let Some(lease) = &self.lease {
            let _ = writeln!(out, "acme lease:    {lease}");
        }
        out
    }
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
