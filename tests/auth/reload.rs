//! Hot reload of the htpasswd file: in-place edits, replacement by rename and `htpasswd` itself
//! are seen within 2 seconds; a broken file keeps the last good users and is counted; `reload()`
//! (SIGHUP's path) works without the watcher; dropping the guard stops watching.

use std::time::Duration;

use regapp::auth::{AuthDecision, Authenticator, Reloaded};

use super::{allowed, bcrypt_file, check, eventually, htpasswd, path_str};

const WITHIN: Duration = Duration::from_secs(2);

/// A bcrypt (cost 4) line for `user`, as `htpasswd -n` prints it.
fn line(user: &str, password: &str) -> String {
    let output = std::process::Command::new("htpasswd")
        .args(["-nbB", "-C", "4", user, password])
        .output()
        .expect("htpasswd runs");
    assert!(output.status.success());
    // `htpasswd -n` ends its line with "\n\n".
    format!(
        "{}\n",
        String::from_utf8(output.stdout).expect("ASCII").trim_end()
    )
}

#[tokio::test]
async fn an_in_place_edit_is_seen_within_2s() {
    let (_dir, path) = bcrypt_file("alice", "old");
    let auth = Authenticator::load(&path).expect("loads");
    let _watch = auth.watch().expect("watch starts");
    assert_eq!(check(&auth, "alice", "old").await, allowed("alice"));

    // Truncate and rewrite the same inode, as `echo … > htpasswd` or `htpasswd` do.
    std::fs::write(&path, line("alice", "new")).expect("rewrite in place");
    let took = eventually(&auth, ("alice", "new"), &allowed("alice"), WITHIN).await;
    eprintln!("in-place edit seen after {took:?}");
    assert_eq!(check(&auth, "alice", "old").await, AuthDecision::Denied);
}

#[tokio::test]
async fn a_rename_over_the_file_is_seen_within_2s() {
    let (dir, path) = bcrypt_file("alice", "secret");
    let auth = Authenticator::load(&path).expect("loads");
    let _watch = auth.watch().expect("watch starts");

    // Write a new file beside it and rename it over the old one, as editors and `sed -i` do.
    let temp = dir.path().join(".htpasswd.new");
    std::fs::write(&temp, line("bob", "bob's")).expect("write new file");
    std::fs::rename(&temp, &path).expect("rename over");
    let took = eventually(&auth, ("bob", "bob's"), &allowed("bob"), WITHIN).await;
    eprintln!("rename seen after {took:?}");
    assert_eq!(check(&auth, "alice", "secret").await, AuthDecision::Denied);

    // The watch survives the replacement: a second change to the new file is seen as well.
    std::fs::write(&temp, line("carol", "c")).expect("write new file");
    std::fs::rename(&temp, &path).expect("rename over");
    eventually(&auth, ("carol", "c"), &allowed("carol"), WITHIN).await;
}

#[tokio::test]
async fn htpasswd_adding_and_deleting_users_is_seen_within_2s() {
    let (_dir, path) = bcrypt_file("alice", "secret");
    let auth = Authenticator::load(&path).expect("loads");
    let _watch = auth.watch().expect("watch starts");

    htpasswd(&["-bB", "-C", "4", path_str(&path), "bob", "pw"]);
    eventually(&auth, ("bob", "pw"), &allowed("bob"), WITHIN).await;
    htpasswd(&["-D", path_str(&path), "alice"]);
    eventually(&auth, ("alice", "secret"), &AuthDecision::Denied, WITHIN).await;
    assert_eq!(auth.stats().users, 1);
}

#[tokio::test]
async fn a_broken_file_keeps_working_users_and_counts_the_error() {
    let (_dir, path) = bcrypt_file("alice", "secret");
    let auth = Authenticator::load(&path).expect("loads");
    let _watch = auth.watch().expect("watch starts");
    let errors_before = auth.stats().reload_errors;

    let good = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, format!("{good}this line has no colon\n")).expect("break the file");
    let start = std::time::Instant::now();
    while auth.stats().reload_errors == errors_before {
        assert!(start.elapsed() < WITHIN, "the broken file was not noticed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(check(&auth, "alice", "secret").await, allowed("alice"));
    assert_eq!(auth.stats().users, 1);

    // Fixed again: reloads normally.
    std::fs::write(&path, format!("{good}{}", line("bob", "b"))).expect("fix the file");
    eventually(&auth, ("bob", "b"), &allowed("bob"), WITHIN).await;
    assert_eq!(check(&auth, "alice", "secret").await, allowed("alice"));
}

#[tokio::test]
async fn on_demand_works_without_the_watcher() {
    let (_dir, path) = bcrypt_file("alice", "secret");
    let auth = Authenticator::load(&path).expect("loads");
    assert_eq!(auth.reload().expect("unchanged"), Reloaded::Unchanged);

    std::fs::write(&path, "garbage\n").expect("break");
    let err = auth.reload().expect_err("broken");
    assert!(err.to_string().contains("line 1"), "{err}");
    assert_eq!(check(&auth, "alice", "secret").await, allowed("alice"));

    htpasswd(&["-bcB", "-C", "4", path_str(&path), "bob", "b"]);
    assert_eq!(
        auth.reload().expect("valid"),
        Reloaded::Changed { users: 1 }
    );
    assert_eq!(check(&auth, "bob", "b").await, allowed("bob"));
    let stats = auth.stats();
    assert_eq!((stats.reloads_ok, stats.reload_errors), (2, 1));
}

#[tokio::test]
async fn stops_when_the_guard_is_dropped() {
    let (_dir, path) = bcrypt_file("alice", "secret");
    let auth = Authenticator::load(&path).expect("loads");
    let watch = auth.watch().expect("watch starts");
    // Let the watcher's initial reload happen, then stop it.
    let start = std::time::Instant::now();
    while auth.stats().reloads_ok == 0 {
        assert!(
            start.elapsed() < WITHIN,
            "the initial reload did not happen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(watch);
    let reloads = auth.stats().reloads_ok;

    htpasswd(&["-bB", "-C", "4", path_str(&path), "bob", "b"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(auth.stats().reloads_ok, reloads);
    assert_eq!(check(&auth, "bob", "b").await, AuthDecision::Denied);
}
