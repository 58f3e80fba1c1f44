//! SIGHUP (`systemctl reload`): read regapp.toml again and apply what can change while running.
//!
//! An invalid file changes nothing: every problem is logged and the running configuration
//! stays. A valid one is handed to each registered reloadable part — a name, the keys it
//! applies, and a closure taking the new `&Settings` — and every other key that differs from
//! what the process started with is logged as needing a restart. Keys are compared through
//! `Settings`' `Display` (one `key = value` line each), so a part added to the configuration
//! shows up here without a change to this file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::Settings;

type Apply = Box<dyn Fn(&Settings) -> Result<(), String> + Send + Sync>;

struct Part {
    name: &'static str,
    /// Keys (or key prefixes ending in '.') this part applies at runtime.
    keys: &'static [&'static str],
    apply: Apply,
}

/// The reloadable parts, and the configuration the process started with.
pub struct Reloader {
    /// `None` with `serve --dev`: built-in settings, no file to read again.
    config: Option<PathBuf>,
    started_with: Settings,
    applied: Settings,
    parts: Vec<Part>,
}

/// What one reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The file did not load: every problem, nothing applied.
    pub invalid: Vec<String>,
    /// Keys whose new value is in effect.
    pub applied: Vec<String>,
    /// Keys that differ from the running process but need a restart.
    pub need_restart: Vec<String>,
    /// Parts that could not apply their new values (they keep their old ones).
    pub failed: Vec<String>,
}

impl Reloader {
    pub fn new(config: Option<PathBuf>, started_with: Settings) -> Reloader {
        Reloader {
            config,
            applied: started_with.clone(),
            started_with,
            parts: Vec::new(),
        }
    }

    /// Registers a part: on every valid reload `apply` gets the new settings (even when its
    /// keys did not change: a certificate file may have new contents under the same name).
    pub fn part(
        &mut self,
        name: &'static str,
        keys: &'static [&'static str],
        apply: impl Fn(&Settings) -> Result<(), String> + Send + Sync + 'static,
    ) {
        self.parts.push(Part {
            name,
            keys,
            apply: Box::new(apply),
        });
    }

    /// Reads the file and applies it; logs every decision. Blocking (file I/O).
    pub fn reload(&mut self) -> Outcome {
        let mut outcome = Outcome::default();
        let Some(config) = &self.config else {
            tracing::warn!("serve --dev runs built-in settings: there is no file to reload");
            return outcome;
        };
        let new = match Settings::load(config) {
            Ok(new) => new,
            Err(errors) => {
                for error in &errors.0 {
                    tracing::error!(%error, "reload refused: the running configuration stays");
                    outcome.invalid.push(error.to_string());
                }
                return outcome;
            }
        };
        for key in changed_keys(&self.started_with, &new) {
            if !self.reloadable(&key) {
                tracing::warn!(key, "changed in the file; needs a restart to take effect");
                outcome.need_restart.push(key);
            }
        }
        let changed = changed_keys(&self.applied, &new);
        for part in &self.parts {
            if let Err(error) = (part.apply)(&new) {
                tracing::error!(part = part.name, %error, "not reloaded; keeping its old values");
                outcome.failed.push(format!("{}: {error}", part.name));
                continue;
            }
            for key in changed.iter().filter(|key| covers(part.keys, key)) {
                tracing::info!(key, part = part.name, "reloaded");
                outcome.applied.push(key.clone());
            }
        }
        self.applied = new;
        tracing::info!(
            applied = outcome.applied.len(),
            need_restart = outcome.need_restart.len(),
            failed = outcome.failed.len(),
            "configuration reloaded"
        );
        outcome
    }

    fn reloadable(&self, key: &str) -> bool {
        self.parts.iter().any(|part| covers(part.keys, key))
    }
}

fn covers(keys: &[&str], key: &str) -> bool {
    keys.iter().any(|k| match k.strip_suffix('.') {
        Some(prefix) => key.starts_with(prefix) && key[prefix.len()..].starts_with('.'),
        None => *k == key,
    })
}

/// Keys whose `Display` line differs between `old` and `new` (present in one only included).
fn changed_keys(old: &Settings, new: &Settings) -> Vec<String> {
    let (old, new) = (lines_by_key(old), lines_by_key(new));
    let mut keys: Vec<String> = old
        .iter()
        .filter(|(key, line)| new.get(*key) != Some(line))
        .map(|(key, _)| key.clone())
        .collect();
    keys.extend(new.keys().filter(|key| !old.contains_key(*key)).cloned());
    keys
}

/// `key = value` lines by key; a line of another shape (`tls: files …`) is keyed by what
/// precedes its colon.
fn lines_by_key(settings: &Settings) -> BTreeMap<String, String> {
    settings
        .to_string()
        .lines()
        .map(|line| {
            let key = line
                .split_once(" = ")
                .or_else(|| line.split_once(':'))
                .map_or(line, |(key, _)| key);
            (key.trim().to_owned(), line.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Settings {
        Settings::parse(text, "test").expect("valid settings")
    }

    #[test]
    fn keys_that_changed_are_found_by_their_lines() {
        let old = settings("[engine]\nlisten = \"127.0.0.1:5000\"\n[log]\nlevel = \"info\"\n");
        let new = settings("[engine]\nlisten = \"127.0.0.1:5001\"\n[log]\nlevel = \"debug\"\n");
        assert_eq!(changed_keys(&old, &new), ["engine.listen", "log.level"]);
        assert!(changed_keys(&old, &old).is_empty());
    }

    #[test]
    fn prefixes_cover_whole_sections_and_names_only_themselves() {
        assert!(covers(&["gc."], "gc.schedule"));
        assert!(!covers(&["gc."], "gcx.schedule"));
        assert!(covers(&["log.level"], "log.level"));
        assert!(!covers(&["log.level"], "log.format"));
    }

    #[test]
    fn a_reload_applies_parts_and_lists_what_needs_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("regapp.toml");
        let start = "[engine]\nlisten = \"127.0.0.1:5000\"\n[log]\nlevel = \"info\"\n";
        std::fs::write(&file, start).unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut reloader = Reloader::new(Some(file.clone()), settings(start));
        let record = seen.clone();
        reloader.part("log", &["log.level"], move |s| {
            record.lock().unwrap().push(s.log.level.clone());
            Ok(())
        });

        std::fs::write(
            &file,
            "[engine]\nlisten = \"127.0.0.1:5001\"\n[log]\nlevel = \"debug\"\n",
        )
        .unwrap();
        let outcome = reloader.reload();
        assert_eq!(outcome.applied, ["log.level"]);
        assert_eq!(outcome.need_restart, ["engine.listen"]);
        assert_eq!(*seen.lock().unwrap(), ["debug"]);

        std::fs::write(&file, "[engine]\nlisten = 5\n").unwrap();
        let outcome = reloader.reload();
        assert_eq!(outcome.invalid.len(), 1, "{outcome:?}");
        assert!(outcome.invalid[0].contains("engine.listen"), "{outcome:?}");
        assert_eq!(
            seen.lock().unwrap().len(),
            1,
            "an invalid file applies nothing"
        );
    }
}
