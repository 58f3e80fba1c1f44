//! The pull-through cache with the clients that use it, each pulling through regapp from a real
//! upstream (Debian's docker-registry: open, Basic over TLS, or token auth; or another regapp):
//! skopeo and podman by prefix, containerd's `ctr` by `?ns=docker.io`, Docker's
//! `registry-mirrors` requests (no dockerd here: made by hand as dockerd sends them), regapp
//! mirroring regapp, read-only mirrored names and access rules on the local name.
//!
//! Every test checks what reached the client against what was pushed upstream (digests, bytes)
//! and counts what regapp asked the upstream (`Upstream::requests`, the token issuer's log), so a
//! mirror that silently re-fetches, or answers from the wrong place, fails here.
//! What each client sends: /work/shared/notes/mirror.md.

use std::time::{Duration, Instant};

use super::edge_clients::{fetch, podman, skopeo_copy, stored_repository, succeeded};
use super::support::{mirror_table, HUB};
use crate::edge::{EdgeServer, PASSWORD, USER};
use crate::util::containerd::{write_hosts_dir, Containerd};
use crate::util::images::{docker_schema2, multi_arch_index, small_image, Image};
use crate::util::layout::{assert_same_blobs, sha256_digest, OciLayout};
use crate::util::skopeo::{docker_ref, oci_ref};
use crate::util::upstream::Upstream;
use crate::util::{Regapp, Registry, Skopeo};

/// The Accept headers dockerd sends for a manifest, one header each (moby's pull through
/// distribution's client: schema2, manifest list, OCI manifest and index, schema1 signed).
const DOCKER_ACCEPT: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/json",
];
const DOCKER_USER_AGENT: &str = "docker/28.2.2 go/go1.24.3 git-commit/e6534b4 kernel/6.1.0 \
     os/linux arch/amd64 UpstreamClient(Docker-Client/28.2.2 \\(linux\\))";

/// Every blob of `image` but its top manifest (configs, layers, and an index's manifests).
fn blobs_below_top(image: &Image) -> Vec<String> {
    let mut blobs: Vec<String> = image.layout.blob_digests().into_iter().collect();
    blobs.retain(|d| *d != image.top.digest);
    blobs
}

/// GETs with answer 200 of each of `digests` as blobs of `repo` upstream.
fn blob_gets(upstream: &Upstream, repo: &str, digests: &[String]) -> Vec<usize> {
    digests
        .iter()
        .map(|d| upstream.requests_with_status("GET", &format!("/v2/{repo}/blobs/{d}"), 200))
        .collect()
}

