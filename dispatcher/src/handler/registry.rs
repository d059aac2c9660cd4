//! Where `#[kafka_handler]` registrations are collected, through
//! `inventory`.

use super::HandlerSpec;

/// A handler submitted by `#[kafka_handler]`; collected at startup.
#[doc(hidden)]
pub struct Registration(pub HandlerSpec);

inventory::collect!(Registration);

/// Every handler declared with `#[kafka_handler]` in the program, in the
/// order of their declarations (file, then line).
pub fn registered() -> Vec<HandlerSpec> {
    let mut all: Vec<HandlerSpec> = inventory::iter::<Registration>
        .into_iter()
        .map(|r| r.0)
        .collect();
    all.sort_by(|a, b| (a.file, a.line).cmp(&(b.file, b.line)));
    all
}
