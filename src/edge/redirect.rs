//! The plain-HTTP listener (:80): every request is sent to https on the configured hostname,
//! except ACME HTTP-01 challenges (`/.well-known/acme-challenge/<token>`), answered from the
//! certificate manager's [`ChallengeTokens`] (404 for a token it does not hold).

use std::net::{IpAddr, Ipv4Addr};

use async_trait::async_trait;
use http::{header, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use super::headers::SECURITY_HEADERS;
use crate::certs::acme::{ChallengeTokens, CHALLENGE_PREFIX};

pub struct RedirectToHttps {
    /// `https://host` or `https://host:port`, never derived from the client's Host header.
    pub origin: String,
    pub challenges: ChallengeTokens,
}

impl RedirectToHttps {
    pub fn new(hostname: &str, https_port: u16, challenges: ChallengeTokens) -> RedirectToHttps {
        let origin = if https_port == 443 {
            format!("https://{hostname}")
        } else {
            format!("https://{hostname}:{https_port}")
        };
        RedirectToHttps { origin, challenges }
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
        if path_and_query.starts_with(CHALLENGE_PREFIX) {
            let client = session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
            if let Some(answer) = self.challenges.answer(uri.path(), client).await {
                return response
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_LENGTH, answer.len())
                    .body(answer.into_bytes())
                    .expect("a challenge answer builds");
            }
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
            RedirectToHttps::new("r.example", 443, ChallengeTokens::new()).location("/v2/?x=1"),
            "https://r.example/v2/?x=1"
        );
        assert_eq!(
            RedirectToHttps::new("r.example", 8443, ChallengeTokens::new()).location("/"),
            "https://r.example:8443/"
        );
    }
}
