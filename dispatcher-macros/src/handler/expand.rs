//! Generates the handler type, its policy and its registration.

use super::parse::{type_name, Backoff, HandlerAttr, Ordering};
use super::validate::HandlerFn;
use proc_macro2::{Group, Literal, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{ItemFn, Type};

/// The user's function followed by everything that registers it. Called
/// only when parsing and validation found no error.
pub(crate) fn expand(attr: &HandlerAttr, item: &ItemFn, handler: &HandlerFn) -> TokenStream {
    let krate = match &attr.krate {
        Some(path) => quote!(#path::__private),
        None => quote!(::dispatcher::__private),
    };
    let call = handler_impl(&krate, item, handler);
    let overlap = overlap_assertions(attr);
    let (matcher_statics, policy) = policy(&krate, attr);
    let registration = registration(&krate, attr, item, handler, policy);
    quote! {
        #item

        const _: () = {
            #[allow(non_camel_case_types)]
            struct __DispatcherHandler;

            #call
            #matcher_statics
            #registration
        };

        #overlap
    }
}

/// `impl Handler`: extracts each argument, calls the function, converts its
/// error.
fn handler_impl(krate: &TokenStream, item: &ItemFn, handler: &HandlerFn) -> TokenStream {
    let name = &item.sig.ident;
    let vars: Vec<_> = (0..handler.args.len())
        .map(|i| format_ident!("__arg{}", i))
        .collect();
    let extract = handler.args.iter().zip(&vars).map(|(ty, var)| {
        // Spanned at the argument type: an unsupported type is reported there.
        let from_message = quote_spanned! {ty.span()=>
            <#ty as #krate::FromMessage<'_>>::from_message
        };
        quote! {
            let #var: #ty = match #from_message(&__msg) {
                #krate::Result::Ok(value) => value,
                #krate::Result::Err(error) => {
                    return #krate::Result::Err(#krate::HandlerError::new(error));
                }
            };
        }
    });
    let convert = quote_spanned! {handler.error_span=>
        (&__error).dispatcher_error_kind().into_handler_error(__error)
    };
    let body = quote! {
        #(#extract)*
        match #name(#(#vars),*).await {
            #krate::Result::Ok(()) => #krate::Result::Ok(()),
            #krate::Result::Err(__error) => {
                #[allow(unused_imports)]
                use #krate::kind::{AnyhowTag as _, BoxedTag as _, IdentityTag as _, StdTag as _};
                #krate::Result::Err(#convert)
            }
        }
    };
    // Spanned at the function's name, the path included: a future that is
    // not `Send` is reported there.
    let send_krate = respan(krate.clone(), handler.send_span);
    let boxed = quote_spanned! {handler.send_span=>
        let __future: #send_krate::HandlerFuture<'static> = #send_krate::Box::pin(async move { #body });
        __future
    };
    quote! {
        impl #krate::Handler for __DispatcherHandler {
            fn call(&self, __msg: #krate::Message) -> #krate::HandlerFuture<'static> {
                #boxed
            }
        }
    }
}

/// `tokens` with every span set to `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let TokenTree::Group(group) = &tree {
                let mut inner = Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                tree = TokenTree::Group(inner);
            }
            tree.set_span(span);
            tree
        })
        .collect()
}

