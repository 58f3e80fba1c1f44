//! A Docker token server in the test process, the `realm` that an upstream registry with
//! `auth.token` sends its clients to — as Docker Hub's `auth.docker.io/token` does, so that a
//! pull-through cache meets the flow it meets in production against a registry that checks
//! real signatures (Debian's docker-registry, see [`super::upstream::Upstream::token_auth`]).
//!
//! The flow (distribution's `spec/auth/token.md`): `GET /token?service=S&scope=repository:NAME:pull`
//! (`scope` may repeat, or hold several scopes separated by spaces), anonymous or with Basic
//! credentials; the answer is `{"token", "access_token", "expires_in", "issued_at"}`. What it
//! deliberately does like Docker Hub and not like an OAuth2 server:
//! - `POST /token` (containerd's OAuth2 password grant) gets 404, so clients fall back to GET;
//! - a partial grant is no error: anonymous callers get `pull` only, whatever they asked;
//! - wrong credentials get 401; no credentials is anonymous, never 401.
//!
//! The JWT is what docker-registry 2.8 verifies: ES256 over P-256 with the signature as raw
//! `r||s` (not DER), `kid` = libtrust's key id of the signing key, `aud` a JSON string (an array
//! is "malformed" there), integer `exp`/`nbf`/`iat`. [`TokenIssuer::bundle_path`] is the
//! registry's `rootcertbundle`: a self-signed certificate of the signing key.
//!
//! It owns nothing of the registry: it never talks to it (the registry checks tokens offline).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rcgen::PublicKeyData as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;
use tempfile::TempDir;

/// The service name the issuer signs tokens for (the registry's `auth.token.service`), as
/// `registry.docker.io` is Docker Hub's.
pub const SERVICE: &str = "upstream.test";
/// The issuer name in every token (the registry's `auth.token.issuer`).
pub const ISSUER: &str = "regapp-test-token-issuer";
/// How long tokens live unless [`TokenIssuer::set_expires_in`] says otherwise: Docker Hub's and
/// the spec's default (and its minimum).
pub const DEFAULT_EXPIRES_IN: u64 = 60;

/// One request the issuer answered, for tests that check what a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// `GET` or `POST` (POST is always answered 404).
    pub method: String,
    /// The Basic user, `None` when anonymous.
    pub user: Option<String>,
    /// Every `scope` asked for, split at spaces, in order.
    pub scopes: Vec<String>,
    /// The HTTP status answered.
    pub status: u16,
}

/// A running token server on `127.0.0.1:PORT`; stops on drop. See the module doc.
pub struct TokenIssuer {
    addr: SocketAddr,
    state: Arc<State>,
    /// Holds the root certificate bundle.
    dir: TempDir,
}

/// What the connection threads share with the test.
struct State {
    key: EcdsaKeyPair,
    kid: String,
    user: String,
    password: String,
    expires_in: AtomicU64,
    anonymous_pull: AtomicBool,
    requests: Mutex<Vec<TokenRequest>>,
    tokens_issued: AtomicU64,
    stopping: AtomicBool,
}

