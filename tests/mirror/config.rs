//! `[[mirror]]` in `check-config`: every mistake at once with its line and key, and the
//! warning for a prefix that hides repositories pushed under it.

use crate::util::images::small_image;
use crate::util::regapp::{self, write_config};
use crate::util::{regapp_fails, Regapp, Registry, Skopeo};

/// Docker Hub under `dockerhub/`, as an operator writes it.
const HUB_MIRROR: &str = r#"
[[mirror]]
name = "hub"
url = "https://registry-1.docker.io"
prefix = "dockerhub"
"#;

/// `regapp check-config`: whether it passed, its stdout and its stderr.
fn check_config(config: &std::path::Path) -> (bool, String, String) {
    let out = regapp::command(&["check-config"], config)
        .output()
        .expect("run regapp check-config");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn mistakes_in_mirrors_are_errors_with_line_and_key() {
    let root = tempfile::tempdir().unwrap();
    let (_dir, config) = write_config(
        root.path(),
        &format!(
            r#"{HUB_MIRROR}namespace = "docker.io"
default = true

[[mirror]]
name = "hub"
url = "ghcr.io"
prefix = "dockerhub"
namespace = "docker.io"
default = true
username = "me"
max_concurrent = 0
"#
        ),
    );
    let stderr = regapp_fails("check-config", &config);
    for expected in [
        "mirror[1].name", // hub twice
        "mirror[1].url",
        "mirror[1].prefix",
        "mirror[1].namespace",
        "mirror[1].default",
        "mirror[1].password_file",
        "mirror[1].max_concurrent",
    ] {
        assert!(
            stderr.contains(expected),
            "{expected} missing in:\n{stderr}"
        );
    }
    // A value of the wrong shape is reported before the rest is checked.
    let (_dir, config) = write_config(
        root.path(),
        "[[mirror]]\nname = \"hub\"\nurl = \"https://h\"\nmax_bytes = \"lots\"\n",
    );
    let stderr = regapp_fails("check-config", &config);
    assert!(
        stderr.contains("mirror[0].max_bytes: \"lots\" is not a size"),
        "{stderr}"
    );
}

#[test]
fn a_prefix_over_pushed_repositories_is_a_warning_not_an_error() {
    let root = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    // Pushed while no mirror had the prefix.
    {
        let regapp = Regapp::start(root.path());
        let image = small_image(work.path(), "mine");
        Skopeo::new().copy(
            &image.reference(),
            &format!("docker://{}/dockerhub/mine:v1", regapp.host()),
        );
    }
    let (_dir, config) = write_config(root.path(), HUB_MIRROR);
    let (ok, stdout, stderr) = check_config(&config);
    assert!(ok, "check-config failed:\n{stderr}");
    assert!(
        stderr.contains("warning: [[mirror]] \"hub\": prefix \"dockerhub\"")
            && stderr.contains("dockerhub/mine"),
        "{stderr}"
    );
    assert!(
        stdout.contains("mirror \"hub\" = https://registry-1.docker.io as dockerhub/"),
        "{stdout}"
    );
    // A prefix over nothing pushed says nothing.
    let (_dir, config) = write_config(
        root.path(),
        "[[mirror]]\nname = \"quay\"\nurl = \"https://quay.io\"\n",
    );
    let (ok, _, stderr) = check_config(&config);
    assert!(ok && !stderr.contains("warning"), "{stderr}");
}
