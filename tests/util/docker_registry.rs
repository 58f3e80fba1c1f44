//! Runs Debian's `docker-registry` (CNCF distribution 2.8) as the reference implementation, on
//! the filesystem driver so that it shares regapp's on-disk layout.

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
        let config_dir = tempfile::tempdir().expect("create a temp dir for the registry config");
        let config = config_dir.path().join("config.yml");
        let root = root.to_str().expect("test storage roots are UTF-8 paths");
        // JSON strings are valid YAML scalars, which takes care of quoting the path.
        let yaml = format!(
            "version: 0.1\n\
             log:\n  level: info\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:0\n",
            serde_json::Value::from(root)
        );
        std::fs::write(&config, yaml).expect("write the docker-registry config");

        let mut command = Command::new("docker-registry");
        command.arg("serve").arg(&config);
        // The registry reads REGISTRY_* variables as config overrides; keep the caller's out.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("REGISTRY_") {
                command.env_remove(key);
            }
        }
        // Port 0 works: the registry logs the address it really bound, e.g.
        // `level=info msg="listening on 127.0.0.1:38823"`.
        let (mut process, found) =
            ServerProcess::spawn("docker-registry", "docker-registry", command, |line| {
                let rest = &line[line.find("msg=\"listening on ")? + "msg=\"listening on ".len()..];
                Some(rest[..rest.find('"')?].to_owned())
            });
        let host = process.wait_for_line(&found, "its listening address");
        process.wait_for_http(&host);
        Self {
            process,
            host,
            _config_dir: config_dir,
        }
    }
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
