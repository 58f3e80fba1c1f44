mod cache;
mod clients;
mod config;
mod containerd_fixture;
mod eviction;
mod fixtures;
