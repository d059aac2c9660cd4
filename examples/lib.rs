//! This package hosts the runnable examples (`cargo run --example quickstart`);
//! it has no library code of its own.
