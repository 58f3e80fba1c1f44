//! The upstream fixtures (`util::upstream`, `util::token_issuer`) against real clients: each kind
//! of upstream takes a skopeo push and serves it back the way a mirror will fetch it, counts
//! requests exactly, and keeps port and content over a restart. The mirror tests count upstream
//! fetches with these fixtures, so a wrong count here would make them lie.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::util::images::small_image;
use crate::util::skopeo::{docker_ref, oci_ref, CopyOptions};
use crate::util::token_issuer::{self, TokenIssuer};
use crate::util::upstream::{Upstream, TOKEN_PASSWORD, TOKEN_USER};
use crate::util::{basic_auth, Skopeo};

/// Protects the open upstream: a push lands, an anonymous pull reads the same bytes, and the
/// counts say exactly one GET per manifest and per blob that the pull fetched.
#[test]
fn open_upstream_serves_a_push_and_counts_each_fetch() {
    let work = tempfile::tempdir().expect("create a scratch dir");
    let upstream = Upstream::open();
    assert!(upstream.url().starts_with("http://127.0.0.1:"));
    assert_eq!(upstream.ca_file(), None);
    assert_eq!(upstream.credentials(), None);
    let image = small_image(&work.path().join("image"), "open-upstream");
    let pushed = upstream.push(&image.reference(), "library/alpine:3");
    assert_eq!(
        pushed, image.top.digest,
        "the push kept the manifest digest"
    );
    assert_eq!(
        upstream.requests("GET", "/manifests/"),
        0,
        "a push GETs no manifest"
    );

    let skopeo = Skopeo::new();
    let manifest = skopeo.inspect_raw(&docker_ref(&upstream.host(), "library/alpine:3"));
    assert_eq!(manifest, image.top_bytes(), "the manifest bytes served");
    assert_eq!(upstream.requests("GET", "/manifests/3"), 1);
    assert_eq!(
        upstream.requests_with_status("GET", "/v2/library/alpine/manifests/3", 200),
        1
    );

    let pulled = skopeo.copy(
        &docker_ref(&upstream.host(), "library/alpine:3"),
        &oci_ref(&work.path().join("pulled"), "v1"),
    );
    assert_eq!(pulled, image.top.digest);
    assert_eq!(upstream.requests("GET", "/manifests/3"), 2);
    for blob in image.layout.blob_digests() {
        if blob == image.top.digest {
            continue;
        }
        let path = format!("/v2/library/alpine/blobs/{blob}");
        assert_eq!(upstream.requests("GET", &path), 1, "GETs of {blob}");
    }
    assert!(
        upstream
            .access_log()
            .iter()
            .all(|r| !r.uri.contains("log-sync")),
        "the log-sync requests are not counted"
    );
}

/// Protects the TLS + Basic upstream: the certificate verifies for 127.0.0.1 (skopeo with the
/// CA as its cert dir), credentials are required (anonymous gets 401, which the log counts),
/// and a pull with them reads back what was pushed.
#[test]
fn basic_tls_upstream_wants_credentials_over_verified_tls() {
    let work = tempfile::tempdir().expect("create a scratch dir");
    let upstream = Upstream::basic_tls("alice", "s3cret-pw");
    assert!(upstream.url().starts_with("https://127.0.0.1:"));
    let ca = upstream.ca_file().expect("a TLS upstream has a CA file");
    assert!(std::fs::read_to_string(&ca)
        .expect("read the CA file")
        .contains("BEGIN CERTIFICATE"));
    assert_eq!(
        upstream.credentials(),
        Some(("alice".to_owned(), "s3cret-pw".to_owned()))
    );
    let image = small_image(&work.path().join("image"), "basic-upstream");
    let pushed = upstream.push(&image.reference(), "team/app:v1");
    assert_eq!(pushed, image.top.digest);

    let anonymous = Skopeo::new().copy_with(
        &docker_ref(&upstream.host(), "team/app:v1"),
        &oci_ref(&work.path().join("anonymous"), "v1"),
        CopyOptions::default(),
    );
    let refused = anonymous.expect_err("an anonymous pull from a Basic upstream fails");
    assert!(
        refused.to_string().contains("unauthorized")
            || refused.to_string().contains("authentication required"),
        "{refused}"
    );
    assert_eq!(
        upstream.requests_with_status("GET", "/manifests/v1", 401),
        1,
        "the anonymous attempt is logged as a 401"
    );

    let pulled = upstream.pull_to("team/app:v1", &oci_ref(&work.path().join("pulled"), "v1"));
    assert_eq!(pulled, image.top.digest);
    assert_eq!(
        upstream.requests_with_status("GET", "/manifests/v1", 200),
        1,
        "the pull with credentials"
    );
}

