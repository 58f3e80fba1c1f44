//! Pins: digests a push is about to make referenced (a blob it commits, mounts or names in a
//! manifest), so that garbage collection leaves them alone.
//!
//! A push pins before it checks that what it needs exists, and unpins once its links are
//! written. The collector deletes a blob or a revision only after `condemn` succeeded for its
//! digest: nobody holds a pin on it, and nobody released one after the collector's cutoff
//! (the start of its run minus the grace period). While a digest is condemned, `pin` waits
//! until the deletion is over, so a push either pins first (and the collector skips the digest)
//! or checks existence after the deletion (and fails cleanly with `BLOB_UNKNOWN` /
//! `MANIFEST_BLOB_UNKNOWN`). The argument is written out in ARCHITECTURE.md ("Garbage collection").

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use crate::registry::types::Digest;

pub struct Pins {
    state: Mutex<PinState>,
    deletion_over: Notify,
}

struct PinState {
    pinned: HashMap<Digest, Pin>,
    /// Digests being deleted, with how many deletions of each are in flight (a blob's links
    /// in several repositories may go at once).
    condemned: HashMap<Digest, usize>,
    /// How long a released pin must be remembered: the collector's grace period.
    memory: Duration,
    /// The cutoff of the collection in progress: pins released after it are never pruned
    /// while it runs, whatever the memory says.
    collecting_since: Option<SystemTime>,
    /// The size beyond which the next pin prunes: twice what the last prune kept, and at least
    /// [`PRUNE_ABOVE`]. When every pin is younger than the memory (more than 65,536 digests
    /// pushed within the grace period), a prune keeps them all; pruning again at the next pin
    /// would scan the whole table on every push (the GC bench saw it dominate the server's
    /// CPU). So each scan waits until as many pins were added as it read.
    prune_above: usize,
}

/// Beyond this many pins, those older than the memory are dropped on the next pin (the
/// collector prunes after every run; this bounds the table when none is scheduled).
const PRUNE_ABOVE: usize = 65_536;

impl Default for Pins {
    fn default() -> Self {
        Pins {
            state: Mutex::new(PinState {
                pinned: HashMap::new(),
                condemned: HashMap::new(),
                memory: Duration::from_secs(86_400),
                collecting_since: None,
                prune_above: PRUNE_ABOVE,
            }),
            deletion_over: Notify::new(),
        }
    }
}

struct Pin {
    holders: usize,
    /// When the last holder let go (while held: when it was taken).
    released: SystemTime,
}

/// Held by a push while it makes its digests referenced; unpins on drop.
pub struct PinGuard<'a> {
    pins: &'a Pins,
    digests: Vec<Digest>,
}

impl Pins {
    /// Pins every digest, waiting while the collector is deleting one of them.
    pub async fn pin(&self, digests: Vec<Digest>) -> PinGuard<'_> {
        loop {
            // Created before the check, so a `notify_waiters` after it is not missed.
            let deletion_over = self.deletion_over.notified();
            {
                let mut state = self.lock();
                if !digests.iter().any(|d| state.condemned.contains_key(d)) {
                    let now = SystemTime::now();
                    if state.pinned.len() > state.prune_above {
                        let mut cutoff = now - state.memory;
                        if let Some(collecting) = state.collecting_since {
                            cutoff = cutoff.min(collecting);
                        }
                        state.prune(cutoff);
                    }
                    for digest in &digests {
                        let pin = state.pinned.entry(digest.clone()).or_insert(Pin {
                            holders: 0,
                            released: now,
                        });
                        pin.holders += 1;
                        pin.released = now;
                    }
                    return PinGuard {
                        pins: self,
                        digests,
                    };
                }
            }
            deletion_over.await;
        }
    }

    /// Claims a digest for deletion: false when a push holds it or let go of it after `cutoff`.
    /// A `true` must be followed by [`Pins::acquit`] once the deletion is done (or abandoned).
    pub fn condemn(&self, digest: &Digest, cutoff: SystemTime) -> bool {
        self.condemn_each([digest], cutoff)[0]
    }

    /// [`Pins::condemn`] for each digest, under one lock: the collector claims a directory's
    /// garbage at once rather than taking the lock the pushes need once per blob.
    pub fn condemn_each<'d>(
        &self,
        digests: impl IntoIterator<Item = &'d Digest>,
        cutoff: SystemTime,
    ) -> Vec<bool> {
        let mut state = self.lock();
        digests
            .into_iter()
            .map(|digest| {
                if let Some(pin) = state.pinned.get(digest) {
                    if pin.holders > 0 || pin.released > cutoff {
                        return false;
                    }
                }
                *state.condemned.entry(digest.clone()).or_insert(0) += 1;
                true
            })
            .collect()
    }

    /// Ends a deletion started by [`Pins::condemn`]; pushes waiting on the digest go on.
    pub fn acquit(&self, digest: &Digest) {
        self.acquit_each([digest]);
    }

    /// [`Pins::acquit`] for each digest, under one lock and with one wake-up.
    pub fn acquit_each<'d>(&self, digests: impl IntoIterator<Item = &'d Digest>) {
        let mut state = self.lock();
        for digest in digests {
            if let Some(count) = state.condemned.get_mut(digest) {
                *count -= 1;
                if *count == 0 {
                    state.condemned.remove(digest);
                }
            }
        }
        drop(state);
        self.deletion_over.notify_waiters();
    }

    /// Forgets pins released before `cutoff`: no collection can need them any more.
    pub fn prune(&self, cutoff: SystemTime) {
        self.lock().prune(cutoff);
    }

    /// A collection with this cutoff (its start minus `grace`) begins: released pins are
    /// remembered for `grace` at least, and none released after `cutoff` is pruned until
    /// [`Pins::collection_over`].
    pub fn collection_begins(&self, cutoff: SystemTime, grace: Duration) {
        let mut state = self.lock();
        state.memory = grace;
        state.collecting_since = Some(cutoff);
    }

    /// The collection that began with `cutoff` ended: pins released before it are dropped (the
    /// next collection's cutoff is later).
    pub fn collection_over(&self, cutoff: SystemTime) {
        let mut state = self.lock();
        state.collecting_since = None;
        state.prune(cutoff);
    }

    /// Digests pinned now or recently (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().pinned.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PinState> {
        self.state.lock().expect("pin table poisoned")
    }
}

