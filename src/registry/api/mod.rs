//! The OCI Distribution HTTP API over the store: routes → handlers → the error table.
//! Knows HTTP (the `http` and `hyper` types) but no TLS, no authentication and no pingora:
//! the edge puts those in front. It does enforce the access rules (`permissions.rs`), for the
//! user the edge names, because only the engine knows what a route acts on.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http::{HeaderMap, HeaderValue, Method};
use http_body_util::{BodyDataStream, BodyExt};
use tracing::Instrument;

use crate::auth::access::Access;
use crate::metrics::{EngineMetrics, RouteClass};
use crate::registry::mirror::{Intent, Mirrors, Target};
use crate::registry::store::{Body, Store};

mod errors;
mod handlers;
mod permissions;
mod response;
mod routes;
pub mod server;

pub use errors::{error_response, ApiError, Code};
pub use response::{Response, ResponseBody};
use response::{API_VERSION, API_VERSION_VALUE};
pub use routes::Route;

/// The registry API. Cheap to clone; one per engine.
#[derive(Clone)]
pub struct Api {
    store: Arc<Store>,
    front_token: Option<Arc<str>>,
    body_idle_timeout: Option<Duration>,
    access: Option<Arc<Access>>,
    metrics: Option<EngineMetrics>,
    mirrors: Arc<Mirrors>,
}

/// Who asks, as the front that authenticated the request says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A user of the htpasswd file.
    User(String),
    /// A client without credentials (`auth.anonymous_pull`).
    Anonymous,
    /// Nobody checks (the engine alone, behind an operator's own proxy): rules not enforced.
    Unchecked,
}

/// The header by which a trusted front (regapp's edge) proves a request came through it.
pub const FRONT_TOKEN_HEADER: &str = "x-regapp-front-token";
/// The header by which the front names the authenticated user (trusted only with the token).
pub const FRONT_USER_HEADER: &str = "x-regapp-user";
/// The request's id: set by the edge (and logged in its access log), made up here when absent;
/// every log line of the request carries it and the answer returns it.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// What a handler gets of a request besides its body, once the route is known. (The body is
/// passed apart: it is a stream that is `Send` but not `Sync`.)
pub(crate) struct Request {
    pub method: Method,
    pub headers: HeaderMap,
    query: Vec<(String, String)>,
}

