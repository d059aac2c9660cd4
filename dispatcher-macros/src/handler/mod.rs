//! `#[kafka_handler]`: parse the attribute, validate it and the function
//! (collecting every error), then expand.

mod diagnostics;
mod expand;
mod parse;
mod validate;

use diagnostics::Diagnostics;
use proc_macro2::TokenStream;
use quote::quote;

/// Expands `#[kafka_handler(attr)] item`. On any error the function is
/// still emitted unchanged, followed by the errors, so IDEs keep working.
pub(crate) fn kafka_handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    let function: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            let error = syn::Error::new(
                proc_macro2::Span::call_site(),
                "`#[kafka_handler]` applies to an `async fn`",
            )
            .to_compile_error();
            return quote!(#item #error);
        }
    };
    let mut diag = Diagnostics::default();
    let attr = parse::parse(attr, &mut diag);
    validate::validate_attr(&attr, &mut diag);
    let handler = validate::validate_fn(&function, &mut diag);
    match diag.finish() {
        Ok(()) => expand::expand(&attr, &function, &handler),
        Err(errors) => {
            let errors = errors.to_compile_error();
            quote!(#function #errors)
        }
    }
}
