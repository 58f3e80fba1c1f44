//! Blob downloads and uploads without the loopback hop.
//!
//! Pushes and pulls are the requests whose cost is all bytes. Through the loopback proxy every
//! GiB crossed a socket twice more — written by one side, read back by the other — a large
//! share of the edge's CPU per GiB pulled. For these requests the edge
//! calls the engine's request handler in-process instead — the same routing, access rules,
//! metrics and log line as over the socket: a download's file chunks go from the engine's
//! reader straight into the client's TLS stream, and an upload's body goes from the client's
//! stream straight to the engine's hasher and writer. Every other request (manifests, tags,
//! `HEAD`) still goes to the engine over 127.0.0.1.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Method;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty};
use pingora::http::RequestHeader;
use pingora::prelude::{Result, Session};
use pingora::{Error, ErrorType};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};

use super::linger;
use crate::registry::api::{Api, Caller, Response, ResponseBody, Route};
use crate::registry::store::batcher::Batcher;
use crate::registry::store::byte_budget::ByteBudget;

/// Bytes read from the client and not yet taken by the engine, per upload: lets reading from
/// the client and the engine's stages overlap. Counted in bytes, not chunks, because a chunk is
/// a batch of the client's reads (see `pump_body`) or one large h2 DATA frame, and the end of a
/// body is smaller. 1 MiB (four 256 KiB batches) pushes faster than one batch's worth (the
/// engine bench). On top of it the pump holds the batch it is gathering.
const BODY_QUEUE_BYTES: usize = 1024 * 1024;
/// The queue's room is counted in these; a smaller chunk still takes one.
const BODY_QUEUE_UNIT: usize = 16 * 1024;
const BODY_QUEUE_UNITS: usize = BODY_QUEUE_BYTES / BODY_QUEUE_UNIT;

/// Download chunks read ahead of an h2 stream (see [`read_ahead`]).
const READ_AHEAD: usize = 4;

/// The route, when the engine's handler answers `request` in-process: a `GET` of a blob, or
/// any request on an upload session (`POST`, `PATCH`, `PUT`, status, cancel).
pub fn in_process_route(request: &RequestHeader) -> Option<Route> {
    match Route::parse(request.uri.path()) {
        Ok(route @ Route::Blob(..)) if request.method == Method::GET => Some(route),
        Ok(route @ (Route::Uploads(..) | Route::Upload(..))) => Some(route),
        _ => None,
    }
}

/// The engine's answer, and whether the client was told to send its body.
pub struct Answer {
    pub response: Response,
    /// The engine asked for the body (and a client that sent `Expect: 100-continue` was told
    /// to go on): what the engine left unread is still coming.
    pub body_wanted: bool,
}

/// The engine's answer to `request` (headers already as the engine expects them from the
/// edge), its body read from the client through `session` only once the engine asks for it.
///
/// Until then nothing is read, and a client that sent `Expect: 100-continue` is told to go on
/// only at that point: a request the engine refuses first (no such upload, not allowed) is
/// answered without its body crossing the network.
pub async fn ask_engine(
    api: &Api,
    caller: Caller,
    route: Route,
    request: &RequestHeader,
    session: &mut Session,
) -> Result<Answer> {
    if request.method == Method::GET {
        // A download: no body to pump, and nothing to gain from a task of its own.
        let request = http::Request::from_parts(request.as_owned_parts(), Empty::<Bytes>::new());
        return Ok(Answer {
            response: api.handle_from_front(caller, route, request).await,
            body_wanted: false,
        });
    }
    // The room bounds the bytes; the channel only needs to hold as many chunks as fit in it.
    let (chunks, queue) = mpsc::channel(BODY_QUEUE_UNITS);
    let (wanted, asked) = oneshot::channel();
    let body = ClientBody {
        queue,
        wanted: Some(wanted),
        ended: false,
    };
    let request = http::Request::from_parts(request.as_owned_parts(), body);
    // An upload: the engine runs as a task of its own, as it did behind its socket, so that
    // receiving from the client (TLS) and the engine's hashing and writing use both cores.
    let api = api.clone();
    let mut handler =
        tokio::spawn(async move { api.handle_from_front(caller, route, request).await });
    let body_wanted = AtomicBool::new(false);
    let pump = pump_body(session, chunks, asked, &body_wanted);
    tokio::pin!(pump);
    let mut pumped = None;
    let answer = loop {
        tokio::select! {
            answer = &mut handler => break answer,
            result = &mut pump, if pumped.is_none() => pumped = Some(result),
        }
    };
    let answer = answer.map_err(|e| Error::because(ErrorType::InternalError, "engine task", e))?;
    match pumped {
        // The client went quiet or away mid-body: the engine kept what arrived (the upload can
        // be resumed) and the edge answers as it does for a proxied request (`fail_to_proxy`).
        Some(Err(e)) => Err(e),
        _ => Ok(Answer {
            response: answer,
            body_wanted: body_wanted.load(Ordering::Relaxed),
        }),
    }
}

