//! The HTTPS side: authenticate, then stream the request to the engine and the answer back
//! (blob downloads and uploads go through the engine's handler in-process: `in_process.rs`).
//!
//! Bodies are never buffered here: pingora moves them in 64 KiB pieces through a small channel,
//! so memory stays flat and backpressure reaches the client. A request that fails
//! authentication is answered from `request_filter`, before its body is read.
//!
//! With `auth.anonymous_pull`, a GET or HEAD without credentials goes to the engine with no
//! user, and the engine's access rules decide; a request without credentials that could never
//! be allowed (any other method) is still refused here. Which repositories a user may touch is
//! the engine's call (it knows the routes): it answers 403 `DENIED`, or 401 for a client without
//! credentials, to which the challenge is added here.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::{header, StatusCode};
use http_body::Body as _;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::{HttpPeer, ProxyHttp, Result, Session};
use pingora::proxy::FailToProxy;

use super::drain::{InFlight, Ticket};
use super::headers::{HSTS, OWNED_BY_EDGE, SECURITY_HEADERS};
use super::in_process;
use super::linger;
use crate::auth::access::Access;
use arc_swap::ArcSwap;

use crate::auth::{AuthDecision, Authenticator};
use crate::certs::CertResolver;
use crate::metrics::{Metrics, CONTENT_TYPE as METRICS_CONTENT_TYPE};
use crate::registry::api::{
    error_response, Api, Caller, Code, Route, FRONT_TOKEN_HEADER, FRONT_USER_HEADER,
    REQUEST_ID_HEADER,
};
use ipnet::IpNet;

/// How the edge reaches the engine and whom it lets in.
pub struct EdgeProxy {
    pub engine: SocketAddr,
    pub front_token: String,
    pub authenticator: Authenticator,
    pub realm: String,
    pub allow: Vec<IpNet>,
    /// Load balancers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpNet>,
    /// Asked per response whether the certificate is self-signed: HSTS only for a real one.
    pub certificates: Arc<CertResolver>,
    pub in_flight: InFlight,
    /// The longest a read from or a write to the client may wait.
    pub idle_timeout: Duration,
    /// The access rules in force: read here only for `anonymous_pull`.
    pub access: Arc<Access>,
    pub metrics: Metrics,
    /// Who may read `/metrics` here (no Basic Auth: a scraper's address is its credential).
    pub metrics_allow: Arc<ArcSwap<Vec<IpNet>>>,
    /// The engine's request handler, called in-process for blob downloads and uploads.
    pub engine_api: Api,
}

/// What one request carries from filter to filter.
pub struct RequestContext {
    _in_flight: Ticket,
    started: Instant,
    client: Option<IpAddr>,
    user: Option<String>,
    /// Let in without credentials (anonymous pull).
    anonymous: bool,
    /// Logged in the access log, passed to the engine (its log lines carry it) and returned.
    request_id: String,
}

impl EdgeProxy {
    fn challenge(&self) -> (header::HeaderName, String) {
        (
            header::WWW_AUTHENTICATE,
            format!("Basic realm=\"{}\"", self.realm.replace('"', "'")),
        )
    }

    fn allowed(&self, client: Option<IpAddr>) -> bool {
        self.allow.is_empty()
            || client.is_some_and(|ip| self.allow.iter().any(|net| net.contains(&ip)))
    }

    fn metrics_allowed(&self, client: Option<IpAddr>) -> bool {
        let allow = self.metrics_allow.load();
        client.is_some_and(|ip| allow.iter().any(|net| net.contains(&ip)))
    }

    /// `/metrics` for a client in `[metrics] allow`: the same text as the metrics listener's.
    async fn serve_metrics(&self, session: &mut Session, ctx: &RequestContext) -> Result<bool> {
        let body = bytes::Bytes::from(self.metrics.render());
        let mut response = ResponseHeader::build(StatusCode::OK, Some(4))?;
        response.insert_header(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)?;
        response.insert_header(header::CONTENT_LENGTH, body.len().to_string())?;
        response.insert_header(REQUEST_ID_HEADER, ctx.request_id.as_str())?;
        self.answer(session, response, body).await
    }

    /// Sends an answer made at the edge (the engine never sees the request): the security
    /// headers every answer carries, then the whole body. Returns true: the request is done.
    async fn answer(
        &self,
        session: &mut Session,
        mut response: ResponseHeader,
        body: bytes::Bytes,
    ) -> Result<bool> {
        self.add_security_headers(&mut response)?;
        session
            .write_response_header(Box::new(response), false)
            .await?;
        session.write_response_body(Some(body), true).await?;
        Ok(true)
    }

