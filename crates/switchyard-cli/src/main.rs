//! The `switchyard` command (filled in below).
fn main() {}