/// Protects the mirror's TLS + Basic upstream path and its tag cache: skopeo pulls
/// `private/team/app:v1` through regapp's edge as a regapp user; regapp fetches it from a
/// docker-registry behind TLS (its own CA in `ca_file`) with Basic credentials from
/// `password_file`. The copy equals what was pushed upstream, and a second pull within
/// `tag_ttl` asks the upstream nothing: no manifest HEAD or GET, no blob GET.
#[test]
fn skopeo_pulls_by_prefix_through_the_edge_from_a_basic_tls_upstream_and_then_from_cache() {
    let started = Instant::now();
    let work = tempfile::tempdir().expect("create a scratch dir");
    let upstream = Upstream::basic_tls("mirror-bot", "upstream-s3cret");
    let image = small_image(&work.path().join("image"), "basic-tls-mirror");
    let pushed = upstream.push(&image.reference(), "team/app:v1");
    assert_eq!(pushed, image.top.digest);
    let password_file = work.path().join("upstream-password");
    std::fs::write(&password_file, "upstream-s3cret\n").expect("write the password file");
    let ca = upstream.ca_file().expect("a TLS upstream has a CA file");
    let extra = format!(
        "username = \"mirror-bot\"\npassword_file = {password_file:?}\nca_file = {ca:?}\n\
         tag_ttl = \"10m\"\nmax_concurrent = 8\n"
    );
    let edge = EdgeServer::start_with_rules(&[], &mirror_table("private", &upstream.url(), &extra));
    let creds = format!("{USER}:{PASSWORD}");
    let remote = docker_ref(&edge.host(), "private/team/app:v1");
    let after_push = upstream.total_requests();

    let first = work.path().join("first");
    let digest = skopeo_copy(&edge, "src", &creds, &remote, &oci_ref(&first, "v1"))
        .unwrap_or_else(|e| panic!("the first pull: {e}\nregapp:\n{}", edge.process.log()));
    assert_eq!(digest, pushed, "the manifest digest through the mirror");
    let first_layout = OciLayout::open(&first);
    assert_eq!(first_layout.read_blob(&digest), image.top_bytes());
    assert_same_blobs(&image.layout, &first_layout);

    let blobs = blobs_below_top(&image);
    let manifest_gets = upstream.requests_with_status("GET", "/v2/team/app/manifests/", 200);
    let manifest_heads = upstream.requests_with_status("HEAD", "/v2/team/app/manifests/", 200);
    let fetched = blob_gets(&upstream, "team/app", &blobs);
    assert_eq!(manifest_gets, 1, "one manifest GET upstream");
    assert_eq!(fetched, vec![1; blobs.len()], "one GET per blob: {blobs:?}");
    let asked = upstream.access_log()[after_push..].to_vec();
    let challenged = asked.iter().filter(|r| r.status == 401).count();
    assert!(
        challenged >= 1 && asked.iter().all(|r| matches!(r.status, 200 | 401)),
        "regapp went without credentials until challenged, then was let in: {asked:?}"
    );
    let before = upstream.total_requests();

    let second = work.path().join("second");
    let again = skopeo_copy(&edge, "src", &creds, &remote, &oci_ref(&second, "v1"))
        .unwrap_or_else(|e| panic!("the second pull: {e}"));
    assert_eq!(again, pushed);
    assert_same_blobs(&image.layout, &OciLayout::open(&second));
    assert_eq!(
        upstream.requests_with_status("GET", "/v2/team/app/manifests/", 200),
        manifest_gets,
        "no manifest GET upstream within tag_ttl"
    );
    assert_eq!(
        upstream.requests_with_status("HEAD", "/v2/team/app/manifests/", 200),
        manifest_heads,
        "no tag confirmation within tag_ttl"
    );
    assert_eq!(
        blob_gets(&upstream, "team/app", &blobs),
        fetched,
        "no blob GET the second time"
    );
    assert_eq!(
        upstream.total_requests(),
        before,
        "the second pull asked the upstream nothing"
    );
    assert!(stored_repository(&edge, "private/team/app").is_dir());
    eprintln!(
        "basic+TLS: {digest}; upstream: {manifest_heads} manifest HEAD, {manifest_gets} GET, \
         blob GETs {fetched:?}, {challenged} challenged, {} requests in all, 0 more on the \
         second pull; {:?}",
        asked.len(),
        started.elapsed()
    );
}

