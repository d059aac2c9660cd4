//! Checks that need more than one value: the handler's signature, a
//! required `topic`, and the `retry`/`fatal` overlap.

use super::diagnostics::Diagnostics;
use super::parse::{type_name, Backoff, HandlerAttr};
use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{FnArg, GenericArgument, GenericParam, ItemFn, LitStr, PathArguments, ReturnType, Type};

/// What the expansion needs to know about the handler function.
pub(crate) struct HandlerFn {
    /// The argument types, with named lifetimes replaced by `'_`.
    pub(crate) args: Vec<Type>,
    /// Where errors about the returned error type land.
    pub(crate) error_span: Span,
    /// Where an error about a future that is not `Send` lands.
    pub(crate) send_span: Span,
}

/// Checks what only the combination of keys can show.
pub(crate) fn validate_attr(attr: &HandlerAttr, diag: &mut Diagnostics) {
    if !attr.topic_given {
        diag.error(
            Span::call_site(),
            "missing `topic`: name the topic(s) this handler consumes, e.g. \
             `#[kafka_handler(topic = \"orders\")]`",
        );
    }
    if let (Some(retry), Some(fatal)) = (&attr.retry, &attr.fatal) {
        let retry: Vec<String> = retry.iter().map(type_name).collect();
        for ty in fatal {
            let name = type_name(ty);
            if retry.contains(&name) {
                diag.push(syn::Error::new_spanned(
                    ty,
                    format!(
                        "`{name}` is listed in both `retry` and `fatal`; an error type can be \
                         in one of them only (`fatal` is checked first)"
                    ),
                ));
            }
        }
    }
    if let Some(pattern) = &attr.retry_topic_name {
        if attr.retry_topics.is_none() {
            diag.error(
                pattern.span(),
                "`retry_topic_name` names retry topics, but there are none: add `retry_topics = [\"1s\", \"30s\"]`",
            );
        } else if let Some(topics) = &attr.topics {
            let names: Vec<String> = topics.iter().map(LitStr::value).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            if let Err(message) = dispatcher_rules::topic::check_retry_topic_name(
                &pattern.value(),
                &names,
                attr.group.as_ref().map(LitStr::value).as_deref(),
            ) {
                diag.error(pattern.span(), message);
            }
        }
    }
    if let Some(Backoff::Exponential {
        initial: (initial, span),
        max,
        ..
    }) = &attr.backoff
    {
        if let Err(message) = dispatcher_rules::policy::check_initial_max(*initial, *max) {
            diag.error(*span, message);
        }
    }
}

/// Checks the handler's signature: a free, non-generic `async fn` returning
/// `Result<(), E>`.
pub(crate) fn validate_fn(item: &ItemFn, diag: &mut Diagnostics) -> HandlerFn {
    let sig = &item.sig;
    if sig.asyncness.is_none() {
        diag.error(
            sig.fn_token.span,
            "a `#[kafka_handler]` function must be `async fn`",
        );
    }
    if let Some(t) = &sig.constness {
        diag.error(t.span, "a `#[kafka_handler]` function cannot be `const`");
    }
    if let Some(t) = &sig.unsafety {
        diag.error(t.span, "a `#[kafka_handler]` function cannot be `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        diag.error(
            abi.span(),
            "a `#[kafka_handler]` function cannot have an ABI",
        );
    }
    if let Some(v) = &sig.variadic {
        diag.error(
            v.dots.spans[0],
            "a `#[kafka_handler]` function cannot be variadic",
        );
    }
    for param in &sig.generics.params {
        if !matches!(param, GenericParam::Lifetime(_)) {
            diag.push(syn::Error::new_spanned(param, GENERIC));
        }
    }
    if let Some(clause) = &sig.generics.where_clause {
        diag.push(syn::Error::new_spanned(clause, GENERIC));
    }

    let mut args = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => diag.error(
                receiver.self_token.span,
                "`#[kafka_handler]` works on free functions, not methods: remove `self` \
                 and move the function out of the `impl` block",
            ),
            FnArg::Typed(arg) => {
                let mut finder = ImplTraitFinder(None);
                finder.visit_type(&arg.ty);
                if let Some(impl_trait) = finder.0 {
                    diag.push(syn::Error::new_spanned(
                        impl_trait,
                        "`impl Trait` arguments make the handler generic; name a concrete type",
                    ));
                }
                let mut ty = (*arg.ty).clone();
                EraseLifetimes.visit_type_mut(&mut ty);
                args.push(ty);
            }
        }
    }

    let (error_span, send_span) = (validate_output(&sig.output, sig, diag), sig.ident.span());
    HandlerFn {
        args,
        error_span,
        send_span,
    }
}

const GENERIC: &str = "a `#[kafka_handler]` function cannot be generic: the dispatcher calls it \
                       with the argument types it names; use concrete types";

const RETURN: &str = "a `#[kafka_handler]` function must return `Result<(), E>` where `E` is a \
                      std error, `anyhow::Error`, `Box<dyn Error + Send + Sync>` or \
                      `dispatcher::handler::HandlerError`";

/// Checks the return type is `...Result<(), E>` or an alias such as
/// `anyhow::Result<()>`; returns the span of `E` (or of the whole type).
fn validate_output(output: &ReturnType, sig: &syn::Signature, diag: &mut Diagnostics) -> Span {
    let ty = match output {
        ReturnType::Default => {
            diag.error(sig.paren_token.span.close(), RETURN);
            return sig.ident.span();
        }
        ReturnType::Type(_, ty) => ty,
    };
    let segment = match &**ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        _ => None,
    };
    let Some(segment) = segment.filter(|s| s.ident == "Result") else {
        diag.push(syn::Error::new_spanned(ty, RETURN));
        return ty.span();
    };
    let PathArguments::AngleBracketed(generics) = &segment.arguments else {
        return ty.span();
    };
    let mut types = generics.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    });
    if let Some(ok) = types.next() {
        if !matches!(ok, Type::Tuple(t) if t.elems.is_empty()) {
            diag.push(syn::Error::new_spanned(
                ok,
                "the `Ok` type of a handler must be `()`: a handler's outcome is success or an error",
            ));
        }
    }
    types.next().map_or_else(|| ty.span(), Spanned::span)
}

/// Finds `impl Trait` anywhere in a type.
struct ImplTraitFinder(Option<syn::TypeImplTrait>);

impl Visit<'_> for ImplTraitFinder {
    fn visit_type_impl_trait(&mut self, node: &syn::TypeImplTrait) {
        self.0.get_or_insert_with(|| node.clone());
    }
}

/// Replaces named lifetimes (other than `'static`) with `'_`, so argument
/// types can be named inside the generated `call`.
struct EraseLifetimes;

impl VisitMut for EraseLifetimes {
    fn visit_lifetime_mut(&mut self, lifetime: &mut syn::Lifetime) {
        if lifetime.ident != "static" {
            lifetime.ident = syn::Ident::new("_", lifetime.ident.span());
        }
    }
}
