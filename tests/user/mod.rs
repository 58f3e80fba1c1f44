//! `regapp user` against the real Apache `htpasswd` (Debian's apache2-utils) and a running edge.
//!
//! Protects: what regapp writes, `htpasswd -v` verifies (bcrypt, `$2y$`, cost 12 by default);
//! what `htpasswd` wrote, regapp edits without touching other lines; argon2 users log in through
//! the edge; the running server sees add, passwd and del within 2 s, with no signal or restart;
//! the prompt (on a pseudo-terminal from `script`) asks twice and echoes nothing;
//! `--config` finds `[auth] htpasswd`; bad names and mismatched input change nothing.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::edge::{htpasswd, EdgeServer, PASSWORD, USER};

/// Runs `regapp user ARGS`, the password (if any) on standard input.
fn regapp_user(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_regapp"))
        .arg("user")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("regapp runs");
    let mut input = child.stdin.take().expect("piped stdin");
    if let Some(text) = stdin {
        // regapp may refuse (a bad name) and exit before reading: a broken pipe is its answer.
        let _ = input.write_all(text.as_bytes());
    }
    drop(input);
    child.wait_with_output().expect("regapp exits")
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "regapp user failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn failed(output: &Output) -> String {
    assert!(!output.status.success(), "regapp user should have failed");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `htpasswd -vb FILE USER PASSWORD`: whether Apache's tool accepts the password.
fn apache_verifies(file: &Path, user: &str, password: &str) -> bool {
    Command::new("htpasswd")
        .args(["-vb", file.to_str().expect("UTF-8 path"), user, password])
        .output()
        .expect("htpasswd runs (apache2-utils)")
        .status
        .success()
}

/// A config with the edge (self-signed) whose users are in `htpasswd`.
fn write_edge_config(config: &Path, root: &Path, htpasswd: &Path) {
    std::fs::write(
        config,
        format!(
            "[storage]\nroot = {root:?}\n[edge]\nhostname = \"localhost\"\n[tls]\nmode = \"self-signed\"\n\
             [auth]\nhtpasswd = {htpasswd:?}\n"
        ),
    )
    .expect("write config");
}

fn s(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

#[test]
fn what_regapp_writes_apache_htpasswd_verifies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("htpasswd");
    let out = ok(&regapp_user(
        &["--file", s(&file), "add", "alice", "--password-stdin"],
        Some("correct horse\n"),
    ));
    assert!(out.contains("saved"), "{out}");
    let content = std::fs::read_to_string(&file).expect("created");
    assert!(
        content.starts_with("alice:$2y$12$"),
        "cost 12 by default: {content}"
    );
    assert!(apache_verifies(&file, "alice", "correct horse"));
    assert!(!apache_verifies(&file, "alice", "correct horsE"));

    ok(&regapp_user(
        &[
            "passwd",
            "alice",
            "--password-stdin",
            "--cost",
            "5",
            "--file",
            s(&file),
        ],
        Some("battery staple"),
    ));
    assert!(apache_verifies(&file, "alice", "battery staple"));
    assert!(!apache_verifies(&file, "alice", "correct horse"));
    let listed = ok(&regapp_user(&["list", "--file", s(&file)], None));
    assert_eq!(listed, "alice\tbcrypt (cost 5)\n");
}

#[test]
fn what_apache_htpasswd_wrote_regapp_edits_keeping_other_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("htpasswd");
    htpasswd(&["-bcB", "-C", "4", s(&file), "alice", "a-pass"]);
    htpasswd(&["-bs", s(&file), "legacy", "l-pass"]); // {SHA}: refused by regapp, kept
    htpasswd(&["-bB", "-C", "4", s(&file), "carol", "c-pass"]);
    let before: Vec<String> = std::fs::read_to_string(&file)
        .expect("read")
        .lines()
        .map(str::to_owned)
        .collect();

    ok(&regapp_user(
        &["--file", s(&file), "add", "bob", "--password-stdin"],
        Some("b-pass"),
    ));
    ok(&regapp_user(
        &["--file", s(&file), "passwd", "carol", "--password-stdin"],
        Some("c-new"),
    ));
    let after: Vec<String> = std::fs::read_to_string(&file)
        .expect("read")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(after[..2], before[..2], "alice and legacy untouched");
    assert_ne!(after[2], before[2], "carol's line replaced where it was");
    assert!(after[3].starts_with("bob:$2y$12$"));
    assert!(apache_verifies(&file, "alice", "a-pass"));
    assert!(apache_verifies(&file, "legacy", "l-pass"));
    assert!(apache_verifies(&file, "carol", "c-new"));
    assert!(apache_verifies(&file, "bob", "b-pass"));

    // And the other way again: htpasswd edits regapp's file.
    htpasswd(&["-D", s(&file), "bob"]);
    htpasswd(&["-bB", "-C", "4", s(&file), "dave", "d-pass"]);
    let listed = ok(&regapp_user(&["list", "--file", s(&file)], None));
    assert_eq!(
        listed,
        "alice\tbcrypt (cost 4)\ncarol\tbcrypt (cost 12)\ndave\tbcrypt (cost 4)\n\
         legacy\trefused: scheme {SHA} (unsalted SHA-1) is not supported (use bcrypt: htpasswd -B) \
         (line 2; set a new password with `regapp user passwd`)\n"
    );

    ok(&regapp_user(&["--file", s(&file), "del", "alice"], None));
    assert!(!apache_verifies(&file, "alice", "a-pass"));
    assert!(apache_verifies(&file, "dave", "d-pass"));
}

