//! The benchmark's client: hyper's pooled client, one keep-alive HTTP/1.1 connection per
//! concurrent worker (or, with `--http2` against TLS servers, one h2 connection for all), and the registry calls the phases make. It does as little work as it
//! can: bodies are sent as slices of shared buffers, pulled bytes are counted, not hashed.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, LINK, LOCATION};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

use crate::content::{Blob, ReqBody};
use crate::tls::Access;
use crate::BenchResult;

/// What containerd's resolver sends when it fetches a manifest by tag.
pub const MANIFEST_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A client for one registry. Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct Client {
    http: HyperClient<HttpsConnector<HttpConnector>, ReqBody>,
    /// `http://127.0.0.1:PORT` or `https://localhost:PORT`
    base: String,
    /// `Authorization: Basic …`, sent on every request when the server wants it.
    authorization: Option<HeaderValue>,
}

/// A response whose body was read whole (small answers only).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Client {
    /// With `http2`, TLS connections offer h2 and, when it is chosen, carry every worker's
    /// requests over one connection with the flow-control windows Go's client uses.
    pub fn new(base: &str, access: &Access, http2: bool) -> BenchResult<Client> {
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .pool_idle_timeout(Duration::from_secs(300))
            .http2_initial_stream_window_size(4 << 20)
            .http2_initial_connection_window_size(1 << 30)
            .build(access.connector(http2)?);
        Ok(Client {
            http,
            base: base.to_owned(),
            authorization: access.authorization()?,
        })
    }

    /// `path` may be absolute (docker-registry's Locations) or start with `/` (regapp's).
    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, &str)],
        body: ReqBody,
    ) -> BenchResult<http::Response<Incoming>> {
        let mut request = Request::builder().method(method).uri(self.url(path));
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        for (name, value) in headers {
            request = request.header(name, HeaderValue::from_str(value)?);
        }
        Ok(self.http.request(request.body(body)?).await?)
    }

    /// Sends a request and reads the whole answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, &str)],
        body: ReqBody,
    ) -> BenchResult<Answer> {
        let (parts, body) = self.send(method, path, headers, body).await?.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Like [`Client::call`], failing unless the status is `expected`.
    async fn expect(
        &self,
        expected: StatusCode,
        method: Method,
        path: &str,
        headers: &[(HeaderName, &str)],
        body: ReqBody,
    ) -> BenchResult<Answer> {
        let what = format!("{method} {path}");
        let answer = self.call(method, path, headers, body).await?;
        if answer.status != expected {
            return Err(format!(
                "{what}: expected {expected}, got {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            )
            .into());
        }
        Ok(answer)
    }

    /// `GET /v2/` answers 200.
    pub async fn ping(&self) -> BenchResult<()> {
        self.expect(StatusCode::OK, Method::GET, "/v2/", &[], ReqBody::Empty)
            .await
            .map(drop)
    }

    /// Pushes a blob as docker does: `POST` a session, one streamed `PATCH` with the whole
    /// content, then `PUT ?digest=` with no body.
    pub async fn push_blob(&self, repo: &str, blob: &Blob) -> BenchResult<()> {
        let started = self
            .expect(
                StatusCode::ACCEPTED,
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                &[],
                ReqBody::Empty,
            )
            .await?;
        let location = location_of(&started)?;
        let patched = self
            .expect(
                StatusCode::ACCEPTED,
                Method::PATCH,
                &location,
                &[(CONTENT_TYPE, "application/octet-stream")],
                ReqBody::stream(blob.data.clone()),
            )
            .await?;
        let location = location_of(&patched)?;
        let separator = if location.contains('?') { '&' } else { '?' };
        self.expect(
            StatusCode::CREATED,
            Method::PUT,
            &format!("{location}{separator}digest={}", blob.digest),
            &[],
            ReqBody::Empty,
        )
        .await
        .map(drop)
    }

    /// Downloads a blob and returns how many bytes came; the bytes are compared with
    /// `expected` (a memcmp, cheap beside the transfer) and dropped as they arrive.
    pub async fn pull_blob(&self, repo: &str, digest: &str, expected: &[u8]) -> BenchResult<u64> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        let mut response = self.send(Method::GET, &path, &[], ReqBody::Empty).await?;
        if response.status() == StatusCode::TEMPORARY_REDIRECT {
            // To the bucket, as docker follows it: the URL carries its own signature, so no
            // credentials go along.
            let location = response.headers()[LOCATION].to_str()?.to_owned();
            let request = Request::get(&location).body(ReqBody::Empty)?;
            response = self.http.request(request).await?;
        }
        if response.status() != StatusCode::OK {
            return Err(format!("GET {path}: {}", response.status()).into());
        }
        let mut body = response.into_body();
        let mut received = 0;
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame?.data_ref() {
                let at = received as usize;
                if expected.get(at..at + data.len()) != Some(&data[..]) {
                    return Err(format!("GET {path}: other bytes than pushed at {at}").into());
                }
                received += data.len() as u64;
            }
        }
        Ok(received)
    }

    /// `HEAD` a blob; fails unless 200.
    pub async fn head_blob(&self, repo: &str, digest: &str) -> BenchResult<()> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        self.expect(StatusCode::OK, Method::HEAD, &path, &[], ReqBody::Empty)
            .await
            .map(drop)
    }

    pub async fn put_manifest(&self, repo: &str, tag: &str, manifest: Bytes) -> BenchResult<()> {
        let path = format!("/v2/{repo}/manifests/{tag}");
        let headers = [(CONTENT_TYPE, OCI_MANIFEST)];
        self.expect(
            StatusCode::CREATED,
            Method::PUT,
            &path,
            &headers,
            ReqBody::stream(manifest),
        )
        .await
        .map(drop)
    }

    /// Fetches a manifest by tag as containerd does; returns its body.
    pub async fn manifest(&self, repo: &str, tag: &str) -> BenchResult<Bytes> {
        let path = format!("/v2/{repo}/manifests/{tag}");
        let headers = [(ACCEPT, MANIFEST_ACCEPT)];
        let answer = self
            .expect(StatusCode::OK, Method::GET, &path, &headers, ReqBody::Empty)
            .await?;
        Ok(answer.body)
    }

    /// One catalog page: how many names it held, and the next page's path from `Link`.
    pub async fn catalog_page(&self, path: &str) -> BenchResult<(usize, Option<String>)> {
        let answer = self
            .expect(StatusCode::OK, Method::GET, path, &[], ReqBody::Empty)
            .await?;
        let page: serde_json::Value = serde_json::from_slice(&answer.body)?;
        let names = page["repositories"]
            .as_array()
            .ok_or("a catalog page without a repositories array")?
            .len();
        let next = match answer.headers.get(LINK) {
            None => None,
            Some(link) => Some(next_link(link.to_str()?)?),
        };
        Ok((names, next))
    }
}

fn location_of(answer: &Answer) -> BenchResult<String> {
    Ok(answer
        .headers
        .get(LOCATION)
        .ok_or("an upload answer without Location")?
        .to_str()?
        .to_owned())
}

/// `</v2/_catalog?last=x&n=100>; rel="next"` → `/v2/_catalog?last=x&n=100` (also absolute URLs).
fn next_link(link: &str) -> BenchResult<String> {
    let start = link.find('<').ok_or("a Link header without <")? + 1;
    let end = link.find('>').ok_or("a Link header without >")?;
    if !link[end..].contains("rel=\"next\"") {
        return Err(format!("a Link header that is not rel=\"next\": {link}").into());
    }
    Ok(link[start..end].to_owned())
}
