//! `regapp cert status|renew` ↔ the running server, over `control.sock` in the state directory
//! (0600 in a 0700 directory), with the line protocol of `control_socket`: the client sends
//! `status` or `renew`; the report is the certificate status.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::manager::{AcmeManager, ATTEMPT_TIMEOUT};
use crate::plumbing::control_socket::{self, ControlError};

/// Binds the control socket, replacing a stale one left by a crash; refuses if another process
/// answers on it.
pub fn bind(path: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    control_socket::bind(
        path,
        "another regapp answers on this control socket (same acme.state_dir?)",
    )
}

/// Answers on `listener` forever (inside a Tokio runtime).
pub async fn serve(listener: std::os::unix::net::UnixListener, manager: Arc<AcmeManager>) {
    control_socket::serve(listener, "control socket", "regapp cert", move |line, _| {
        let manager = manager.clone();
        async move { answer(&line, &manager).await }
    })
    .await
}

async fn answer(line: &str, manager: &AcmeManager) -> String {
    match line {
        "status" => format!("{}ok\n", manager.status_now().await.report()),
        "renew" => {
            tracing::info!("renewal forced through the control socket");
            match manager.renew_now().await {
                Ok(_) => format!("{}ok\n", manager.status_now().await.report()),
                Err(e) => format!("error: {e}\n"),
            }
        }
        other => format!("error: unknown command {other:?} (expected status or renew)\n"),
    }
}

/// Sends `command` and returns the server's report (without the final `ok`).
pub fn request(path: &Path, command: &str) -> Result<String, ControlError> {
    // A renewal may take a whole attempt; allow it that and a little more.
    control_socket::request(
        path,
        command,
        Some(ATTEMPT_TIMEOUT + Duration::from_secs(30)),
        |_| {},
    )
}

/// What to tell an operator whose `regapp cert` found no server.
pub fn not_running(error: &ControlError) -> String {
    format!(
        "regapp is not running with this acme.state_dir ({error}); start it (systemctl start \
         regapp) and try again"
    )
}
