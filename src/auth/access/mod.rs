//! Per-repository access rules: who may pull, push or delete which repositories, and whether
//! clients without credentials may pull. Pure: it knows neither the config file, nor HTTP, nor
//! the registry — `config` builds an [`AccessPolicy`] from `[[access]]` and `[[auth.groups]]`,
//! the engine asks [`AccessPolicy::decide`] per request, `regapp access explain` prints it.
//!
//! | file | owns |
//! |---|---|
//! | `glob.rs` | repository globs (`*`, `?`, `**`): parsing, matching, one glob covering another |
//! | `policy.rs` | actions, principals, rules; building (every problem with its place) and `decide` |
//! | `explain.rs` | the text of `regapp access explain` |
//!
//! [`Access`] holds the policy in use; `update` swaps in a new one atomically (config reload),
//! requests already deciding keep the one they loaded.

use std::sync::Arc;

use arc_swap::ArcSwap;

mod explain;
pub mod glob;
mod policy;

pub use explain::explain;
pub use glob::{GlobError, RepoGlob};
pub use policy::{
    AccessPolicy, Action, Decision, Place, PolicyError, PolicySpec, Principal, Rule, RuleSpec, Why,
};

/// The policy in force, swappable at runtime. Share it as `Arc<Access>`.
#[derive(Debug)]
pub struct Access {
    current: ArcSwap<AccessPolicy>,
}

impl Access {
    pub fn new(policy: AccessPolicy) -> Access {
        Access {
            current: ArcSwap::from_pointee(policy),
        }
    }

    /// The policy for one request (an atomic load; hold it for the request's whole decision).
    pub fn current(&self) -> Arc<AccessPolicy> {
        self.current.load_full()
    }

    /// Installs a new, already checked policy (e.g. after SIGHUP re-read the config).
    pub fn update(&self, policy: AccessPolicy) {
        self.current.store(Arc::new(policy));
        tracing::info!(
            rules = self.current.load().rules().len(),
            "access rules updated"
        );
    }
}

#[cfg(test)]
mod tests;