/// Protects podman's registries.conf mirror (a location with a path: the path is a repository
/// prefix) against the token upstream: podman pulls `docker.io/library/…` as a regapp user,
/// regapp gets anonymous Bearer tokens for `repository:library/NAME:pull` from the issuer, one
/// per repository however many requests it makes with it, also when a tag is confirmed again
/// after `tag_ttl`.
#[test]
fn podman_pulls_docker_hub_names_through_a_registries_conf_mirror_from_a_token_upstream() {
    let started = Instant::now();
    let work = tempfile::tempdir().expect("create a scratch dir");
    let upstream = Upstream::token_auth();
    let issuer = upstream.token_issuer().expect("a token upstream");
    let names = [("busybox", "1"), ("alpine", "3")];
    let mut pushed = Vec::new();
    for (name, tag) in names {
        let image = small_image(&work.path().join(name), &format!("podman-{name}"));
        let digest = upstream.push(&image.reference(), &format!("library/{name}:{tag}"));
        assert_eq!(digest, image.top.digest);
        pushed.push((name, tag, digest, image));
    }
    let tokens_for_pushes = issuer.requests().len();
    let before_pulls = upstream.total_requests();
    let edge = EdgeServer::start_with_rules(
        &[],
        &mirror_table(
            "dockerhub",
            &upstream.url(),
            "namespace = \"docker.io\"\ntag_ttl = \"1s\"\n",
        ),
    );
    let conf = work.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nprefix = \"docker.io\"\nlocation = \"registry-1.docker.io\"\n\n\
             [[registry.mirror]]\nlocation = \"{}/dockerhub\"\n",
            edge.host()
        ),
    )
    .expect("write registries.conf");
    let podman_dir = work.path().join("podman");
    std::fs::create_dir_all(&podman_dir).expect("create podman's dir");
    let creds = (USER, PASSWORD);

    for (name, tag, digest, _) in &pushed {
        let reference = format!("docker.io/library/{name}:{tag}");
        succeeded(
            &format!("podman pull {reference}"),
            podman(&podman_dir, &edge, &conf, creds, &["pull", &reference]),
        );
        let recorded = succeeded(
            "podman image inspect",
            podman(
                &podman_dir,
                &edge,
                &conf,
                creds,
                &["image", "inspect", "--format", "{{.Digest}}", &reference],
            ),
        );
        assert_eq!(recorded.trim(), digest, "the digest podman recorded");
    }
    let regapp_log = edge.process.log();
    for (name, _, _, _) in &pushed {
        assert!(
            regapp_log.contains(&format!("/v2/dockerhub/library/{name}/manifests/")),
            "podman asked regapp with the mirror's path as prefix:\n{regapp_log}"
        );
    }

    let token_requests: Vec<_> = issuer.requests().split_off(tokens_for_pushes);
    let mut per_repo = Vec::new();
    for (name, _, _, image) in &pushed {
        let scope = format!("repository:library/{name}:pull");
        let asked: Vec<_> = token_requests
            .iter()
            .filter(|r| r.scopes.contains(&scope))
            .collect();
        assert_eq!(
            asked.len(),
            1,
            "one token request for {scope}: {token_requests:?}"
        );
        assert_eq!(asked[0].user, None, "anonymous");
        assert_eq!(asked[0].status, 200);
        // What regapp asked about this repository since the pushes, answered 200 with that
        // one token: the tag's HEAD, the manifest's GET, the blobs not fetched before (the
        // images share their plain-tar layer, fetched once for both).
        let repo = format!("/v2/library/{name}/");
        let served: Vec<_> = upstream.access_log()[before_pulls..]
            .iter()
            .filter(|r| r.uri.starts_with(&repo) && r.status == 200)
            .map(|r| format!("{} {}", r.method, &r.uri[repo.len()..]))
            .collect();
        let manifest_gets = served.iter().filter(|r| r.starts_with("GET manifests/"));
        let blob_gets = served.iter().filter(|r| r.starts_with("GET blobs/"));
        assert_eq!(manifest_gets.count(), 1, "{served:?}");
        assert!(
            (2..=blobs_below_top(image).len()).contains(&blob_gets.count()),
            "{served:?}"
        );
        per_repo.push((scope, served.len()));
    }
    assert_eq!(
        token_requests.len(),
        pushed.len(),
        "no other token request: {token_requests:?}"
    );

    // Past tag_ttl the tag is confirmed upstream (a HEAD) with the token regapp holds.
    std::thread::sleep(Duration::from_millis(1100));
    let (name, tag, digest, _) = &pushed[0];
    let heads =
        upstream.requests_with_status("HEAD", &format!("/v2/library/{name}/manifests/"), 200);
    let reference = format!("docker.io/library/{name}:{tag}");
    succeeded(
        "podman pull again",
        podman(&podman_dir, &edge, &conf, creds, &["pull", &reference]),
    );
    let confirmed =
        upstream.requests_with_status("HEAD", &format!("/v2/library/{name}/manifests/"), 200);
    assert!(confirmed > heads, "the tag confirmed once more upstream");
    let digest_header = fetch(
        &edge,
        Some(&format!("{USER}:{PASSWORD}")),
        "HEAD",
        &format!("/v2/dockerhub/library/{name}/manifests/{tag}"),
        &[],
    )
    .header("docker-content-digest");
    assert_eq!(digest_header.as_deref(), Some(digest.as_str()));
    assert_eq!(
        issuer.requests().len(),
        tokens_for_pushes + pushed.len(),
        "and no new token"
    );
    // The image store goes with the temp dir; vfs leaves no mounts behind.
    eprintln!(
        "podman via token upstream: {} token requests for {per_repo:?} (requests answered 200 \
         per repository); {:?}",
        token_requests.len(),
        started.elapsed()
    );
}