impl TokenIssuer {
    /// Generates a P-256 signing key and its certificate, and serves `/token` on a free
    /// loopback port. `user`/`password` get every action they ask for; anonymous callers get
    /// `pull` (see [`TokenIssuer::set_anonymous_pull`]).
    pub fn start(user: &str, password: &str) -> Self {
        let rcgen_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("generate a P-256 key");
        // ring signs with the fixed-width r||s encoding JWS wants; rcgen only does DER.
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &rcgen_key.serialize_der(),
            &SystemRandom::new(),
        )
        .expect("ring reads rcgen's PKCS#8 key");
        let kid = libtrust_key_id(&rcgen_key.subject_public_key_info());
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .expect("certificate parameters without names");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, ISSUER);
        let cert = params
            .self_signed(&rcgen_key)
            .expect("self-sign the token signing certificate");
        let dir = tempfile::tempdir().expect("create a temp dir for the token issuer");
        std::fs::write(dir.path().join("bundle.pem"), cert.pem()).expect("write the bundle");

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the token issuer");
        let addr = listener.local_addr().expect("the token issuer's address");
        let state = Arc::new(State {
            key,
            kid,
            user: user.to_owned(),
            password: password.to_owned(),
            expires_in: AtomicU64::new(DEFAULT_EXPIRES_IN),
            anonymous_pull: AtomicBool::new(true),
            requests: Mutex::new(Vec::new()),
            tokens_issued: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        });
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if shared.stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = Arc::clone(&shared);
                thread::spawn(move || serve(stream, &shared));
            }
        });
        Self { addr, state, dir }
    }

    /// `http://127.0.0.1:PORT/token`, the registry's `auth.token.realm`.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The registry's `auth.token.service`, which tokens carry as `aud`.
    pub fn service(&self) -> &'static str {
        SERVICE
    }

    /// The registry's `auth.token.issuer`, which tokens carry as `iss`.
    pub fn issuer(&self) -> &'static str {
        ISSUER
    }

    /// The PEM certificate of the signing key: the registry's `auth.token.rootcertbundle`.
    pub fn bundle_path(&self) -> PathBuf {
        self.dir.path().join("bundle.pem")
    }

    /// The `kid` in every token header: libtrust's id of the signing key.
    pub fn kid(&self) -> &str {
        &self.state.kid
    }

    /// The user and password that get every action they ask for.
    pub fn credentials(&self) -> (String, String) {
        (self.state.user.clone(), self.state.password.clone())
    }

    /// How many `GET /token` requests were answered, whatever the answer (401s included).
    pub fn token_requests(&self) -> usize {
        self.requests().iter().filter(|r| r.method == "GET").count()
    }

    /// How many tokens were handed out (GETs answered 200).
    pub fn tokens_issued(&self) -> u64 {
        self.state.tokens_issued.load(Ordering::SeqCst)
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().expect("token log lock").clone()
    }

    /// Sets `expires_in` (seconds) for tokens issued from now on, so a test can see a client
    /// reuse a token until it expires. docker-registry itself allows 60 s of leeway past
    /// `exp`, so a short-lived token is still accepted upstream: only the client's reuse changes.
    pub fn set_expires_in(&self, seconds: u64) {
        self.state.expires_in.store(seconds, Ordering::SeqCst);
    }

    /// Whether anonymous callers get `pull` (the default, as on Docker Hub's public images) or
    /// nothing (a private upstream: the registry then answers 401 `insufficient_scope`).
    pub fn set_anonymous_pull(&self, allowed: bool) {
        self.state.anonymous_pull.store(allowed, Ordering::SeqCst);
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.state.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and frees the port.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// libtrust's key id, which docker-registry looks tokens' `kid` up by: the first 240 bits of
/// SHA-256 over the DER SubjectPublicKeyInfo, base32 (RFC 4648, no padding), in groups of 4
/// joined by `:` (e.g. `ABCD:EFGH:…`, 12 groups).
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(spki_der);
    let encoded = base32(&hash[..30]);
    let groups: Vec<&str> = encoded
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("base32 is ASCII"))
        .collect();
    groups.join(":")
}

/// RFC 4648 base32, upper case, without `=` padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Answers one request and closes the connection (`Connection: close`; clients reconnect).
fn serve(stream: TcpStream, state: &State) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let Some(request) = read_head(&mut reader) else {
        return;
    };
    if state.stopping.load(Ordering::SeqCst) {
        return;
    }
    let (status, body, challenge) = answer(&request, state);
    if request.content_length > 0 {
        // Drain a POST body so the client reads our answer instead of a reset.
        let _ = std::io::copy(
            &mut reader.by_ref().take(request.content_length),
            &mut std::io::sink(),
        );
    }
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if challenge {
        head.push_str("WWW-Authenticate: Basic realm=\"regapp-test-token-issuer\"\r\n");
    }
    head.push_str("\r\n");
    let mut out = write_half;
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(body.as_bytes());
    let _ = out.flush();
}

/// The parts of a request the issuer looks at.
struct Head {
    method: String,
    target: String,
    authorization: Option<String>,
    content_length: u64,
}

