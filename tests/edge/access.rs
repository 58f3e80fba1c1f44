//! Access rules through the edge with real clients: skopeo as two users (one pull-only, one
//! pull+push) against the same repositories, a forbidden push that fails with `DENIED` and
//! leaves nothing in the store, anonymous pull with skopeo and podman without credentials
//! beside authenticated pushes, the catalog each caller sees, and `regapp access explain`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use super::{EdgeServer, PASSWORD, USER};
use crate::util::images::small_image;
use crate::util::layout::{assert_same_blobs, OciLayout};

const READER: &str = "bob";
const READER_PASSWORD: &str = "builder";

/// `skopeo --insecure-policy ARGS` against the edge, trusting its CA.
pub(super) fn skopeo(edge: &EdgeServer, args: &[&str]) -> Output {
    let trust = edge.trust_dir();
    let mut command = Command::new("skopeo");
    command.args(["--insecure-policy", "--command-timeout=120s"]);
    // Every registry-facing subcommand takes the CA directory under its own name.
    let (head, rest) = args.split_first().unwrap();
    command.arg(head);
    match *head {
        "copy" => command.args([
            "--retry-times=0",
            "--src-cert-dir",
            trust.to_str().unwrap(),
            "--dest-cert-dir",
            trust.to_str().unwrap(),
        ]),
        _ => command.args(["--retry-times=0", "--cert-dir", trust.to_str().unwrap()]),
    };
    command
        .args(rest)
        .env("REGISTRY_AUTH_FILE", edge.dir.path().join("no-auth.json"))
        .output()
        .expect("skopeo runs (apt-get install skopeo)")
}

