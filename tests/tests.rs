//! regapp's integration tests: one test binary, shared helpers in `util`, real programs beside.
//!
//! - `api`: every OCI endpoint and error code against the engine's `Api`, in-process and over
//!   its HTTP listener.
//! - `auth`: the authenticator over files written by Apache's `htpasswd`; login limits, reloads.
//! - `certs`: files, self-signed and hot swaps as a rustls client sees them.
//! - `edge`: the edge through curl (h2 and HTTP/1.1), openssl, skopeo, podman and oras; access
//!   rules, lingering bodies, hostile connections.
//! - `skopeo`: push and pull through the registry under test, digests and bytes unchanged.
//! - `compat`: two-way on-disk compatibility with docker-registry 2.8 on the same storage root.
//! - `crash`: `kill -9` during pushes leaves nothing corrupt or half-visible, on disk and in S3.
//! - `gc`: `regapp gc`/`du` while pushes run, the schedule, metrics, docker-registry after it.
//! - `acme`: certificates from Debian's pebble over HTTP-01, restart, forced renewal, errors.
//! - `ops`: `/metrics`, health, SIGHUP reloads, systemd notify, logs, `check-config`.
//! - `user`: `regapp user` against Apache's `htpasswd -v` and a running edge.
//! - `fuzz`: the fuzz targets' checks over the committed corpora and regressions.
//! - `readme`: the README's first command as a newcomer types it.
//! - `s3`: the engine on a SeaweedFS that goes away mid-upload (more S3 runs: tests/run-all.sh).
//! - `cluster`: three nodes on one bucket behind HAProxy: skopeo and podman spread over them, an
//!   upload across nodes past a `kill -9`, pushes while every node collects, read-after-write.
//! - `mirror`: the pull-through cache in front of real upstreams (docker-registry open, with
//!   Basic over TLS, with token auth from an issuer in the test, and another regapp): skopeo,
//!   podman, containerd's `ctr` and Docker's requests; one fetch per blob, stale answers, tag
//!   TTLs, 429s, eviction, `check-config`.
//!
//! The registry under test is regapp (`REGAPP_TEST_TARGET` unset or `regapp`); set
//! `REGAPP_TEST_TARGET=docker-registry` to check the harness against the reference registry.
//! tests/run-all.sh installs the programs they need.
//!
//! Run: `cargo test --test tests` (add `-- --nocapture` to see timings).

mod acme;
mod api;
mod auth;
mod certs;
mod cluster;
mod compat;
mod crash;
mod edge;
mod fuzz;
mod gc;
mod mirror;
mod ops;
mod readme;
mod s3;
mod skopeo;
mod user;
mod util;
