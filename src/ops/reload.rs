//! SIGHUP (`systemctl reload`): read the configuration again and apply what can change while
//! running.
//!
//! An invalid file changes nothing: every problem is logged and the running configuration
//! stays. A valid one is handed to each registered reloadable part — a name, the keys it
//! applies, and a closure taking the new settings — and every other key that differs from what
//! the process started with is logged as needing a restart. Keys are compared through the
//! settings' `Display` (one `key = value` line each), so a part added to the configuration
//! shows up here without a change to this file. What the settings are, and how they load, is
//! the wiring's business (`app` hands in `config::Settings` and its loader).

use std::collections::BTreeMap;
use std::fmt::Display;

type Apply<S> = Box<dyn Fn(&S) -> Result<(), String> + Send + Sync>;
/// Reads the configuration again: the settings, or every problem.
pub type Load<S> = Box<dyn Fn() -> Result<S, Vec<String>> + Send + Sync>;

struct Part<S> {
    name: &'static str,
    /// Keys (or key prefixes ending in '.') this part applies at runtime.
    keys: &'static [&'static str],
    apply: Apply<S>,
}

/// The reloadable parts, and the configuration the process started with.
pub struct Reloader<S> {
    /// `None` with `serve --dev`: built-in settings, no file to read again.
    load: Option<Load<S>>,
    started_with: S,
    applied: S,
    parts: Vec<Part<S>>,
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

impl<S: Display + Clone> Reloader<S> {
    pub fn new(load: Option<Load<S>>, started_with: S) -> Reloader<S> {
        Reloader {
            load,
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
        apply: impl Fn(&S) -> Result<(), String> + Send + Sync + 'static,
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
        let Some(load) = &self.load else {
            tracing::warn!("serve --dev runs built-in settings: there is no file to reload");
            return outcome;
        };
        let new = match load() {
            Ok(new) => new,
            Err(errors) => {
                for error in errors {
                    tracing::error!(%error, "reload refused: the running configuration stays");
                    outcome.invalid.push(error);
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
fn changed_keys(old: &impl Display, new: &impl Display) -> Vec<String> {
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
fn lines_by_key(settings: &impl Display) -> BTreeMap<String, String> {
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
    use std::sync::{Arc, Mutex};

    /// Settings as `key = value` lines, read from a shared "file".
    #[derive(Clone)]
    struct Lines(Vec<(String, String)>);

    impl Display for Lines {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            for (key, value) in &self.0 {
                writeln!(f, "{key} = {value}")?;
            }
            Ok(())
        }
    }

    fn lines(pairs: &[(&str, &str)]) -> Lines {
        Lines(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn keys_that_changed_are_found_by_their_lines() {
        let old = lines(&[("engine.listen", "127.0.0.1:5000"), ("log.level", "info")]);
        let new = lines(&[("engine.listen", "127.0.0.1:5001"), ("log.level", "debug")]);
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
        let start = lines(&[("engine.listen", "127.0.0.1:5000"), ("log.level", "info")]);
        let file: Arc<Mutex<Result<Lines, Vec<String>>>> = Arc::new(Mutex::new(Ok(start.clone())));
        let read = file.clone();
        let load: Load<Lines> = Box::new(move || read.lock().unwrap().clone());
        let mut reloader = Reloader::new(Some(load), start);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        reloader.part("log", &["log.level"], move |s: &Lines| {
            record.lock().unwrap().push(s.0[1].1.clone());
            Ok(())
        });

        *file.lock().unwrap() = Ok(lines(&[
            ("engine.listen", "127.0.0.1:5001"),
            ("log.level", "debug"),
        ]));
        let outcome = reloader.reload();
        assert_eq!(outcome.applied, ["log.level"]);
        assert_eq!(outcome.need_restart, ["engine.listen"]);
        assert_eq!(*seen.lock().unwrap(), ["debug"]);

        *file.lock().unwrap() = Err(vec!["f:2: engine.listen: not an address".to_owned()]);
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
