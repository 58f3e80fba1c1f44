//! `regapp gc` and `regapp du` with and without a running server, and two collections kept
//! apart by `gc.lock`.

use std::os::fd::AsRawFd;
use std::time::Duration;

use super::push::Pusher;
use super::{blob_path, regapp, regapp_ok};
use crate::util::regapp::write_config;
use crate::util::{Regapp, Registry};

/// After `push_kept_and_gone("cli")`: `du` lists the kept repository and a total, and
/// `gc --dry-run` would remove the gone image's 3 blobs. Returns the dry run's report.
fn du_and_dry_run(config: &std::path::Path) -> String {
    let du = regapp_ok(&["du"], config);
    assert!(du.contains("cli/kept") && du.contains("total: "), "{du}");
    let dry = regapp_ok(&["gc", "--dry-run"], config);
    assert!(dry.contains("would remove: 3 blobs"), "{dry}");
    dry
}

#[test]
fn gc_and_du_go_through_the_running_server_or_work_alone() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let mut server = Regapp::start_with(&root, "[gc]\ngrace = \"0s\"\ninterval = \"\"\n");
    let config = server.config();
    let pusher = Pusher::new(server.host());
    let (kept, gone) = pusher.push_kept_and_gone("cli");

    let dry = du_and_dry_run(&config);
    assert!(dry.contains("collected by the running server"), "{dry}");
    assert!(
        blob_path(&root, &gone.digest).exists(),
        "a dry run deletes nothing"
    );

    let run = regapp_ok(&["gc"], &config);
    assert!(run.contains("removed: 3 blobs"), "{run}");
    assert!(!blob_path(&root, &gone.digest).exists());
    pusher.verify(&kept);
    assert!(
        server.log().contains("garbage collection done"),
        "the server logs its runs:\n{}",
        server.log()
    );
    // The server gives the space back behind the collection: its trash goes away by itself.
    let trash = root.join("regapp-trash");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while trash.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not purge {}",
            trash.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(server.log().contains("trash purged"), "{}", server.log());
    server.stop();

    let alone = regapp_ok(&["gc"], &config);
    assert!(alone.contains("collected without a server"), "{alone}");
    assert!(alone.contains("removed: 0 blobs"), "{alone}");
    let du = regapp_ok(&["du"], &config);
    assert!(du.contains("cli/kept"), "{du}");
}

/// The same on a bucket: `du` sums what is in it, `gc` deletes in place.
#[test]
fn gc_and_du_on_a_bucket_go_through_the_running_server() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("state");
    let server = Regapp::start_on_s3_with(
        &root,
        "[gc]\ngrace = \"0s\"\ninterval = \"\"\n[cluster]\nclock_skew = \"0s\"\n",
    );
    let config = server.config();
    let pusher = Pusher::new(server.host());
    let (kept, gone) = pusher.push_kept_and_gone("cli");

    du_and_dry_run(&config);
    let run = regapp_ok(&["gc"], &config);
    assert!(run.contains("removed: 3 blobs"), "{run}");
    pusher.verify(&kept);
    for (digest, _) in &gone.blobs {
        assert!(!pusher.has_blob(&gone.repo, digest), "{digest} collected");
    }
    let du = regapp_ok(&["du"], &config);
    assert!(du.contains("cli/kept"), "{du}");
}

#[test]
fn a_collection_is_refused_while_another_holds_the_lock() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let (_dir, config) = write_config(&root, "");
    // Another process collecting: it holds gc.lock.
    let lock = std::fs::File::create(root.join("gc.lock")).unwrap();
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);

    let refused = regapp(&["gc"], &config);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("a collection is already running"),
        "{stderr}"
    );

    drop(lock);
    let server = Regapp::start(&root);
    let lock = std::fs::File::open(root.join("gc.lock")).unwrap();
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let refused = regapp(&["gc"], &server.config());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("a collection is already running (another process holds"),
        "the server's run is refused too: {stderr}"
    );
    drop(lock);
    regapp_ok(&["gc"], &server.config());
}

#[test]
fn a_server_starting_during_a_command_line_collection_waits_for_it() {
    // Its pushes would not be pinned for a collector in another process.
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let lock = std::fs::File::create(root.join("gc.lock")).unwrap();
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let starting = std::thread::spawn({
        let root = root.clone();
        move || Regapp::start(&root)
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        !starting.is_finished(),
        "the server served during a collection"
    );
    drop(lock);
    let server = starting
        .join()
        .expect("the server starts once the lock is free");
    assert!(
        server
            .log()
            .contains("waiting for a command-line garbage collection to finish"),
        "{}",
        server.log()
    );
}

/// `regapp gc --config FILE` through a running server collects with the server's settings,
/// not FILE's: it prints which settings the run used and warns when FILE says otherwise.
#[test]
fn a_collection_through_the_server_says_whose_settings_it_used() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let server = Regapp::start_with(&root, "[gc]\ngrace = \"1h\"\ninterval = \"\"\n");
    let (_dir, other) = write_config(&root, "[gc]\ngrace = \"0s\"\ndelete_untagged = true\n");
    let out = regapp(&["gc", "--dry-run"], &other);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("collected by the running server, with its own settings")
            && stdout.contains("settings: grace 1h, delete_untagged false"),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "warning: {} says grace 0s, delete_untagged true",
            other.display()
        )),
        "{stderr}"
    );
    // The server's own file: the same settings, no warning.
    let same = regapp(&["gc", "--dry-run"], &server.config());
    assert!(String::from_utf8_lossy(&same.stderr).is_empty(), "{same:?}");
}

/// Nodes on one bucket collect one at a time: while another node holds the collection's lease
/// in the bucket, `regapp gc` is refused naming that node; once it is released, the collection
/// runs and the lease names this node as the last to finish one.
#[test]
fn a_collection_waits_for_another_nodes_lease_in_the_bucket() {
    use ::regapp::cluster::{Acquired, Leases};
    use ::regapp::registry::gc::GC_LEASE;
    use std::sync::Arc;

    let work = tempfile::tempdir().unwrap();
    let server = crate::util::seaweed::Seaweed::shared();
    let prefix = server.fresh_prefix();
    let node = Regapp::start_on_s3_server(
        &work.path().join("n1"),
        server,
        &prefix,
        "[cluster]\nnode = \"n1\"\n[gc]\ninterval = \"\"\n",
    );
    let config = node.config();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let driver = ::regapp::storage::S3Driver::new(&crate::util::s3_settings(server, prefix));
    let other = Leases::new(Arc::new(driver.unwrap()), "n2", Duration::from_secs(60));
    let Acquired::Held(lease) = runtime.block_on(other.try_acquire(GC_LEASE)).unwrap() else {
        panic!("nobody held the lease");
    };

    let refused = regapp(&["gc"], &config);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("a collection is already running (on node n2)"),
        "{stderr}"
    );

    assert!(runtime.block_on(lease.release(true)).unwrap());
    let run = regapp_ok(&["gc"], &config);
    assert!(run.contains("removed: 0 blobs"), "{run}");
    let holder = runtime.block_on(other.holder(GC_LEASE)).unwrap().unwrap();
    assert_eq!(holder.node, "n1");
    let (_, metrics) = crate::ops::get(node.metrics_port(), "/metrics");
    assert!(
        metrics.contains("regapp_cluster_node_info{node=\"n1\"} 1")
            && metrics.contains("regapp_cluster_lease_held{lease=\"gc\"} 0"),
        "{metrics}"
    );
    assert!(
        holder.last_finished.is_some() && holder.expires == 0,
        "{holder:?}"
    );
}
