//! The engine benchmark: regapp beside docker-registry (work in progress).
fn main() {}
