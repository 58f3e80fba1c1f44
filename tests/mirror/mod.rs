mod cache;
mod config;
mod containerd_fixture;
mod fixtures;
