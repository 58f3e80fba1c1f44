//! Runs the `regapp` binary built by Cargo for this test run, serving one storage root.

use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

use super::process::ServerProcess;
use super::Registry;

/// The one line regapp prints to stdout once its engine listener is bound.
const LISTENING: &str = "regapp engine listening on http://";
/// The line it prints once `[metrics] listen` is bound.
const METRICS_ON: &str = "regapp metrics on http://";

/// A regapp engine on a free loopback port; killed on drop.
pub struct Regapp {
    process: ServerProcess,
    host: String,
    /// Holds the generated config file for as long as the server runs.
    _config_dir: TempDir,
}

impl Regapp {
    /// Writes a config for `root` (delete enabled, port 0), starts regapp and waits for its
    /// listening line. Panics with regapp's output if it does not come up.
    pub fn start(root: &Path) -> Self {
        Self::start_with(root, "")
    }

    /// Like [`Regapp::start`], its registry in a fresh prefix of a bucket on the test
    /// process's SeaweedFS (`root` keeps only this node's state).
    pub fn start_on_s3(root: &Path) -> Self {
        Self::start_on_s3_with(root, "")
    }

    /// Like [`Regapp::start_on_s3`], with `extra` appended to the config.
    pub fn start_on_s3_with(root: &Path, extra: &str) -> Self {
        let prefix = super::seaweed::Seaweed::shared().fresh_prefix();
        Self::start_on_s3_prefix_with(root, &prefix, extra)
    }

    /// Like [`Regapp::start_on_s3`], in `prefix` of the bucket (a store another server shares).
    pub fn start_on_s3_prefix(root: &Path, prefix: &str) -> Self {
        Self::start_on_s3_prefix_with(root, prefix, "")
    }

    fn start_on_s3_prefix_with(root: &Path, prefix: &str, extra: &str) -> Self {
        Self::start_on_s3_server(root, super::seaweed::Seaweed::shared(), prefix, extra)
    }

    /// Like [`Regapp::start_on_s3`], on `server` (one the test can stop).
    pub fn start_on_s3_server(
        root: &Path,
        server: &super::seaweed::Seaweed,
        prefix: &str,
        extra: &str,
    ) -> Self {
        // Beside this node's state, where `regapp gc` and `du` read it again.
        std::fs::create_dir_all(root).expect("create the node's state directory");
        let credentials = root.join("s3-credentials");
        std::fs::write(
            &credentials,
            format!(
                "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                super::seaweed::ACCESS_KEY,
                super::seaweed::SECRET_KEY
            ),
        )
        .expect("write the S3 credentials");
        let extra = format!(
            "[storage.s3]\nbucket = {}\nendpoint = {}\nprefix = {}\ncredentials_file = {}\n{extra}",
            toml_string(super::seaweed::BUCKET),
            toml_string(&server.endpoint()),
            toml_string(prefix),
            toml_string(credentials.to_str().expect("UTF-8 temp paths")),
        );
        Self::start_with_storage(root, "backend = \"s3\"\n", &extra)
    }

    /// Like [`Regapp::start`], with `extra` appended to the config (e.g. a `[gc]` section).
    pub fn start_with(root: &Path, extra: &str) -> Self {
        Self::start_with_storage(root, "", extra)
    }

    /// Like [`Regapp::start_with`], with `storage` added to the `[storage]` section.
    fn start_with_storage(root: &Path, storage: &str, extra: &str) -> Self {
        let (config_dir, config) = write_config_with(root, storage, extra);

        let mut command = Command::new(env!("CARGO_BIN_EXE_regapp"));
        command.arg("serve").arg("--config").arg(&config);
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
        }
        let (mut process, found) = ServerProcess::spawn("regapp", "regapp", command, |line| {
            line.strip_prefix(LISTENING)
                .map(|rest| rest.trim().to_owned())
        });
        let host = process.wait_for_line(&found, "its listening line");
        process.wait_for_http(&host);
        Self {
            process,
            host,
            _config_dir: config_dir,
        }
    }
}

/// `regapp ARGS… --config CONFIG` with the binary Cargo built for this test run, not yet run.
pub fn command(args: &[&str], config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_regapp"));
    command.args(args).arg("--config").arg(config);
    command
}

/// Writes the config [`Regapp::start_with`] uses, for commands such as `regapp gc --config`
/// that need it without a server.
pub fn write_config(root: &Path, extra: &str) -> (TempDir, std::path::PathBuf) {
    write_config_with(root, "", extra)
}

fn write_config_with(root: &Path, storage: &str, extra: &str) -> (TempDir, std::path::PathBuf) {
    let config_dir = tempfile::tempdir().expect("create a temp dir for the regapp config");
    let config = config_dir.path().join("regapp.toml");
    let root = root.to_str().expect("test storage roots are UTF-8 paths");
    let text = format!(
        "[storage]\nroot = {}\ndelete_enabled = true\n{storage}\n[engine]\nlisten = \"127.0.0.1:0\"\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n{extra}",
        toml_string(root)
    );
    std::fs::write(&config, text).expect("write the regapp config");
    (config_dir, config)
}

impl Regapp {
    /// The config file it runs with.
    pub fn config(&self) -> std::path::PathBuf {
        self._config_dir.path().join("regapp.toml")
    }

    /// The port of `/metrics`, from the line regapp prints when it binds it (before it serves).
    pub fn metrics_port(&self) -> u16 {
        let log = self.process.log();
        let addr = log
            .lines()
            .find_map(|line| line.split_once(METRICS_ON).map(|(_, addr)| addr.trim()))
            .unwrap_or_else(|| panic!("no metrics line in:\n{log}"));
        addr.parse::<std::net::SocketAddr>()
            .unwrap_or_else(|e| panic!("metrics address {addr:?}: {e}"))
            .port()
    }

    /// The server's process id (for `/proc/PID/status`).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// `regapp ARGS… --config` of this server, as an operator runs `regapp gc` or `du` beside
    /// it (they go through its socket); their stdout. Panics with everything they and the
    /// server said unless they succeed.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = command(args, &self.config())
            .env("REGAPP_LOG", "warn")
            .output()
            .expect("run the regapp binary");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "regapp {args:?} failed ({}):\n{stdout}{}\n--- server ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.process.log()
        );
        stdout
    }

    /// `systemctl reload`: SIGHUP, on which regapp reads its config file again.
    pub fn reload(&self) {
        self.process.signal(libc::SIGHUP);
    }

    /// `kill -9`: no chance to finish anything.
    pub fn kill_hard(&mut self) {
        self.process.kill_hard();
    }
}

impl Registry for Regapp {
    fn name(&self) -> &'static str {
        "regapp"
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

/// A TOML basic string: quoted, with `\` and `"` escaped.
fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