#[test]
fn mistakes_change_nothing_and_say_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("htpasswd");
    htpasswd(&["-bcB", "-C", "4", s(&file), "alice", "a-pass"]);
    let before = std::fs::read(&file).expect("read");

    let cases: [(&[&str], Option<&str>, &str); 7] = [
        (
            &["add", "al:ice", "--password-stdin"],
            Some("x"),
            "contains `:`",
        ),
        (
            &["add", "bad\u{1b}name", "--password-stdin"],
            Some("x"),
            "control character",
        ),
        (
            &["add", "alice", "--password-stdin"],
            Some("x"),
            "already exists",
        ),
        (
            &["passwd", "bob", "--password-stdin"],
            Some("x"),
            "no user \"bob\"",
        ),
        (&["del", "bob"], None, "no user \"bob\""),
        (
            &["add", "bob", "--password-stdin"],
            Some("\n"),
            "password is empty",
        ),
        (
            &["add", "bob", "--password-stdin", "--cost", "31"],
            Some("x"),
            "4..=14",
        ),
    ];
    for (args, stdin, expected) in cases {
        let mut all = vec!["--file", s(&file)];
        all.extend_from_slice(args);
        let message = failed(&regapp_user(&all, stdin));
        assert!(message.contains(expected), "{args:?}: {message}");
    }
    // Without a terminal the prompt cannot run; it says what to use instead.
    let message = failed(
        &Command::new("setsid")
            .args([
                env!("CARGO_BIN_EXE_regapp"),
                "user",
                "--file",
                s(&file),
                "add",
                "bob",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("setsid runs"),
    );
    assert!(message.contains("--password-stdin"), "{message}");
    assert_eq!(
        std::fs::read(&file).expect("read"),
        before,
        "file unchanged"
    );
}

/// A bcrypt of cost 31 (days per verification) and an argon2 of 4 GiB are refused where the file
/// is read: `regapp user list` and `regapp check-config` name them with their line, and a
/// server starts at once and lets the other users in (it hung at start before).
#[test]
fn costly_hashes_are_refused_by_list_check_config_and_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("htpasswd");
    htpasswd(&["-bcB", "-C", "4", s(&file), "alice", "a-pass"]);
    htpasswd(&["-bB", "-C", "5", s(&file), "bob", "b-pass"]);
    let text = std::fs::read_to_string(&file).expect("read");
    let argon2 =
        "carol:$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
    std::fs::write(
        &file,
        format!("{}{argon2}\n", text.replace("$2y$05$", "$2y$31$")),
    )
    .expect("write");

    let listed = ok(&regapp_user(&["list", "--file", s(&file)], None));
    assert!(listed.starts_with("alice\tbcrypt (cost 4)\n"), "{listed}");
    assert!(
        listed.contains("bob\trefused: bcrypt cost 31 is above regapp's maximum of 14")
            && listed.contains("(line 2;"),
        "{listed}"
    );
    assert!(
        listed.contains("carol\trefused: argon2 memory m=4194304 is above"),
        "{listed}"
    );

    let config = dir.path().join("regapp.toml");
    write_edge_config(&config, &dir.path().join("data"), &file);
    let checked = Command::new(env!("CARGO_BIN_EXE_regapp"))
        .args(["check-config", "--config", s(&config)])
        .output()
        .expect("check-config runs");
    let warnings = String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success(), "{warnings}");
    assert!(
        warnings.contains(&format!(
            "warning: htpasswd {}, line 2: user \"bob\" refused: bcrypt cost 31",
            file.display()
        )),
        "{warnings}"
    );
    assert!(
        warnings.contains("line 3: user \"carol\" refused"),
        "{warnings}"
    );

    let costly: String = std::fs::read_to_string(&file)
        .expect("read")
        .lines()
        .filter(|line| !line.starts_with("alice:"))
        .map(|line| format!("{line}\n"))
        .collect();
    let edge = EdgeServer::start_with_htpasswd_lines(&costly);
    let url = format!("{}/v2/", edge.url());
    let (status, _) = edge.curl(&["-u", &format!("{USER}:{PASSWORD}"), &url]);
    assert_eq!(status, 200);
    let (status, _) = edge.curl(&["-u", "bob:b-pass", &url]);
    assert_eq!(status, 401, "bob's line is refused");
    let log = edge.process.log();
    assert!(
        log.contains("htpasswd user refused") && log.contains("user=bob"),
        "{log}"
    );
}

