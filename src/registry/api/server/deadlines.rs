//! Read deadlines of the engine's listener, as nginx and Go's net/http set them. A request's
//! header must arrive within [`HEADER_READ_TIMEOUT`] of its first byte (of the accept, for a new
//! connection); between requests a kept-alive connection may idle for [`IDLE_TIMEOUT`], longer
//! than proxies' and clients' pools keep one, so that they close first and never send a request
//! into a connection the engine is closing. hyper's own header timeout runs while a connection
//! idles too, which cut kept-alive connections under a client's pool.
//!
//! [`Clock`] is one connection's phase: the stream wrapper [`Timed`] moves it from idle to
//! header on the first byte read and enforces the phase's deadline on reads; the service moves
//! it to busy for as long as a request is being answered ([`InFlight`], dropped with the
//! response body). While a request is in flight no deadline applies here (the body's pace is
//! the handler's business). h2c connections have no header phase: any frame keeps them alive.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::registry::api::ResponseBody;

/// How long a request's header may take from its first byte (or a new connection from its accept).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a kept-alive connection may wait for its next request. Above nginx's upstream
/// `keepalive_timeout` (60 s) and the 90 s idle time of Go's and hyper's client pools.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// h2's connection preface starts with these bytes; no HTTP/1.1 method does.
const H2_PREFACE_START: &[u8; 4] = b"PRI ";

#[derive(Clone, Copy)]
enum Phase {
    /// Waiting for the first byte of the next request since then.
    Idle(Instant),
    /// Reading a request's header since its first byte.
    Header(Instant),
    /// This many requests are being answered.
    Busy(usize),
}

/// One connection's phase, shared by its stream and its service.
#[derive(Clone)]
pub struct Clock(Arc<Mutex<State>>);

struct State {
    phase: Phase,
    /// The first bytes read, until there are four: tell h2c from HTTP/1.1.
    start: Vec<u8>,
    h2: bool,
    /// The read that found no deadline while busy: woken when the idle time starts, to set it.
    reader: Option<Waker>,
}

impl Clock {
    /// A new connection: its first request's header is due within the header timeout.
    pub fn accepted() -> Clock {
        Clock(Arc::new(Mutex::new(State {
            phase: Phase::Header(Instant::now()),
            start: Vec::with_capacity(H2_PREFACE_START.len()),
            h2: false,
            reader: None,
        })))
    }

    /// A request's header is in: no deadline until the returned guard is dropped.
    pub fn request_began(&self) -> InFlight {
        let mut state = self.lock();
        state.phase = match state.phase {
            Phase::Busy(n) => Phase::Busy(n + 1),
            Phase::Idle(_) | Phase::Header(_) => Phase::Busy(1),
        };
        InFlight(self.clone())
    }

    fn read(&self, bytes: &[u8]) {
        let mut state = self.lock();
        if state.start.len() < H2_PREFACE_START.len() {
            let take = (H2_PREFACE_START.len() - state.start.len()).min(bytes.len());
            state.start.extend_from_slice(&bytes[..take]);
            state.h2 = state.start == H2_PREFACE_START;
        }
        state.phase = match state.phase {
            Phase::Idle(_) if state.h2 => Phase::Idle(Instant::now()),
            Phase::Idle(_) => Phase::Header(Instant::now()),
            Phase::Header(_) if state.h2 => Phase::Idle(Instant::now()),
            phase => phase,
        };
    }

    /// The current phase's deadline; while busy there is none and `waker` is called once the
    /// connection turns idle.
    fn deadline(&self, waker: &Waker) -> Option<Instant> {
        let mut state = self.lock();
        match state.phase {
            Phase::Idle(since) => Some(since + IDLE_TIMEOUT),
            Phase::Header(since) => Some(since + HEADER_READ_TIMEOUT),
            Phase::Busy(_) => {
                state.reader = Some(waker.clone());
                None
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A request being answered; dropping it (with the response body) starts the idle time.
pub struct InFlight(Clock);

impl Drop for InFlight {
    fn drop(&mut self) {
        let reader = {
            let mut state = self.0.lock();
            state.phase = match state.phase {
                Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
                _ => Phase::Idle(Instant::now()),
            };
            match state.phase {
                Phase::Idle(_) => state.reader.take(),
                _ => None,
            }
        };
        if let Some(reader) = reader {
            reader.wake();
        }
    }
}

/// A response body that holds its request's [`InFlight`] until hyper is done with it.
pub struct Tracked {
    body: ResponseBody,
    _in_flight: InFlight,
}

impl Tracked {
    pub fn new(body: ResponseBody, in_flight: InFlight) -> Tracked {
        Tracked {
            body,
            _in_flight: in_flight,
        }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's stream whose reads fail with `TimedOut` once its [`Clock`]'s deadline passed.
pub struct Timed<S> {
    inner: S,
    clock: Clock,
    sleep: Pin<Box<Sleep>>,
}

impl<S> Timed<S> {
    pub fn new(inner: S, clock: Clock) -> Timed<S> {
        let sleep = Box::pin(tokio::time::sleep(HEADER_READ_TIMEOUT));
        Timed {
            inner,
            clock,
            sleep,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.clock.read(&buf.filled()[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let Some(deadline) = self.clock.deadline(cx.waker()) else {
                    return Poll::Pending;
                };
                if self.sleep.deadline() != deadline {
                    self.sleep.as_mut().reset(deadline);
                }
                match self.sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request header in time",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => ready,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Timed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
