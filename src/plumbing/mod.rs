//! Process plumbing the parts share and that knows nothing of them: the debounced file
//! watcher, the line protocol of the control sockets, and lowering a thread's CPU priority.

pub mod background;
pub mod control_socket;
pub mod watch;
