//! How many connections the edge holds, per client and in all, so that a flood from one
//! address never locks out another and the process never runs out of descriptors.
//!
//! A client is its IPv4 address, or its IPv6 /64 (one host usually holds a whole /64, so
//! counting single IPv6 addresses would cap nothing), as the failed-login limiter counts it.
//! A trusted load balancer (`edge.trusted_proxies`) carries many clients: only the total caps it.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use ipnet::IpNet;

use crate::auth::limiter::client_key;

/// Descriptors kept out of the connection budget: blob files, the engine's loopback
/// connections, watchers, the control sockets, the log.
const RESERVED_DESCRIPTORS: u64 = 1024;
/// A connection busy with a proxied request holds up to three descriptors (the client's and
/// both ends of the loopback connection to the engine); one busy with a blob holds two.
const DESCRIPTORS_PER_CONNECTION: u64 = 3;

/// The caps, from `[edge]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub per_client: usize,
    pub total: usize,
    /// Not capped per client: `edge.trusted_proxies`.
    pub exempt: Vec<IpNet>,
}

/// Why a connection was closed at once (the metrics' `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    PerClient,
    Total,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::PerClient => "per_client",
            Refusal::Total => "total",
        }
    }
}

/// The connections open now. Shared by the edge's listeners.
#[derive(Debug)]
pub struct Connections {
    limits: Limits,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_client: HashMap<Client, usize>,
    /// The most open at once since [`Connections::take_peak`] last looked.
    peak: usize,
}

/// A client as the caps count it: an IPv4 address or an IPv6 /64 (`auth::limiter::client_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Client(IpAddr);

impl Client {
    fn of(ip: IpAddr) -> Client {
        Client(client_key(ip))
    }
}

/// One admitted connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    connections: Arc<Connections>,
    client: Client,
}

impl Connections {
    pub fn new(limits: Limits) -> Arc<Connections> {
        Arc::new(Connections {
            limits,
            open: Mutex::default(),
        })
    }

    /// Takes a place for a connection from `ip`, or says why there is none.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let client = Client::of(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.limits.total {
            return Err(Refusal::Total);
        }
        let held = open.per_client.entry(client).or_default();
        if *held >= self.limits.per_client && !self.limits.exempt.iter().any(|n| n.contains(&ip)) {
            return Err(Refusal::PerClient);
        }
        *held += 1;
        open.total += 1;
        open.peak = open.peak.max(open.total);
        Ok(Slot {
            connections: self.clone(),
            client,
        })
    }

    pub fn open(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }

    /// (open now, the most open at once since the last call).
    pub fn take_peak(&self) -> (usize, usize) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let total = open.total;
        (total, std::mem::replace(&mut open.peak, total))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total -= 1;
        if let Some(held) = open.per_client.get_mut(&self.client) {
            *held -= 1;
            if *held == 0 {
                open.per_client.remove(&self.client);
            }
        }
    }
}

/// How many connections fit in the descriptor limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Every connection busy at once, with the reserve kept: the default cap.
    pub busy: usize,
    /// Every connection idle (one descriptor each), with the reserve kept: no cap goes higher.
    pub idle: usize,
}

/// Raises the soft descriptor limit to the hard one (as nginx's `worker_rlimit_nofile` does;
/// a shell's soft limit is often 1024 while systemd's unit allows 65536) and says how many
/// connections fit in it.
pub fn descriptor_budget() -> io::Result<Budget> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    Ok(budget_for(limit.rlim_cur))
}

fn budget_for(descriptors: u64) -> Budget {
    let free = descriptors.saturating_sub(RESERVED_DESCRIPTORS);
    let count = |n: u64| usize::try_from(n.max(64)).unwrap_or(usize::MAX);
    Budget {
        busy: count(free / DESCRIPTORS_PER_CONNECTION),
        idle: count(free),
    }
}

/// After this many connections ended, the allocator is asked to give their memory back.
const TRIM_AFTER_CLOSED: usize = 256;

