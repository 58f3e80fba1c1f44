//! The engine's own HTTP/1.1 listener (and h2c), on a loopback address.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::Api;
use deadlines::{Clock, Timed, Tracked};

mod deadlines;
#[cfg(test)]
mod tests;

pub use deadlines::{HEADER_READ_TIMEOUT, IDLE_TIMEOUT};

/// The most hyper reads from a connection at once. Every body chunk handed to storage is a slice
/// of one such read and keeps its buffer alive until written and hashed, so this bounds the memory
/// an upload holds: 256 KiB holds about half of hyper's default for the same CPU per GiB, where
/// smaller reads cost CPU.
const READ_BUFFER_MAX: usize = 256 * 1024;

/// Serves `api` on `listener` until `shutdown` completes, then lets open requests finish for
/// up to `drain`.
pub async fn serve(
    listener: TcpListener,
    api: Api,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(READ_BUFFER_MAX)
        .timer(TokioTimer::new())
        // `deadlines` times headers; hyper's own timeout would also cut idle kept-alive ones.
        .header_read_timeout(None);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let api = api.clone();
        let clock = Clock::accepted();
        let stream = Timed::new(stream, clock.clone());
        let service = service_fn(move |request| {
            let api = api.clone();
            let in_flight = clock.request_began();
            async move {
                let response = api.handle(request).await;
                Ok::<_, Infallible>(response.map(|body| Tracked::new(body, in_flight)))
            }
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(drain) => tracing::warn!("drain period over; closing open connections"),
    }
    Ok(())
}

/// Binds the engine's listener, reporting the address that was really bound (port 0 picks one).
pub async fn bind(addr: SocketAddr) -> io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}
