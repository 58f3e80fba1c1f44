//! Log formats: JSON objects with `log.format = "json"` (the request id in the access log's
//! fields and the engine's span), plain lines without terminal colours otherwise.

use std::time::Duration;

use crate::edge::{EdgeServer, Tls, PASSWORD, USER};
use crate::util::eventually;

fn stderr_lines(edge: &EdgeServer) -> Vec<String> {
    edge.process
        .log()
        .lines()
        .filter_map(|l| l.strip_prefix("stderr: ").map(str::to_owned))
        .collect()
}

#[test]
fn json_format_writes_one_object_per_line_with_the_request_id() {
    let edge = EdgeServer::start_configured(
        Tls::SelfSigned,
        "",
        "\n[log]\nformat = \"json\"\nlevel = \"info,regapp::registry=debug\"\n",
        |c| {
            c.env_remove("RUST_LOG").env_remove("REGAPP_LOG");
        },
    );
    let (status, text) = edge.curl(&[
        "-u",
        &format!("{USER}:{PASSWORD}"),
        &format!("{}/v2/team/app/manifests/missing", edge.url()),
    ]);
    assert_eq!(status, 404, "{text}");
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("an X-Request-Id")
        .trim()
        .to_owned();
    eventually(Duration::from_secs(5), "the access log line", || {
        stderr_lines(&edge)
            .iter()
            .any(|l| l.contains(&id) && l.contains("regapp::auth::access"))
    });
    let lines = stderr_lines(&edge);
    assert!(lines.len() > 3, "{lines:?}");
    let objects: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access = objects
        .iter()
        .find(|o| o["target"] == "regapp::auth::access")
        .unwrap();
    assert_eq!(access["fields"]["request_id"], id.as_str(), "{access}");
    assert_eq!(access["fields"]["status"], 404, "{access}");
    let engine = objects
        .iter()
        .find(|o| o["span"]["id"] == id.as_str())
        .unwrap_or_else(|| panic!("an engine line in the request's span: {lines:?}"));
    assert_eq!(engine["span"]["name"], "request", "{engine}");
}

#[test]
fn text_format_off_a_terminal_has_no_colour_codes() {
    let edge = EdgeServer::start_configured(Tls::SelfSigned, "", "", |c| {
        c.env_remove("JOURNAL_STREAM");
    });
    let (status, _) = edge.curl(&[&format!("{}/v2/", edge.url())]);
    assert_eq!(status, 401);
    eventually(Duration::from_secs(5), "the access log line", || {
        stderr_lines(&edge)
            .iter()
            .any(|l| l.contains("regapp::auth::access"))
    });
    let lines = stderr_lines(&edge);
    assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains(" INFO ")), "{lines:?}");
}
