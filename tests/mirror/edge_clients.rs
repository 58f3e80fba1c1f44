//! Real clients through regapp's edge, as the mirror tests drive them: skopeo and curl
//! trusting the edge's CA, podman with a registries.conf and a regapp user in its auth file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::edge::EdgeServer;
use crate::util::store::repository_path;
use crate::util::{header_value, podman_command};

/// `skopeo --insecure-policy ARGS` against the edge, trusting its CA, with no auth file of the
/// machine's; `copy` gets the CA on both sides.
pub fn skopeo(edge: &EdgeServer, args: &[&str]) -> Output {
    let trust = edge.trust_dir();
    let trust = trust.to_str().expect("UTF-8 temp paths");
    let (head, rest) = args.split_first().expect("a skopeo subcommand");
    let mut command = Command::new("skopeo");
    command
        .args(["--insecure-policy", "--command-timeout=120s", head])
        .arg("--retry-times=0");
    match *head {
        "copy" => command.args(["--src-cert-dir", trust, "--dest-cert-dir", trust]),
        _ => command.args(["--cert-dir", trust]),
    };
    command
        .args(rest)
        .env("REGISTRY_AUTH_FILE", edge.dir.path().join("no-auth.json"))
        .env_remove("CONTAINERS_REGISTRIES_CONF")
        .output()
        .expect("skopeo runs (apt-get install skopeo)")
}

/// `skopeo copy --preserve-digests` of `src` to `dst` through the edge with `creds` on the
/// registry side (`src` or `dest`); the manifest digest, or skopeo's stderr.
pub fn skopeo_copy(
    edge: &EdgeServer,
    side: &str,
    creds: &str,
    src: &str,
    dst: &str,
) -> Result<String, String> {
    let digest_file = tempfile::NamedTempFile::new().expect("a digest file");
    let digest_arg = format!("--digestfile={}", digest_file.path().display());
    let creds_arg = format!("--{side}-creds={creds}");
    let out = skopeo(
        edge,
        &[
            "copy",
            "--quiet",
            "--preserve-digests",
            &digest_arg,
            &creds_arg,
            src,
            dst,
        ],
    );
    match out.status.success() {
        true => Ok(std::fs::read_to_string(digest_file.path())
            .expect("skopeo wrote its digest file")
            .trim()
            .to_owned()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// A response through the edge as curl got it: status, head (as `curl -D` writes it) and the
/// body's raw bytes.
pub struct Fetched {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Fetched {
    pub fn header(&self, name: &str) -> Option<String> {
        header_value(&self.head, name)
    }

    pub fn text(&self) -> String {
        format!("{}{}", self.head, String::from_utf8_lossy(&self.body))
    }
}

/// `curl -X METHOD URL` through the edge (its CA trusted), with `creds` when given and `headers`;
/// for HEAD, `--head`.
pub fn fetch(
    edge: &EdgeServer,
    creds: Option<&str>,
    method: &str,
    path: &str,
    headers: &[String],
) -> Fetched {
    let dir = tempfile::tempdir().expect("a scratch dir for curl");
    let (head_file, body_file) = (dir.path().join("head"), dir.path().join("body"));
    let url = format!("{}{path}", edge.url());
    let mut args: Vec<String> = vec![
        "-D".into(),
        head_file.display().to_string(),
        "-o".into(),
        body_file.display().to_string(),
    ];
    match method {
        "HEAD" => args.push("--head".into()),
        method => args.extend(["-X".into(), method.into()]),
    }
    if let Some(creds) = creds {
        args.extend(["-u".into(), creds.into()]);
    }
    for header in headers {
        args.extend(["-H".into(), header.clone()]);
    }
    args.push(url.clone());
    // Not `edge::curl_with_ca`: its `-i` would write the head into the body file.
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(edge.ca())
        .args(["-w", "status=%{http_code}\n"])
        .args(&args)
        .output()
        .expect("curl runs (apt-get install curl)");
    let said = String::from_utf8_lossy(&out.stdout);
    let status = said
        .lines()
        .find_map(|l| l.strip_prefix("status="))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "curl {method} {url}: no status: {said}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    Fetched {
        status,
        head: std::fs::read_to_string(&head_file).unwrap_or_default(),
        body: std::fs::read(&body_file).unwrap_or_default(),
    }
}

/// [`podman_command`] (its own image store in `dir`) with the edge's
/// CA, `registries_conf` as its registries.conf and regapp user `user`/`password` in its auth
/// file for the edge's host. Not `--creds`: podman sends those to the primary location only,
/// never to a mirror (containers/image `docker_image_src.go`), as `podman login` users expect.
pub fn podman(
    dir: &Path,
    edge: &EdgeServer,
    registries_conf: &Path,
    (user, password): (&str, &str),
    args: &[&str],
) -> Output {
    let auth = crate::util::basic_auth(user, password);
    let auth = auth.strip_prefix("Basic ").expect("a Basic value");
    let auths = serde_json::json!({ "auths": { edge.host(): { "auth": auth } } });
    std::fs::write(dir.join("auth.json"), auths.to_string()).expect("write podman's auth file");
    let mut command = podman_command(dir, args);
    if args.first() == Some(&"pull") {
        command
            .arg(format!("--authfile={}", dir.join("auth.json").display()))
            .arg(format!("--cert-dir={}", edge.trust_dir().display()));
    }
    command
        .env("CONTAINERS_REGISTRIES_CONF", registries_conf)
        .env_remove("REGISTRY_AUTH_FILE")
        .output()
        .expect("podman runs (apt-get install podman)")
}

/// `out`'s stdout; panics with all it said unless `what` succeeded.
pub fn succeeded(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The directory of local repository `name` in the edge's store.
pub fn stored_repository(edge: &EdgeServer, name: &str) -> PathBuf {
    repository_path(&edge.dir.path().join("data"), name)
}
