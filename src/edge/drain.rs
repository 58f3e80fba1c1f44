//! Requests in flight, so that SIGTERM ends the process as soon as they are done instead of
//! sleeping through the whole grace period as pingora does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts requests between their context's creation and its drop.
#[derive(Clone, Default)]
pub struct InFlight(Arc<AtomicUsize>);

/// Held by one request's context; the count goes down when the context is dropped, whichever
/// way the request ended.
pub struct Ticket(Arc<AtomicUsize>);

impl InFlight {
    pub fn enter(&self) -> Ticket {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ticket(self.0.clone())
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    /// After SIGTERM: once pingora has stopped accepting, waits until nothing is in flight (or
    /// `grace` is over, when pingora ends the process itself) and exits.
    pub fn exit_when_idle(self, grace: Duration) {
        std::thread::spawn(move || {
            // Listeners close right after the signal; a request accepted just before may not
            // have its context yet.
            std::thread::sleep(Duration::from_millis(200));
            let deadline = Instant::now() + grace;
            while self.count() > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if self.count() == 0 {
                tracing::info!("no requests in flight; exiting");
                // Nothing is left to flush: every visible file was written atomically.
                std::process::exit(0);
            }
        });
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
