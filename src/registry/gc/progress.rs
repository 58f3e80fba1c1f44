//! Progress of a long collection or `regapp du`: a line rewritten in place on a terminal, an
//! info log every few seconds otherwise (the service's journal), and, for a run that a command
//! line asked the server for over `gc.sock`, lines sent back for its terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::plumbing::control_socket::Interim;

/// How often a person watching sees the line move.
const TERMINAL_TICK: Duration = Duration::from_millis(200);
/// How often the journal gets a line: a multi-hour collection stays readable there.
const LOG_TICK: Duration = Duration::from_secs(5);

pub struct Progress {
    what: &'static str,
    outputs: Vec<Output>,
}

/// Where updates go, each at its own pace.
struct Output {
    to: To,
    every: Duration,
    last: Option<Instant>,
}

enum To {
    Terminal(TerminalLine),
    Log,
    Client(Interim),
}

impl Progress {
    /// Reports on the terminal when stderr is one, else through the log.
    pub fn new(what: &'static str) -> Progress {
        match TerminalLine::on_stderr() {
            Some(line) => Progress {
                what,
                outputs: vec![Output::new(To::Terminal(line), TERMINAL_TICK)],
            },
            None => Progress::log(what),
        }
    }

    /// Reports through the log only (the server, whatever its stderr is).
    pub fn log(what: &'static str) -> Progress {
        Progress {
            what,
            outputs: vec![Output::new(To::Log, LOG_TICK)],
        }
    }

    /// Also sends each update to a command line waiting on the socket, at a terminal's pace.
    pub fn sending_to(mut self, client: Interim) -> Progress {
        self.outputs
            .push(Output::new(To::Client(client), TERMINAL_TICK));
        self
    }

    /// Shows progress at most once per `every` instead (tests, which cannot wait for a tick).
    #[cfg(test)]
    pub fn every(mut self, every: Duration) -> Progress {
        for output in &mut self.outputs {
            output.every = every;
        }
        self
    }

    /// Notes `done` items of a phase (out of `total` when known); shown at most every tick.
    pub fn update(&mut self, phase: &str, done: usize, total: Option<usize>) {
        let now = Instant::now();
        // Called for every item: nothing is formatted unless an output is due.
        let text = || {
            let of = total.map(|t| format!("/{t}")).unwrap_or_default();
            format!("{}: {phase} {done}{of}", self.what)
        };
        for output in &mut self.outputs {
            if !output.due(now) {
                continue;
            }
            match &mut output.to {
                To::Terminal(line) => line.show(&text()),
                To::Log => tracing::info!(what = self.what, phase, done, total, "progress"),
                // A client gone away does not stop the work; its updates just go nowhere.
                To::Client(client) => {
                    let _ = client.send(text());
                }
            }
        }
    }

    /// Ends the progress line (the summary follows on its own lines).
    pub fn finish(&mut self) {
        for output in &mut self.outputs {
            if let To::Terminal(line) = &mut output.to {
                line.clear();
            }
        }
    }
}

impl Output {
    fn new(to: To, every: Duration) -> Output {
        Output {
            to,
            every,
            last: None,
        }
    }

    /// The first update only starts the clock: a run shorter than a tick shows nothing.
    fn due(&mut self, now: Instant) -> bool {
        match self.last {
            Some(last) if now.duration_since(last) < self.every => false,
            Some(_) => {
                self.last = Some(now);
                true
            }
            None => {
                self.last = Some(now);
                false
            }
        }
    }
}

/// One line of stderr rewritten in place.
pub struct TerminalLine {
    printed: bool,
}

impl TerminalLine {
    /// `None` when stderr is not a terminal: a pipe or the journal gets no carriage returns.
    pub fn on_stderr() -> Option<TerminalLine> {
        std::io::stderr()
            .is_terminal()
            .then_some(TerminalLine { printed: false })
    }

    pub fn show(&mut self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{text}");
        let _ = err.flush();
        self.printed = true;
    }

    pub fn clear(&mut self) {
        if self.printed {
            eprint!("\r\x1b[K");
            self.printed = false;
        }
    }
}
