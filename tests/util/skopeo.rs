//! The skopeo client (Debian's `skopeo` 1.9) as the tests drive it: plain HTTP to loopback
//! registries, no credentials, no trust policy, and nothing read from the user's or the
//! machine's containers configuration except skopeo's blob-info cache, which real users share too.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use tempfile::TempDir;

/// `docker://HOST/NAME_AND_REFERENCE`, e.g. `docker_ref("127.0.0.1:5000", "team/app:v1")`.
pub fn docker_ref(host: &str, name_and_reference: &str) -> String {
    format!("docker://{host}/{name_and_reference}")
}

/// `oci:DIR:TAG`, an image in an OCI image layout.
pub fn oci_ref(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// `dir:DIR`, skopeo's own directory format (one manifest, blobs named by hex digest); it can
/// hold Docker schema2 manifests, which an OCI layout cannot.
pub fn dir_ref(dir: &Path) -> String {
    format!("dir:{}", dir.display())
}

/// How [`Skopeo::copy_with`] copies.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyOptions {
    /// `--all`: copy every image of an index, not just the one for this machine.
    pub all: bool,
    /// `--format`: convert the manifest (`oci`, `v2s2`). `None` also passes `--preserve-digests`,
    /// so skopeo fails instead of silently compressing or rewriting anything.
    pub format: Option<&'static str>,
}

/// A skopeo invocation that failed, with everything skopeo said.
#[derive(Debug)]
pub struct SkopeoError {
    args: Vec<String>,
    output: Output,
}

impl fmt::Display for SkopeoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "skopeo {} failed ({})\n--- stderr ---\n{}--- stdout ---\n{}",
            self.args.join(" "),
            self.output.status,
            String::from_utf8_lossy(&self.output.stderr),
            String::from_utf8_lossy(&self.output.stdout),
        )
    }
}

impl std::error::Error for SkopeoError {}

/// A skopeo with its own empty auth file and config; one per test.
pub struct Skopeo {
    dir: TempDir,
    digest_files: AtomicUsize,
}

impl Skopeo {
    /// Checks that skopeo is installed (panics naming the Debian package if not) and prepares
    /// an empty auth file, registries.conf and registries.d.
    pub fn new() -> Self {
        match Command::new("skopeo").arg("--version").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!("`skopeo --version` failed: {out:?}"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("skopeo not found on PATH; install it with `apt-get install skopeo`")
            }
            Err(e) => panic!("cannot run skopeo: {e}"),
        }
        let dir = tempfile::tempdir().expect("create a temp dir for skopeo");
        std::fs::write(dir.path().join("auth.json"), "{}").expect("write skopeo's auth file");
        std::fs::write(dir.path().join("registries.conf"), "").expect("write registries.conf");
        std::fs::create_dir(dir.path().join("registries.d")).expect("create registries.d");
        std::fs::create_dir(dir.path().join("tmp")).expect("create skopeo's tmpdir");
        Self {
            dir,
            digest_files: AtomicUsize::new(0),
        }
    }

    /// Copies `src` to `dst` keeping every digest; returns the manifest digest skopeo wrote.
    pub fn copy(&self, src: &str, dst: &str) -> String {
        self.copy_with(src, dst, CopyOptions::default())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Skopeo::copy`] with `--all`: an index and every image in it.
    pub fn copy_all(&self, src: &str, dst: &str) -> String {
        let options = CopyOptions {
            all: true,
            ..CopyOptions::default()
        };
        self.copy_with(src, dst, options)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `skopeo copy` with `options`; returns the digest from `--digestfile`.
    pub fn copy_with(
        &self,
        src: &str,
        dst: &str,
        options: CopyOptions,
    ) -> Result<String, SkopeoError> {
        let n = self.digest_files.fetch_add(1, Ordering::Relaxed);
        let digest_file = self.dir.path().join(format!("digest-{n}"));
        let mut args = vec![
            "copy".to_owned(),
            "--quiet".to_owned(),
            "--retry-times=0".to_owned(),
            format!("--authfile={}", self.authfile().display()),
            "--src-tls-verify=false".to_owned(),
            "--dest-tls-verify=false".to_owned(),
            format!("--digestfile={}", digest_file.display()),
        ];
        if options.all {
            args.push("--all".to_owned());
        }
        match options.format {
            Some(format) => args.push(format!("--format={format}")),
            None => args.push("--preserve-digests".to_owned()),
        }
        args.push(src.to_owned());
        args.push(dst.to_owned());
        self.run(args)?;
        let digest = std::fs::read_to_string(&digest_file)
            .unwrap_or_else(|e| panic!("skopeo wrote no digest file for {src} -> {dst}: {e}"));
        Ok(digest.trim().to_owned())
    }

    /// `skopeo inspect --raw IMAGE`: the manifest bytes exactly as the registry serves them.
    pub fn inspect_raw(&self, image: &str) -> Vec<u8> {
        let args = self.registry_args("inspect", &["--raw", image]);
        self.run(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `skopeo list-tags docker://HOST/NAME`: the tags, sorted.
    pub fn list_tags(&self, repository: &str) -> Vec<String> {
        let args = self.registry_args("list-tags", &[repository]);
        let out = self.run(args).unwrap_or_else(|e| panic!("{e}"));
        let listing: serde_json::Value = serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("list-tags {repository}: output is not JSON: {e}"));
        let mut tags: Vec<String> = listing["Tags"]
            .as_array()
            .unwrap_or_else(|| panic!("list-tags {repository}: no Tags array: {listing}"))
            .iter()
            .map(|t| t.as_str().expect("tags are strings").to_owned())
            .collect();
        tags.sort();
        tags
    }

    fn authfile(&self) -> PathBuf {
        self.dir.path().join("auth.json")
    }

    fn registry_args(&self, command: &str, rest: &[&str]) -> Vec<String> {
        let mut args = vec![
            command.to_owned(),
            "--retry-times=0".to_owned(),
            format!("--authfile={}", self.authfile().display()),
            "--tls-verify=false".to_owned(),
        ];
        args.extend(rest.iter().map(|s| (*s).to_owned()));
        args
    }

    /// Runs `skopeo GLOBAL_FLAGS ARGS`; stdout on success.
    fn run(&self, args: Vec<String>) -> Result<Vec<u8>, SkopeoError> {
        let output = Command::new("skopeo")
            .arg("--insecure-policy")
            .arg("--command-timeout=120s")
            .arg(format!(
                "--registries.d={}",
                self.dir.path().join("registries.d").display()
            ))
            .arg(format!(
                "--tmpdir={}",
                self.dir.path().join("tmp").display()
            ))
            .args(&args)
            .env(
                "CONTAINERS_REGISTRIES_CONF",
                self.dir.path().join("registries.conf"),
            )
            .env_remove("REGISTRY_AUTH_FILE")
            .output()
            .unwrap_or_else(|e| panic!("cannot run skopeo {}: {e}", args.join(" ")));
        if output.status.success() {
            Ok(output.stdout)
        } else {
            Err(SkopeoError { args, output })
        }
    }
}
