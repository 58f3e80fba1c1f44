//! The plain-HTTP listener (:80): every request is sent to https on the configured hostname.
//! ACME http-01 challenges (`/.well-known/acme-challenge/…`) will be answered here by the
//! certificate manager; until then they get 404.

use async_trait::async_trait;
use http::{header, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use super::headers::SECURITY_HEADERS;

pub struct RedirectToHttps {
    /// `https://host` or `https://host:port`, never derived from the client's Host header.
    pub origin: String,
}

impl RedirectToHttps {
    pub fn new(hostname: &str, https_port: u16) -> RedirectToHttps {
        let origin = if https_port == 443 {
            format!("https://{hostname}")
        } else {
            format!("https://{hostname}:{https_port}")
        };
        RedirectToHttps { origin }
    }

    fn location(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.origin)
    }
}

#[async_trait]
impl ServeHttp for RedirectToHttps {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let uri = &session.req_header().uri;
        let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
        let mut response = Response::builder();
        for (name, value) in SECURITY_HEADERS {
            response = response.header(name, value);
        }
        if path_and_query.starts_with("/.well-known/acme-challenge/") {
            return response
                .status(StatusCode::NOT_FOUND)
                .header(header::CONTENT_LENGTH, 0)
                .body(Vec::new())
                .expect("a static response builds");
        }
        response
            .status(StatusCode::MOVED_PERMANENTLY)
            .header(header::LOCATION, self.location(path_and_query))
            .header(header::CONTENT_LENGTH, 0)
            .body(Vec::new())
            .expect("a redirect with a URI-derived location builds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_https_port_appears_only_when_it_is_not_443() {
        assert_eq!(
            RedirectToHttps::new("r.example", 443).location("/v2/?x=1"),
            "https://r.example/v2/?x=1"
        );
        assert_eq!(
            RedirectToHttps::new("r.example", 8443).location("/"),
            "https://r.example:8443/"
        );
    }
}