fn read_head(reader: &mut impl BufRead) -> Option<Head> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut head = Head {
        method,
        target,
        authorization: None,
        content_length: 0,
    };
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let header = line.trim_end();
        if header.is_empty() {
            return Some(head);
        }
        let (name, value) = header.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("authorization") {
            head.authorization = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("content-length") {
            head.content_length = value.parse().ok()?;
        }
    }
}

/// The status, JSON body, and whether to add a Basic challenge; records the request.
fn answer(request: &Head, state: &State) -> (u16, String, bool) {
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((request.target.as_str(), ""));
    let mut service = None;
    let mut scopes = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "service" => service = Some(value.into_owned()),
            "scope" => scopes.extend(
                value
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            ),
            _ => {}
        }
    }
    let credentials = request.authorization.as_deref().map(basic_credentials);
    let user = match &credentials {
        Some(Some((user, _))) => Some(user.clone()),
        _ => None,
    };
    let (status, body, challenge) = if path != "/token" {
        (404, json!({"details": "not found"}), false)
    } else if request.method == "POST" {
        // Docker Hub answers the OAuth2 password grant 404 too; containerd then GETs.
        (404, json!({"details": "use GET"}), false)
    } else if request.method != "GET" {
        (405, json!({"details": "method not allowed"}), false)
    } else if service.as_deref() != Some(SERVICE) {
        let details = format!("service must be {SERVICE:?}, not {service:?}");
        (400, json!({ "details": details }), false)
    } else {
        match credentials {
            Some(Some((user, password))) if user == state.user && password == state.password => {
                (200, issue(state, Some(&user), &scopes), false)
            }
            Some(_) => (
                401,
                json!({"details": "incorrect username or password"}),
                true,
            ),
            None => (200, issue(state, None, &scopes), false),
        }
    };
    state
        .requests
        .lock()
        .expect("token log lock")
        .push(TokenRequest {
            method: request.method.clone(),
            user,
            scopes,
            status,
        });
    (status, body.to_string(), challenge)
}

/// `Some((user, password))` from `Basic …`; `None` when it is not valid Basic (treated as
/// wrong credentials).
fn basic_credentials(authorization: &str) -> Option<(String, String)> {
    let (scheme, encoded) = authorization.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The token response for `scopes`: the user gets what it asked; anonymous gets `pull` if
/// allowed. Scopes that end up with no action are left out (a partial grant is no error).
fn issue(state: &State, user: Option<&str>, scopes: &[String]) -> serde_json::Value {
    let anonymous_pull = state.anonymous_pull.load(Ordering::SeqCst);
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|scope| {
            // `type:name:actions`; a name may hold a port (`host:5000/x`), actions never a ':'.
            let (kind, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            let granted: Vec<&str> = actions
                .split(',')
                .filter(|action| user.is_some() || (anonymous_pull && *action == "pull"))
                .collect();
            (!granted.is_empty()).then(|| json!({"type": kind, "name": name, "actions": granted}))
        })
        .collect();
    let now = SystemTime::now();
    let iat = now
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    let expires_in = state.expires_in.load(Ordering::SeqCst);
    let claims = json!({
        "iss": ISSUER,
        "sub": user.unwrap_or(""),
        "aud": SERVICE,
        "exp": iat + expires_in,
        "nbf": iat,
        "iat": iat,
        // Unique per token, as the spec asks (docker-registry does not check it).
        "jti": format!("{iat}-{}", state.tokens_issued.fetch_add(1, Ordering::SeqCst)),
        "access": access,
    });
    let header = json!({"typ": "JWT", "alg": "ES256", "kid": state.kid});
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = state
        .key
        .sign(&SystemRandom::new(), signing_input.as_bytes())
        .expect("ECDSA signing does not fail with a good RNG");
    let token = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.as_ref())
    );
    json!({
        "token": token,
        "access_token": token,
        "expires_in": expires_in,
        "issued_at": humantime::format_rfc3339_seconds(now).to_string(),
    })
}

/// The claims of a JWT, unverified: for tests that check what a token grants.
pub fn claims(token: &str) -> serde_json::Value {
    let payload = token
        .split('.')
        .nth(1)
        .unwrap_or_else(|| panic!("not a JWT: {token}"));
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap_or_else(|e| panic!("JWT payload is not base64url ({e}): {token}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("JWT payload is not JSON: {e}"))
}
