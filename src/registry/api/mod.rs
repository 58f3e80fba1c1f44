//! The OCI Distribution HTTP API over the store: routes → handlers → the error table.
//! Knows HTTP (the `http` and `hyper` types) but no TLS, no authentication and no pingora:
//! the edge puts those in front.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http::{HeaderMap, Method};
use http_body_util::BodyDataStream;

use crate::registry::store::{Body, Store};

mod errors;
mod handlers;
mod response;
mod routes;
pub mod server;

pub use errors::{error_body, ApiError, Code};
pub use response::{Response, ResponseBody};
use response::{API_VERSION, API_VERSION_VALUE};
pub use routes::Route;

/// The registry API. Cheap to clone; one per engine.
#[derive(Clone)]
pub struct Api {
    store: Arc<Store>,
    front_token: Option<Arc<str>>,
    body_idle_timeout: Option<Duration>,
}

/// The header by which a trusted front (regapp's edge) proves a request came through it.
pub const FRONT_TOKEN_HEADER: &str = "x-regapp-front-token";
/// The header by which the front names the authenticated user (trusted only with the token).
pub const FRONT_USER_HEADER: &str = "x-regapp-user";

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
        }
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

    /// Answers one request. Never fails: errors become the spec's JSON error answers.
    pub async fn handle<B>(&self, request: http::Request<B>) -> Response
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = request.into_parts();
        let mut body: Body =
            Box::pin(BodyDataStream::new(body).map_err(|e| io::Error::other(e.into())));
        if let Some(idle) = self.body_idle_timeout {
            body = with_idle_timeout(body, idle);
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
        let mut response = if !self.came_through_front(&request.headers) {
            Err(ApiError::NotThroughFront)
        } else {
            match Route::parse(parts.uri.path()) {
                Ok(route) => handlers::dispatch(&self.store, route, request, body).await,
                Err(e) => Err(e),
            }
        }
        .unwrap_or_else(ApiError::into_response);
        response
            .headers_mut()
            .insert(API_VERSION, API_VERSION_VALUE);
        response
    }
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
