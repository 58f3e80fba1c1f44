//! The README's commands as a newcomer types them: the first one works in a root shell without
//! sudo (a fresh Debian container) and as a user with sudo.

use std::path::Path;
use std::process::Command;

/// The first command of "The two commands": its first line that is not a comment.
fn first_command() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## The two commands")
        .nth(1)
        .expect("README has \"The two commands\"");
    let block = section.split("```sh").nth(1).expect("a sh code block");
    block
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .expect("a command")
        .to_owned()
}

/// A program in `dir` that records its name and arguments in `dir/calls`, then (for sudo)
/// runs them.
fn stub(dir: &Path, name: &str, runs_its_arguments: bool) {
    let run = if runs_its_arguments {
        "exec \"$@\""
    } else {
        "exit 0"
    };
    let script = format!(
        "#!/bin/sh\necho \"{name} $*\" >> {}\n{run}\n",
        dir.join("calls").display()
    );
    let path = dir.join(name);
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs the command with only the stubs on PATH; returns the calls they saw.
fn run_with(stubs: &[(&str, bool)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    for (name, runs) in stubs {
        stub(dir.path(), name, *runs);
    }
    let out = Command::new("/bin/bash")
        .arg("-c")
        .arg(first_command())
        .env_clear()
        .env("PATH", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        first_command(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(dir.path().join("calls"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_first_command_works_as_root_without_sudo_and_with_sudo() {
    let without_sudo = run_with(&[("apt-get", false), ("cargo", false)]);
    assert_eq!(
        without_sudo,
        [
            "apt-get update -qq",
            "apt-get install -y cmake gcc",
            "cargo run --release -- serve --dev"
        ]
    );
    let with_sudo = run_with(&[("sudo", true), ("apt-get", false), ("cargo", false)]);
    assert_eq!(
        with_sudo,
        [
            "sudo apt-get update -qq",
            "apt-get update -qq",
            "sudo apt-get install -y cmake gcc",
            "apt-get install -y cmake gcc",
            "cargo run --release -- serve --dev"
        ]
    );
}
