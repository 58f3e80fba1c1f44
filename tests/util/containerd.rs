//! containerd (Debian's `containerd` 1.6.20) and its `ctr` client as the tests drive them: a
//! private daemon per test, pulling through registry mirrors configured in a `hosts.toml`
//! directory (`ctr images pull --hosts-dir`), as containerd and Kubernetes nodes use them.
//!
//! The daemon runs as root (as it does on nodes) with everything under one temp dir, and its
//! config keeps only what a pull needs:
//!
//! - `root`, `state`, `temp` and both sockets (`grpc.address` and `ttrpc.address`) in the temp
//!   dir: nothing is shared with a system containerd or with another test.
//! - `debug.address`, `metrics.address` and `grpc.tcp_address` empty: it listens on no TCP
//!   port, so tests never collide on one.
//! - Disabled, because a pull does not use them and they reach outside the temp dir or need
//!   what a sandbox may lack: the CRI plugin (CNI, a TCP streaming server, cgroups), the task
//!   runtimes, the task services, the restart monitor and the cgroups monitor (shims, cgroups),
//!   `opt` (creates `/opt/containerd`), and every snapshotter but `native` (aufs, zfs and
//!   btrfs probe kernel modules and file systems, devmapper needs a pool, overlayfs cannot stack
//!   on an overlay root as in a container).
//! - `native` is the snapshotter the pulls unpack into: it copies layers into plain
//!   directories and needs only bind mounts, which root has everywhere. containerd 1.6's
//!   `ctr images pull` always unpacks (there is no `--skip-unpack`); [`Containerd::fetch`]
//!   (`ctr content fetch`) runs the same resolver and fetcher without unpacking, for a test that
//!   must not depend on mounts.
//!
//! What containerd sends to a mirror (`?ns=docker.io` on manifests and blobs, hosts tried in
//! order, then `server`): /work/shared/notes/mirror.md and containerd's docs/hosts.md.
//!
//! The test binary must run as root; [`Containerd::start`] says so when it does not.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::process::{ServerProcess, STARTUP_TIMEOUT};

/// How long one `ctr` command may take; a pull from a loopback mirror takes well under a second,
/// so this only stops a hung client (a mirror that never answers) from hanging the test run.
const CTR_TIMEOUT: Duration = Duration::from_secs(120);

/// The platform every pull asks for: the test images are linux/amd64
/// ([`super::images::small_image`]), and a fixed platform keeps which manifests of an index get
/// fetched the same on every machine.
const PLATFORM: &str = "linux/amd64";

/// A private containerd daemon; killed on drop, its temp dir removed. See the module doc.
pub struct Containerd {
    // Declared before `dir`: the daemon is killed before its root directory is removed.
    process: ServerProcess,
    socket: PathBuf,
    dir: TempDir,
    runs: AtomicUsize,
}

impl Containerd {
    /// Starts `containerd --config CONFIG` (the module doc explains the config) and waits until
    /// `ctr version` answers on its socket.
    pub fn start() -> Self {
        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "containerd must run as root (it mounts, and owns its content store)"
        );
        let dir = tempfile::tempdir().expect("create a temp dir for containerd");
        let socket = dir.path().join("containerd.sock");
        // sun_path holds 108 bytes with the NUL; a long TMPDIR would break the socket.
        assert!(
            socket.as_os_str().len() < 100,
            "containerd's socket path {} is too long for a unix socket: set a shorter TMPDIR",
            socket.display()
        );
        let config = dir.path().join("config.toml");
        std::fs::write(&config, config_toml(dir.path(), &socket))
            .expect("write the containerd config");