    /// Basic Auth against htpasswd: a known user goes in, a client without credentials goes
    /// in for a pull when anonymous pulls are on, everyone else gets the challenge (or a
    /// 429 with `Retry-After` when the login limits hold them back).
    async fn authenticate(&self, session: &mut Session, ctx: &mut RequestContext) -> Result<bool> {
        let authorization = session
            .req_header()
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let client = ctx.client.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let method = &session.req_header().method;
        let may_pull_anonymously = (method == http::Method::GET || method == http::Method::HEAD)
            && self.access.current().anonymous_pull();
        match self
            .authenticator
            .check(authorization.as_deref(), client)
            .await
        {
            AuthDecision::Allowed { user } => {
                self.metrics.auth.success();
                ctx.user = Some(user);
                self.let_in(session, ctx).await
            }
            // No credentials (containers/image sends an empty `user:password` then, which is
            // no credentials too): the engine decides what an anonymous client may pull.
            AuthDecision::MissingCredentials if may_pull_anonymously => {
                ctx.anonymous = true;
                self.let_in(session, ctx).await
            }
            refused => self.refuse_login(session, ctx, refused).await,
        }
    }

    async fn refuse_login(
        &self,
        session: &mut Session,
        ctx: &mut RequestContext,
        refused: AuthDecision,
    ) -> Result<bool> {
        let (status, code, detail, extra) = match refused {
            AuthDecision::Limited {
                retry_after,
                address_wide,
            } => {
                self.metrics.auth.rate_limited();
                let detail = if address_wide {
                    "too many failed logins from this address"
                } else {
                    "too many failed logins for this user from this address"
                };
                let retry = (header::RETRY_AFTER, retry_after.as_secs().to_string());
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    Code::TooManyRequests,
                    detail,
                    retry,
                )
            }
            refused => {
                let (detail, reason) = if refused == AuthDecision::Denied {
                    ("unknown user or wrong password", "denied")
                } else {
                    ("authentication required", "missing")
                };
                self.metrics.auth.failure(reason);
                (
                    StatusCode::UNAUTHORIZED,
                    Code::Unauthorized,
                    detail,
                    self.challenge(),
                )
            }
        };
        self.refuse_unread(session, ctx, status, code, detail, &[extra])
            .await
    }

    /// After authentication: a blob download or upload is answered here through the engine's
    /// handler in-process (see `in_process`); every other request goes on to the engine over
    /// loopback.
    async fn let_in(&self, session: &mut Session, ctx: &mut RequestContext) -> Result<bool> {
        if let Some(route) = in_process::in_process_route(session.req_header()) {
            return self.answer_in_process(session, ctx, route).await;
        }
        Ok(false)
    }

    /// Who the engine is told asks.
    fn caller(ctx: &RequestContext) -> Caller {
        match &ctx.user {
            Some(user) => Caller::User(user.clone()),
            None => Caller::Anonymous,
        }
    }

    /// The request as the engine gets it over loopback: the forwarded headers, plus the front
    /// token and the user, which the engine's listener reads back.
    fn engine_request_headers(
        &self,
        client: &RequestHeader,
        upstream: &mut RequestHeader,
        ctx: &RequestContext,
    ) -> Result<()> {
        self.forwarded_headers(client, upstream, ctx)?;
        upstream.insert_header(FRONT_TOKEN_HEADER, self.front_token.as_str())?;
        if let Some(user) = &ctx.user {
            upstream.insert_header(FRONT_USER_HEADER, user.as_str())?;
        }
        Ok(())
    }

    /// The edge's own headers (forwarded-for/proto/host, request id) in place of whatever the
    /// client sent under those names, and of any it sent under the front's identity headers.
    fn forwarded_headers(
        &self,
        client: &RequestHeader,
        upstream: &mut RequestHeader,
        ctx: &RequestContext,
    ) -> Result<()> {
        for name in OWNED_BY_EDGE {
            upstream.remove_header(name);
        }
        upstream.remove_header(&header::AUTHORIZATION);
        if let Some(ip) = ctx.client {
            upstream.insert_header("x-forwarded-for", ip.to_string())?;
        }
        upstream.insert_header("x-forwarded-proto", "https")?;
        let host = client
            .headers
            .get(header::HOST)
            .cloned()
            .or_else(|| client.uri.authority().and_then(|a| a.as_str().parse().ok()));
        if let Some(host) = host {
            upstream.insert_header("x-forwarded-host", host)?;
        }
        upstream.insert_header(REQUEST_ID_HEADER, ctx.request_id.as_str())?;
        Ok(())
    }

    /// The engine's answer as the client gets it: the request id, the security headers and,
    /// for a client let in without credentials, the challenge where it needs one.
    fn client_response_headers(
        &self,
        path: &str,
        upstream: &mut ResponseHeader,
        ctx: &RequestContext,
    ) -> Result<()> {
        // For a client let in without credentials: a 401 (the rules let anonymous not pull
        // this) carries the challenge, so a client that has credentials retries with them. So
        // does the 200 of `/v2/`: docker ignores a challenge on a 200 and pulls anonymously,
        // while containers/image (podman, skopeo, buildah) records it and sends its
        // credentials from then on — without it, they would push without credentials.
        if ctx.anonymous
            && (upstream.status == StatusCode::UNAUTHORIZED || matches!(path, "/v2/" | "/v2"))
        {
            let (name, value) = self.challenge();
            upstream.insert_header(name, value)?;
        }
        upstream.insert_header(REQUEST_ID_HEADER, ctx.request_id.as_str())?;
        self.add_security_headers(upstream)
    }

    /// Answers through the engine's handler, called in-process: the same access rules, metrics
    /// and log line as over loopback, the request body read from the client as the engine
    /// consumes it and the answer's chunks written straight into the client's stream.
    async fn answer_in_process(
        &self,
        session: &mut Session,
        ctx: &mut RequestContext,
        route: Route,
    ) -> Result<bool> {
        let mut request = session.req_header().clone();
        self.forwarded_headers(session.req_header(), &mut request, ctx)?;
        let caller = Self::caller(ctx);
        let answer =
            in_process::ask_engine(&self.engine_api, caller, route, &request, session).await?;
        let (parts, mut body) = answer.response.into_parts();
        let mut response = ResponseHeader::build(parts.status, Some(parts.headers.len() + 4))?;
        for (name, value) in &parts.headers {
            response.append_header(name.clone(), value.clone())?;
        }
        self.client_response_headers(session.req_header().uri.path(), &mut response, ctx)?;
        let bodiless = body.is_end_stream();
        // A failed write is the client's doing (gone, or a cancelled h2 stream): marked as
        // such, it is not logged as the server's error (`suppress_error_log`).
        session
            .write_response_header(Box::new(response), bodiless)
            .await
            .map_err(|e| e.into_down())?;
        if !bodiless {
            if session.is_http2() {
                let mut chunks = in_process::read_ahead(body);
                while let Some(chunk) = chunks.recv().await {
                    let chunk = chunk?;
                    session
                        .write_response_body(Some(chunk), false)
                        .await
                        .map_err(|e| e.into_down())?;
                }
            } else {
                while let Some(chunk) = in_process::next_chunk(&mut body).await? {
                    session
                        .write_response_body(Some(chunk), false)
                        .await
                        .map_err(|e| e.into_down())?;
                }
            }
            session
                .write_response_body(None, true)
                .await
                .map_err(|e| e.into_down())?;
        }
        linger::drain_unwanted_body(session, answer.body_wanted).await;
        Ok(true)
    }

    fn add_security_headers(&self, response: &mut ResponseHeader) -> Result<()> {
        for (name, value) in SECURITY_HEADERS {
            response.insert_header(name, value)?;
        }
        if self
            .certificates
            .info()
            .is_some_and(|cert| !cert.self_signed)
        {
            response.insert_header(HSTS.0, HSTS.1)?;
        }
        Ok(())
    }

    /// Answers from the edge with the spec's JSON error body; the request body is not read.
    async fn refuse(
        &self,
        session: &mut Session,
        request_id: &str,
        status: StatusCode,
        code: Code,
        detail: &str,
        extra: &[(header::HeaderName, String)],
    ) -> Result<bool> {
        let (parts, body) = error_response(status, code, detail).into_parts();
        let mut response = ResponseHeader::build(status, Some(parts.headers.len() + 4))?;
        for (name, value) in &parts.headers {
            response.insert_header(name.clone(), value.clone())?;
        }
        response.insert_header(REQUEST_ID_HEADER, request_id)?;
        for (name, value) in extra {
            response.insert_header(name.clone(), value.as_str())?;
        }
        self.answer(session, response, body).await
    }

    /// Refuses a request before its body was read, then lingers over what the client still
    /// sends of it (`linger`), so a client that writes the whole body first sees the answer.
    async fn refuse_unread(
        &self,
        session: &mut Session,
        ctx: &RequestContext,
        status: StatusCode,
        code: Code,
        detail: &str,
        extra: &[(header::HeaderName, String)],
    ) -> Result<bool> {
        self.refuse(session, &ctx.request_id, status, code, detail, extra)
            .await?;
        linger::drain_unwanted_body(session, false).await;
        Ok(true)
    }
}

