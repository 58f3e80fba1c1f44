//! regapp: one binary for a self-hosted container registry.
//!
//! See ARCHITECTURE.md for the map of the parts and the direction of their dependencies.

pub mod app;
pub mod auth;
pub mod certs;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod edge;
pub mod metrics;
pub mod ops;
pub mod plumbing;
pub mod registry;
pub mod storage;
pub mod upstream;