/// Reads `from` until `text` has appeared; returns everything read so far.
fn read_until(from: &mut impl std::io::Read, seen: &mut String, text: &str) {
    let mut buf = [0u8; 256];
    while !seen.contains(text) {
        let n = from.read(&mut buf).expect("read the terminal");
        assert!(n > 0, "the terminal closed before {text:?}: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// `regapp user --file FILE add bob` on a pseudo-terminal (util-linux's `script` relays our
/// pipes to it), typing `first` and `second` once each question is shown. Returns whether it
/// succeeded and everything the terminal showed.
fn add_bob_at_the_prompt(file: &Path, first: &str, second: &str) -> (bool, String) {
    let command = format!(
        "{} user --file {} add bob --cost 4",
        env!("CARGO_BIN_EXE_regapp"),
        s(file)
    );
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script runs (util-linux)");
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let mut seen = String::new();
    read_until(&mut stdout, &mut seen, "New password for bob: ");
    stdin
        .write_all(format!("{first}\n").as_bytes())
        .expect("type");
    read_until(&mut stdout, &mut seen, "Retype the password: ");
    stdin
        .write_all(format!("{second}\n").as_bytes())
        .expect("type");
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("read the terminal");
    seen.push_str(&rest);
    (child.wait().expect("script exits").success(), seen)
}

#[test]
fn the_prompt_asks_twice_on_a_terminal_without_echo() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("htpasswd");
    let (succeeded, seen) = add_bob_at_the_prompt(&file, "typed-secret", "typed-secreT");
    assert!(!succeeded && seen.contains("do not match"), "{seen}");
    assert!(!file.exists(), "a mismatch writes nothing");

    let (succeeded, seen) = add_bob_at_the_prompt(&file, "typed-secret", "typed-secret");
    assert!(succeeded, "{seen}");
    assert!(
        !seen.contains("typed-secret"),
        "the password was echoed: {seen:?}"
    );
    assert!(apache_verifies(&file, "bob", "typed-secret"));
}

#[test]
fn config_names_the_file_and_a_config_without_edge_says_to_use_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("users");
    let config = dir.path().join("regapp.toml");
    write_edge_config(&config, &dir.path().join("data"), &file);
    ok(&regapp_user(
        &[
            "--config",
            s(&config),
            "add",
            "alice",
            "--password-stdin",
            "--cost",
            "4",
        ],
        Some("a-pass"),
    ));
    assert!(apache_verifies(&file, "alice", "a-pass"));

    std::fs::write(&config, format!("[storage]\nroot = {:?}\n", dir.path())).expect("write");
    let message = failed(&regapp_user(&["list", "--config", s(&config)], None));
    assert!(message.contains("--file PATH"), "{message}");
}

/// curl `/v2/` through the edge with `creds` until it answers `expected`; panics if no request
/// sent within 2 s of the call got that answer. Polls every 200 ms: each refusal is a failure the
/// edge's limiter counts (10 in a burst from one address).
fn eventually_status(edge: &EdgeServer, creds: &str, expected: u16) -> Duration {
    let url = format!("{}/v2/", edge.url());
    let start = Instant::now();
    loop {
        let sent = start.elapsed();
        let (status, _) = edge.curl(&["-u", creds, &url]);
        if status == expected {
            return sent;
        }
        assert!(
            sent < Duration::from_secs(2),
            "{creds}: still {status} 2 s after the change, expected {expected}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_running_server_sees_add_passwd_and_del_within_2s_and_argon2_logs_in() {
    let edge = EdgeServer::start();
    let file = edge.htpasswd_file();
    let file = s(&file);

    ok(&regapp_user(
        &[
            "--file",
            file,
            "add",
            "bob",
            "--password-stdin",
            "--cost",
            "4",
        ],
        Some("b-1"),
    ));
    let took = eventually_status(&edge, "bob:b-1", 200);
    eprintln!("add seen after {took:?}");

    ok(&regapp_user(
        &[
            "--file",
            file,
            "add",
            "carol",
            "--password-stdin",
            "--argon2",
        ],
        Some("c-1"),
    ));
    assert!(std::fs::read_to_string(file)
        .expect("read")
        .contains("carol:$argon2id$v=19$"));
    eventually_status(&edge, "carol:c-1", 200);
    assert_eq!(
        edge.curl(&["-u", "carol:c-2", &format!("{}/v2/", edge.url())])
            .0,
        401
    );

    ok(&regapp_user(
        &[
            "--file",
            file,
            "passwd",
            "bob",
            "--password-stdin",
            "--cost",
            "4",
        ],
        Some("b-2"),
    ));
    eventually_status(&edge, "bob:b-2", 200);
    eventually_status(&edge, "bob:b-1", 401);

    ok(&regapp_user(&["--file", file, "del", "bob"], None));
    eventually_status(&edge, "bob:b-2", 401);
    // The user the edge started with (Apache's cost-12 line) was never disturbed.
    eventually_status(
        &edge,
        &format!("{}:{}", crate::edge::USER, crate::edge::PASSWORD),
        200,
    );
}
