//! regapp's integration tests: one test binary, shared helpers in `util`, real clients beside.
//!
//! - `skopeo`: push and pull through the registry under test, digests and bytes unchanged.
//! - `compat`: two-way on-disk compatibility with docker-registry 2.8 on the same storage root.
//! - `gc`: garbage collection through `regapp gc` while pushes run, and docker-registry after it.
//! - `acme`: certificates from Debian's pebble over HTTP-01, restart, forced renewal, errors.
//! - `user`: `regapp user` against Apache's `htpasswd -v` and a running edge.
//!
//! The registry under test is regapp (`REGAPP_TEST_TARGET` unset or `regapp`); set
//! `REGAPP_TEST_TARGET=docker-registry` to check the harness against the reference registry.
//! Needs the Debian packages `skopeo`, `docker-registry`, `pebble` and `podman`.
//!
//! Run: `cargo test --test tests` (add `-- --nocapture` to see timings).

mod acme;
mod api;
mod auth;
mod certs;
mod compat;
mod crash;
mod edge;
mod fuzz;
mod gc;
mod ops;
mod readme;
mod skopeo;
mod user;
mod util;
