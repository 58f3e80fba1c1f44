//! Tests of `users.rs`: reload outcomes, the cache's lifetime and the dummy hash.

use std::io::Write as _;

use super::*;

const ALICE: &str = "alice:$2y$04$zYLrQZpk9bg5mHzJTqvEROOYSrqYHLOlXTYi3qdujEHodu0v7COzS\n";

fn file_with(content: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(content.as_bytes()).expect("write");
    file
}

#[test]
fn unknown_users_and_wrong_passwords_are_told_apart_only_in_the_result() {
    let file = file_with(ALICE);
    let users = Users::load(file.path()).expect("valid file");
    let set = users.current();
    assert_eq!(set.verify("alice", "secret"), Verification::Valid);
    assert_eq!(set.verify("alice", "wrong"), Verification::WrongPassword);
    assert_eq!(set.verify("mallory", "secret"), Verification::UnknownUser);
    let dummy = set.dummy.as_ref().expect("a dummy when there are users");
    assert_eq!(dummy.shape(), HashShape::Bcrypt { cost: 4 });
}

#[test]
fn an_empty_file_has_no_dummy_and_denies_everyone() {
    let file = file_with("# nobody yet\n");
    let users = Users::load(file.path()).expect("valid file");
    let set = users.current();
    assert!(set.is_empty() && set.dummy.is_none());
    assert_eq!(set.verify("alice", "secret"), Verification::UnknownUser);
}

#[test]
fn reload_swaps_on_change_keeps_on_same_bytes_and_on_errors() {
    let file = file_with(ALICE);
    let users = Users::load(file.path()).expect("valid file");
    let first = users.current();
    first.cache().insert(first.cache().key("alice", "secret"));

    assert_eq!(users.reload().expect("same file"), Reloaded::Unchanged);
    assert!(
        Arc::ptr_eq(&first, &users.current()),
        "same bytes keep the set and its cache"
    );

    std::fs::write(file.path(), format!("{ALICE}broken line\n")).expect("write");
    let err = users.reload().expect_err("broken file");
    assert!(err.to_string().contains("line 2: no `:`"), "{err}");
    assert!(
        Arc::ptr_eq(&first, &users.current()),
        "a broken file keeps the last good set"
    );

    std::fs::write(file.path(), format!("# changed\n{ALICE}")).expect("write");
    assert_eq!(
        users.reload().expect("valid again"),
        Reloaded::Changed { users: 1 }
    );
    let second = users.current();
    assert!(!Arc::ptr_eq(&first, &second));
    assert!(
        second.cache().is_empty(),
        "a new set starts with an empty cache"
    );
    // The highest cost did not change, so the dummy hash was reused rather than recomputed.
    assert!(first.dummy == second.dummy);

    std::fs::remove_file(file.path()).expect("remove");
    assert!(matches!(users.reload(), Err(LoadError::Read { .. })));
    assert_eq!((users.reloads_ok(), users.reload_errors()), (2, 2));
    assert!(users.current().contains("alice"));
}

#[test]
fn load_fails_on_a_missing_or_broken_file_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("htpasswd");
    let err = Users::load(&missing).err().expect("missing file");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );

    let broken = file_with(&format!("{ALICE}{ALICE}"));
    let err = Users::load(broken.path()).err().expect("duplicate user");
    assert!(
        err.to_string()
            .contains("line 2: user \"alice\" appears again"),
        "{err}"
    );
}

/// An editor that truncates the file before writing it must not lock everyone out: an empty
/// file where users were is deferred, and applies only once it stayed empty for the grace.
#[test]
fn an_emptied_file_applies_only_after_the_grace() {
    let file = file_with(ALICE);
    let users = Users::load(file.path()).expect("valid file");
    std::fs::write(file.path(), "").expect("truncate");
    let Reloaded::Deferred { recheck_in } = users.reload().expect("deferred") else {
        panic!("an emptied file must be deferred");
    };
    assert!(recheck_in <= EMPTY_FILE_GRACE);
    assert_eq!(users.current().len(), 1, "alice stays meanwhile");
    // Written again in time: the new content applies, the empty moment is forgotten.
    std::fs::write(file.path(), format!("# rewritten\n{ALICE}")).expect("write");
    assert_eq!(
        users.reload().expect("valid"),
        Reloaded::Changed { users: 1 }
    );
    std::fs::write(file.path(), "\n").expect("truncate again");
    assert!(matches!(users.reload(), Ok(Reloaded::Deferred { .. })));
    std::thread::sleep(EMPTY_FILE_GRACE);
    assert_eq!(
        users.reload().expect("applies"),
        Reloaded::Changed { users: 0 }
    );
    assert!(users.current().is_empty());
}
