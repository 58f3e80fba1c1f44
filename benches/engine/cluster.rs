//! `--cluster`: a registry's nodes behind Debian's HAProxy 2.6, as an operator runs a cluster:
//! `mode http`, `balance roundrobin` with no stickiness (each request to the next node, so a
//! push's POST, PATCH and PUT land on different nodes), plain HTTP to the nodes' engine
//! listeners, health checks on `/v2/`, inactivity timeouts long enough for a big layer's
//! commit, and no `option http-buffer-request` (bodies stream through). The same settings as
//! the tests' `tests/util/haproxy.rs`. HAProxy's stats socket tells how the requests spread.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::server::{answers_v2, free_port, Kind, Server};
use crate::BenchResult;

/// Starts `kind`'s nodes (`n1`…, each in `dir/<node>`, all on one prefix of the bucket), then
/// HAProxy in front of them on a free loopback port; waits until `GET /v2/` answers through it.
pub fn start(kind: Kind, dir: &Path, regapp: &Path) -> BenchResult<Server> {
    let count = kind.cluster_nodes().ok_or("not a cluster kind")?;
    let nodes = (1..=count)
        .map(|n| {
            let node = format!("n{n}");
            Server::start_node(kind, &dir.join(&node), regapp, Some(&node))
        })
        .collect::<BenchResult<Vec<Server>>>()?;
    let port = free_port()?;
    let socket = dir.join("haproxy.sock");
    let mut config = format!(
        "global\n  \
           log stderr format raw local0 notice\n  \
           stats socket {} mode 600 level user\n\n\
         defaults\n  \
           mode http\n  \
           log global\n  \
           timeout connect 5s\n  \
           timeout client 15m\n  \
           timeout server 15m\n  \
           timeout check 5s\n\n\
         frontend registry\n  \
           bind 127.0.0.1:{port}\n  \
           default_backend nodes\n\n\
         backend nodes\n  \
           balance roundrobin\n  \
           option httpchk\n  \
           http-check send meth GET uri /v2/\n  \
           http-check expect status 200,401\n",
        socket.display()
    );
    for (n, node) in nodes.iter().enumerate() {
        let address = node
            .base
            .strip_prefix("http://")
            .ok_or("a node's address is not http://")?;
        config.push_str(&format!(
            "  server n{} {address} check inter 1s fall 2 rise 1\n",
            n + 1
        ));
    }
    let file = dir.join("haproxy.cfg");
    fs::write(&file, config)?;
    let log = dir.join("haproxy.log");
    let child = Command::new("haproxy")
        .arg("-f")
        .arg(&file)
        .arg("-db")
        .stdin(Stdio::null())
        .stdout(File::create(dir.join("haproxy.stdout.log"))?)
        .stderr(File::create(&log)?)
        .spawn()
        .map_err(|e| format!("cannot start haproxy ({e}); `apt-get install haproxy`"))?;
    let mut server = Server::spawned(kind, child, log);
    server.inner = nodes;
    let address = format!("127.0.0.1:{port}");
    server.wait_for(|| answers_v2(&address).then_some(()))?;
    server.base = format!("http://{address}");
    Ok(server)
}

/// How HAProxy spread the requests over the nodes, and what the nodes answered with 5xx, as
/// one line (from `show stat` on the stats socket); `None` for a server that is no cluster.
pub fn spread(server: &Server, dir: &Path) -> Option<String> {
    server.kind.cluster_nodes()?;
    let mut stream = UnixStream::connect(dir.join("haproxy.sock")).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(b"show stat\n").ok()?;
    let mut csv = String::new();
    stream.read_to_string(&mut csv).ok()?;
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
    let column = |name: &str| header.iter().position(|&h| h == name);
    let (name, requests, errors) = (column("svname")?, column("stot")?, column("hrsp_5xx")?);
    let nodes: Vec<String> = lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.first() == Some(&"nodes") && f.get(name).is_some_and(|n| n.starts_with('n')))
        .map(|f| {
            format!(
                "{} {} requests ({} answered 5xx)",
                f[name],
                f.get(requests).unwrap_or(&"?"),
                f.get(errors).unwrap_or(&"?")
            )
        })
        .collect();
    Some(format!(
        "{}: HAProxy sent {}",
        server.kind.name(),
        nodes.join(", ")
    ))
}
