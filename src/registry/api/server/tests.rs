//! The listener's deadlines on virtual time: a connection over an in-memory pipe, served the
//! way `serve` serves one.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;

use super::deadlines::{Clock, Timed, Tracked, HEADER_READ_TIMEOUT, IDLE_TIMEOUT};

const REQUEST: &[u8] = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n";

/// Serves one connection whose handler takes `handling` per request; returns the client's end.
fn connection(handling: Duration) -> DuplexStream {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let clock = Clock::accepted();
    let stream = Timed::new(server, clock.clone());
    let service = service_fn(move |_request| {
        let in_flight = clock.request_began();
        async move {
            tokio::time::sleep(handling).await;
            let body = Full::new(Bytes::from_static(b"{}"))
                .map_err(|never| match never {})
                .boxed_unsync();
            Ok::<_, Infallible>(http::Response::new(Tracked::new(body, in_flight)))
        }
    });
    tokio::spawn(async move {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None);
        let _ = builder
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
    client
}

/// Reads one response (small, whole in one read on the pipe).
async fn response(client: &mut DuplexStream) -> String {
    let mut buf = vec![0; 4096];
    let n = client.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Waits until the server closes the connection; returns how long that took.
async fn closed_after(client: &mut DuplexStream) -> Duration {
    let start = Instant::now();
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest).await;
    start.elapsed()
}

fn near(got: Duration, want: Duration) -> bool {
    got >= want && got < want + Duration::from_secs(1)
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_sends_nothing_goes_at_the_header_deadline() {
    let mut client = connection(Duration::ZERO);
    let waited = closed_after(&mut client).await;
    assert!(near(waited, HEADER_READ_TIMEOUT), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_kept_alive_connection_idles_past_the_header_deadline() {
    let mut client = connection(Duration::ZERO);
    client.write_all(REQUEST).await.unwrap();
    assert!(response(&mut client).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(HEADER_READ_TIMEOUT * 3).await;
    client.write_all(REQUEST).await.unwrap();
    assert!(response(&mut client).await.starts_with("HTTP/1.1 200"));
    let waited = closed_after(&mut client).await;
    assert!(near(waited, IDLE_TIMEOUT), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn half_a_header_goes_at_the_header_deadline_from_its_first_byte() {
    let mut client = connection(Duration::ZERO);
    client.write_all(REQUEST).await.unwrap();
    assert!(response(&mut client).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_secs(30)).await;
    client.write_all(b"GET /v2/ HTTP/1.1\r\nHo").await.unwrap();
    let waited = closed_after(&mut client).await;
    assert!(near(waited, HEADER_READ_TIMEOUT), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_request_in_flight_has_no_deadline() {
    let handling = IDLE_TIMEOUT * 2;
    let mut client = connection(handling);
    let start = Instant::now();
    client.write_all(REQUEST).await.unwrap();
    assert!(response(&mut client).await.starts_with("HTTP/1.1 200"));
    assert!(start.elapsed() >= handling);
}