impl Request {
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: http::header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Api {
    pub fn new(store: Arc<Store>) -> Api {
        Api {
            store,
            front_token: None,
            body_idle_timeout: None,
            metrics: None,
            access: None,
            mirrors: Arc::default(),
        }
    }

    /// Serves the repositories of `mirrors` from their upstreams (read-only).
    pub fn mirrors(mut self, mirrors: Arc<Mirrors>) -> Api {
        self.mirrors = mirrors;
        self
    }

    /// Enforces `access`'s rules for the user the front names in [`FRONT_USER_HEADER`] (no
    /// header: a client without credentials). Only behind a front that authenticates and
    /// strips client copies of that header, i.e. together with [`Api::require_front_token`].
    pub fn enforce_access(mut self, access: Arc<Access>) -> Api {
        self.access = Some(access);
        self
    }

    fn permissions(&self, caller: Caller) -> permissions::Permissions {
        match (&self.access, caller) {
            (Some(access), Caller::User(user)) => {
                permissions::Permissions::of(access.current(), Some(user))
            }
            (Some(access), Caller::Anonymous) => {
                permissions::Permissions::of(access.current(), None)
            }
            (None, _) | (_, Caller::Unchecked) => permissions::Permissions::unrestricted(),
        }
    }

    /// Who the front says asks, from the headers of a request that came over the engine's
    /// listener: only meaningful once the front token is checked.
    fn caller_named_in(&self, headers: &HeaderMap) -> Caller {
        if self.access.is_none() {
            return Caller::Unchecked;
        }
        match headers.get(FRONT_USER_HEADER).and_then(|v| v.to_str().ok()) {
            Some(user) => Caller::User(user.to_owned()),
            None => Caller::Anonymous,
        }
    }

    /// Counts requests, bytes, uploads and blobs into `metrics`.
    pub fn metrics(mut self, metrics: EngineMetrics) -> Api {
        self.metrics = Some(metrics);
        self
    }

    /// Fails a request whose body stalls for `idle`: the upload keeps what arrived (it can be
    /// resumed) and the connection is let go. This also bounds stalled HTTP/2 uploads through
    /// the edge, whose body reads pingora does not time out.
    pub fn body_idle_timeout(mut self, idle: Duration) -> Api {
        self.body_idle_timeout = Some(idle);
        self
    }

    /// Refuses every request that does not carry `token` in [`FRONT_TOKEN_HEADER`]: with the
    /// edge in front, the engine's loopback port must not be a way around authentication,
    /// whichever local user connects to it. The token lives only in this process's memory.
    pub fn require_front_token(mut self, token: String) -> Api {
        self.front_token = Some(token.into());
        self
    }

    fn came_through_front(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.front_token else {
            return true;
        };
        let given = headers
            .get(FRONT_TOKEN_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        // Constant time: how much of the token matched must not show in the answer's timing.
        given.len() == expected.len()
            && given
                .iter()
                .zip(expected.as_bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Answers one request that came over the engine's own listener. Behind the edge it must
    /// carry the front token, and the user comes from [`FRONT_USER_HEADER`]. Never fails:
    /// errors become the spec's JSON error answers.
    pub async fn handle<B>(&self, request: http::Request<B>) -> Response
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let through_front = self.came_through_front(request.headers());
        let caller = self.caller_named_in(request.headers());
        let route = if through_front {
            Route::parse(request.uri().path())
        } else {
            Err(ApiError::NotThroughFront)
        };
        self.answer(caller, route, request).await
    }

    /// Answers one request handed over in-process by the front that authenticated it: who
    /// asks and what route it is come typed, nothing is read back from headers.
    pub async fn handle_from_front<B>(
        &self,
        caller: Caller,
        route: Route,
        request: http::Request<B>,
    ) -> Response
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.answer(caller, Ok(route), request).await
    }

    async fn answer<B>(
        &self,
        caller: Caller,
        route: Result<Route, ApiError>,
        request: http::Request<B>,
    ) -> Response
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let request_id = request_id(request.headers());
        let span = tracing::info_span!("request", id = %request_id.to_str().unwrap_or("-"));
        let mut response = self
            .handle_counted(caller, route, request)
            .instrument(span)
            .await;
        let headers = response.headers_mut();
        headers.insert(API_VERSION, API_VERSION_VALUE);
        headers.insert(REQUEST_ID_HEADER, request_id);
        response
    }

    async fn handle_counted<B>(
        &self,
        caller: Caller,
        route: Result<Route, ApiError>,
        request: http::Request<B>,
    ) -> Response
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let (parts, body) = request.into_parts();
        let mut body: Body =
            Box::pin(BodyDataStream::new(body).map_err(|e| io::Error::other(e.into())));
        if let Some(idle) = self.body_idle_timeout {
            body = with_idle_timeout(body, idle);
        }
        if let Some(metrics) = &self.metrics {
            let metrics = metrics.clone();
            body = Box::pin(body.inspect_ok(move |chunk| metrics.received(chunk.len() as u64)));
        }
        let query = parts
            .uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let request = Request {
            method: parts.method,
            headers: parts.headers,
            query,
        };
        let method = request.method.clone();
        let class = route.as_ref().map_or(RouteClass::Other, route_class);
        let _uploading = self
            .metrics
            .as_ref()
            .filter(|_| is_upload(class, &method))
            .map(EngineMetrics::upload_started);
        let permissions = self.permissions(caller);
        let (route, mirrored) = match route {
            Ok(route) => match self.mirror_target(&route, &request).await {
                Ok(Some(target)) => (Ok(route.renamed(target.local.clone())), Some(target)),
                Ok(None) => (Ok(route), None),
                Err(e) => (Err(e), None),
            },
            Err(e) => (Err(e), None),
        };
        let response = match route {
            Ok(route) => {
                // Checked before the handler reads anything, the body above all.
                let allowed = match permissions::required_action(&route, &request.method) {
                    Some((name, action)) => permissions.require(name, action),
                    None => Ok(()),
                };
                match allowed {
                    Ok(()) => match mirrored {
                        Some(target) => {
                            handlers::mirrored::dispatch(&self.store, &target, route, request).await
                        }
                        None => {
                            handlers::dispatch(&self.store, route, request, body, &permissions)
                                .await
                        }
                    },
                    Err(denied) => Err(denied),
                }
            }
            Err(e) => Err(e),
        }
        .unwrap_or_else(ApiError::into_response);
        match &self.metrics {
            Some(metrics) => count(metrics, class, &method, started, response),
            None => response,
        }
    }
}

