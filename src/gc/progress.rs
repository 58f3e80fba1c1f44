//! Progress of a long collection or `regapp du`: a line rewritten in place on a terminal, an
//! info log every few seconds otherwise (the service's journal).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    what: &'static str,
    terminal: bool,
    every: Duration,
    last: Option<Instant>,
    printed: bool,
}

impl Progress {
    /// Reports on the terminal when stderr is one, else through the log.
    pub fn new(what: &'static str) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        Progress {
            what,
            terminal,
            every: if terminal {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(5)
            },
            last: None,
            printed: false,
        }
    }

    /// Reports through the log only (the server, whatever its stderr is).
    pub fn log(what: &'static str) -> Progress {
        Progress {
            what,
            terminal: false,
            every: Duration::from_secs(5),
            last: None,
            printed: false,
        }
    }

    /// Shows progress at most once per `every` instead (tests, which cannot wait for a tick).
    #[cfg(test)]
    pub fn every(mut self, every: Duration) -> Progress {
        self.every = every;
        self
    }

    /// Notes `done` items of a phase (out of `total` when known); shown at most every tick.
    pub fn update(&mut self, phase: &str, done: usize, total: Option<usize>) {
        let now = Instant::now();
        match self.last {
            None => {
                self.last = Some(now);
                return;
            }
            Some(last) if now.duration_since(last) < self.every => return,
            Some(_) => self.last = Some(now),
        }
        let of = total.map(|t| format!("/{t}")).unwrap_or_default();
        if self.terminal {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K{}: {phase} {done}{of}", self.what);
            let _ = err.flush();
            self.printed = true;
        } else {
            tracing::info!(what = self.what, phase, done, total, "progress");
        }
    }

    /// Ends the progress line (the summary follows on its own lines).
    pub fn finish(&mut self) {
        if self.printed {
            eprint!("\r\x1b[K");
            self.printed = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
