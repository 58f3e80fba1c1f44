//! The edge's accept loop, for :443 (TLS) and :80 (plain HTTP), in front of pingora's HTTP
//! handling.
//!
//! pingora's own loop gives a connection 60 s to finish its handshake, no way to count
//! connections per client, a 64 KiB read buffer from the moment a connection is accepted, and
//! an ERROR line for every failed handshake: 10,000 idle connections took 388 MB, and a flood
//! wrote a log line each. Here a connection is first admitted against the caps
//! ([`Connections`]), then waits for its first byte holding nothing but its socket and a small
//! task, and must finish its TLS handshake within `edge.handshake_timeout` of being accepted.
//! Failed handshakes and refusals are counted in the metrics and logged as a summary
//! ([`Tally`]). What comes after the handshake is pingora's, unchanged (`ServerApp`).

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream};
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::background::BackgroundService;
use pingora::services::Service;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout_at, Instant};

use super::connections::{self, Connections, Refusal, Slot};
use super::tally::Tally;
use crate::metrics::EdgeMetrics;
use crate::registry::api::{error_response, Code};

/// What both listeners share: the caps, the handshake deadline, and where failures go.
pub struct Gate {
    pub connections: Arc<Connections>,
    pub handshake_timeout: Duration,
    pub metrics: EdgeMetrics,
    pub tally: Tally,
}

impl Gate {
    fn refused(&self, refusal: Refusal, peer: SocketAddr) {
        self.metrics.refused(refusal.reason());
        self.tally.refused(refusal.reason(), peer.ip());
    }

    fn handshake_failed(&self, reason: &'static str) {
        self.metrics.handshake_failed(reason);
        self.tally.handshake_failed(reason);
    }
}

/// What the gate does on a schedule while the edge runs: log its summaries (`Tally`), and give
/// memory back after a flood of connections ended.
pub struct Upkeep(pub Arc<Gate>);