/// The largest request header the edge takes, over HTTP/1.1 and HTTP/2 alike: 431 above it.
/// (A registry request's header is a few hundred bytes; a Bearer token a few KiB.) The h2
/// layer decodes up to [`H2_HEADER_LIST_BYTES`] so that this limit, not a connection error,
/// answers a large one; pingora reads at most 1 MiB of an HTTP/1.1 header and drops a larger
/// one with 400.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// What the h2 layer decodes before it gives up on the whole connection.
pub const H2_HEADER_LIST_BYTES: u32 = 1024 * 1024;

/// The request line and header fields, counted as HTTP/2's header list size counts them
/// (names and values, plus 32 bytes of overhead each).
fn header_bytes(request: &RequestHeader) -> usize {
    let fields: usize = request
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum();
    fields + request.uri.to_string().len() + request.method.as_str().len()
}

fn client_ip(session: &Session, trusted_proxies: &[IpNet]) -> Option<IpAddr> {
    let peer = session.client_addr().and_then(|a| a.as_inet())?.ip();
    let forwarded = session.req_header().headers.get_all("x-forwarded-for");
    Some(forwarded_client(
        peer,
        forwarded.iter().filter_map(|v| v.to_str().ok()),
        trusted_proxies,
    ))
}

/// The client behind `peer`: `peer` itself unless it is a trusted proxy; then the rightmost
/// `X-Forwarded-For` hop that no trusted proxy added (each proxy appends the address it saw,
/// so hops further left are the client's own claims). A hop that does not parse ends the walk.
fn forwarded_client<'a>(
    peer: IpAddr,
    forwarded: impl Iterator<Item = &'a str>,
    trusted_proxies: &[IpNet],
) -> IpAddr {
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
    if !trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded.flat_map(|v| v.split(',')).collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !trusted(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = RequestContext;

    fn new_ctx(&self) -> RequestContext {
        RequestContext {
            _in_flight: self.in_flight.enter(),
            started: Instant::now(),
            client: None,
            user: None,
            anonymous: false,
            request_id: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestContext,
    ) -> Result<bool> {
        ctx.client = client_ip(session, &self.trusted_proxies);
        // Per read and per write, so a slow push that keeps moving is never cut; pingora's own
        // default has no write timeout (a client that stops reading would be held forever).
        session.set_read_timeout(Some(self.idle_timeout));
        session.set_write_timeout(Some(self.idle_timeout));
        let header_bytes = header_bytes(session.req_header());
        if header_bytes > MAX_HEADER_BYTES {
            let detail = format!(
                "the request's header has {header_bytes} bytes; the registry reads at most {MAX_HEADER_BYTES}"
            );
            let status = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
            return self
                .refuse_unread(session, ctx, status, Code::Unsupported, &detail, &[])
                .await;
        }
        if session.req_header().uri.path() == "/metrics" && self.metrics_allowed(ctx.client) {
            return self.serve_metrics(session, ctx).await;
        }
        if !self.allowed(ctx.client) {
            let detail = "this address is not in edge.allow";
            return self
                .refuse_unread(
                    session,
                    ctx,
                    StatusCode::FORBIDDEN,
                    Code::Denied,
                    detail,
                    &[],
                )
                .await;
        }
        self.authenticate(session, ctx).await
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestContext,
    ) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.engine, false, String::new());
        peer.options.connection_timeout = Some(Duration::from_secs(5));
        // Pooled connections to the engine that sit unused are closed before the engine's own
        // header timeout would close them under a request.
        peer.options.idle_timeout = Some(Duration::from_secs(5));
        // No read timeout towards the engine: it is local and answers a push only after the
        // last byte of a possibly multi-GB body; idle clients are cut by the downstream timeout.
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestContext,
    ) -> Result<()> {
        self.engine_request_headers(session.req_header(), upstream, ctx)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut RequestContext,
    ) -> Result<()> {
        self.client_response_headers(session.req_header().uri.path(), upstream, ctx)
    }

    /// When proxying fails, the client still gets the spec's JSON error (pingora's default is
    /// an HTML-less bare status): 408 for a client that went quiet, 502 when the engine does not
    /// answer. Nothing is written once a response has started.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &pingora::Error,
        ctx: &mut RequestContext,
    ) -> FailToProxy {
        use pingora::{ErrorSource, ErrorType};
        let (status, code, detail) = match (e.esource(), e.etype()) {
            (_, ErrorType::HTTPStatus(status)) => (
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY),
                Code::Unknown,
                "the request could not be proxied".to_owned(),
            ),
            (
                ErrorSource::Downstream,
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed,
            ) => {
                // The client is gone: there is no one to answer.
                return FailToProxy {
                    error_code: 0,
                    can_reuse_downstream: false,
                };
            }
            (ErrorSource::Downstream, ErrorType::ReadTimedout | ErrorType::WriteTimedout) => (
                StatusCode::REQUEST_TIMEOUT,
                Code::BlobUploadInvalid,
                format!(
                    "nothing from the client for {}; an upload keeps what arrived and can be resumed",
                    humantime::format_duration(self.idle_timeout)
                ),
            ),
            (ErrorSource::Downstream, _) => (
                StatusCode::BAD_REQUEST,
                Code::Unknown,
                format!("bad request: {}", e.etype().as_str()),
            ),
            (ErrorSource::Upstream, _) => (
                StatusCode::BAD_GATEWAY,
                Code::Unknown,
                "the registry engine did not answer".to_owned(),
            ),
            (ErrorSource::Internal | ErrorSource::Unset, _) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                Code::Unknown,
                "internal error in the edge".to_owned(),
            ),
        };
        if session.response_written().is_none() {
            if let Err(write) = self
                .refuse(session, &ctx.request_id, status, code, &detail, &[])
                .await
            {
                tracing::debug!(error = %write, "could not send the error response");
            }
        }
        FailToProxy {
            error_code: status.as_u16(),
            can_reuse_downstream: false,
        }
    }

    /// What a client did (went away, reset a stream, sent garbage, went quiet) is not the
    /// server's error: the access log line records it, with no ERROR line beside it.
    fn suppress_error_log(
        &self,
        _session: &Session,
        _ctx: &RequestContext,
        e: &pingora::Error,
    ) -> bool {
        *e.esource() == pingora::ErrorSource::Downstream
    }

    async fn logging(
        &self,
        session: &mut Session,
        error: Option<&pingora::Error>,
        ctx: &mut RequestContext,
    ) {
        let request = session.req_header();
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        tracing::info!(
            target: "regapp::auth::access",
            request_id = %ctx.request_id,
            client = %ctx.client.map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
            user = ctx.user.as_deref().unwrap_or("-"),
            method = %request.method,
            path = %request.uri.path(),
            status,
            bytes_in = session.body_bytes_read(),
            bytes_out = session.body_bytes_sent(),
            duration_ms = ctx.started.elapsed().as_millis() as u64,
            error = error.map(|e| e.to_string()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(peer: &str, forwarded: &[&str], trusted: &[&str]) -> String {
        let trusted: Vec<IpNet> = trusted.iter().map(|n| n.parse().unwrap()).collect();
        forwarded_client(peer.parse().unwrap(), forwarded.iter().copied(), &trusted).to_string()
    }

    #[test]
    fn a_trusted_proxy_forwards_the_client_it_saw_and_nobody_else_does() {
        let lb = ["10.0.0.0/24"];
        assert_eq!(client("10.0.0.5", &["192.0.2.7"], &lb), "192.0.2.7");
        // A client's own claim is left of what the proxy appended.
        assert_eq!(
            client("10.0.0.5", &["6.6.6.6, 192.0.2.7"], &lb),
            "192.0.2.7"
        );
        assert_eq!(
            client("10.0.0.5", &["6.6.6.6", "192.0.2.7"], &lb),
            "192.0.2.7"
        );
        // Two trusted hops (a CDN's edge inside the trusted range, then the balancer).
        assert_eq!(
            client("10.0.0.5", &["192.0.2.7, 10.0.0.9"], &lb),
            "192.0.2.7"
        );
        assert_eq!(client("10.0.0.5", &[], &lb), "10.0.0.5");
        assert_eq!(client("10.0.0.5", &["garbage"], &lb), "10.0.0.5");
        // Not from a trusted proxy: the header is the client's claim, ignored.
        assert_eq!(client("198.51.100.1", &["192.0.2.7"], &lb), "198.51.100.1");
        assert_eq!(client("10.0.0.5", &["192.0.2.7"], &[]), "10.0.0.5");
    }
}
