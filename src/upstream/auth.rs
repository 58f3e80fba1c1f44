//! How requests to an upstream are authorised: nothing until it answers 401, then what its
//! `WWW-Authenticate` asks. Basic sends the configured credentials; Bearer (Docker Hub,
//! ghcr.io, quay.io) gets a token per repository from the challenge's realm, anonymously or
//! with the credentials, and keeps it until `expires_in` runs out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::HeaderValue;
use reqwest_s3 as reqwest;
use serde::Deserialize;

use super::{UpstreamError, ANSWER_TIMEOUT};

pub(super) struct Credentials {
    user: String,
    password: String,
}

impl Credentials {
    pub(super) fn new(user: String, password: String) -> Credentials {
        Credentials { user, password }
    }

    fn basic(&self) -> HeaderValue {
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.user, self.password));
        let mut value = HeaderValue::try_from(format!("Basic {encoded}"))
            .expect("base64 is a valid header value");
        value.set_sensitive(true);
        value
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <password>)", self.user)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Scheme {
    /// Not challenged yet: requests go without `Authorization`.
    None,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// A token for one repository and when to stop using it.
struct Token {
    value: HeaderValue,
    until: Instant,
}

/// Tokens kept at most; beyond it expired ones are dropped first.
const MAX_TOKENS: usize = 10_000;
/// A token is renewed this long before the upstream says it expires (clocks, transit).
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// The spec's default and minimum `expires_in`.
const MIN_EXPIRES_IN: u64 = 60;

