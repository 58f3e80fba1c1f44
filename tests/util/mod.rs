//! Shared helpers for the integration tests: registry servers (regapp and the reference
//! docker-registry), the skopeo client, OCI image layouts built on disk, and comparisons.
//!
//! Tests are written against the [`Registry`] trait and get their server from
//! [`registry_under_test`], so the same tests can check this harness against docker-registry
//! (`REGAPP_TEST_TARGET=docker-registry`).

// Each test module uses its own subset of these helpers.
#![allow(dead_code)]

pub mod containerd;
pub mod docker_registry;
pub mod haproxy;
pub mod images;
pub mod layout;
pub mod process;
pub mod regapp;
pub mod seaweed;
pub mod skopeo;
pub mod store;
pub mod tls;
pub mod token_issuer;
pub mod upstream;

use std::path::Path;
use std::time::Duration;

pub use docker_registry::DockerRegistry;
pub use regapp::Regapp;
pub use skopeo::Skopeo;

/// Polls `check` every 50 ms until it holds or `within` passes (a server's own output is
/// printed when the test fails).
pub fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The Python that has the tests' PyPI clients (`tests/requirements.txt`, installed into
/// `target/test-venv` by `tests/run-all.sh`).
pub fn python() -> std::path::PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run tests/run-all.sh once (it installs tests/requirements.txt)",
        python.display()
    );
    python
}

/// An `Authorization: Basic` value, as clients send it.
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// The value of header `name` (lower case) in a response head as `curl -i` prints it.
pub fn header_value(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

/// Runs `regapp <args> --config <config>`, which must succeed; returns its stdout.
pub fn regapp_ok(args: &[&str], config: &Path) -> String {
    let out = regapp::command(args, config).output().expect("run regapp");
    assert!(
        out.status.success(),
        "regapp {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("regapp prints UTF-8")
}

/// Runs `regapp <command> --config <config>`, which must fail; returns its stderr.
pub fn regapp_fails(command: &str, config: &Path) -> String {
    let out = regapp::command(&[command], config)
        .output()
        .expect("run regapp");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "regapp {command} succeeded: {stderr}"
    );
    stderr
}

/// Settings for the bucket of `server`, under `prefix` (regapp's own S3 driver, as the tests
/// read and write a store with it).
pub fn s3_settings(server: &seaweed::Seaweed, prefix: String) -> ::regapp::storage::S3Settings {
    ::regapp::storage::S3Settings {
        bucket: seaweed::BUCKET.to_owned(),
        endpoint: server.endpoint(),
        prefix,
        access_key_id: Some(seaweed::ACCESS_KEY.to_owned()),
        secret_access_key: Some(seaweed::SECRET_KEY.to_owned()),
        ..Default::default()
    }
}

/// A running registry server, whatever implements it.
pub trait Registry {
    /// Short name for messages: "regapp" or "docker-registry".
    fn name(&self) -> &'static str;
    /// `127.0.0.1:PORT`, as used in image references.
    fn host(&self) -> &str;
    /// `http://127.0.0.1:PORT`.
    fn url(&self) -> String {
        format!("http://{}", self.host())
    }
    /// Stops the server gracefully (SIGTERM, then SIGKILL); the log stays readable.
    fn stop(&mut self);
    /// Everything the server printed so far.
    fn log(&self) -> String;
}

/// Which implementation [`registry_under_test`] starts; from `REGAPP_TEST_TARGET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Regapp,
    /// regapp with its registry in a bucket of a SeaweedFS the test process starts.
    RegappS3,
    DockerRegistry,
}

impl Target {
    /// Reads `REGAPP_TEST_TARGET`: unset or `regapp` → regapp; `regapp-s3` → regapp on S3;
    /// `docker-registry` → the reference.
    pub fn from_env() -> Self {
        match std::env::var("REGAPP_TEST_TARGET").as_deref() {
            Err(std::env::VarError::NotPresent) | Ok("" | "regapp") => Self::Regapp,
            Ok("regapp-s3") => Self::RegappS3,
            Ok("docker-registry") => Self::DockerRegistry,
            Ok(other) => panic!(
                "REGAPP_TEST_TARGET={other:?}: expected `regapp` (the default), `regapp-s3` or \
                 `docker-registry`"
            ),
            Err(e) => panic!("REGAPP_TEST_TARGET: {e}"),
        }
    }
}

/// Starts the registry under test on storage `root`: regapp, unless `REGAPP_TEST_TARGET` says
/// otherwise (see [`Target::from_env`]).
pub fn registry_under_test(root: &Path) -> Box<dyn Registry> {
    match Target::from_env() {
        Target::Regapp => Box::new(Regapp::start(root)),
        Target::RegappS3 => Box::new(Regapp::start_on_s3(root)),
        Target::DockerRegistry => Box::new(DockerRegistry::start(root)),
    }
}

/// The repository names `GET /v2/_catalog` lists, two per page, following `Link` headers.
pub fn catalog(registry: &dyn Registry) -> Vec<String> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a plain-HTTP reqwest client builds");
    let mut names = Vec::new();
    let mut next = Some(format!("{}/v2/_catalog?n=2", registry.url()));
    let mut pages = 0;
    while let Some(url) = next.take() {
        pages += 1;
        assert!(
            pages <= 1000,
            "{}: catalog pagination does not end",
            registry.name()
        );
        let response = client
            .get(&url)
            .send()
            .unwrap_or_else(|e| panic!("GET {url} on {}: {e}", registry.name()));
        let status = response.status();
        next = response
            .headers()
            .get("link")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| Some(&l[l.find('<')? + 1..l.find('>')?]))
            .map(|target| match target.starts_with('/') {
                true => format!("{}{target}", registry.url()),
                false => target.to_owned(),
            });
        let body = response.text().expect("read the catalog body");
        assert!(status.is_success(), "GET {url}: {status}: {body}");
        let page: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {url}: body is not JSON ({e}): {body}"));
        let repositories = page["repositories"]
            .as_array()
            .unwrap_or_else(|| panic!("GET {url}: no `repositories` array: {body}"));
        names.extend(
            repositories
                .iter()
                .map(|r| r.as_str().expect("repository names are strings").to_owned()),
        );
    }
    names
}

/// `podman --root DIR/root --runroot DIR/run --storage-driver vfs ARGS`, not yet run: podman
/// with its own image store in `dir`.
pub fn podman_command(dir: &Path, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new("podman");
    command
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .args(["--storage-driver", "vfs"])
        .args(args);
    command
}

/// `podman --root … --storage-driver vfs ARGS`: podman with its own image store in `dir`;
/// `pull` and `push` also get an empty auth file, the registry's CA in `cert_dir` and
/// `creds` (`user:password`) when given.
pub fn podman(
    dir: &std::path::Path,
    cert_dir: &std::path::Path,
    creds: Option<&str>,
    args: &[&str],
) -> std::process::Output {
    let mut command = podman_command(dir, args);
    if matches!(args.first(), Some(&"pull" | &"push")) {
        std::fs::write(dir.join("auth.json"), "{}").unwrap();
        command
            .arg(format!("--authfile={}", dir.join("auth.json").display()))
            .arg(format!("--cert-dir={}", cert_dir.display()));
        if let Some(creds) = creds {
            command.args(["--creds", creds]);
        }
    }
    command
        .output()
        .expect("podman runs (apt-get install podman)")
}

/// `len` bytes that compress badly and differ with `seed` (xorshift).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