impl Api {
    /// The mirror a request goes to, if any (`registry::mirror`): by the name's prefix, by
    /// containerd's `?ns=`, or to the default mirror for a name the store does not hold.
    async fn mirror_target(
        &self,
        route: &Route,
        request: &Request,
    ) -> Result<Option<Target>, ApiError> {
        let Some(name) = route.name() else {
            return Ok(None);
        };
        let intent = match (route, &request.method) {
            (Route::Blob(..), &Method::HEAD) => Intent::ProbeBlob,
            (Route::Blob(..), &Method::GET) => Intent::FetchBlob,
            (_, &Method::GET | &Method::HEAD) => Intent::Read,
            _ => Intent::Write,
        };
        Ok(self
            .mirrors
            .resolve(name, request.query("ns"), intent, &self.store)
            .await?)
    }
}

/// Records the answered request and counts the bytes of its body as they are sent.
fn count(
    metrics: &EngineMetrics,
    class: RouteClass,
    method: &Method,
    started: Instant,
    response: Response,
) -> Response {
    let status = response.status().as_u16();
    metrics.request(class, method.as_str(), status, started.elapsed());
    match (class, method, status) {
        (RouteClass::Upload, &Method::PUT | &Method::POST, 201) => metrics.blob_pushed(),
        (RouteClass::Blob, &Method::GET, 200 | 206) => metrics.blob_pulled(),
        _ => {}
    }
    let metrics = metrics.clone();
    response.map(|body| {
        body.map_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                metrics.sent(data.len() as u64);
            }
            frame
        })
        .boxed_unsync()
    })
}

fn route_class(route: &Route) -> RouteClass {
    match route {
        Route::Base => RouteClass::Base,
        Route::Catalog => RouteClass::Catalog,
        Route::Tags(_) => RouteClass::Tags,
        Route::Manifest(..) => RouteClass::Manifest,
        Route::Uploads(_) | Route::Upload(..) => RouteClass::Upload,
        Route::Blob(..) => RouteClass::Blob,
        Route::Referrers(..) => RouteClass::Referrers,
    }
}

/// Requests that may stream a blob's bytes in: POST (monolithic), PATCH and PUT of an upload.
fn is_upload(class: RouteClass, method: &Method) -> bool {
    class == RouteClass::Upload && matches!(*method, Method::POST | Method::PATCH | Method::PUT)
}

/// The id the front gave (if it is a sane header value), else a new one.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(REQUEST_ID_HEADER)
        .filter(|v| {
            let bytes = v.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 64
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        })
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().simple().to_string())
                .expect("a uuid is a valid header value")
        })
}

/// Ends `body` with a `TimedOut` error when no chunk arrives for `idle`.
fn with_idle_timeout(body: Body, idle: Duration) -> Body {
    Box::pin(futures_util::stream::unfold(
        Some(body),
        move |body| async move {
            let mut body = body?;
            match tokio::time::timeout(idle, body.next()).await {
                Ok(Some(chunk)) => Some((chunk, Some(body))),
                Ok(None) => None,
                Err(_) => {
                    let stalled = io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no request body data for {}",
                            humantime::format_duration(idle)
                        ),
                    );
                    Some((Err(stalled), None))
                }
            }
        },
    ))
}
