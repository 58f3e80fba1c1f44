//! Basic Auth at the edge: 401s with the spec's body, 429 after a burst of failures, htpasswd
//! changes picked up without a restart, and no way around the edge through the engine's port.

use std::process::Command;
use std::time::Duration;

use super::{htpasswd, offer_a_1_gib_upload, EdgeServer, PASSWORD, USER};
use crate::util::eventually;

fn eventually_200(edge: &EdgeServer, creds: &str) {
    let url = format!("{}/v2/", edge.url());
    // The watch settles within ~1 s; the rest is room for a loaded CI machine (a clean-clone
    // run beside a release build missed 2 s once). How fast is not what this test checks.
    eventually(
        Duration::from_secs(10),
        &format!("{creds} accepted"),
        || edge.curl(&["-u", creds, &url]).0 == 200,
    );
}

#[test]
fn requests_without_valid_credentials_get_401_with_the_spec_body() {
    let edge = EdgeServer::start();
    for args in [
        vec![format!("{}/v2/", edge.url())],
        vec![format!("{}/v2/team/app/tags/list", edge.url())],
        vec![
            "-u".into(),
            format!("{USER}:wrong"),
            format!("{}/v2/", edge.url()),
        ],
        vec![
            "-u".into(),
            "mallory:x".into(),
            format!("{}/v2/", edge.url()),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, text) = edge.curl(&args);
        let lower = text.to_lowercase();
        assert_eq!(status, 401, "{text}");
        assert!(
            lower.contains("www-authenticate: basic realm=\"test\""),
            "{text}"
        );
        assert!(
            lower.contains("docker-distribution-api-version: registry/2.0"),
            "{text}"
        );
        assert!(text.contains(r#""code":"UNAUTHORIZED""#), "{text}");
    }
    let log = edge.process.log();
    assert!(
        log.contains("regapp::auth::access"),
        "one access-log line per request: {log}"
    );
}

#[test]
fn a_large_unauthenticated_upload_is_refused_without_reading_its_body() {
    let edge = EdgeServer::start();
    let url = format!("{}/v2/a/blobs/uploads/x", edge.url());
    let answer = offer_a_1_gib_upload(&edge, &url, None);
    assert_eq!(answer.status, "401", "{}", answer.body);
    assert!(
        answer.uploaded < 64.0 * 1024.0 * 1024.0,
        "the edge read {} bytes of a 1 GiB body",
        answer.uploaded
    );
}

#[test]
fn a_burst_of_failed_logins_is_limited_with_retry_after() {
    let edge = EdgeServer::start();
    let url = format!("{}/v2/", edge.url());
    let mut limited = None;
    for _ in 0..30 {
        let (status, text) = edge.curl(&["-u", "alice:guess", &url]);
        if status == 429 {
            limited = Some(text);
            break;
        }
        assert_eq!(status, 401);
    }
    let text = limited.expect("no 429 after 30 failed logins");
    assert!(text.to_lowercase().contains("retry-after: "), "{text}");
    assert!(text.contains("TOOMANYREQUESTS"), "{text}");
}

#[test]
fn htpasswd_changes_apply_without_a_restart_and_a_broken_file_keeps_the_users() {
    let edge = EdgeServer::start();
    let file = edge.htpasswd_file();
    let file = file.to_str().unwrap();
    // htpasswd rewrites the file through a temporary copy.
    htpasswd(&["-B", "-C", "4", "-b", file, "bob", "builder"]);
    eventually_200(&edge, "bob:builder");
    // An in-place append, as `cat >>` or an editor that writes in place does.
    let line = Command::new("htpasswd")
        .args(["-nbB", "-C", "4", "carol", "singer"])
        .output()
        .unwrap();
    let mut content = std::fs::read(file).unwrap();
    content.extend_from_slice(String::from_utf8_lossy(&line.stdout).trim().as_bytes());
    content.push(b'\n');
    std::fs::write(file, content).unwrap();
    eventually_200(&edge, "carol:singer");
    // A broken file: the last good users keep working.
    std::fs::write(file, "this line has no colon\n").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    eventually_200(&edge, &format!("{USER}:{PASSWORD}"));
    eventually_200(&edge, "carol:singer");
}

/// An editor that truncates the file and writes it a moment later never locks users out; a file
/// that stays empty applies after its grace (5 s), with a warning.
#[test]
fn an_emptied_htpasswd_file_applies_only_once_it_stays_empty() {
    let edge = EdgeServer::start();
    let file = edge.htpasswd_file();
    let content = std::fs::read(&file).unwrap();
    let creds = format!("{USER}:{PASSWORD}");
    let url = format!("{}/v2/", edge.url());
    std::fs::write(&file, "").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        edge.curl(&["-u", &creds, &url]).0,
        200,
        "still in while empty"
    );
    std::fs::write(&file, &content).unwrap();
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        edge.curl(&["-u", &creds, &url]).0,
        200,
        "written again in time"
    );

    std::fs::write(&file, "").unwrap();
    eventually(Duration::from_secs(15), "the empty file applied", || {
        edge.curl(&["-u", &creds, &url]).0 == 401
    });
    let log = edge.process.log();
    assert!(
        log.contains("the htpasswd file is empty; keeping its users"),
        "{log}"
    );
    assert!(
        log.contains("the htpasswd file has no users any more"),
        "{log}"
    );
}

#[test]
fn sighup_reloads_instead_of_killing_the_process() {
    let mut edge = EdgeServer::start();
    edge.process.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    assert!(edge.process.is_running(), "SIGHUP killed regapp");
    eventually_200(&edge, &format!("{USER}:{PASSWORD}"));
}

#[test]
fn the_engine_port_is_no_way_around_the_edge() {
    let edge = EdgeServer::start();
    let out = Command::new("curl")
        .args([
            "-s",
            "-i",
            &format!("http://127.0.0.1:{}/v2/_catalog", edge.engine_port),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    assert!(text.contains("DENIED"), "{text}");
    // Forging the edge's headers does not help.
    let out = Command::new("curl")
        .args([
            "-s",
            "-i",
            "-H",
            "x-regapp-front-token: guess",
            "-H",
            "x-regapp-user: admin",
        ])
        .arg(format!("http://127.0.0.1:{}/v2/_catalog", edge.engine_port))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("HTTP/1.1 403"));
}

#[test]
fn clients_outside_edge_allow_are_refused_before_authentication() {
    let edge = EdgeServer::start_with(super::Tls::SelfSigned, "allow = [\"10.0.0.0/8\"]");
    let url = format!("{}/v2/", edge.url());
    let (status, text) = edge.curl(&["-u", &format!("{USER}:{PASSWORD}"), &url]);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains(r#""code":"DENIED""#), "{text}");
}
