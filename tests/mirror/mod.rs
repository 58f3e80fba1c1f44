mod containerd_fixture;
mod fixtures;
