//! Immutable tags through the edge with skopeo: a release tag takes the same digest again (a
//! CI retry) and refuses another with `DENIED` naming the rule; a mutable tag moves; deletes
//! of the tag are refused; `regapp access explain --tag` names the rule. (Retention keeping
//! held tags: `registry::gc::tests::retention_never_removes_an_immutable_tag`.)

use super::access::skopeo;
use super::{EdgeServer, PASSWORD, USER};
use crate::util::images::small_image;

const RULES: &str = r#"
[[immutable]]
repositories = "**"
tags = "^v[0-9]+\\.[0-9]+\\.[0-9]+$"
"#;

fn push(edge: &EdgeServer, source: &str, name_and_tag: &str) -> std::process::Output {
    let creds = format!("{USER}:{PASSWORD}");
    let destination = format!("docker://{}/{name_and_tag}", edge.host());
    skopeo(
        edge,
        &["copy", "--dest-creds", &creds, source, &destination],
    )
}

#[test]
fn a_release_tag_takes_its_digest_again_and_refuses_another() {
    let edge = EdgeServer::start_with_rules(&[], RULES);
    let work = tempfile::tempdir().unwrap();
    let first = small_image(&work.path().join("first"), "first");
    let second = small_image(&work.path().join("second"), "second");

    let pushed = push(&edge, &first.reference(), "team/app:v1.0.0");
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let pushed_manifest = release_manifest(&edge);
    let again = push(&edge, &first.reference(), "team/app:v1.0.0");
    assert!(
        again.status.success(),
        "the same digest again is a CI retry: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    let moved = push(&edge, &second.reference(), "team/app:v1.0.0");
    let stderr = String::from_utf8_lossy(&moved.stderr);
    assert!(!moved.status.success(), "moving an immutable tag succeeded");
    assert!(
        stderr.contains("denied: team/app:v1.0.0 is immutable by [[immutable]] #1"),
        "skopeo shows the rule: {stderr}"
    );
    let out = push(&edge, &second.reference(), "team/app:latest");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = push(&edge, &first.reference(), "team/app:latest");
    assert!(
        out.status.success(),
        "a mutable tag moves: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(
        release_manifest(&edge),
        pushed_manifest,
        "the release tag still names the first image"
    );

    // DELETE of the tag: 403 DENIED naming the rule.
    let (status, body) = edge.curl(&[
        "-u",
        &format!("{USER}:{PASSWORD}"),
        "-X",
        "DELETE",
        &format!("{}/v2/team/app/manifests/v1.0.0", edge.url()),
    ]);
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("\"DENIED\"") && body.contains("immutable"),
        "{body}"
    );
}

/// The manifest `team/app:v1.0.0` names, as the registry serves it.
fn release_manifest(edge: &EdgeServer) -> Vec<u8> {
    let inspect = skopeo(
        edge,
        &[
            "inspect",
            "--raw",
            "--creds",
            &format!("{USER}:{PASSWORD}"),
            &format!("docker://{}/team/app:v1.0.0", edge.host()),
        ],
    );
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    inspect.stdout
}

#[test]
fn access_explain_names_the_rule_holding_a_tag() {
    let edge = EdgeServer::start_with_rules(&[], RULES);
    let explain = |tag: &str| {
        crate::util::regapp_ok(
            &["access", "explain", USER, "team/app", "--tag", tag],
            &edge.config_file,
        )
    };
    let release = explain("v2.3.4");
    assert!(
        release.contains("tag v2.3.4: immutable by [[immutable]] #1 (repositories \"**\""),
        "{release}"
    );
    let latest = explain("latest");
    assert!(
        latest.contains("tag latest: mutable (no [[immutable]] rule holds it)"),
        "{latest}"
    );
}