#[async_trait]
impl BackgroundService for Upkeep {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let trim = async {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            let mut peak = 0;
            loop {
                every.tick().await;
                connections::give_back_memory_after_floods(&self.0.connections, &mut peak);
            }
        };
        tokio::select! {
            () = self.0.tally.log_summaries() => {}
            () = trim => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// One listening socket and the pingora application its connections go to.
pub struct Listener<A> {
    name: String,
    socket: Option<StdListener>,
    tls: Option<Arc<Acceptor>>,
    app: Option<A>,
    gate: Arc<Gate>,
}

impl<A> Listener<A> {
    /// `socket` is bound already (and non-blocking), so a port in use is an error at start;
    /// `tls`: `None` for plain HTTP.
    pub fn new(
        name: &str,
        socket: StdListener,
        tls: Option<Arc<Acceptor>>,
        app: A,
        gate: Arc<Gate>,
    ) -> Listener<A> {
        Listener {
            name: name.to_owned(),
            socket: Some(socket),
            tls,
            app: Some(app),
            gate,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> Service for Listener<A> {
    async fn start_service(
        &mut self,
        _fds: Option<ListenFds>,
        mut shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let app = Arc::new(self.app.take().expect("pingora starts a service once"));
        let socket = self.socket.take().expect("pingora starts a service once");
        let listener = match TcpListener::from_std(socket) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!(listener = %self.name, error = %e, "cannot accept connections");
                return;
            }
        };
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                    continue;
                }
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors despite the caps (another part used them up): back
                    // off instead of spinning on an accept that fails at once.
                    tracing::warn!(listener = %self.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let slot = match self.gate.connections.admit(peer.ip()) {
                Ok(slot) => slot,
                Err(refusal) => {
                    // A reset, not a FIN: nothing is kept for the refused (no TIME_WAIT).
                    let _ = tcp.set_zero_linger();
                    self.gate.refused(refusal, peer);
                    continue;
                }
            };
            let connection = Connection {
                _slot: slot,
                peer,
                accepted: Instant::now(),
                gate: self.gate.clone(),
            };
            tokio::spawn(connection.serve(tcp, self.tls.clone(), app.clone(), shutdown.clone()));
        }
        app.cleanup().await;
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// One admitted connection, holding its place until it ends.
struct Connection {
    _slot: Slot,
    peer: SocketAddr,
    accepted: Instant,
    gate: Arc<Gate>,
}

impl Connection {
    async fn serve<A: ServerApp + Send + Sync + 'static>(
        self,
        tcp: TcpStream,
        tls: Option<Arc<Acceptor>>,
        app: Arc<A>,
        shutdown: ShutdownWatch,
    ) {
        let deadline = self.accepted + self.gate.handshake_timeout;
        let mut first = [0u8; 1];
        match timeout_at(deadline, tcp.peek(&mut first)).await {
            Err(_) => {
                self.gate.handshake_failed("timeout");
                return;
            }
            // Connected and left without a word (a port probe, a readiness check): not a
            // handshake, nothing to count.
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(_)) => {}
        }
        // Only now does the connection get buffers and TLS state: the rest of its life is
        // boxed, so an idle connection's task stays small.
        Box::pin(self.speak(tcp, first[0], tls, app, shutdown)).await;
    }

    async fn speak<A: ServerApp + Send + Sync + 'static>(
        self,
        tcp: TcpStream,
        first: u8,
        tls: Option<Arc<Acceptor>>,
        app: Arc<A>,
        shutdown: ShutdownWatch,
    ) {
        let stream: Stream = match tls {
            Some(acceptor) => {
                if first != TLS_HANDSHAKE_RECORD {
                    self.gate.handshake_failed("not_tls");
                    if first.is_ascii_uppercase() {
                        answer_plain_http(tcp).await;
                    }
                    return;
                }
                let deadline = self.accepted + self.gate.handshake_timeout;
                match timeout_at(deadline, acceptor.tls_handshake(self.l4(tcp))).await {
                    Ok(Ok(stream)) => Box::new(stream),
                    Ok(Err(e)) => {
                        self.gate.handshake_failed(failure_reason(&e));
                        return;
                    }
                    Err(_) => {
                        self.gate.handshake_failed("timeout");
                        return;
                    }
                }
            }
            None => Box::new(self.l4(tcp)),
        };
        let mut next = app.process_new(stream, &shutdown).await;
        while let Some(stream) = next {
            next = app.process_new(stream, &shutdown).await;
        }
    }

    /// The socket as pingora's sessions expect it: with the client's address in its digest.
    fn l4(&self, tcp: TcpStream) -> L4Stream {
        use std::os::fd::AsRawFd;
        let _ = tcp.set_nodelay(true);
        let digest = SocketDigest::from_raw_fd(tcp.as_raw_fd());
        let _ = digest.peer_addr.set(Some(PeerAddr::from(self.peer)));
        let mut stream = L4Stream::from(tcp);
        stream.set_socket_digest(digest);
        stream
    }
}

/// The first byte of every TLS connection: a handshake record (RFC 8446 §5.1).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Plain HTTP sent to the TLS port (`http://registry:443`): a 400 that says so, as nginx does,
/// instead of a connection that closes with no word.
async fn answer_plain_http(mut tcp: TcpStream) {
    let answer = error_response(
        http::StatusCode::BAD_REQUEST,
        Code::Unsupported,
        "this port speaks HTTPS: use https:// in the registry's address",
    );
    let mut head = String::from("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n");
    for (name, value) in answer.headers() {
        head.push_str(&format!(
            "{name}: {}\r\n",
            value.to_str().unwrap_or_default()
        ));
    }
    head.push_str("\r\n");
    let exchange = async {
        // What the client sent is read (not answered) first, so closing does not reset the
        // connection under the answer.
        let mut request = vec![0u8; 16 * 1024];
        let _ = tcp.read(&mut request).await?;
        tcp.write_all(head.as_bytes()).await?;
        tcp.write_all(answer.body()).await?;
        tcp.shutdown().await?;
        Ok::<_, io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), exchange).await;
}

/// The metrics' reason for a handshake that failed with `error`.
fn failure_reason(error: &pingora::Error) -> &'static str {
    let Some(io) = error.root_cause().downcast_ref::<io::Error>() else {
        return "protocol";
    };
    match io.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => "closed",
        _ => match io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(rustls::Error::AlertReceived(_)) => "alert",
            _ => "protocol",
        },
    }
}
