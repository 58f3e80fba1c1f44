//! Tests of `htpasswd_file.rs`: edits keep other lines byte for byte, names that would corrupt
//! the file are refused, saving keeps mode and owner and leaves no temp file.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use super::*;

// `htpasswd -bnB -C 4 alice secret`
const ALICE: &str = "alice:$2y$04$zYLrQZpk9bg5mHzJTqvEROOYSrqYHLOlXTYi3qdujEHodu0v7COzS";

fn hash(password: &str) -> PasswordHash {
    PasswordHash::new_bcrypt(password, 4).expect("bcrypt hashes")
}

#[test]
fn set_and_remove_keep_every_other_line_byte_for_byte() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("htpasswd");
    let original =
        format!("# team users\r\n{ALICE}\r\n\nold:{{SHA}}GpHWL3ymc5liWkNopqtdSjuqYHM=\n");
    std::fs::write(&path, &original).expect("write");

    let mut file = HtpasswdFile::open(&path).expect("opens");
    assert!(file.contains("alice") && file.contains("old") && !file.contains("bob"));
    file.set("bob", &hash("b")).expect("valid name");
    file.save().expect("saves");
    drop(file); // releases the directory lock for the next open
    let saved = std::fs::read_to_string(&path).expect("read");
    assert!(
        saved.starts_with(&original),
        "appended after the old lines: {saved:?}"
    );

    let mut file = HtpasswdFile::open(&path).expect("opens");
    file.set("alice", &hash("new")).expect("valid name");
    assert!(file.remove("bob"));
    assert!(!file.remove("bob"));
    file.save().expect("saves");
    let saved = std::fs::read_to_string(&path).expect("read");
    let lines: Vec<&str> = saved.split('\n').collect();
    assert_eq!(lines[0], "# team users\r");
    assert!(lines[1].starts_with("alice:$2y$04$") && lines[1] != ALICE);
    assert_eq!(
        &lines[2..],
        ["", "old:{SHA}GpHWL3ymc5liWkNopqtdSjuqYHM=", ""]
    );
    let parsed = Htpasswd::parse(saved.as_bytes()).expect("still a valid file");
    assert!(parsed.users()["alice"].verify("new"));
    assert_eq!(parsed.refused()[0].user, "old");
}

#[test]
fn repeated_lines_for_one_user_collapse_into_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("htpasswd");
    std::fs::write(&path, format!("{ALICE}\nbob:x\n{ALICE}\n")).expect("write");
    let mut file = HtpasswdFile::open(&path).expect("opens");
    file.set("alice", &hash("a")).expect("valid name");
    let content = String::from_utf8(file.content()).expect("UTF-8");
    assert_eq!(content.matches("alice:").count(), 1, "{content}");
    assert!(content.starts_with("alice:") && content.contains("\nbob:x\n"));
}

#[test]
fn names_that_would_corrupt_the_file_are_refused() {
    for name in [
        "",
        "a:b",
        "a\nb",
        "tab\there",
        "\u{7f}",
        " lead",
        "trail ",
        "#x",
    ] {
        assert!(
            matches!(check_user_name(name), Err(EditError::InvalidName { .. })),
            "{name:?}"
        );
    }
    assert!(check_user_name(&"x".repeat(256)).is_err());
    for name in ["alice", "ci-bot@example.com", "Zoë", "a b"] {
        check_user_name(name).expect(name);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut file = HtpasswdFile::open(&dir.path().join("htpasswd")).expect("missing = empty");
    assert!(file.set("a:b", &hash("x")).is_err());
    assert!(file.content().is_empty());
}

#[test]
fn save_keeps_the_mode_and_creates_new_files_0640() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("htpasswd");
    let mut file = HtpasswdFile::open(&path).expect("missing file opens empty");
    assert!(!file.exists());
    file.set("alice", &hash("a")).expect("valid name");
    file.save().expect("creates");
    drop(file);
    let meta = std::fs::metadata(&path).expect("exists");
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!(
        meta.gid(),
        std::fs::metadata(dir.path()).expect("dir").gid()
    );

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o604)).expect("chmod");
    let inode = meta.ino();
    let mut file = HtpasswdFile::open(&path).expect("opens");
    file.set("bob", &hash("b")).expect("valid name");
    file.save().expect("saves");
    let meta = std::fs::metadata(&path).expect("exists");
    assert_eq!(meta.mode() & 0o7777, 0o604, "mode kept");
    assert_ne!(
        meta.ino(),
        inode,
        "replaced by rename, not rewritten in place"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["htpasswd"], "no temp file left behind");
}

#[test]
fn a_symlinked_file_is_replaced_behind_its_link() {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = dir.path().join("real-htpasswd");
    std::fs::write(&target, format!("{ALICE}\n")).expect("write");
    let link = dir.path().join("htpasswd");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let mut file = HtpasswdFile::open(&link).expect("opens");
    file.set("bob", &hash("b")).expect("valid name");
    file.save().expect("saves");
    assert!(std::fs::symlink_metadata(&link).expect("link").is_symlink());
    let content = std::fs::read_to_string(&target).expect("read");
    assert!(content.starts_with(ALICE) && content.contains("\nbob:$2y$04$"));
}

#[test]
fn concurrent_edits_all_land() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("htpasswd");
    let hash = hash("same");
    std::thread::scope(|scope| {
        for n in 0..8 {
            let (path, hash) = (&path, &hash);
            scope.spawn(move || {
                let mut file = HtpasswdFile::open(path).expect("opens");
                file.set(&format!("user{n}"), hash).expect("valid name");
                file.save().expect("saves");
            });
        }
    });
    let parsed = Htpasswd::parse(&std::fs::read(&path).expect("read")).expect("valid");
    assert_eq!(parsed.users().len(), 8, "no edit lost to another's rename");
}
