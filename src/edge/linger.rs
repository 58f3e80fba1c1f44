//! Lingering close: what happens to a request body the edge answered before reading.
//!
//! A refusal (401, 403, 429, or the engine's 404/416 for an upload) is sent before the body is
//! read, so that nobody's gigabytes cross the network for nothing. But many clients write the
//! whole body before they read anything (Python's requests, oras-py): closing the connection
//! with their bytes unread resets it, and they see a broken connection instead of the answer.
//! Like nginx's lingering close, the edge keeps reading and dropping the body after answering,
//! within bounds nobody can stretch. Over HTTP/1.1 it then closes the connection (the answer
//! said `Connection: close`). Over HTTP/2 a body that ended leaves a cleanly closed stream;
//! one past the bounds is dropped, which resets the stream with `NO_ERROR` after the complete
//! answer (RFC 9113 §8.1) and leaves the connection's other streams alone. The reset alone,
//! without reading, would be enough for Go's clients, but curl 7.88 (Debian 12) reports it as
//! an error and drops the answer, as nginx's HTTP/2 would not make it: nginx reads and
//! discards the body there too.

use std::time::Duration;

use http::header;
use pingora::prelude::Session;
use tokio::time::Instant;

/// The longest the edge reads a body it did not want (nginx's `lingering_time`).
const LINGER_TIME: Duration = Duration::from_secs(30);
/// The longest it waits for the next piece of that body (nginx's `lingering_timeout`).
const LINGER_IDLE: Duration = Duration::from_secs(5);
/// The most it reads of that body: oras-py's chunk is 16 MiB, docker's first request carries none.
const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// After an answer sent before the request body ended: reads and drops the rest of the body
/// for at most [`LINGER_TIME`], [`LINGER_IDLE`] between pieces and
/// [`LINGER_BYTES`] in all. `continue_sent`: whether the client was told `100 Continue`; one
/// that asked for it and was not told will not send its body, so there is nothing to wait for.
pub async fn drain_unwanted_body(session: &mut Session, continue_sent: bool) {
    if session.is_body_done() {
        return;
    }
    if expects_continue(session) && !continue_sent {
        return;
    }
    session.set_read_timeout(Some(LINGER_IDLE));
    let deadline = Instant::now() + LINGER_TIME;
    let mut drained = 0;
    while drained < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, session.read_request_body()).await {
            Ok(Ok(Some(piece))) => drained += piece.len(),
            // The end of the body, a client gone or quiet, or time up: close either way.
            Ok(Ok(None) | Err(_)) | Err(_) => return,
        }
    }
}

/// Whether the client sent `Expect: 100-continue` and waits for the go-ahead before its body.
pub fn expects_continue(session: &Session) -> bool {
    session
        .req_header()
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}
