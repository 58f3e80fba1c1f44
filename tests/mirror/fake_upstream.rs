//! An upstream registry that answers what a test says, for what a real one cannot do on cue
//! (429s with `Retry-After`, bytes that do not match their digest): one request per
//! connection, each logged as `(method, path)` before it is answered.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::Value;

/// What [`FakeUpstream`] answers one request with (`Content-Length` is the body's; a HEAD
/// gets the head only).
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Canned {
    pub fn json(status: u16, body: Value) -> Canned {
        Canned {
            status,
            headers: vec![("Content-Type", "application/json".to_owned())],
            body: body.to_string().into_bytes(),
        }
    }
}

type Answerer = dyn Fn(&str, &str) -> Canned + Send + Sync;

/// An upstream registry that answers what the test says, one request per connection,
/// logging `(method, path)` of every request before answering it. Stops on drop.
pub struct FakeUpstream {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<(String, String)>>>,
    stopping: Arc<AtomicBool>,
}

impl FakeUpstream {
    pub fn start(answer: impl Fn(&str, &str) -> Canned + Send + Sync + 'static) -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake upstream");
        let addr = listener.local_addr().expect("its address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let answer: Arc<Answerer> = Arc::new(answer);
        {
            let (requests, stopping) = (requests.clone(), stopping.clone());
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (answer, requests) = (answer.clone(), requests.clone());
                    thread::spawn(move || serve_canned(stream, &*answer, &requests));
                }
            });
        }
        FakeUpstream {
            addr,
            requests,
            stopping,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests whose method is `method` (any if empty) and path contains `path_contains`.
    pub fn requests(&self, method: &str, path_contains: &str) -> usize {
        let requests = self.requests.lock().expect("the request log");
        requests
            .iter()
            .filter(|(m, p)| (method.is_empty() || m == method) && p.contains(path_contains))
            .count()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn serve_canned(stream: TcpStream, answer: &Answerer, requests: &Mutex<Vec<(String, String)>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return;
    };
    let (method, path) = (method.to_owned(), path.to_owned());
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => return,
            Ok(_) if header.trim().is_empty() => break,
            Ok(_) => {}
        }
    }
    requests
        .lock()
        .expect("the request log")
        .push((method.clone(), path.clone()));
    let canned = answer(&method, &path);
    let reason = match canned.status {
        200 => "OK",
        404 => "Not Found",
        429 => "Too Many Requests",
        _ => "Status",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n",
        canned.status,
        canned.body.len()
    );
    for (name, value) in &canned.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = out.write_all(head.as_bytes());
    if method != "HEAD" {
        let _ = out.write_all(&canned.body);
    }
    let _ = out.flush();
}
