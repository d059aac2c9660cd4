//! The rules that both the `#[kafka_handler]` attribute (at compile time)
//! and the `dispatcher` runtime (at startup, for hand-built handlers and
//! configuration) apply, kept in one place so that a value is accepted or
//! rejected the same way, with the same words, wherever it is written.
//!
//! Each check returns `Err` with a sentence that says what is wrong and how
//! to fix it; the caller adds where the value came from (a span in the
//! attribute, a handler's declaration, a configuration key).
//!
//! This crate is an implementation detail of `dispatcher`; use that crate.

pub mod duration;
pub mod policy;
pub mod suggest;
pub mod topic;
