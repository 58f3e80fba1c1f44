//! Garbage collection against the real binary: `regapp gc`/`du` through the server's socket and
//! without a server, collections kept apart, the schedule, what a collection leaves in
//! `/metrics`, the store still served by docker-registry 2.8 after a collection, and a stress
//! run — concurrent pushes while collections run back to back.

mod cli;
mod compat;
mod metrics;
mod push;
mod schedule;
mod stress;

use std::path::Path;
use std::process::{Command, Output};

/// `regapp ARGS… --config CONFIG`; the output, whatever the exit status.
fn regapp(args: &[&str], config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_regapp"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("REGAPP_LOG", "warn")
        .output()
        .expect("run the regapp binary")
}

/// stdout of a successful `regapp ARGS…`; panics with everything it said otherwise.
fn regapp_ok(args: &[&str], config: &Path) -> String {
    let out = regapp(args, config);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "regapp {args:?} failed ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The number after `removed: ` / `would remove: ` in a summary: blobs removed.
fn blobs_removed(summary: &str) -> u64 {
    let line = summary
        .lines()
        .find(|l| l.starts_with("removed: ") || l.starts_with("would remove: "))
        .unwrap_or_else(|| panic!("no summary line in:\n{summary}"));
    let rest = line.split_once(": ").unwrap().1;
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

/// Files under the blob store.
fn blob_files(root: &Path) -> usize {
    let mut count = 0;
    let mut pending = vec![root.join("docker/registry/v2/blobs")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                pending.push(entry.path());
            } else {
                count += 1;
            }
        }
    }
    count
}

fn blob_path(root: &Path, digest: &str) -> std::path::PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digests");
    root.join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ))
}