fn ok(what: &str, out: Output) -> Output {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every file under the store's `blobs/` and every directory under `repositories/`.
fn store_contents(edge: &EdgeServer) -> BTreeSet<String> {
    fn walk(dir: &Path, root: &Path, into: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            into.insert(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() {
                walk(&path, root, into);
            }
        }
    }
    let root = edge.dir.path().join("data/docker/registry/v2");
    let mut all = BTreeSet::new();
    walk(&root, &root, &mut all);
    all
}

fn catalog(edge: &EdgeServer, creds: Option<&str>) -> serde_json::Value {
    let url = format!("{}/v2/_catalog", edge.url());
    let mut args = vec!["-s"];
    if let Some(creds) = creds {
        args.extend(["-u", creds]);
    }
    args.push(&url);
    let out = Command::new("curl")
        .args(["--cacert", edge.ca().to_str().unwrap()])
        .args(&args)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "catalog is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

const TWO_USERS: &str = r#"
[[access]]
repositories = "team/**"
users = ["bob"]
actions = ["pull"]

[[access]]
repositories = "team/**"
users = ["alice"]
actions = ["pull", "push", "delete"]
"#;

#[test]
fn a_pull_only_user_pulls_and_a_forbidden_push_fails_with_denied_leaving_no_trace() {
    let edge = EdgeServer::start_with_rules(&[(READER, READER_PASSWORD)], TWO_USERS);
    let writer = format!("{USER}:{PASSWORD}");
    let reader = format!("{READER}:{READER_PASSWORD}");
    let images = tempfile::tempdir().unwrap();
    let image = small_image(&images.path().join("app"), "app");
    let remote = format!("docker://{}/team/app:v1", edge.host());

    ok(
        "alice pushes",
        skopeo(
            &edge,
            &[
                "copy",
                "--preserve-digests",
                "--dest-creds",
                &writer,
                &image.reference(),
                &remote,
            ],
        ),
    );
    let back = images.path().join("back");
    let back_ref = format!("oci:{}:v1", back.display());
    ok(
        "bob pulls",
        skopeo(
            &edge,
            &[
                "copy",
                "--preserve-digests",
                "--src-creds",
                &reader,
                &remote,
                &back_ref,
            ],
        ),
    );
    assert_same_blobs(&image.layout, &OciLayout::open(&back));

    let before = store_contents(&edge);
    let other = small_image(&images.path().join("other"), "bob's own");
    for target in ["team/other:v1", "team/app:v2"] {
        let out = skopeo(
            &edge,
            &[
                "copy",
                "--preserve-digests",
                "--dest-creds",
                &reader,
                &other.reference(),
                &format!("docker://{}/{target}", edge.host()),
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "bob may not push {target}");
        assert!(
            stderr.contains("denied"),
            "skopeo shows the DENIED answer: {stderr}"
        );
    }
    assert_eq!(
        before,
        store_contents(&edge),
        "no blob, upload directory or repository appeared"
    );
    let (status, text) = edge.curl(&[
        "-u",
        &reader,
        "-X",
        "DELETE",
        &format!("{}/v2/team/app/manifests/v1", edge.url()),
    ]);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains(r#""code":"DENIED""#), "{text}");
    // A denied monolithic upload with a 16 MiB body: answered 403 from the headers (the
    // engine checks before reading the body). Over HTTP/1.1; over HTTP/2 an early answer to a
    // request whose body is still coming can end in a stream reset before it reaches curl (as
    // for any early engine answer, and for the edge's own 401: see edge::auth), so HTTP/2 is
    // checked with the upload start real clients send, which has no body.
    let body = edge.dir.path().join("body");
    std::fs::write(&body, vec![7u8; 16 << 20]).unwrap();
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            std::fs::read(&body).unwrap()
        ))
    );
    let monolithic = format!("{}/v2/team/big/blobs/uploads/?digest={digest}", edge.url());
    let data = format!("@{}", body.display());
    let start = format!("{}/v2/team/big/blobs/uploads/", edge.url());
    for args in [
        ["--http1.1", "--data-binary", &data, &monolithic],
        ["--http2", "--data-binary", "", &start],
    ] {
        let mut args = args.to_vec();
        args.extend(["-u", &reader, "-X", "POST"]);
        let (status, text) = edge.curl(&args);
        assert_eq!(status, 403, "{args:?}: {text}");
        assert!(text.contains(r#""code":"DENIED""#), "{args:?}: {text}");
    }
    assert_eq!(
        before,
        store_contents(&edge),
        "still nothing new in the store"
    );

    // The catalog: alice pushed team/app; a user without rules sees nothing of it.
    assert_eq!(
        catalog(&edge, Some(&reader))["repositories"],
        serde_json::json!(["team/app"])
    );
}

const PUBLIC: &str = r#"anonymous_pull = true

[[access]]
repositories = "**"
users = ["alice"]
actions = ["pull", "push", "delete"]

[[access]]
repositories = "public/**"
users = ["anonymous", "*"]
actions = ["pull"]
"#;

#[test]
fn anonymous_clients_pull_what_rules_allow_and_users_still_push() {
    let edge = EdgeServer::start_with_rules(&[(READER, READER_PASSWORD)], PUBLIC);
    let writer = format!("{USER}:{PASSWORD}");
    let images = tempfile::tempdir().unwrap();
    let image = small_image(&images.path().join("src"), "public");
    // With anonymous pull on, `/v2/` answers 200: skopeo must still send alice's credentials
    // (it takes the challenge that comes with that 200).
    for repo in ["public/base", "private/app"] {
        ok(
            "alice pushes",
            skopeo(
                &edge,
                &[
                    "copy",
                    "--preserve-digests",
                    "--dest-creds",
                    &writer,
                    &image.reference(),
                    &format!("docker://{}/{repo}:v1", edge.host()),
                ],
            ),
        );
    }
    let back = images.path().join("back");
    let back_ref = format!("oci:{}:v1", back.display());
    ok(
        "anonymous pull",
        skopeo(
            &edge,
            &[
                "copy",
                "--preserve-digests",
                "--src-no-creds",
                &format!("docker://{}/public/base:v1", edge.host()),
                &back_ref,
            ],
        ),
    );
    assert_same_blobs(&image.layout, &OciLayout::open(&back));
    let out = skopeo(
        &edge,
        &[
            "inspect",
            "--raw",
            "--no-creds",
            &format!("docker://{}/private/app:v1", edge.host()),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("unauthorized"), "{stderr}");
    let out = skopeo(
        &edge,
        &[
            "copy",
            "--preserve-digests",
            "--dest-no-creds",
            &image.reference(),
            &format!("docker://{}/public/base:v2", edge.host()),
        ],
    );
    assert!(!out.status.success(), "anonymous clients never push");

    // What the clients saw, by curl: `/v2/` is 200 with the challenge, a pull anonymous may
    // not make is 401 with it, a push without credentials is refused by the edge itself.
    let (status, text) = edge.curl(&[&format!("{}/v2/", edge.url())]);
    assert_eq!(status, 200, "{text}");
    assert!(
        text.to_lowercase()
            .contains("www-authenticate: basic realm=\"test\""),
        "{text}"
    );
    let (status, text) = edge.curl(&[&format!("{}/v2/private/app/tags/list", edge.url())]);
    assert_eq!(status, 401, "{text}");
    assert!(
        text.to_lowercase().contains("www-authenticate: basic"),
        "{text}"
    );
    assert!(text.contains(r#""code":"UNAUTHORIZED""#), "{text}");
    let (status, text) = edge.curl(&[
        "-X",
        "POST",
        &format!("{}/v2/public/base/blobs/uploads/", edge.url()),
    ]);
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("authentication required"), "{text}");
    // A client's own X-Regapp-User is dropped: it stays anonymous.
    let (status, text) = edge.curl(&[
        "-H",
        "X-Regapp-User: alice",
        &format!("{}/v2/private/app/tags/list", edge.url()),
    ]);
    assert_eq!(status, 401, "{text}");
    // A wrong password is still a 401, never a way in as anonymous.
    let (status, _) = edge.curl(&[
        "-u",
        "alice:wrong",
        &format!("{}/v2/public/base/tags/list", edge.url()),
    ]);
    assert_eq!(status, 401);

    assert_eq!(
        catalog(&edge, None)["repositories"],
        serde_json::json!(["public/base"])
    );
    assert_eq!(
        catalog(&edge, Some(&format!("{READER}:{READER_PASSWORD}")))["repositories"],
        serde_json::json!(["public/base"])
    );
    assert_eq!(
        catalog(&edge, Some(&writer))["repositories"],
        serde_json::json!(["private/app", "public/base"])
    );
}

#[test]
fn access_explain_prints_the_deciding_rule_per_action() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("regapp.toml");
    std::fs::write(
        &config,
        format!("[edge]\nhostname = \"localhost\"\n\n[auth]\n{PUBLIC}"),
    )
    .unwrap();
    let explain = |user: &str, repo: &str| {
        crate::util::regapp_ok(&["access", "explain", user, repo], &config)
    };
    let text = explain("bob", "public/base");
    let origin = format!("{}:12", config.display());
    assert_eq!(
        text,
        format!(
            "bob on public/base (2 rules, anonymous_pull = true)\n\
             pull    allowed by rule 2: it names \"*\" (any authenticated user) [{origin} repositories = \"public/**\", actions = pull]\n\
             push    denied by rule 2: it names \"*\" (any authenticated user), and this action is not in its actions [{origin} repositories = \"public/**\", actions = pull]\n\
             delete  denied by rule 2: it names \"*\" (any authenticated user), and this action is not in its actions [{origin} repositories = \"public/**\", actions = pull]\n"
        )
    );
    let text = explain("bob", "private/app");
    assert!(
        text.contains("pull    denied: no rule matches (default deny)"),
        "{text}"
    );
    let text = explain("anonymous", "private/app");
    assert!(
        text.contains("push    denied: clients without credentials may only pull"),
        "{text}"
    );
    // A rule that can never match is refused with its line, as check-config does.
    std::fs::write(
        &config,
        format!("[auth]\n{PUBLIC}\n[[access]]\nrepositories = \"private/**\"\nusers = [\"alice\"]\nactions = [\"pull\"]\n"),
    )
    .unwrap();
    let stderr = crate::util::regapp_fails("check-config", &config);
    assert!(
        stderr.contains(&format!(
            "{}:15: access[3].repositories: this rule can never match: rule 1",
            config.display()
        )),
        "{stderr}"
    );
}

fn podman(edge: &EdgeServer, dir: &Path, args: &[&str]) -> Output {
    crate::util::podman(dir, &edge.trust_dir(), None, args)
}

#[test]
fn podman_pulls_without_login_and_pushes_with_credentials() {
    let edge = EdgeServer::start_with_rules(&[], PUBLIC);
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/hello"), "anonymous pull\n").unwrap();
    let tar = dir.path().join("rootfs.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["-cf", tar.to_str().unwrap(), "."])
        .status()
        .unwrap();
    assert!(status.success());
    let tar = tar.to_str().unwrap();
    ok(
        "podman import",
        podman(&edge, dir.path(), &["import", tar, "localhost/tiny:v1"]),
    );
    let public = format!("docker://{}/public/tiny:v1", edge.host());
    // `/v2/` answers 200 without credentials; podman still sends alice's when it has them.
    let creds = format!("{USER}:{PASSWORD}");
    ok(
        "alice pushes with podman",
        podman(
            &edge,
            dir.path(),
            &["push", "--creds", &creds, "localhost/tiny:v1", &public],
        ),
    );
    ok(
        "podman rmi",
        podman(&edge, dir.path(), &["rmi", "-a", "-f"]),
    );
    ok(
        "podman pull without login",
        podman(&edge, dir.path(), &["pull", &public]),
    );
    let pulled = format!("{}/public/tiny:v1", edge.host());
    let copy = format!("docker://{}/public/copy:v1", edge.host());
    let out = podman(&edge, dir.path(), &["push", &pulled, &copy]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "podman without login may not push");
    assert!(stderr.contains("unauthorized"), "{stderr}");
    // The image store under `dir` goes with the tempdir; vfs leaves no mounts behind.
    ok(
        "podman rmi",
        podman(&edge, dir.path(), &["rmi", "-a", "-f"]),
    );
}

#[test]
fn sighup_applies_new_rules_and_keeps_the_old_ones_for_a_bad_file() {
    let edge = EdgeServer::start_with_rules(&[(READER, READER_PASSWORD)], TWO_USERS);
    let config = edge.dir.path().join("regapp.toml");
    let reader = format!("{READER}:{READER_PASSWORD}");
    let tags = format!("{}/v2/team/app/tags/list", edge.url());
    let bob_may_delete = || {
        let (status, text) = edge.curl(&["-u", &reader, "-X", "DELETE", &tags]);
        // 405: past the rules (DELETE is not a tags method); 403: the rules said no.
        assert!(status == 403 || status == 405, "{text}");
        status == 405
    };
    assert!(!bob_may_delete());
    let original = std::fs::read_to_string(&config).unwrap();
    let rewrite = |from: &str, to: &str| {
        assert!(original.contains(from));
        std::fs::write(&config, original.replace(from, to)).unwrap();
        edge.process.signal(libc::SIGHUP);
    };
    // A bad file: nothing changes, and the log names the line.
    rewrite(
        "users = [\"bob\"]\nactions = [\"pull\"]",
        "users = [\"bob\"]\nactions = [\"pull\", \"destroy\"]",
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !edge.process.log().contains("\"destroy\" is not an action") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            edge.process.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log = edge.process.log();
    let line = original
        .lines()
        .position(|l| l == "actions = [\"pull\"]")
        .unwrap()
        + 1;
    assert!(
        log.contains(&format!("regapp.toml:{line}: access[1].actions")),
        "{log}"
    );
    assert!(!bob_may_delete());
    // A good one applies from the next request.
    rewrite(
        "users = [\"bob\"]\nactions = [\"pull\"]",
        "users = [\"bob\"]\nactions = [\"pull\", \"delete\"]",
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !bob_may_delete() {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            edge.process.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(edge.process.log().contains("access rules updated"));
}
