//! SIGHUP re-reads regapp.toml: a valid change applies (htpasswd file, log level), a
//! listen-address change is reported as needing a restart, an invalid file changes nothing
//! and says why.

use std::time::Duration;

use crate::edge::{htpasswd, EdgeServer, Tls, PASSWORD, USER};
use crate::util::eventually;

fn status(edge: &EdgeServer, creds: &str) -> u16 {
    edge.curl(&["-u", creds, &format!("{}/v2/", edge.url())]).0
}

fn log_has(edge: &EdgeServer, all_of: &[&str]) -> bool {
    edge.process
        .log()
        .lines()
        .any(|line| all_of.iter().all(|part| line.contains(part)))
}

#[test]
fn sighup_applies_a_new_htpasswd_file_and_log_level_and_names_what_needs_a_restart() {
    let mut edge =
        EdgeServer::start_configured(Tls::SelfSigned, "", "\n[log]\nlevel = \"info\"\n", |c| {
            c.env_remove("RUST_LOG").env_remove("REGAPP_LOG");
        });
    let original = std::fs::read_to_string(&edge.config_file).unwrap();
    assert_eq!(status(&edge, &format!("{USER}:{PASSWORD}")), 200);

    let other = edge.dir.path().join("other-htpasswd");
    htpasswd(&[
        "-B",
        "-C",
        "4",
        "-b",
        "-c",
        other.to_str().unwrap(),
        "bob",
        "builder",
    ]);
    let engine_line = format!("listen = \"127.0.0.1:{}\"", edge.engine_port);
    let changed = original
        .replace(
            &format!("htpasswd = {:?}", edge.htpasswd_file()),
            &format!("htpasswd = {other:?}"),
        )
        .replace("level = \"info\"", "level = \"debug\"")
        .replace("realm = \"test\"", "realm = \"elsewhere\"")
        .replace(&engine_line, "listen = \"127.0.0.1:1\"");
    assert_ne!(changed, original);
    std::fs::write(&edge.config_file, &changed).unwrap();
    edge.process.signal(libc::SIGHUP);

    eventually(Duration::from_secs(10), "bob let in", || {
        status(&edge, "bob:builder") == 200
    });
    assert_eq!(
        status(&edge, &format!("{USER}:{PASSWORD}")),
        401,
        "alice's file is no longer used"
    );
    eventually(Duration::from_secs(5), "the reload's log lines", || {
        log_has(&edge, &["reloaded", "auth.htpasswd"])
            && log_has(&edge, &["reloaded", "log.level"])
            && log_has(&edge, &["needs a restart", "engine.listen"])
            && log_has(&edge, &["needs a restart", "auth.realm"])
    });
    // Debug events appear only once the level changed: the new file's watcher says so.
    assert!(
        log_has(&edge, &["DEBUG", "watching htpasswd"]),
        "{}",
        edge.process.log()
    );
    // The engine still listens where it started: the request above went through it.

    // An invalid file: every problem logged, nothing changes.
    std::fs::write(
        &edge.config_file,
        changed.replace(
            "[log]\nlevel = \"debug\"",
            "[log]\nlevel = \"debug\"\nformat = \"xml\"\nnope = 1",
        ),
    )
    .unwrap();
    edge.process.signal(libc::SIGHUP);
    eventually(Duration::from_secs(5), "the refusal", || {
        log_has(&edge, &["reload refused", "log.format"])
            && log_has(&edge, &["reload refused", "log.nope"])
    });
    assert_eq!(
        status(&edge, "bob:builder"),
        200,
        "the running configuration stays"
    );
    assert!(edge.process.is_running());
}