/// Protects the token upstream and its issuer: a push with the user's credentials gets a
/// push token, an anonymous pull gets a pull token and the same bytes, anonymous pushes are
/// refused, and turning anonymous pulls off makes the upstream private.
#[test]
fn token_upstream_takes_tokens_from_its_issuer() {
    let work = tempfile::tempdir().expect("create a scratch dir");
    let upstream = Upstream::token_auth();
    let issuer = upstream
        .token_issuer()
        .expect("a token upstream has an issuer");
    assert_eq!(
        upstream.credentials(),
        Some((TOKEN_USER.to_owned(), TOKEN_PASSWORD.to_owned()))
    );
    let image = small_image(&work.path().join("image"), "token-upstream");
    let pushed = upstream.push(&image.reference(), "library/busybox:1");
    assert_eq!(pushed, image.top.digest);
    let by_user: Vec<_> = issuer
        .requests()
        .into_iter()
        .filter(|r| r.user.as_deref() == Some(TOKEN_USER))
        .collect();
    assert!(
        by_user.iter().any(|r| r.status == 200
            && r.scopes
                .iter()
                .any(|s| s == "repository:library/busybox:pull,push")),
        "skopeo asked for a push token with the user's credentials: {by_user:?}"
    );

    let tokens_before = issuer.token_requests();
    let skopeo = Skopeo::new();
    let reference = docker_ref(&upstream.host(), "library/busybox:1");
    assert_eq!(skopeo.inspect_raw(&reference), image.top_bytes());
    assert!(
        issuer.token_requests() > tokens_before,
        "the pull asked for a token"
    );
    let last = issuer.requests().pop().expect("a token request");
    assert_eq!(last.user, None, "the pull was anonymous");
    assert_eq!(last.scopes, ["repository:library/busybox:pull"]);
    assert_eq!(
        upstream.requests_with_status("GET", "/manifests/1", 200),
        1,
        "one manifest GET with the token"
    );

    let anonymous_push = skopeo.copy_with(
        &image.reference(),
        &docker_ref(&upstream.host(), "library/busybox:2"),
        CopyOptions::default(),
    );
    assert!(anonymous_push.is_err(), "an anonymous push is refused");

    issuer.set_anonymous_pull(false);
    let private = skopeo.copy_with(
        &reference,
        &oci_ref(&work.path().join("private"), "v1"),
        CopyOptions::default(),
    );
    assert!(
        private.is_err(),
        "no anonymous pull once the upstream is private"
    );
    issuer.set_anonymous_pull(true);
}