/// Protects containerd's path: `ctr images pull docker.io/library/alpine:3` with a hosts.toml
/// naming regapp's edge (its self-signed CA, a regapp user) sends `?ns=docker.io`, which the
/// mirror with `namespace = "docker.io"` serves from its upstream, stored as
/// `dockerhub/library/alpine`: containerd records the pushed digest and bytes.
#[test]
fn containerd_pulls_docker_io_names_by_namespace_through_the_edge() {
    let started = Instant::now();
    let work = tempfile::tempdir().expect("create a scratch dir");
    let upstream = Upstream::open();
    let image = small_image(&work.path().join("image"), "containerd-mirror");
    let pushed = upstream.push(&image.reference(), "library/alpine:3");
    let edge = EdgeServer::start_with_rules(
        &[],
        &mirror_table("dockerhub", &upstream.url(), "namespace = \"docker.io\"\n"),
    );
    let hosts = work.path().join("hosts");
    write_hosts_dir(
        &hosts,
        "docker.io",
        HUB,
        &edge.url(),
        Some(&edge.ca()),
        false,
        false,
    );

    let containerd = Containerd::start();
    let said = containerd
        .pull(&hosts, "docker.io/library/alpine:3", Some((USER, PASSWORD)))
        .unwrap_or_else(|e| panic!("{e}\nregapp:\n{}", edge.process.log()));

    let tag_request = "HEAD /v2/library/alpine/manifests/3?ns=docker.io HTTP/1.1";
    assert!(
        said.contains(tag_request),
        "ctr sent no `{tag_request}`:\n{said}"
    );
    assert_eq!(
        containerd.image_digest("docker.io/library/alpine:3"),
        Some(pushed.clone()),
        "the image containerd recorded"
    );
    assert_eq!(containerd.content(&pushed), image.top_bytes());
    let expected: Vec<String> = image.layout.blob_digests().into_iter().collect();
    assert_eq!(containerd.content_digests(), expected, "sorted, both");
    let blobs = blobs_below_top(&image);
    for blob in &blobs {
        assert_eq!(
            containerd.content(blob),
            image.layout.read_blob(blob),
            "{blob}"
        );
    }
    let fetched = blob_gets(&upstream, "library/alpine", &blobs);
    assert_eq!(fetched, vec![1; blobs.len()], "one upstream GET per blob");
    let manifest_gets = upstream.requests_with_status("GET", "/v2/library/alpine/manifests/", 200);
    assert_eq!(manifest_gets, 1, "one manifest GET upstream");
    assert!(
        upstream.access_log().iter().all(|r| !r.uri.contains("ns=")),
        "the upstream gets plain names"
    );
    assert!(stored_repository(&edge, "dockerhub/library/alpine").is_dir());

    // The same content under its local name, from the cache.
    let before = upstream.total_requests();
    let creds = format!("{USER}:{PASSWORD}");
    let local = fetch(
        &edge,
        Some(&creds),
        "GET",
        "/v2/dockerhub/library/alpine/manifests/3",
        &[format!("Accept: {}", crate::util::layout::OCI_MANIFEST)],
    );
    assert_eq!(local.status, 200, "{}", local.text());
    assert_eq!(local.header("docker-content-digest"), Some(pushed.clone()));
    assert_eq!(upstream.total_requests(), before, "served from the cache");
    eprintln!(
        "containerd by ns: {pushed}; upstream: {manifest_gets} manifest GET, blob GETs \
         {fetched:?}; {:?}",
        started.elapsed()
    );
}

