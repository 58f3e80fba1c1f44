//! A fake ACME CA behind instant-acme's pluggable HTTP client: answers by path from a [`Script`]
//! (ARI window, refusals, problems) and records what it was sent. Issues real certificates (rcgen)
//! for the CSR's key, so what the manager installs is checked like a real chain.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rcgen::{CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair};
use serde_json::{json, Value};
use x509_parser::prelude::{FromDer, X509CertificationRequest};

pub const BASE: &str = "https://ca.test";
pub const NAME: &str = "registry.test";
pub const DAY: Duration = Duration::from_secs(86_400);

/// How the fake CA behaves, and what it saw.
#[derive(Default)]
pub struct Script {
    /// The renewal window to offer; `None`: the directory has no `renewalInfo`.
    pub ari_window: Option<(SystemTime, SystemTime)>,
    /// Answer new orders that carry `replaces` with `alreadyReplaced`.
    pub refuse_replaces: bool,
    /// Answer every new order with this problem (type, detail, status).
    pub order_problem: Option<(&'static str, String, u16)>,
    /// Every new-order payload received.
    pub orders: Vec<Value>,
    /// Every renewal-info path asked.
    pub ari_asked: Vec<String>,
    pub profiles_offered: bool,
    pub issued_pem: Option<String>,
    pub finalized: bool,
}

pub struct FakeCa {
    pub script: Arc<Mutex<Script>>,
    pub issuer: Arc<Issuer<'static, KeyPair>>,
}

pub fn ca_issuer() -> Issuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "Fake CA");
    Issuer::new(params, KeyPair::generate().unwrap())
}

/// A leaf for `NAME` valid from `not_before` for `lifetime`, signed by the fake CA (so it has an
/// Authority Key Identifier for ARI); PEM chain and key.
pub fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    key: &impl rcgen::PublicKeyData,
    not_before: SystemTime,
    lifetime: Duration,
) -> String {
    let mut params = CertificateParams::new(vec![NAME.to_owned()]).unwrap();
    params.not_before = not_before.into();
    params.not_after = (not_before + lifetime).into();
    params.use_authority_key_identifier_extension = true;
    params.signed_by(key, issuer).unwrap().pem()
}

/// The public key inside a CSR, as rcgen wants it to sign a certificate for it.
struct CsrKey(Vec<u8>);

impl rcgen::PublicKeyData for CsrKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

fn b64(data: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(data)
        .unwrap()
}

fn response(status: u16, body: Value, location: Option<String>) -> BytesResponse {
    let mut builder = Response::builder()
        .status(status)
        .header("Replay-Nonce", "nonce")
        .header("Content-Type", "application/json");
    if let Some(location) = location {
        builder = builder.header("Location", location);
    }
    BytesResponse::from(
        builder
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap(),
    )
}

fn order_body(status: &str, replaces: &Value) -> Value {
    let mut order = json!({
        "status": status,
        "identifiers": [{"type": "dns", "value": NAME}],
        "authorizations": [format!("{BASE}/authz/1")],
        "finalize": format!("{BASE}/finalize/1"),
        "certificate": format!("{BASE}/cert/1"),
    });
    if !replaces.is_null() {
        order["replaces"] = replaces.clone();
    }
    order
}

impl FakeCa {
    fn answer(&self, method: Method, path: &str, body: &[u8]) -> BytesResponse {
        let mut script = self.script.lock().unwrap();
        let payload: Value = if body.is_empty() {
            Value::Null
        } else {
            let jws: Value = serde_json::from_slice(body).unwrap();
            match jws["payload"].as_str().unwrap_or("") {
                "" => Value::Null,
                p => serde_json::from_slice(&b64(p)).unwrap(),
            }
        };
        match (method, path) {
            (Method::GET, "/dir") => {
                let mut dir = json!({
                    "newNonce": format!("{BASE}/nonce"),
                    "newAccount": format!("{BASE}/new-account"),
                    "newOrder": format!("{BASE}/new-order"),
                });
                if script.ari_window.is_some() {
                    dir["renewalInfo"] = json!(format!("{BASE}/renewal-info"));
                }
                if script.profiles_offered {
                    dir["meta"] = json!({"profiles": {"shortlived": "about 6 days"}});
                }
                response(200, dir, None)
            }
            (Method::HEAD, "/nonce") => response(200, Value::Null, None),
            (Method::POST, "/new-account") => response(
                201,
                json!({"status": "valid"}),
                Some(format!("{BASE}/acct/1")),
            ),
            (Method::POST, "/new-order") => {
                script.orders.push(payload.clone());
                if let Some((kind, detail, status)) = &script.order_problem {
                    return response(*status, json!({"type": kind, "detail": detail}), None);
                }
                if script.refuse_replaces && !payload["replaces"].is_null() {
                    return response(
                        409,
                        json!({
                            "type": "urn:ietf:params:acme:error:alreadyReplaced",
                            "detail": "certificate already replaced"
                        }),
                        None,
                    );
                }
                response(
                    201,
                    order_body("ready", &payload["replaces"]),
                    Some(format!("{BASE}/order/1")),
                )
            }
            (Method::POST, "/authz/1") => response(
                200,
                json!({
                    "status": "valid",
                    "identifier": {"type": "dns", "value": NAME},
                    "challenges": [{
                        "type": "http-01", "url": format!("{BASE}/chall/1"),
                        "token": "t0k3n", "status": "valid"
                    }]
                }),
                None,
            ),
            (Method::POST, "/finalize/1") => {
                let csr_der = b64(payload["csr"].as_str().unwrap());
                let (_, csr) = X509CertificationRequest::from_der(&csr_der).unwrap();
                let key = CsrKey(
                    csr.certification_request_info
                        .subject_pki
                        .subject_public_key
                        .data
                        .to_vec(),
                );
                script.issued_pem = Some(leaf(&self.issuer, &key, SystemTime::now(), 45 * DAY));
                script.finalized = true;
                response(200, order_body("processing", &Value::Null), None)
            }
            (Method::POST, "/order/1") => {
                let status = if script.finalized { "valid" } else { "ready" };
                response(200, order_body(status, &Value::Null), None)
            }
            (Method::POST, "/cert/1") => {
                let pem = script.issued_pem.clone().unwrap();
                BytesResponse::from(
                    Response::builder()
                        .status(200)
                        .header("Replay-Nonce", "nonce")
                        .body(Full::new(Bytes::from(pem)))
                        .unwrap(),
                )
            }
            (Method::GET, path) if path.starts_with("/renewal-info/") => {
                script.ari_asked.push(path.to_owned());
                let (start, end) = script.ari_window.unwrap();
                let rfc3339 = |t| humantime::format_rfc3339_seconds(t).to_string();
                BytesResponse::from(
                    Response::builder()
                        .status(200)
                        .header("Retry-After", "21600")
                        .body(Full::new(Bytes::from(
                            json!({"suggestedWindow": {"start": rfc3339(start), "end": rfc3339(end)}})
                                .to_string(),
                        )))
                        .unwrap(),
                )
            }
            (method, path) => response(
                StatusCode::NOT_FOUND.as_u16(),
                json!({"type": "about:blank", "detail": format!("fake CA: no {method} {path}")}),
                None,
            ),
        }
    }
}

impl HttpClient for FakeCa {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let script = self.script.clone();
        let issuer = self.issuer.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            let ca = FakeCa { script, issuer };
            Ok(ca.answer(parts.method, parts.uri.path(), &body))
        })
    }
}