/// Protects what the token issuer answers, field by field, since a mirror's token client is
/// written against it: Docker Hub's JSON, a JWT docker-registry verifies (the pull above), 404
/// to POST and 401 to wrong credentials, and `expires_in` as set.
#[test]
fn token_issuer_answers_as_docker_hub_does() {
    let issuer = TokenIssuer::start("bob", "pw");
    issuer.set_expires_in(300);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a plain-HTTP reqwest client builds");
    let url = format!(
        "{}?service={}&scope=repository:a/b:pull,push&scope=repository:c:pull",
        issuer.realm(),
        issuer.service()
    );

    let response = client
        .get(&url)
        .header("authorization", basic_auth("bob", "pw"))
        .send()
        .expect("GET a token");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().expect("a JSON token response");
    assert_eq!(body["token"], body["access_token"]);
    assert_eq!(body["expires_in"], 300);
    assert!(body["issued_at"].as_str().unwrap().ends_with('Z'));
    let token = body["token"].as_str().expect("a token string");
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(
        parts[2].len(),
        86,
        "a 64-byte r||s signature, base64url without padding"
    );
    let claims = token_issuer::claims(token);
    assert_eq!(claims["aud"], issuer.service(), "aud is a string");
    assert_eq!(claims["iss"], issuer.issuer());
    assert_eq!(claims["sub"], "bob");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let iat = claims["iat"].as_u64().expect("iat is an integer");
    assert!(iat.abs_diff(now) <= 5);
    assert_eq!(claims["exp"].as_u64(), Some(iat + 300));
    assert_eq!(
        claims["access"],
        serde_json::json!([
            {"type": "repository", "name": "a/b", "actions": ["pull", "push"]},
            {"type": "repository", "name": "c", "actions": ["pull"]},
        ])
    );
    let kid = issuer.kid();
    assert_eq!(kid.len(), 12 * 4 + 11, "12 groups of 4: {kid}");
    let base32 = |b: u8| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b);
    assert!(
        kid.split(':')
            .all(|g| g.len() == 4 && g.bytes().all(base32)),
        "upper-case base32 in groups of 4: {kid}"
    );

    let anonymous = client.get(&url).send().expect("GET an anonymous token");
    let body: serde_json::Value = anonymous.json().expect("a JSON token response");
    let claims = token_issuer::claims(body["token"].as_str().unwrap());
    assert_eq!(
        claims["access"],
        serde_json::json!([
            {"type": "repository", "name": "a/b", "actions": ["pull"]},
            {"type": "repository", "name": "c", "actions": ["pull"]},
        ]),
        "anonymous gets pull only, and no error"
    );

    let wrong = client
        .get(&url)
        .header("authorization", basic_auth("bob", "nope"))
        .send()
        .expect("GET with wrong credentials");
    assert_eq!(wrong.status(), 401);
    let post = client
        .post(issuer.realm())
        .body("grant_type=password&username=bob&password=pw")
        .send()
        .expect("POST the OAuth2 password grant");
    assert_eq!(post.status(), 404, "POST falls back to GET in containerd");
    assert_eq!(
        issuer.token_requests(),
        3,
        "GETs answered, POST not counted"
    );
    assert_eq!(issuer.tokens_issued(), 2);
}

/// Protects the "upstream down" tests: stop() refuses connections, start() comes back on the
/// same port with the same content, and counts span the restart.
#[test]
fn stopped_upstream_comes_back_on_its_port_with_its_content() {
    let work = tempfile::tempdir().expect("create a scratch dir");
    let mut upstream = Upstream::open();
    let image = small_image(&work.path().join("image"), "restart-upstream");
    upstream.push(&image.reference(), "library/alpine:3");
    let skopeo = Skopeo::new();
    let reference = docker_ref(&upstream.host(), "library/alpine:3");
    skopeo.inspect_raw(&reference);
    let host = upstream.host();

    upstream.stop();
    assert!(!upstream.is_running());
    assert!(
        std::net::TcpStream::connect(&host).is_err(),
        "nothing listens on {host} while stopped"
    );
    assert_eq!(
        upstream.requests("GET", "/manifests/3"),
        1,
        "counted while stopped"
    );

    upstream.start();
    assert_eq!(upstream.host(), host, "the same port");
    assert_eq!(
        skopeo.inspect_raw(&reference),
        image.top_bytes(),
        "the same content"
    );
    assert_eq!(
        upstream.requests("GET", "/manifests/3"),
        2,
        "counts span the restart"
    );
}
