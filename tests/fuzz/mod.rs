//! The fuzz targets' checks (`checks.rs`) over every committed input: the seed corpora in
//! `fuzz/corpus/<target>/` and what fuzzing found in `fuzz/regressions/<target>/`. This runs in
//! `cargo test` on stable Rust; fuzzing itself needs `cargo fuzz` (fuzz/README.md).

use std::path::Path;
use std::time::Duration;

pub mod checks;

/// No check of one small input takes this long unless a parser hangs on it.
const HANG: Duration = Duration::from_secs(60);

fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut inputs: Vec<_> = entries
        .map(|entry| entry.unwrap().path())
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    inputs.sort();
    inputs
}

#[test]
fn every_seed_and_every_found_input_passes_its_target() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (target, check) in checks::TARGETS {
        let seeds = inputs(&fuzz.join("corpus").join(target));
        assert!(!seeds.is_empty(), "fuzz/corpus/{target} has seeds");
        let found = inputs(&fuzz.join("regressions").join(target));
        for (name, input) in seeds.iter().chain(&found) {
            // On a thread of its own, so that an input that makes a parser hang (what the
            // fuzzer reports as a slow unit) fails here instead of stalling the suite.
            let (done, finished) = std::sync::mpsc::channel();
            let (input, check) = (input.clone(), *check);
            std::thread::spawn(move || {
                let run = std::panic::catch_unwind(|| check(&input));
                let _ = done.send(run.is_ok());
            });
            match finished.recv_timeout(HANG) {
                Ok(passed) => assert!(passed, "{target}: input {name} fails its check"),
                Err(_) => panic!("{target}: input {name} still runs after {HANG:?}"),
            }
        }
    }
}