/// What the pump hands the engine: a chunk, the end of the body, or why it stopped.
type Piece = io::Result<Option<Queued>>;

/// A chunk holding its share of the queue's room until the engine takes it.
struct Queued {
    chunk: Bytes,
    _room: OwnedSemaphorePermit,
}

/// Moves the request body from the client to the engine once the engine first asks for it.
async fn pump_body(
    session: &mut Session,
    chunks: mpsc::Sender<Piece>,
    asked: oneshot::Receiver<()>,
    body_wanted: &AtomicBool,
) -> Result<()> {
    if asked.await.is_err() {
        // The engine answered without reading the body.
        return Ok(());
    }
    body_wanted.store(true, Ordering::Relaxed);
    if linger::expects_continue(session) {
        session
            .write_continue_response()
            .await
            .map_err(|e| e.into_down())?;
    }
    let room = ByteBudget::new(BODY_QUEUE_BYTES, BODY_QUEUE_UNIT);
    // The engine's task is woken once per batch rather than once per read: over HTTP/1.1
    // pingora reads 64 KiB at a time.
    let mut batcher = Batcher::default();
    loop {
        let read = session.read_request_body().await;
        let batch = match &read {
            Ok(Some(chunk)) => batcher.add(chunk.clone()),
            // What arrived before the end, or before a failure, goes first: the engine keeps
            // it and the client resumes after it.
            Ok(None) | Err(_) => batcher.rest(),
        };
        if let Some(batch) = batch {
            let queued = Queued {
                _room: room.take(batch.len()).await,
                chunk: batch,
            };
            if chunks.send(Ok(Some(queued))).await.is_err() {
                return Ok(());
            }
        }
        match read {
            Ok(Some(_)) => {}
            Ok(None) => {
                let _ = chunks.send(Ok(None)).await;
                return Ok(());
            }
            Err(e) => {
                let _ = chunks.send(Err(io::Error::other(e.to_string()))).await;
                return Err(e.into_down());
            }
        }
    }
}

/// The request body as the engine reads it; its first read tells the pump to start.
struct ClientBody {
    queue: mpsc::Receiver<Piece>,
    wanted: Option<oneshot::Sender<()>>,
    ended: bool,
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Some(wanted) = self.wanted.take() {
            let _ = wanted.send(());
        }
        let piece = match self.queue.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(piece) => piece,
        };
        Poll::Ready(match piece {
            Some(Ok(Some(queued))) => Some(Ok(Frame::data(queued.chunk))),
            Some(Ok(None)) => {
                self.ended = true;
                None
            }
            Some(Err(e)) => Some(Err(e)),
            // The edge's side went away mid-body (its request was dropped): a cut-off body
            // is an error, never a shorter upload.
            None => Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the request body was cut off",
            ))),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

/// The next chunk of the answer's body, or `None` at its end. A read error ends the download
/// with an error, so the client sees a short body, never a wrong one.
pub async fn next_chunk(body: &mut ResponseBody) -> Result<Option<Bytes>> {
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| Error::because(ErrorType::ReadError, "reading the blob", e))?;
        if let Ok(data) = frame.into_data() {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

/// Chunks of a download read ahead on a task of their own, while this one hands the previous
/// ones to h2. An h2 stream's frames are written by the connection's task, not the request's,
/// so reading the file on the request's task left the two waiting for each other (slower
/// pulls); over HTTP/1.1 the request's task writes the TLS stream itself and
/// reading on it costs nothing extra.
pub fn read_ahead(mut body: ResponseBody) -> mpsc::Receiver<Result<Bytes>> {
    let (chunks, queue) = mpsc::channel(READ_AHEAD);
    tokio::spawn(async move {
        loop {
            let next = next_chunk(&mut body).await.transpose();
            let Some(next) = next else { return };
            let failed = next.is_err();
            if chunks.send(next).await.is_err() || failed {
                return;
            }
        }
    });
    queue
}
