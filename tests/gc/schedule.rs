//! The in-process schedule: `[gc] interval` collects with nobody asking, and a reload that sets
//! it takes effect without a restart.

use std::time::Duration;

use super::blob_path;
use super::push::Pusher;
use crate::util::{eventually, Regapp, Registry};

#[test]
fn the_schedule_collects_by_itself_once_a_reload_sets_an_interval() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let server = Regapp::start_with(
        &root,
        "[gc]\ninterval = \"\"\ngrace = \"0s\"\ndelete_untagged = true\n",
    );
    let pusher = Pusher::new(server.host());
    let (kept, gone) = pusher.push_kept_and_gone("schedule");
    let layer = blob_path(&root, &gone.blobs[1].0);

    std::thread::sleep(Duration::from_secs(2));
    assert!(layer.exists(), "no interval, so no collection ran");

    let config = server.config();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("interval = \"\"", "interval = \"1s\""),
    )
    .unwrap();
    server.reload();
    eventually(Duration::from_secs(30), "a scheduled collection", || {
        server.log().contains("garbage collection done")
    });
    assert!(!layer.exists(), "the scheduled run removed the garbage");
    pusher.verify(&kept);
}
