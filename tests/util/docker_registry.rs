//! Runs Debian's `docker-registry` (CNCF distribution 2.8) as the reference implementation, on
//! the filesystem driver so that it shares regapp's on-disk layout, or on its S3 driver.

use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

use super::process::ServerProcess;
use super::Registry;

/// A docker-registry on a free loopback port; killed on drop.
pub struct DockerRegistry {
    process: ServerProcess,
    host: String,
    /// Holds the generated config file for as long as the server runs.
    _config_dir: TempDir,
}

impl DockerRegistry {
    /// Starts `docker-registry serve` with `rootdirectory = root`, delete enabled, no auth,
    /// listening on `127.0.0.1:0`; waits until `GET /v2/` answers.
    pub fn start(root: &Path) -> Self {
        let root = root.to_str().expect("test storage roots are UTF-8 paths");
        // JSON strings are valid YAML scalars, which takes care of quoting the path.
        let storage = format!("  filesystem:\n    rootdirectory: {}\n", json(root));
        Self::start_with_storage(&storage)
    }

    /// Like [`DockerRegistry::start`], on its `s3-aws` driver: `prefix` of the bucket of the
    /// test process's SeaweedFS, the store [`super::Regapp::start_on_s3`] uses for the same
    /// prefix.
    pub fn start_on_s3(prefix: &str) -> Self {
        let server = super::seaweed::Seaweed::shared();
        let storage = format!(
            "  s3:\n    region: us-east-1\n    regionendpoint: {}\n    bucket: {}\n    \
             accesskey: {}\n    secretkey: {}\n    secure: false\n    v4auth: true\n    \
             rootdirectory: {}\n  redirect:\n    disable: true\n",
            json(&server.endpoint()),
            json(super::seaweed::BUCKET),
            json(super::seaweed::ACCESS_KEY),
            json(super::seaweed::SECRET_KEY),
            json(&format!("/{prefix}")),
        );
        Self::start_with_storage(&storage)
    }

    fn start_with_storage(storage: &str) -> Self {
        let config_dir = tempfile::tempdir().expect("create a temp dir for the registry config");
        let config = config_dir.path().join("config.yml");
        let yaml = format!(
            "version: 0.1\n\
             log:\n  level: info\n\
             storage:\n{storage}  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:0\n"
        );
        std::fs::write(&config, yaml).expect("write the docker-registry config");

        let (process, host) = serve(&config);
        Self {
            process,
            host,
            _config_dir: config_dir,
        }
    }
}

/// Runs `docker-registry serve CONFIG` without the caller's `REGISTRY_*` overrides; waits until
/// it logs its listening address and answers `GET /v2/` (any status). Returns the process and
/// `127.0.0.1:PORT`. Shared with [`super::upstream::Upstream`], which writes its own configs.
pub fn serve(config: &Path) -> (ServerProcess, String) {
    let mut command = Command::new("docker-registry");
    command.arg("serve").arg(config);
    // 2.8.2 on S3 dies at start when this is set (its transport cannot take a CA bundle).
    command.env_remove("AWS_CA_BUNDLE");
    // The registry reads REGISTRY_* variables as config overrides; keep the caller's out.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("REGISTRY_") {
            command.env_remove(key);
        }
    }
    // Port 0 works: the registry logs the address it really bound, e.g.
    // `level=info msg="listening on 127.0.0.1:38823"` (`…:38823, tls"` with `http.tls`).
    let (mut process, found) =
        ServerProcess::spawn("docker-registry", "docker-registry", command, |line| {
            let rest = &line[line.find("msg=\"listening on ")? + "msg=\"listening on ".len()..];
            Some(rest[..rest.find(['"', ','])?].to_owned())
        });
    let host = process.wait_for_line(&found, "its listening address");
    process.wait_for_http(&host);
    (process, host)
}

/// `text` as a quoted YAML scalar (a JSON string is one), for paths and names in configs.
pub fn json(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

impl Registry for DockerRegistry {
    fn name(&self) -> &'static str {
        "docker-registry"
    }

    fn host(&self) -> &str {
        &self.host
    }

    fn stop(&mut self) {
        self.process.stop();
    }

    fn log(&self) -> String {
        self.process.log()
    }
}
