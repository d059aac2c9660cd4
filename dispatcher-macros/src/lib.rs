//! The `#[kafka_handler]` attribute. Use it through the `dispatcher` crate.

use proc_macro::TokenStream;

/// Placeholder until the attribute lands.
#[proc_macro_attribute]
pub fn kafka_handler(_attr: TokenStream, item: TokenStream) -> TokenStream {
    item
}
