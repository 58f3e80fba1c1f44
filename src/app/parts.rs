//! The reloadable parts regapp has, each one line in `app`: `reloader.part(...)`. The garbage
//! collector's schedule and the access rules register theirs the same way.

use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use crate::auth::access::Access;
use crate::auth::{Authenticator, WatchGuard};
use crate::certs::FilesSource;
use ipnet::IpNet;

use crate::config::Settings;
use crate::ops::logging;
use crate::ops::Reloader;

/// `log.level`.
pub fn log_level(reloader: &mut Reloader<Settings>) {
    reloader.part("log", &["log.level"], |s: &Settings| {
        logging::set_level(&s.log.level)
    });
}

/// `auth.htpasswd`: a new path is loaded (kept only if it loads) and watched instead of the old.
pub fn htpasswd(
    reloader: &mut Reloader<Settings>,
    authenticator: Authenticator,
    watch: WatchGuard,
) {
    let watch = Mutex::new(watch);
    reloader.part("htpasswd", &["auth.htpasswd"], move |s: &Settings| {
        let Some(edge) = &s.edge else { return Ok(()) };
        let wanted = &edge.auth.htpasswd;
        if *wanted == authenticator.file() {
            // Same file: read it again, as SIGHUP always did.
            return authenticator
                .reload()
                .map(|_| ())
                .map_err(|e| e.to_string());
        }
        authenticator
            .switch_file(wanted)
            .map_err(|e| e.to_string())?;
        let new_watch = authenticator.watch().map_err(|e| e.to_string())?;
        *watch.lock().unwrap_or_else(PoisonError::into_inner) = new_watch;
        Ok(())
    });
}

/// `tls.mode = "files"`: the files are read again (their paths need a restart).
pub fn certificate_files(reloader: &mut Reloader<Settings>, files: Arc<FilesSource>) {
    reloader.part("certificates", &[], move |_: &Settings| {
        files.reload().map(|_| ()).map_err(|e| e.to_string())
    });
}

/// `metrics.allow`: who may read `/metrics` through the edge.
pub fn metrics_allow(reloader: &mut Reloader<Settings>, allow: Arc<ArcSwap<Vec<IpNet>>>) {
    reloader.part("metrics", &["metrics.allow"], move |s: &Settings| {
        allow.store(Arc::new(s.metrics.allow.clone()));
        Ok(())
    });
}

/// `auth.anonymous_pull`, `[[auth.groups]]` and `[[access]]`: the new rules (checked when the
/// file loaded) decide from the next request on; requests already deciding keep the old ones.
pub fn access_rules(reloader: &mut Reloader<Settings>, access: Arc<Access>) {
    let keys = &["auth.anonymous_pull", "auth.groups.", "access."];
    reloader.part("access rules", keys, move |s: &Settings| {
        access.update(s.access.clone());
        Ok(())
    });
}

/// `[gc]` and `[[retention]]`: the schedule restarts its wait with the new interval; a run in
/// progress finishes with the policy it started with.
pub fn gc_policy(
    reloader: &mut Reloader<Settings>,
    collector: Arc<crate::registry::gc::Collector>,
) {
    reloader.part(
        "garbage collection",
        &["gc.", "retention."],
        move |s: &Settings| {
            collector.update(s.gc.clone());
            Ok(())
        },
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::registry::store::{Store, StoreOptions};
    use crate::storage::FsDriver;

    #[test]
    fn a_reload_swaps_the_gc_policy_and_needs_no_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("regapp.toml");
        let start = "[gc]\ninterval = \"24h\"\n";
        std::fs::write(&file, start).unwrap();
        let settings = Settings::parse(start, "test").unwrap();
        let store = Arc::new(Store::new(
            Arc::new(FsDriver::new(dir.path())),
            StoreOptions::default(),
        ));
        let collector = Arc::new(crate::registry::gc::Collector::new(
            store,
            Arc::new(crate::registry::gc::InPlace(Arc::new(FsDriver::new(
                dir.path(),
            )))),
            settings.gc.clone(),
            dir.path(),
        ));
        let mut reloader = Reloader::new(Some(super::super::loader(file.clone())), settings);
        gc_policy(&mut reloader, collector.clone());

        std::fs::write(
            &file,
            "[gc]\ninterval = \"\"\ngrace = \"5m\"\n\n[[retention]]\nrepositories = \"ci/**\"\nkeep_last = 3\n",
        )
        .unwrap();
        let outcome = reloader.reload();
        assert!(outcome.need_restart.is_empty(), "{outcome:?}");
        assert_eq!(
            outcome.applied,
            ["gc.grace", "gc.interval", "retention.1"],
            "{outcome:?}"
        );
        let policy = collector.policy();
        assert_eq!(policy.interval, None);
        assert_eq!(policy.grace, Duration::from_secs(300));
        assert_eq!(policy.retention.len(), 1);
        assert!(policy.retention[0].applies_to("ci/app"));
    }
}
