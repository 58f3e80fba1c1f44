//! Readiness: named checks that `app` builds (engine answers, storage writable, certificate
//! loaded) and `/readyz` and the systemd notifier run. This module only runs and reports them.

use std::fmt::Write;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// One check: `Ok` when fine, else what is wrong in an operator's words.
pub type Check =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// A check that takes longer than this counts as failed: a hung disk must show as not ready.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, Check)>,
}

/// The outcome of every check, in the order they were added.
pub struct Report {
    pub results: Vec<(&'static str, Result<(), String>)>,
}

impl Readiness {
    pub fn add<F, Fut>(&mut self, name: &'static str, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks
            .push((name, Arc::new(move || Box::pin(check()) as Pin<Box<_>>)));
    }

    /// Runs every check (all of them, so the answer names every problem at once).
    pub async fn run(&self) -> Report {
        let mut results = Vec::with_capacity(self.checks.len());
        for (name, check) in &self.checks {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
            };
            results.push((*name, outcome));
        }
        Report { results }
    }
}

impl Report {
    pub fn ready(&self) -> bool {
        self.results.iter().all(|(_, r)| r.is_ok())
    }

    /// `ready` or `not ready`, then one line per check: `name: ok` or `name: FAIL: why`.
    pub fn text(&self) -> String {
        let mut out = String::from(if self.ready() {
            "ready\n"
        } else {
            "not ready\n"
        });
        for (name, result) in &self.results {
            let _ = match result {
                Ok(()) => writeln!(out, "{name}: ok"),
                Err(why) => writeln!(out, "{name}: FAIL: {why}"),
            };
        }
        out
    }

    /// The failing checks, `name: why`, for logs.
    pub fn failures(&self) -> Vec<String> {
        self.results
            .iter()
            .filter_map(|(name, r)| r.as_ref().err().map(|why| format!("{name}: {why}")))
            .collect()
    }
}
