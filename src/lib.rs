//! regapp: one binary for a self-hosted container registry.
//!
//! See ARCHITECTURE.md for the map of the parts and the direction of their dependencies.

pub mod access;
pub mod access_command;
pub mod acme;
pub mod app;
pub mod auth;
pub mod background;
pub mod batcher;
pub mod byte_budget;
pub mod cert_command;
pub mod certs;
pub mod cli;
pub mod config;
pub mod control_socket;
pub mod edge;
pub mod gc;
pub mod gc_command;
pub mod metrics;
pub mod ops;
pub mod registry;
pub mod storage;
pub mod user_command;
pub mod watch;