impl PinState {
    fn prune(&mut self, cutoff: SystemTime) {
        self.pinned
            .retain(|_, pin| pin.holders > 0 || pin.released > cutoff);
        self.prune_above = PRUNE_ABOVE.max(2 * self.pinned.len());
    }
}

impl Drop for PinGuard<'_> {
    fn drop(&mut self) {
        let now = SystemTime::now();
        let mut state = self.pins.lock();
        for digest in &self.digests {
            if let Some(pin) = state.pinned.get_mut(digest) {
                pin.holders -= 1;
                pin.released = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    #[tokio::test]
    async fn a_held_or_recent_pin_refuses_condemnation() {
        let pins = Pins::default();
        let before = SystemTime::now() - Duration::from_secs(1);
        let guard = pins.pin(vec![digest(1)]).await;
        assert!(!pins.condemn(&digest(1), SystemTime::now()), "held");
        drop(guard);
        assert!(
            !pins.condemn(&digest(1), before),
            "released after the cutoff"
        );
        assert!(pins.condemn(&digest(1), SystemTime::now() + Duration::from_secs(1)));
        pins.acquit(&digest(1));
        assert!(pins.condemn(&digest(2), SystemTime::now()), "never pinned");
    }

    #[tokio::test]
    async fn pinning_waits_for_a_deletion_in_progress() {
        let pins = Arc::new(Pins::default());
        assert!(pins.condemn(&digest(3), SystemTime::now()));
        let waiting = tokio::spawn({
            let pins = pins.clone();
            async move {
                let _guard = pins.pin(vec![digest(4), digest(3)]).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "pinned while condemned");
        pins.acquit(&digest(3));
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the pin went on after the deletion")
            .unwrap();
    }

    #[tokio::test]
    async fn a_table_of_recent_pins_is_scanned_again_only_once_it_doubled() {
        let pins = Pins::default();
        let pin_new = |n: usize| pins.pin(vec![Digest::sha256_of(&n.to_le_bytes())]);
        for n in 0..=PRUNE_ABOVE {
            drop(pin_new(n).await);
        }
        assert_eq!(pins.lock().prune_above, PRUNE_ABOVE, "no prune yet");
        drop(pin_new(PRUNE_ABOVE + 1).await);
        let kept = PRUNE_ABOVE + 1;
        assert_eq!(pins.len(), kept + 1, "all recent: the prune kept every pin");
        assert_eq!(pins.lock().prune_above, 2 * kept, "the next prune waits");
        drop(pin_new(PRUNE_ABOVE + 2).await);
        assert_eq!(pins.lock().prune_above, 2 * kept, "not scanned on this pin");
        pins.prune(SystemTime::now() + Duration::from_secs(1));
        assert_eq!(
            (pins.len(), pins.lock().prune_above),
            (0, PRUNE_ABOVE),
            "a prune that drops pins lowers the bar again"
        );
    }

    #[test]
    fn prune_keeps_held_and_recent_pins() {
        let pins = Pins::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let held = rt.block_on(pins.pin(vec![digest(5)]));
        drop(rt.block_on(pins.pin(vec![digest(6)])));
        pins.prune(SystemTime::now() + Duration::from_secs(1));
        assert_eq!(pins.len(), 1);
        drop(held);
    }
}
