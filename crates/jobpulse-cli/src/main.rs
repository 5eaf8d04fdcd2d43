//! The `jobpulse` binary (being written).

fn main() {}
