//! Clients that send a body before they have credentials: the edge's 401 comes before it reads
//! the body, and the client must still see it (a lingering close over HTTP/1.1, a stream reset
//! with `NO_ERROR` over HTTP/2), then get in with credentials.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;

use super::{start_upload, EdgeServer, PASSWORD, USER};
use crate::util::{basic_auth, python, tls::client_trusting};

const MIB: usize = 1024 * 1024;

/// One request over a fresh TLS connection (HTTP/1.1), the way Python's requests sends it:
/// the whole body is written before anything is read. After the header and the first 64 KiB
/// the client pauses, as a client that reads the next chunk from disk may, so the edge has
/// answered by the time the rest comes. Returns the status and the response's headers and
/// body as text, or what went wrong on the way.
fn write_all_then_read(
    edge: &EdgeServer,
    request_line: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Result<(u16, String), String> {
    let config = client_trusting(&std::fs::read(edge.ca()).unwrap());
    let name = "localhost".try_into().unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", edge.https_port)).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let mut head = format!(
        "{request_line} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
        edge.host(),
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes())
        .map_err(|e| format!("writing the header: {e}"))?;
    for (n, piece) in body.chunks(64 * 1024).enumerate() {
        if n == 1 {
            tls.flush().map_err(|e| format!("flushing: {e}"))?;
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        tls.write_all(piece)
            .map_err(|e| format!("writing the body: {e}"))?;
    }
    tls.flush().map_err(|e| format!("flushing: {e}"))?;
    let mut reader = BufReader::new(tls);
    let mut text = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .map_err(|e| format!("reading the answer: {e}"))?;
        if let Some(value) = line.to_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap();
        }
        text.push_str(&line);
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    let mut answer = vec![0; length];
    reader
        .read_exact(&mut answer)
        .map_err(|e| format!("reading the answer's body: {e}"))?;
    text.push_str(&String::from_utf8_lossy(&answer));
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {text:?}"))?;
    Ok((status, text))
}

/// The issue's reproduction over HTTP/1.1: a 1 MiB PATCH without credentials, written whole
/// before reading, gets its 401 (before the fix: the connection was cut under the writer), and
/// the same PATCH with credentials then gets 202.
#[test]
fn a_patch_written_whole_without_credentials_sees_its_401_then_goes_through() {
    let edge = EdgeServer::start();
    let location = start_upload(&edge, "linger/h1");
    let chunk = vec![7u8; MIB];
    let patch = format!("PATCH {location}");
    let range = ("Content-Range", format!("0-{}", MIB - 1));
    let octets = ("Content-Type", "application/octet-stream".to_owned());

    let (status, text) =
        write_all_then_read(&edge, &patch, &[range.clone(), octets.clone()], &chunk)
            .unwrap_or_else(|e| panic!("the client never saw the 401: {e}"));
    assert_eq!(status, 401, "{text}");
    assert!(text.contains(r#""code":"UNAUTHORIZED""#), "{text}");
    assert!(
        text.to_lowercase().contains("connection: close"),
        "the edge says it closes after an unread body: {text}"
    );

    let creds = ("Authorization", basic_auth(USER, PASSWORD));
    let (status, text) = write_all_then_read(&edge, &patch, &[range, octets, creds], &chunk)
        .unwrap_or_else(|e| panic!("the retry with credentials failed: {e}"));
    assert_eq!(status, 202, "{text}");
    assert!(text.to_lowercase().contains("range: 0-1048575"), "{text}");
}

/// Over HTTP/2 the edge answers 401 and resets the stream with `NO_ERROR`, and the connection
/// goes on: curl sends the retry with credentials on the same connection (`num_connects` 0).
#[test]
fn over_http2_the_401_resets_only_its_stream() {
    let edge = EdgeServer::start();
    let location = start_upload(&edge, "linger/h2");
    let chunk = edge.dir.path().join("chunk");
    std::fs::write(&chunk, vec![7u8; MIB]).unwrap();
    let url = format!("{}{location}", edge.url());
    let creds = format!("{USER}:{PASSWORD}");
    let body = format!("@{}", chunk.display());
    let patch = [
        "--http2",
        "-X",
        "PATCH",
        "-H",
        "Content-Type: application/octet-stream",
        "-H",
        "Content-Range: 0-1048575",
        "--data-binary",
        &body,
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code} %{num_connects}\n",
    ];
    let out = Command::new("curl")
        .args(["-sS", "--cacert", edge.ca().to_str().unwrap()])
        .args(patch)
        .arg(&url)
        .arg("--next")
        .args(["--cacert", edge.ca().to_str().unwrap(), "-u", &creds])
        .args(patch)
        .arg(&url)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        ["2 401 1", "2 202 0"],
        "the 401, then the 202 on the same connection: {text} {stderr}"
    );
}

/// oras-py, the Python ORAS client, pushes an artifact with a `subject` in 1 MiB PATCHes
/// through the edge (each one first without credentials, as it always does) and pulls it back
/// byte-identical; the referrers API lists it under its subject.
#[test]
fn oras_py_pushes_a_chunked_artifact_with_a_subject_and_pulls_it_back() {
    let edge = EdgeServer::start();
    let work = tempfile::tempdir().unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/edge/oras_chunked_push.py"
    );
    let out = Command::new(python())
        .arg(script)
        .args([&edge.host(), USER, PASSWORD])
        .arg(edge.ca())
        .arg(work.path())
        .output()
        .expect("the test venv's python runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "oras-py failed:\n{text}\n{stderr}");
    assert!(text.contains("artifact pushed 201"), "{text}");
    assert!(text.contains("referrers 1"), "{text}");
    assert!(text.contains("identical"), "{text}");
}