/// Gives memory back to the system once many connections ended since the last look: glibc
/// keeps freed memory inside its heaps, so after a flood of connections (each one's TLS and
/// HTTP state, ~40 KiB once its handshake is done) the process stayed at its peak for good.
/// `malloc_trim` returns the free pages inside the heaps too. Called once a second.
pub fn give_back_memory_after_floods(connections: &Connections, peak_before: &mut usize) {
    let (open, peak) = connections.take_peak();
    *peak_before = (*peak_before).max(peak);
    if *peak_before >= open + TRIM_AFTER_CLOSED {
        // SAFETY: malloc_trim only releases free memory; it is safe to call at any time.
        unsafe {
            libc::malloc_trim(0);
        }
        *peak_before = open;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn one_client_at_its_cap_leaves_room_for_others() {
        let connections = Connections::new(Limits {
            per_client: 2,
            total: 10,
            exempt: Vec::new(),
        });
        let a1 = connections.admit(ip("10.0.0.1")).unwrap();
        let _a2 = connections.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            connections.admit(ip("10.0.0.1")).unwrap_err(),
            Refusal::PerClient
        );
        let _b = connections.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(connections.open(), 3);
        drop(a1);
        assert_eq!(connections.open(), 2);
        connections.admit(ip("10.0.0.1")).unwrap();
    }

    #[test]
    fn a_trusted_proxy_is_capped_only_by_the_total() {
        let connections = Connections::new(Limits {
            per_client: 1,
            total: 3,
            exempt: vec!["10.0.0.0/30".parse().unwrap()],
        });
        let held: Vec<Slot> = (0..3)
            .map(|_| connections.admit(ip("10.0.0.2")).unwrap())
            .collect();
        assert_eq!(
            connections.admit(ip("10.0.0.2")).unwrap_err(),
            Refusal::Total
        );
        drop(held);
        let _one = connections.admit(ip("10.0.0.9")).unwrap();
        assert_eq!(
            connections.admit(ip("10.0.0.9")).unwrap_err(),
            Refusal::PerClient,
            "outside the trusted network"
        );
    }

    #[test]
    fn the_total_cap_refuses_everyone_until_a_place_frees() {
        let connections = Connections::new(Limits {
            per_client: 5,
            total: 2,
            exempt: Vec::new(),
        });
        let first = connections.admit(ip("10.0.0.1")).unwrap();
        let _second = connections.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(
            connections.admit(ip("10.0.0.3")).unwrap_err(),
            Refusal::Total
        );
        drop(first);
        connections.admit(ip("10.0.0.3")).unwrap();
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64_and_a_mapped_ipv4_is_the_ipv4() {
        let connections = Connections::new(Limits {
            per_client: 1,
            total: 10,
            exempt: Vec::new(),
        });
        let _one = connections.admit(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            connections.admit(ip("2001:db8:1:2:ffff::7")).unwrap_err(),
            Refusal::PerClient
        );
        connections.admit(ip("2001:db8:1:3::1")).unwrap();
        let _v4 = connections.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(
            connections.admit(ip("::ffff:192.0.2.1")).unwrap_err(),
            Refusal::PerClient
        );
    }

    #[test]
    fn the_peak_is_what_was_open_at_most_since_the_last_look() {
        let connections = Connections::new(Limits {
            per_client: 10,
            total: 10,
            exempt: Vec::new(),
        });
        let slots: Vec<Slot> = (0..5)
            .map(|_| connections.admit(ip("10.0.0.1")).unwrap())
            .collect();
        drop(slots);
        let _one = connections.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(connections.take_peak(), (1, 5));
        assert_eq!(connections.take_peak(), (1, 1));
    }

    #[test]
    fn the_budget_keeps_the_reserve_and_three_descriptors_a_busy_connection() {
        let budget = budget_for(65_536);
        assert_eq!(budget.busy, (65_536 - 1024) / 3);
        assert_eq!(budget.idle, 65_536 - 1024);
        assert_eq!(budget_for(20_000).busy, (20_000 - 1024) / 3);
        // A tiny limit still lets a few clients in.
        assert_eq!(budget_for(1024).busy, 64);
    }
}
