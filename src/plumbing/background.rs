//! Background work yields the CPU to requests: a thread that calls
//! [`yield_cpu_to_requests`] gets about a tenth of a request thread's share when both want
//! the CPU (the collector, its blocking pool, the trash purge).

/// Linux `nice` 10 ≈ a tenth of a nice-0 thread's weight.
const BACKGROUND_NICENESS: libc::c_int = 10;

/// Lowers the calling thread's CPU priority. Linux keeps a nice value per thread, so this
/// touches no request thread, and threads this one spawns start from it. Raising the value is
/// always allowed; a failure (some other kernel) only leaves the priority as it was.
pub fn yield_cpu_to_requests() {
    // SAFETY: setpriority only changes the scheduling priority of the calling thread (who = 0).
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICENESS) };
    if result != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "background thread priority unchanged");
    }
}