/// A type in both `retry` and `fatal` under different names (an alias):
/// two impls of one local trait conflict exactly when the types are equal,
/// and rustc reports the conflict at the `fatal` type.
fn overlap_assertions(attr: &HandlerAttr) -> TokenStream {
    let (Some(retry), Some(fatal)) = (&attr.retry, &attr.fatal) else {
        return TokenStream::new();
    };
    let pairs = retry.iter().flat_map(|r| fatal.iter().map(move |f| (r, f)));
    let checks = pairs.map(|(retry, fatal)| {
        let retry_impl = quote_spanned! {retry.span()=>
            impl ErrorTypeIsListedInBothRetryAndFatal for #retry {}
        };
        let fatal_impl = quote_spanned! {fatal.span()=>
            impl ErrorTypeIsListedInBothRetryAndFatal for #fatal {}
        };
        quote! {
            const _: () = {
                trait ErrorTypeIsListedInBothRetryAndFatal {}
                #retry_impl
                #fatal_impl
            };
        }
    });
    quote!(#(#checks)*)
}

/// The statics holding the `retry` and `fatal` matchers, and the `Policy`
/// builder chain.
fn policy(krate: &TokenStream, attr: &HandlerAttr) -> (TokenStream, TokenStream) {
    let mut statics = TokenStream::new();
    let mut chain = quote!(#krate::Policy::DEFAULT);
    let mut matchers = |key: &str, types: &Option<Vec<Type>>, chain: &mut TokenStream| {
        let Some(types) = types else { return };
        let name = format_ident!("__DISPATCHER_{}", key.to_uppercase());
        let method = format_ident!("with_{}", key);
        let len = types.len();
        let items = types.iter().map(|ty| {
            let label = type_name(ty);
            // Spanned at the type: a type that is not an error is reported there.
            quote_spanned! {ty.span()=> #krate::ErrorMatcher::of::<#ty>(#label) }
        });
        statics.extend(quote! {
            static #name: [#krate::ErrorMatcher; #len] = [#(#items),*];
        });
        chain.extend(quote!(.#method(&#name)));
    };
    matchers("retry", &attr.retry, &mut chain);
    matchers("fatal", &attr.fatal, &mut chain);

    if let Some(path) = &attr.policy {
        let classifier = quote_spanned! {path.span()=> &#path };
        chain.extend(quote!(.with_classifier(#classifier)));
    }
    if let Some(n) = attr.max_attempts {
        let n = Literal::u32_unsuffixed(n);
        chain.extend(quote!(.with_max_attempts(#n)));
    }
    if let Some(backoff) = &attr.backoff {
        let value = match backoff {
            Backoff::Fixed(d) => {
                let d = duration(*d);
                quote!(#krate::Backoff::Fixed(#d))
            }
            Backoff::Exponential {
                initial: (initial, _),
                max,
                factor,
                jitter,
            } => {
                let (initial, max) = (duration(*initial), duration(*max));
                let (factor, jitter) = (
                    Literal::f64_suffixed(*factor),
                    Literal::f64_suffixed(*jitter),
                );
                quote! {
                    #krate::Backoff::Exponential {
                        initial: #initial,
                        max: #max,
                        factor: #factor,
                        jitter: #jitter,
                    }
                }
            }
        };
        chain.extend(quote!(.with_backoff(#value)));
    }
    if let Some(t) = attr.timeout {
        let d = duration(t);
        chain.extend(quote!(.with_timeout(#d)));
    }
    if let Some(ordering) = attr.ordering {
        let variant = match ordering {
            Ordering::Key => quote!(Key),
            Ordering::Partition => quote!(Partition),
            Ordering::Unordered => quote!(Unordered),
        };
        chain.extend(quote!(.with_ordering(#krate::OrderingMode::#variant)));
    }
    if let Some(n) = attr.concurrency {
        let n = Literal::usize_unsuffixed(n);
        chain.extend(quote!(.with_concurrency(#n)));
    }
    if let Some(topic) = &attr.dead_letter_topic {
        chain.extend(quote!(.with_dead_letter_topic(#topic)));
    }
    if let Some(pattern) = &attr.retry_topic_name {
        chain.extend(quote!(.with_retry_topic_name(#pattern)));
    }
    if let Some(delays) = &attr.retry_topics {
        let delays = delays.iter().map(|d| duration(*d));
        chain.extend(quote!(.with_retry_topics(&[#(#delays),*])));
    }
    (statics, chain)
}

fn duration(millis: u64) -> TokenStream {
    let millis = Literal::u64_unsuffixed(millis);
    quote!(::core::time::Duration::from_millis(#millis))
}

/// The `inventory` submission of the handler's `HandlerSpec`.
fn registration(
    krate: &TokenStream,
    attr: &HandlerAttr,
    item: &ItemFn,
    handler: &HandlerFn,
    policy: TokenStream,
) -> TokenStream {
    let name = item.sig.ident.unraw().to_string();
    let topics = attr.topics.iter().flatten();
    let group = attr.group.as_ref().map(|group| quote!(.with_group(#group)));
    let states: Vec<_> = handler.args.iter().filter_map(state_type).collect();
    let states = (!states.is_empty()).then(|| {
        let keys = states.iter().map(|ty| {
            let written = type_name(ty);
            quote_spanned! {ty.span()=> #krate::StateKey::of::<#ty>(#written) }
        });
        quote!(.with_states(&[#(#keys),*]))
    });
    quote! {
        #krate::inventory::submit! {
            #krate::Registration(
                #krate::HandlerSpec::new(#name, &[#(#topics),*], &__DispatcherHandler)
                    .declared_at(::core::module_path!(), ::core::file!(), ::core::line!())
                    .with_policy(#policy)
                    #group
                    #states
            )
        }
    }
}

/// The `T` of an argument written `State<T>` (with any path before
/// `State`), which startup checks was provided; or the `Publisher` itself,
/// which the dispatcher provides when a handler takes one.
fn state_type(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident == "Publisher" && last.arguments.is_empty() {
        return Some(ty);
    }
    if last.ident != "State" {
        return None;
    }
    match &last.arguments {
        syn::PathArguments::AngleBracketed(args) if args.args.len() == 1 => match &args.args[0] {
            syn::GenericArgument::Type(inner) => Some(inner),
            _ => None,
        },
        _ => None,
    }
}