pub(super) struct Authorizer {
    client: reqwest::Client,
    credentials: Option<Credentials>,
    scheme: Mutex<Scheme>,
    tokens: Mutex<HashMap<String, Token>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl Authorizer {
    pub(super) fn new(client: reqwest::Client, credentials: Option<Credentials>) -> Authorizer {
        Authorizer {
            client,
            credentials,
            scheme: Mutex::new(Scheme::None),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The `Authorization` value for a request about `repo`, fetching a token when the
    /// upstream wants Bearer and none is kept.
    pub(super) async fn authorization(
        &self,
        repo: &str,
    ) -> Result<Option<HeaderValue>, UpstreamError> {
        let scheme = self.scheme.lock().expect("not poisoned").clone();
        match scheme {
            Scheme::None => Ok(None),
            Scheme::Basic => Ok(self.credentials.as_ref().map(Credentials::basic)),
            Scheme::Bearer { realm, service } => {
                if let Some(token) = self.kept(repo) {
                    return Ok(Some(token));
                }
                self.fetch_token(repo, &realm, service.as_deref())
                    .await
                    .map(Some)
            }
        }
    }

    /// The upstream answered 401 with `challenge`: learn its scheme, forget the refused token.
    pub(super) async fn challenged(
        &self,
        repo: &str,
        challenge: &str,
    ) -> Result<(), UpstreamError> {
        let (scheme, params) = parse_challenge(challenge).ok_or_else(|| {
            UpstreamError::Invalid(format!(
                "a 401 without a usable WWW-Authenticate: {challenge:?}"
            ))
        })?;
        let learned = match scheme.to_ascii_lowercase().as_str() {
            "basic" if self.credentials.is_some() => Scheme::Basic,
            "basic" => return Err(UpstreamError::Denied(401)),
            "bearer" => Scheme::Bearer {
                realm: params.get("realm").cloned().ok_or_else(|| {
                    UpstreamError::Invalid("a Bearer challenge without realm".into())
                })?,
                service: params.get("service").cloned(),
            },
            other => {
                return Err(UpstreamError::Invalid(format!(
                    "the upstream asks for {other} authentication, which regapp does not speak"
                )))
            }
        };
        *self.scheme.lock().expect("not poisoned") = learned;
        self.tokens.lock().expect("not poisoned").remove(repo);
        Ok(())
    }

    fn kept(&self, repo: &str) -> Option<HeaderValue> {
        let tokens = self.tokens.lock().expect("not poisoned");
        tokens
            .get(repo)
            .filter(|token| token.until > Instant::now())
            .map(|token| token.value.clone())
    }

    /// `GET <realm>?service=…&scope=repository:<repo>:pull` (Docker's token flow; the `POST`
    /// form of OAuth2 is not needed: every registry that offers it also answers the `GET`).
    async fn fetch_token(
        &self,
        repo: &str,
        realm: &str,
        service: Option<&str>,
    ) -> Result<HeaderValue, UpstreamError> {
        let query = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.append_pair("scope", &format!("repository:{repo}:pull"));
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            if let Some(credentials) = &self.credentials {
                query.append_pair("account", &credentials.user);
            }
            query.finish()
        };
        let separator = if realm.contains('?') { '&' } else { '?' };
        let mut request = self.client.get(format!("{realm}{separator}{query}"));
        if let Some(credentials) = &self.credentials {
            request = request.header(http::header::AUTHORIZATION, credentials.basic());
        }
        let asked = Instant::now();
        let response = tokio::time::timeout(ANSWER_TIMEOUT, request.send())
            .await
            .map_err(|_| UpstreamError::TimedOut)?
            .map_err(UpstreamError::transport)?;
        let status = response.status();
        if matches!(status.as_u16(), 401 | 403) {
            return Err(UpstreamError::Denied(status.as_u16()));
        }
        if !status.is_success() {
            return Err(UpstreamError::Status(status.as_u16()));
        }
        let body = tokio::time::timeout(ANSWER_TIMEOUT, response.bytes())
            .await
            .map_err(|_| UpstreamError::TimedOut)?
            .map_err(UpstreamError::transport)?;
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| UpstreamError::Invalid(format!("the token answer: {e}")))?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| UpstreamError::Invalid("the token answer has no token".into()))?;
        let mut value = HeaderValue::try_from(format!("Bearer {token}"))
            .map_err(|_| UpstreamError::Invalid("the token is not a header value".into()))?;
        value.set_sensitive(true);
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(0).max(MIN_EXPIRES_IN));
        let mut tokens = self.tokens.lock().expect("not poisoned");
        if tokens.len() >= MAX_TOKENS {
            let now = Instant::now();
            tokens.retain(|_, token| token.until > now);
            if tokens.len() >= MAX_TOKENS {
                tokens.clear();
            }
        }
        tokens.insert(
            repo.to_owned(),
            Token {
                value: value.clone(),
                until: asked + lifetime.saturating_sub(EXPIRY_MARGIN),
            },
        );
        Ok(value)
    }
}

/// `Bearer realm="…",service="…",scope="…"` → ("Bearer", {realm, service, scope}). Values may
/// be quoted (with commas inside) or bare tokens.
fn parse_challenge(text: &str) -> Option<(String, HashMap<String, String>)> {
    let text = text.trim();
    let (scheme, mut rest) = match text.split_once(' ') {
        Some((scheme, rest)) => (scheme, rest.trim_start()),
        None if !text.is_empty() => (text, ""),
        None => return None,
    };
    let mut params = HashMap::new();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end?..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        params.insert(key, value);
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    Some((scheme.to_owned(), params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_docker_hub_challenge_parses() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
        )
        .unwrap();
        assert_eq!(scheme, "Bearer");
        assert_eq!(params["realm"], "https://auth.docker.io/token");
        assert_eq!(params["service"], "registry.docker.io");
        assert_eq!(params["scope"], "repository:library/alpine:pull,push");
    }

    #[test]
    fn basic_and_bare_values_parse() {
        let (scheme, params) = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(scheme, "Basic");
        assert_eq!(params["realm"], "Registry Realm");
        let (_, params) = parse_challenge("Bearer realm=http://x/token, service=s").unwrap();
        assert_eq!(params["realm"], "http://x/token");
        assert_eq!(params["service"], "s");
        assert!(parse_challenge("").is_none());
        assert!(parse_challenge(r#"Bearer realm="unterminated"#).is_none());
    }
}
