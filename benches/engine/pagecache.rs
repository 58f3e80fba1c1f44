//! Page-cache pages for the push phases, the same for every registry.
//!
//! This machine is a VM whose free memory is handed back to its host. A page the guest has not
//! touched since costs a hypervisor fault when the page cache first uses it: measured here with
//! `dd if=/dev/zero of=f bs=1M count=1024`, 2.0–2.3 s of system time for 1 GiB into fresh pages
//! against 0.15 s into pages a deleted file just gave back. A push writes every byte into the page
//! cache, so which registry met fresh pages decided a 1 GiB push more than its own code did
//! (rounds of one build ranged 400–1200 MiB/s). Before each push phase, for each registry, this
//! writes a scratch file as large as the phase's writes and deletes it (untimed): the push then
//! fills pages that were just in use. `--fresh-pages` turns it off.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::BenchResult;

pub fn recycle(dir: &Path, bytes: u64) -> BenchResult<()> {
    let path = dir.join("page-cache-scratch");
    let chunk = vec![0x5a_u8; 1024 * 1024];
    let mut file = File::create(&path)?;
    let mut written = 0;
    while written < bytes {
        file.write_all(&chunk)?;
        written += chunk.len() as u64;
    }
    drop(file);
    // Its pages were never written back: deleting it frees them without disk I/O.
    fs::remove_file(&path)?;
    Ok(())
}