/// Protects Docker's `registry-mirrors`: dockerd sends Docker Hub names without a prefix
/// (`/v2/library/NAME/…`) and anonymously; regapp's `default = true` mirror serves them, with the
/// digest headers and bytes dockerd checks, and `MANIFEST_UNKNOWN` (dockerd's cue for the next
/// endpoint) for what the upstream lacks. A local repository with an unprefixed name is still
/// served locally, the upstream never asked.
#[test]
fn docker_registry_mirrors_requests_go_to_the_default_mirror_and_local_names_stay_local() {
    let started = Instant::now();
    let work = tempfile::tempdir().expect("create a scratch dir");
    let upstream = Upstream::open();
    let skopeo_plain = Skopeo::new();
    let image = small_image(&work.path().join("image"), "docker-mirror");
    let schema2 = docker_schema2(&skopeo_plain, &image, &work.path().join("schema2"));
    let pushed = upstream.push(&schema2.reference(), "library/nginx:1.27");
    assert_eq!(pushed, schema2.digest);
    let rules = format!(
        "anonymous_pull = true\n\n\
         [[access]]\nrepositories = \"dockerhub/**\"\nusers = [\"anonymous\", \"*\"]\n\
         actions = [\"pull\"]\n\n\
         [[access]]\nrepositories = \"**\"\nusers = [\"{USER}\"]\n\
         actions = [\"pull\", \"push\", \"delete\"]\n{}",
        mirror_table(
            "dockerhub",
            &upstream.url(),
            "namespace = \"docker.io\"\ndefault = true\n"
        )
    );
    let edge = EdgeServer::start_with_rules(&[], &rules);
    let accept: Vec<String> = DOCKER_ACCEPT
        .iter()
        .map(|t| format!("Accept: {t}"))
        .chain([format!("User-Agent: {DOCKER_USER_AGENT}")])
        .collect();
    let agent = [format!("User-Agent: {DOCKER_USER_AGENT}")];

    let ping = fetch(&edge, None, "GET", "/v2/", &agent);
    assert_eq!(ping.status, 200, "{}", ping.text());
    let head = fetch(
        &edge,
        None,
        "HEAD",
        "/v2/library/nginx/manifests/1.27",
        &accept,
    );
    assert_eq!(head.status, 200, "{}", head.text());
    assert_eq!(head.header("docker-content-digest"), Some(pushed.clone()));
    assert_eq!(
        head.header("content-type").as_deref(),
        Some("application/vnd.docker.distribution.manifest.v2+json")
    );
    for reference in ["1.27", pushed.as_str()] {
        let path = format!("/v2/library/nginx/manifests/{reference}");
        let manifest = fetch(&edge, None, "GET", &path, &accept);
        assert_eq!(manifest.status, 200, "{path}: {}", manifest.text());
        assert_eq!(
            manifest.header("docker-content-digest"),
            Some(pushed.clone())
        );
        assert_eq!(sha256_digest(&manifest.body), pushed, "{path}");
        assert_eq!(manifest.body, schema2.manifest, "{path}: the bytes pushed");
    }
    let parsed: serde_json::Value =
        serde_json::from_slice(&schema2.manifest).expect("the manifest is JSON");
    let mut blobs = vec![parsed["config"]["digest"].as_str().unwrap().to_owned()];
    blobs.extend(
        parsed["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_owned()),
    );
    for blob in &blobs {
        let answer = fetch(
            &edge,
            None,
            "GET",
            &format!("/v2/library/nginx/blobs/{blob}"),
            &agent,
        );
        assert_eq!(answer.status, 200, "{blob}: {}", answer.text());
        assert_eq!(
            answer.header("docker-content-digest").as_deref(),
            Some(blob.as_str())
        );
        assert_eq!(sha256_digest(&answer.body), *blob, "the bytes of {blob}");
        let hex = blob.strip_prefix("sha256:").unwrap();
        let on_disk = std::fs::read(schema2.dir.join(hex)).expect("read the pushed blob");
        assert_eq!(answer.body, on_disk, "{blob}: the bytes pushed");
    }
    let fetched = blob_gets(&upstream, "library/nginx", &blobs);
    assert_eq!(fetched, vec![1; blobs.len()], "one upstream GET per blob");
    let manifest_gets = upstream.requests_with_status("GET", "/v2/library/nginx/manifests/", 200);
    assert_eq!(manifest_gets, 1, "one manifest GET upstream");
    assert!(stored_repository(&edge, "dockerhub/library/nginx").is_dir());

    // What the upstream lacks: MANIFEST_UNKNOWN, dockerd's cue to try the next endpoint.
    let missing = fetch(
        &edge,
        None,
        "GET",
        "/v2/library/nothere/manifests/1",
        &accept,
    );
    assert_eq!(missing.status, 404, "{}", missing.text());
    assert!(
        String::from_utf8_lossy(&missing.body).contains("MANIFEST_UNKNOWN"),
        "{}",
        missing.text()
    );

    // A local repository with an unprefixed name: pushed with skopeo, served from the store.
    let creds = format!("{USER}:{PASSWORD}");
    let local_image = small_image(&work.path().join("local"), "local team app");
    let local_digest = skopeo_copy(
        &edge,
        "dest",
        &creds,
        &local_image.reference(),
        &docker_ref(&edge.host(), "team/app:1"),
    )
    .unwrap_or_else(|e| panic!("alice pushes team/app:1: {e}"));
    assert_eq!(local_digest, local_image.top.digest);
    let during_push = upstream.access_log();
    let before = upstream.total_requests();
    let manifest = fetch(
        &edge,
        Some(&creds),
        "GET",
        "/v2/team/app/manifests/1",
        &accept,
    );
    assert_eq!(manifest.status, 200, "{}", manifest.text());
    assert_eq!(manifest.body, local_image.top_bytes(), "the local manifest");
    for blob in blobs_below_top(&local_image) {
        let answer = fetch(
            &edge,
            Some(&creds),
            "GET",
            &format!("/v2/team/app/blobs/{blob}"),
            &agent,
        );
        assert_eq!(answer.status, 200, "{blob}: {}", answer.text());
        assert_eq!(answer.body, local_image.layout.read_blob(&blob));
    }
    // Anonymous may not pull it (no rule), and is not sent upstream instead.
    let anonymous = fetch(&edge, None, "GET", "/v2/team/app/manifests/1", &accept);
    assert!(
        matches!(anonymous.status, 401 | 403),
        "{}",
        anonymous.text()
    );
    assert_eq!(
        upstream.total_requests(),
        before,
        "the local repository is served without asking the upstream"
    );
    let pushed_upstream_asks: Vec<_> = during_push
        .iter()
        .filter(|r| r.uri.contains("team/app"))
        .collect();
    assert!(
        pushed_upstream_asks.is_empty(),
        "a push to a local name asks the upstream nothing: {pushed_upstream_asks:?}"
    );
    eprintln!(
        "docker default mirror: {pushed}; upstream: {manifest_gets} manifest GET, blob GETs \
         {fetched:?}; local team/app served with 0 upstream requests (the push itself caused \
         {} upstream requests: {pushed_upstream_asks:?}); {:?}",
        pushed_upstream_asks.len(),
        started.elapsed()
    );
}

/// Protects a regapp as another regapp's upstream: an index with two platform images pushed to
/// one regapp (the engine alone, plain HTTP) comes out of a second regapp mirroring it by
/// prefix with every digest the same, the platform manifests fetched by digest.
#[test]
fn regapp_mirrors_another_regapp_by_prefix() {
    let started = Instant::now();
    let work = tempfile::tempdir().expect("create a scratch dir");
    let first = Regapp::start(&work.path().join("first"));
    let skopeo = Skopeo::new();
    let index = multi_arch_index(&work.path().join("index"));
    let pushed = skopeo.copy_all(
        &index.reference(),
        &docker_ref(first.host(), "team/base:multi"),
    );
    assert_eq!(pushed, index.top.digest);
    let second = Regapp::start_with(
        &work.path().join("second"),
        &mirror_table("upper", &first.url(), "tag_ttl = \"10m\"\n"),
    );

    let pulled = work.path().join("pulled");
    let digest = skopeo.copy_all(
        &docker_ref(second.host(), "upper/team/base:multi"),
        &oci_ref(&pulled, "multi"),
    );
    assert_eq!(digest, pushed, "the index digest through the second regapp");
    let pulled = OciLayout::open(&pulled);
    assert_eq!(pulled.read_blob(&digest), index.top_bytes());
    assert_same_blobs(&index.layout, &pulled);
    let raw = skopeo.inspect_raw(&docker_ref(second.host(), "upper/team/base:multi"));
    assert_eq!(raw, index.top_bytes(), "the index bytes served");
    assert!(
        work.path()
            .join("second/docker/registry/v2/repositories/upper/team/base/_manifests")
            .is_dir(),
        "the second regapp stored it under upper/team/base"
    );
    eprintln!(
        "regapp → regapp: index {digest} with {} blobs; {:?}",
        index.layout.blob_digests().len(),
        started.elapsed()
    );
}

/// Protects read-only mirrored names: through the edge, skopeo's push to `dockerhub/team/x:1`
/// fails with regapp's message naming the mirror, the same image pushes to the local `team/x:1`,
/// and an upload start under the prefix gets 403 `DENIED` without regapp asking the upstream.
#[test]
fn mirrored_names_refuse_pushes_and_local_names_take_them() {
    let started = Instant::now();
    let work = tempfile::tempdir().expect("create a scratch dir");
    let upstream = Upstream::open();
    let edge = EdgeServer::start_with_rules(&[], &mirror_table("dockerhub", &upstream.url(), ""));
    let creds = format!("{USER}:{PASSWORD}");
    let image = small_image(&work.path().join("image"), "read-only");

    let refused = skopeo_copy(
        &edge,
        "dest",
        &creds,
        &image.reference(),
        &docker_ref(&edge.host(), "dockerhub/team/x:1"),
    )
    .expect_err("a push under the mirror's prefix fails");
    assert!(refused.contains("denied"), "{refused}");
    assert!(!stored_repository(&edge, "dockerhub/team/x").exists());

    let local = skopeo_copy(
        &edge,
        "dest",
        &creds,
        &image.reference(),
        &docker_ref(&edge.host(), "team/x:1"),
    )
    .unwrap_or_else(|e| panic!("a push to a local name: {e}"));
    assert_eq!(local, image.top.digest);

    let before = upstream.total_requests();
    let upload = fetch(
        &edge,
        Some(&creds),
        "POST",
        "/v2/dockerhub/x/blobs/uploads/",
        &[],
    );
    assert_eq!(upload.status, 403, "{}", upload.text());
    let body: serde_json::Value = serde_json::from_slice(&upload.body)
        .unwrap_or_else(|e| panic!("the error is JSON ({e}): {}", upload.text()));
    assert_eq!(body["errors"][0]["code"], "DENIED", "{body}");
    let detail = body["errors"][0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("read-only mirror") && detail.contains("dockerhub"),
        "{body}"
    );
    assert_eq!(upstream.total_requests(), before, "no upstream request");
    eprintln!(
        "read-only: skopeo said {:?}; POST uploads: 403 {body}; {:?}",
        refused.lines().last().unwrap_or_default(),
        started.elapsed()
    );
    // Clients print an error's `message`, not its `detail` (skopeo, podman and docker alike:
    // distribution's errcode.Error is "code: message"), so the reason must be in `message`
    // for the user who pushed to see it.
    assert!(
        refused.contains("read-only mirror"),
        "skopeo shows regapp's reason: {refused}"
    );
}

/// Protects access rules on mirrored content: with alice allowed to pull `dockerhub/**` and
/// bob nothing there, bob's pull by prefix and by containerd's `?ns=` is refused before
/// regapp asks the upstream anything; alice's pull then fills the cache, and bob still gets
/// nothing from it.
#[test]
fn access_rules_on_the_local_name_keep_a_user_from_mirrored_content() {
    let started = Instant::now();
    let work = tempfile::tempdir().expect("create a scratch dir");
    let upstream = Upstream::open();
    let image = small_image(&work.path().join("image"), "access-mirror");
    let pushed = upstream.push(&image.reference(), "library/redis:7");
    let after_push = upstream.total_requests();
    let rules = format!(
        "[[access]]\nrepositories = \"dockerhub/**\"\nusers = [\"{USER}\"]\nactions = [\"pull\"]\n\n\
         [[access]]\nrepositories = \"team/**\"\nusers = [\"bob\"]\nactions = [\"pull\", \"push\"]\n{}",
        mirror_table("dockerhub", &upstream.url(), "namespace = \"docker.io\"\n")
    );
    let edge = EdgeServer::start_with_rules(&[("bob", "builder")], &rules);
    let bob = "bob:builder";
    let alice = format!("{USER}:{PASSWORD}");
    let remote = docker_ref(&edge.host(), "dockerhub/library/redis:7");

    let refused = skopeo_copy(
        &edge,
        "src",
        bob,
        &remote,
        &oci_ref(&work.path().join("bob"), "v1"),
    )
    .expect_err("bob may not pull a mirrored image");
    assert!(
        refused.contains("denied") || refused.contains("unauthorized"),
        "{refused}"
    );
    let by_prefix = fetch(
        &edge,
        Some(bob),
        "GET",
        "/v2/dockerhub/library/redis/manifests/7",
        &[],
    );
    let by_namespace = fetch(
        &edge,
        Some(bob),
        "GET",
        "/v2/library/redis/manifests/7?ns=docker.io",
        &[],
    );
    for answer in [&by_prefix, &by_namespace] {
        assert_eq!(answer.status, 403, "{}", answer.text());
        assert!(
            String::from_utf8_lossy(&answer.body).contains("DENIED"),
            "{}",
            answer.text()
        );
    }
    assert_eq!(
        upstream.total_requests(),
        after_push,
        "the upstream saw nothing of bob's attempts: {:?}",
        &upstream.access_log()[after_push..]
    );

    let digest = skopeo_copy(
        &edge,
        "src",
        &alice,
        &remote,
        &oci_ref(&work.path().join("alice"), "v1"),
    )
    .unwrap_or_else(|e| panic!("alice pulls: {e}"));
    assert_eq!(digest, pushed);
    assert_same_blobs(&image.layout, &OciLayout::open(&work.path().join("alice")));
    let after_alice = upstream.total_requests();
    assert!(after_alice > after_push);

    let blob = &blobs_below_top(&image)[0];
    for path in [
        "/v2/dockerhub/library/redis/manifests/7".to_owned(),
        format!("/v2/dockerhub/library/redis/blobs/{blob}"),
        format!("/v2/library/redis/blobs/{blob}?ns=docker.io"),
    ] {
        let answer = fetch(&edge, Some(bob), "GET", &path, &[]);
        assert_eq!(answer.status, 403, "{path}: {}", answer.text());
    }
    assert_eq!(upstream.total_requests(), after_alice);
    eprintln!(
        "access: bob 403 by prefix and by ns with 0 upstream requests; alice pulled {digest} \
         ({} upstream requests); {:?}",
        after_alice - after_push,
        started.elapsed()
    );
}

/// Protects local pushes beside a `default = true` mirror: pushing an image to an unprefixed
/// name that the upstream also holds (retagging `library/alpine` into one's own registry, or a
/// Docker Hub user's repository named like a team's) makes a local repository whose blobs are
/// in regapp's store, whatever the upstream has: skopeo's blob HEADs must not be answered from
/// the upstream, or skopeo skips the uploads and the local image misses its blobs.
#[test]
fn a_local_push_to_a_name_the_default_mirror_also_holds_uploads_every_blob() {
    let started = Instant::now();
    let work = tempfile::tempdir().expect("create a scratch dir");
    let mut upstream = Upstream::open();
    let image = small_image(&work.path().join("image"), "same on both sides");
    let upstream_digest = upstream.push(&image.reference(), "team/app:1");
    let edge = EdgeServer::start_with_rules(
        &[],
        &mirror_table("dockerhub", &upstream.url(), "default = true\n"),
    );
    let creds = format!("{USER}:{PASSWORD}");
    let before = upstream.total_requests();

    let pushed = skopeo_copy(
        &edge,
        "dest",
        &creds,
        &image.reference(),
        &docker_ref(&edge.host(), "team/app:1"),
    );
    let asked: Vec<_> = upstream.access_log()[before..].to_vec();
    // Served from the store alone: the upstream is gone.
    upstream.stop();
    let back = work.path().join("back");
    let pulled = pushed.as_ref().ok().map(|_| {
        skopeo_copy(
            &edge,
            "src",
            &creds,
            &docker_ref(&edge.host(), "team/app:1"),
            &oci_ref(&back, "v1"),
        )
    });
    eprintln!(
        "local push beside the default mirror: push {pushed:?}, pull back {pulled:?}; the push \
         asked the upstream {asked:?}; {:?}",
        started.elapsed()
    );
    assert_eq!(
        pushed.as_deref(),
        Ok(upstream_digest.as_str()),
        "the push to team/app:1 succeeds"
    );
    assert_eq!(
        pulled,
        Some(Ok(upstream_digest)),
        "and pulls back from the store"
    );
    assert_same_blobs(&image.layout, &OciLayout::open(&back));
}