        let mut command = Command::new("containerd");
        command.arg("--config").arg(&config);
        let (mut process, found) =
            ServerProcess::spawn("containerd", "containerd", command, |line| {
                line.contains("containerd successfully booted")
                    .then(|| line.to_owned())
            });
        process.wait_for_line(&found, "that it booted");
        let containerd = Self {
            process,
            socket,
            dir,
            runs: AtomicUsize::new(0),
        };
        containerd.wait_until_answering();
        containerd
    }

    /// The daemon's gRPC socket, for `ctr --address`.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// `ctr images pull --hosts-dir HOSTS_DIR --http-dump [--user USER:PASSWORD] IMAGE_REF`
    /// (with `--snapshotter native --platform linux/amd64`): resolves, fetches and unpacks
    /// through the hosts configured in `hosts_dir` (see [`write_hosts_dir`]). Returns what ctr
    /// printed — the `--http-dump` of every request and response (`HEAD /v2/…?ns=docker.io
    /// HTTP/1.1`, headers, status) and the progress — or, on failure, the command and all of it.
    ///
    /// containerd skips blobs its content store already has: pull each image into a fresh
    /// [`Containerd`], or [`Containerd::remove_image`] first, to see every request again.
    pub fn pull(
        &self,
        hosts_dir: &Path,
        image_ref: &str,
        creds: Option<(&str, &str)>,
    ) -> Result<String, String> {
        let command = [
            "images",
            "pull",
            "--snapshotter",
            "native",
            "--platform",
            PLATFORM,
        ];
        self.remote(&command, hosts_dir, image_ref, creds)
    }

    /// Like [`Containerd::pull`] without unpacking: `ctr content fetch --hosts-dir HOSTS_DIR
    /// --http-dump [--user USER:PASSWORD] IMAGE_REF`. The image is recorded and its manifest,
    /// config and layers are in the content store, as after a pull.
    pub fn fetch(
        &self,
        hosts_dir: &Path,
        image_ref: &str,
        creds: Option<(&str, &str)>,
    ) -> Result<String, String> {
        let command = ["content", "fetch", "--platform", PLATFORM];
        self.remote(&command, hosts_dir, image_ref, creds)
    }

    /// `(name, digest)` of every image containerd has, from `ctr images ls`; sorted by name.
    pub fn images(&self) -> Vec<(String, String)> {
        let listing = self.ctr_ok(&["images", "ls"]);
        let mut images: Vec<(String, String)> = listing
            .lines()
            .skip(1)
            .filter_map(|line| {
                // REF TYPE DIGEST SIZE PLATFORMS LABELS; a ref has no spaces.
                let columns: Vec<&str> = line.split_whitespace().collect();
                Some((columns.first()?.to_string(), columns.get(2)?.to_string()))
            })
            .collect();
        images.sort();
        images
    }

    /// The manifest (or index) digest containerd recorded for image `name`
    /// (`docker.io/library/alpine:3`), if it has the image.
    pub fn image_digest(&self, name: &str) -> Option<String> {
        self.images()
            .into_iter()
            .find_map(|(image, digest)| (image == name).then_some(digest))
    }

    /// The digests in the content store (`ctr content ls -q`), sorted.
    pub fn content_digests(&self) -> Vec<String> {
        let mut digests: Vec<String> = self
            .ctr_ok(&["content", "ls", "-q"])
            .lines()
            .map(str::to_owned)
            .collect();
        digests.sort();
        digests
    }

    /// The bytes of blob `digest` from the content store (`ctr content get`).
    pub fn content(&self, digest: &str) -> Vec<u8> {
        let (ok, stdout, stderr) = self.ctr(&["content", "get", digest]);
        assert!(
            ok,
            "ctr content get {digest} failed: {}",
            String::from_utf8_lossy(&stderr)
        );
        stdout
    }

    /// `ctr images rm --sync NAME`: forgets the image and waits for the garbage collector to
    /// drop its content and snapshots, so that the next pull fetches every blob again.
    pub fn remove_image(&self, name: &str) {
        self.ctr_ok(&["images", "rm", "--sync", name]);
    }

    /// Runs a `ctr` command that talks to a registry: `COMMAND --hosts-dir DIR --http-dump
    /// [--user U:P] REF`.
    fn remote(
        &self,
        command: &[&str],
        hosts_dir: &Path,
        image_ref: &str,
        creds: Option<(&str, &str)>,
    ) -> Result<String, String> {
        let hosts_dir = hosts_dir.to_str().expect("test hosts dirs are UTF-8 paths");
        let user = creds.map(|(user, password)| format!("{user}:{password}"));
        let mut args = command.to_vec();
        args.extend(["--hosts-dir", hosts_dir, "--http-dump"]);
        if let Some(user) = &user {
            args.extend(["--user", user]);
        }
        args.push(image_ref);
        let (ok, stdout, stderr) = self.ctr(&args);
        let said = format!(
            "--- stderr ---\n{}--- stdout ---\n{}",
            String::from_utf8_lossy(&stderr),
            String::from_utf8_lossy(&stdout)
        );
        match ok {
            true => Ok(said),
            false => Err(format!("ctr {} failed\n{said}", args.join(" "))),
        }
    }

    /// Runs a local `ctr` command that must succeed; its stdout.
    fn ctr_ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.ctr(args);
        assert!(
            ok,
            "ctr {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&stderr)
        );
        String::from_utf8(stdout).expect("ctr prints UTF-8")
    }

    /// `ctr --address SOCKET ARGS` with none of the caller's `CONTAINERD_*` variables, killed
    /// after [`CTR_TIMEOUT`]: (success, stdout, stderr). Output goes to files, so a chatty
    /// `--http-dump` cannot fill a pipe while we wait.
    fn ctr(&self, args: &[&str]) -> (bool, Vec<u8>, Vec<u8>) {
        let n = self.runs.fetch_add(1, Ordering::Relaxed);
        let stdout_path = self.dir.path().join(format!("ctr-{n}.out"));
        let stderr_path = self.dir.path().join(format!("ctr-{n}.err"));
        let mut command = Command::new("ctr");
        command
            .arg("--address")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).expect("create ctr's stdout file"))
            .stderr(File::create(&stderr_path).expect("create ctr's stderr file"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CONTAINERD_") {
                command.env_remove(key);
            }
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run ctr (apt-get install containerd): {e}"));
        let deadline = Instant::now() + CTR_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for ctr") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = std::fs::read(&stdout_path).expect("read ctr's stdout");
        let mut stderr = std::fs::read(&stderr_path).expect("read ctr's stderr");
        if status.is_none() {
            stderr.extend(format!("(killed after {CTR_TIMEOUT:?})\n").bytes());
        }
        (status.is_some_and(|s| s.success()), stdout, stderr)
    }

    /// Polls `ctr version` until the daemon answers on its socket.
    fn wait_until_answering(&self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let (ok, _, stderr) = self.ctr(&["version"]);
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not answer `ctr version` within {STARTUP_TIMEOUT:?}: {}\n\
                 its log:\n{}",
                String::from_utf8_lossy(&stderr),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The daemon's config (version 2): see the module doc for why each setting is there.
fn config_toml(dir: &Path, socket: &Path) -> String {
    let path = |p: &Path| toml_string(p.to_str().expect("temp dirs are UTF-8 paths"));
    let mut ttrpc: OsString = socket.as_os_str().to_owned();
    ttrpc.push(".ttrpc");
    format!(
        "version = 2\n\
         root = {root}\n\
         state = {state}\n\
         temp = {temp}\n\
         disabled_plugins = [\n  \
           \"io.containerd.grpc.v1.cri\",\n  \
           \"io.containerd.runtime.v1.linux\",\n  \
           \"io.containerd.runtime.v2.task\",\n  \
           \"io.containerd.service.v1.tasks-service\",\n  \
           \"io.containerd.grpc.v1.tasks\",\n  \
           \"io.containerd.internal.v1.restart\",\n  \
           \"io.containerd.monitor.v1.cgroups\",\n  \
           \"io.containerd.internal.v1.opt\",\n  \
           \"io.containerd.snapshotter.v1.aufs\",\n  \
           \"io.containerd.snapshotter.v1.btrfs\",\n  \
           \"io.containerd.snapshotter.v1.devmapper\",\n  \
           \"io.containerd.snapshotter.v1.overlayfs\",\n  \
           \"io.containerd.snapshotter.v1.zfs\",\n\
         ]\n\
         \n\
         [grpc]\n  address = {socket}\n  tcp_address = \"\"\n\
         [ttrpc]\n  address = {ttrpc}\n\
         [debug]\n  address = \"\"\n  level = \"info\"\n\
         [metrics]\n  address = \"\"\n",
        root = path(&dir.join("root")),
        state = path(&dir.join("state")),
        temp = path(&dir.join("tmp")),
        socket = path(socket),
        ttrpc = path(Path::new(&ttrpc)),
    )
}

/// Writes `<dir>/<registry>/hosts.toml` (creating both directories) and returns its path:
/// pulls of `registry` (`docker.io`, or `HOST:PORT`) go to `mirror` first (a URL such as
/// `http://127.0.0.1:5000` or `https://127.0.0.1:5443/hub/v2`, with capabilities `pull` and
/// `resolve`), then to `server` (`https://registry-1.docker.io`).
///
/// For an https `mirror`: `ca` is the PEM file of its CA (written as an absolute path), and
/// `skip_verify` turns certificate checks off. `override_path` makes the mirror's URL path the
/// API root verbatim (containerd appends `/v2` otherwise, unless the path already ends in it).
pub fn write_hosts_dir(
    dir: &Path,
    registry: &str,
    server: &str,
    mirror: &str,
    ca: Option<&Path>,
    skip_verify: bool,
    override_path: bool,
) -> PathBuf {
    let registry_dir = dir.join(registry);
    std::fs::create_dir_all(&registry_dir)
        .unwrap_or_else(|e| panic!("create {}: {e}", registry_dir.display()));
    let file = registry_dir.join("hosts.toml");
    std::fs::write(
        &file,
        hosts_toml(server, mirror, ca, skip_verify, override_path),
    )
    .unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    file
}

/// The text of a `hosts.toml`; see [`write_hosts_dir`].
pub fn hosts_toml(
    server: &str,
    mirror: &str,
    ca: Option<&Path>,
    skip_verify: bool,
    override_path: bool,
) -> String {
    let mut toml = format!(
        "server = {}\n\n[host.{}]\n  capabilities = [\"pull\", \"resolve\"]\n",
        toml_string(server),
        toml_string(mirror)
    );
    if let Some(ca) = ca {
        let ca = std::path::absolute(ca).expect("make the CA path absolute");
        let ca = ca.to_str().expect("test CA paths are UTF-8");
        toml.push_str(&format!("  ca = {}\n", toml_string(ca)));
    }
    if skip_verify {
        toml.push_str("  skip_verify = true\n");
    }
    if override_path {
        toml.push_str("  override_path = true\n");
    }
    toml
}

/// A TOML basic string: a JSON string is one (serde_json escapes `"`, `\` and control
/// characters the way TOML reads them).
fn toml_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}
