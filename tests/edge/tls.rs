//! TLS: protocol versions, HTTP/2 and HTTP/1.1 by ALPN, redirects on the plain port, and a
//! certificate swap in `files` mode seen by the next connection.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{curl_with_ca, EdgeServer, Tls, PASSWORD, USER};

fn creds() -> String {
    format!("{USER}:{PASSWORD}")
}

#[test]
fn curl_speaks_http2_and_http1_over_tls() {
    let edge = EdgeServer::start();
    let url = format!("{}/v2/", edge.url());
    for (flag, version) in [("--http2", "version=2"), ("--http1.1", "version=1.1")] {
        let (status, text) = edge.curl(&[flag, "-u", &creds(), &url]);
        assert_eq!(status, 200, "{text}");
        assert!(text.contains(version), "{flag}: {text}");
        assert!(text
            .to_lowercase()
            .contains("x-content-type-options: nosniff"));
        assert!(text.to_lowercase().contains("x-frame-options: deny"));
        assert!(
            !text.to_lowercase().contains("strict-transport-security"),
            "no HSTS with a self-signed certificate"
        );
    }
}

fn s_client(port: u16, version_flag: &str) -> bool {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            version_flag,
            "-brief",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs (apt-get install openssl)");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    text.contains("CONNECTION ESTABLISHED")
}

#[test]
fn tls_1_2_and_1_3_are_accepted_and_1_1_refused() {
    let edge = EdgeServer::start();
    assert!(s_client(edge.https_port, "-tls1_3"));
    assert!(s_client(edge.https_port, "-tls1_2"));
    assert!(!s_client(edge.https_port, "-tls1_1"));
}

#[test]
fn the_plain_port_redirects_to_https_on_the_configured_name() {
    let edge = EdgeServer::start();
    let out = Command::new("curl")
        .args(["-s", "-i", "-H", "Host: evil.example"])
        .arg(format!(
            "http://127.0.0.1:{}/v2/team/app/tags/list?n=1",
            edge.http_port
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(text.starts_with("http/1.1 301"), "{text}");
    let expected = format!(
        "location: https://localhost:{}/v2/team/app/tags/list?n=1",
        edge.https_port
    );
    assert!(text.contains(&expected), "{text}");
    assert!(
        !text.contains("evil.example"),
        "the client's Host header is never echoed"
    );
}

/// A CA and a leaf for localhost signed by it (HSTS is only sent for certificates that are not
/// self-signed). Returns (ca, leaf chain, leaf key).
fn make_cert(dir: &std::path::Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let path = |suffix: &str| dir.join(format!("{name}-{suffix}"));
    let run = |args: Vec<String>| {
        let out = Command::new("openssl").args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let s = |p: PathBuf| p.to_str().unwrap().to_owned();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ]
    .map(String::from);
    let mut ca = vec!["req".into(), "-x509".into()];
    ca.extend(ec.clone());
    ca.extend(["-days", "2", "-subj"].map(String::from));
    ca.extend([
        format!("/CN={name} test CA"),
        "-keyout".into(),
        s(path("ca.key")),
        "-out".into(),
        s(path("ca.pem")),
    ]);
    run(ca);
    let mut csr = vec!["req".into()];
    csr.extend(ec);
    csr.extend([
        "-subj".into(),
        "/CN=localhost".into(),
        "-keyout".into(),
        s(path("leaf.key")),
        "-out".into(),
        s(path("leaf.csr")),
    ]);
    run(csr);
    std::fs::write(path("ext"), "subjectAltName=DNS:localhost\n").unwrap();
    run(vec![
        "x509".into(),
        "-req".into(),
        "-in".into(),
        s(path("leaf.csr")),
        "-CA".into(),
        s(path("ca.pem")),
        "-CAkey".into(),
        s(path("ca.key")),
        "-CAcreateserial".into(),
        "-days".into(),
        "2".into(),
        "-extfile".into(),
        s(path("ext")),
        "-out".into(),
        s(path("leaf.pem")),
    ]);
    (path("ca.pem"), path("leaf.pem"), path("leaf.key"))
}

#[test]
fn files_mode_swaps_the_certificate_for_new_connections() {
    let certs = tempfile::tempdir().unwrap();
    let (first_ca, first, first_key) = make_cert(certs.path(), "first");
    let (second_ca, second, second_key) = make_cert(certs.path(), "second");
    let live = certs.path().join("live");
    std::fs::create_dir(&live).unwrap();
    let (cert, key) = (live.join("fullchain.pem"), live.join("privkey.pem"));
    std::fs::copy(&first, &cert).unwrap();
    std::fs::copy(&first_key, &key).unwrap();
    let edge = EdgeServer::start_with(Tls::Files(cert.clone(), key.clone()), "");
    let url = format!("{}/v2/", edge.url());
    let with_ca = |ca: &std::path::Path| curl_with_ca(ca, &["-u", &creds(), &url]);
    assert!(String::from_utf8_lossy(&with_ca(&first_ca).stdout).contains("status=200"));
    assert!(
        String::from_utf8_lossy(&with_ca(&first_ca).stdout)
            .to_lowercase()
            .contains("strict-transport-security"),
        "HSTS with a certificate that is not self-signed"
    );

    // Replace both files by rename, as certbot and editors do.
    std::fs::copy(&second_key, live.join("k.tmp")).unwrap();
    std::fs::copy(&second, live.join("c.tmp")).unwrap();
    std::fs::rename(live.join("k.tmp"), &key).unwrap();
    std::fs::rename(live.join("c.tmp"), &cert).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&with_ca(&second_ca).stdout).contains("status=200") {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served within 5 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A broken file keeps the new certificate serving.
    std::fs::write(&cert, "not a certificate").unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(String::from_utf8_lossy(&with_ca(&second_ca).stdout).contains("status=200"));
}
