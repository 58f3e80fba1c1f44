//! A server child process owned by a test: its output is collected in the background, it is
//! stopped (SIGTERM, then SIGKILL) on request and killed on drop, and its log is printed when the
//! test that owns it panics — so a failing test shows what the server said.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take from spawn to answering HTTP.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A running server; see the module doc.
pub struct ServerProcess {
    name: &'static str,
    child: Child,
    log: Arc<Mutex<String>>,
    stopped: bool,
}

impl ServerProcess {
    /// Spawns `command` with piped stdout and stderr. `watch` is called on every output line;
    /// the first `Some` it returns is handed back by [`ServerProcess::wait_for_line`].
    ///
    /// `package` names the Debian package to install when the program is missing.
    pub fn spawn(
        name: &'static str,
        package: &str,
        mut command: Command,
        watch: fn(&str) -> Option<String>,
    ) -> (Self, Receiver<String>) {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                panic!(
                    "{name}: {:?} not found; install it with `apt-get install {package}`",
                    command.get_program()
                )
            }
            panic!("{name}: cannot spawn {command:?}: {e}")
        });
        let log = Arc::new(Mutex::new(String::new()));
        let (found_tx, found_rx) = mpsc::channel();
        let stdout: ChildStdout = child.stdout.take().expect("stdout is piped");
        let stderr: ChildStderr = child.stderr.take().expect("stderr is piped");
        collect(stdout, "stdout", Arc::clone(&log), found_tx.clone(), watch);
        collect(stderr, "stderr", Arc::clone(&log), found_tx, watch);
        let process = Self {
            name,
            child,
            log,
            stopped: false,
        };
        (process, found_rx)
    }

    /// Waits for the line that `watch` picked out; panics with the log if the server exits or
    /// stays silent for [`STARTUP_TIMEOUT`].
    pub fn wait_for_line(&mut self, found: &Receiver<String>, what: &str) -> String {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            match found.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => return line,
                Err(RecvTimeoutError::Disconnected) => {
                    // Both pipes are closed: the child is exiting; report how, if it says soon.
                    thread::sleep(Duration::from_millis(200));
                    match self.child.try_wait() {
                        Ok(Some(status)) => {
                            self.fail(&format!("exited with {status} before printing {what}"))
                        }
                        _ => self.fail(&format!("closed its output before printing {what}")),
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.fail(&format!("exited with {status} before printing {what}"));
            }
            if Instant::now() > deadline {
                self.fail(&format!("did not print {what} within {STARTUP_TIMEOUT:?}"));
            }
        }
    }

    /// Waits until `http://{host}/v2/` gives any HTTP answer (401 counts: the server is up).
    pub fn wait_for_http(&mut self, host: &str) {
        let url = format!("http://{host}/v2/");
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("a plain-HTTP reqwest client builds");
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while client.get(&url).send().is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.fail(&format!("exited with {status} before answering {url}"));
            }
            if Instant::now() > deadline {
                self.fail(&format!("did not answer {url} within {STARTUP_TIMEOUT:?}"));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server as an operator would: SIGTERM, then SIGKILL after a grace period.
    /// Idempotent; the log stays available for a later failure.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let pid = libc::pid_t::try_from(self.child.id()).expect("a child pid fits in pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child,
        // which has not been reaped yet, so it cannot name another process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "{}: still running {STOP_GRACE:?} after SIGTERM; killing",
            self.name
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (SIGHUP, SIGTERM …) without waiting for anything.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a child pid fits in pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own unreaped child.
        unsafe { libc::kill(pid, signal) };
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the server with SIGKILL, as a crash or `kill -9` would, and reaps it.
    pub fn kill_hard(&mut self) {
        self.stopped = true;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Everything the server printed so far, stdout and stderr interleaved by line.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stopped = true;
        // Give the reader threads a moment to drain the pipes the child just closed.
        thread::sleep(Duration::from_millis(100));
        panic!("{} {what}; its output:\n{}", self.name, self.log())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "----- {} output -----\n{}----- end of {} output -----",
                self.name,
                self.log(),
                self.name
            );
        }
    }
}

/// Copies `pipe` line by line into `log` on a background thread, sending lines `watch` picks.
fn collect(
    pipe: impl Read + Send + 'static,
    stream: &'static str,
    log: Arc<Mutex<String>>,
    found: Sender<String>,
    watch: fn(&str) -> Option<String>,
) {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(hit) = watch(&line) {
                // The receiver may be gone once startup is over; that is fine.
                let _ = found.send(hit);
            }
            if let Ok(mut log) = log.lock() {
                log.push_str(stream);
                log.push_str(": ");
                log.push_str(&line);
                log.push('\n');
            }
        }
    });
}
