//! The attribute's arguments as a typed model.
//!
//! Each `key = value` entry is split off first and parsed on its own, so one
//! bad value does not hide the errors of the others.

use super::diagnostics::Diagnostics;
use dispatcher_rules::{duration, policy as rules, suggest, topic};
use proc_macro2::{Spacing, Span, TokenStream, TokenTree};
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{bracketed, parenthesized, Ident, LitFloat, LitInt, LitStr, Path, Token, Type};

/// Every key the attribute accepts, in the order the docs list them.
pub(crate) const KEYS: &[&str] = &[
    "topic",
    "topics",
    "group",
    "retry",
    "fatal",
    "policy",
    "max_attempts",
    "backoff",
    "timeout",
    "ordering",
    "concurrency",
    "dead_letter_topic",
    "retry_topics",
    "retry_topic_name",
    "crate",
];

/// The attribute, parsed. Every field is what the user wrote, checked one
/// value at a time; checks across keys are in `validate`.
#[derive(Default)]
pub(crate) struct HandlerAttr {
    /// Whether `topic` (or `topics`) was given, even with a bad value.
    pub(crate) topic_given: bool,
    /// The topics, when the value was valid.
    pub(crate) topics: Option<Vec<LitStr>>,
    pub(crate) group: Option<LitStr>,
    pub(crate) retry: Option<Vec<Type>>,
    pub(crate) fatal: Option<Vec<Type>>,
    pub(crate) policy: Option<Path>,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) backoff: Option<Backoff>,
    /// Per-attempt timeout in milliseconds.
    pub(crate) timeout: Option<u64>,
    pub(crate) ordering: Option<Ordering>,
    pub(crate) concurrency: Option<usize>,
    pub(crate) dead_letter_topic: Option<LitStr>,
    /// Delays of the retry levels in milliseconds.
    pub(crate) retry_topics: Option<Vec<u64>>,
    /// The pattern retry topics are named by.
    pub(crate) retry_topic_name: Option<LitStr>,
    pub(crate) krate: Option<Path>,
}

/// `backoff = ...`, with durations in milliseconds.
pub(crate) enum Backoff {
    Fixed(u64),
    Exponential {
        /// The `initial` literal, kept for the `initial <= max` check.
        initial: (u64, Span),
        max: u64,
        factor: f64,
        jitter: f64,
    },
}

/// `ordering = ...`.
#[derive(Clone, Copy)]
pub(crate) enum Ordering {
    Key,
    Partition,
    Unordered,
}

/// Parses the attribute's tokens, recording every problem in `diag`.
pub(crate) fn parse(tokens: TokenStream, diag: &mut Diagnostics) -> HandlerAttr {
    let mut attr = HandlerAttr::default();
    let mut seen: Vec<(&'static str, Ident)> = Vec::new();
    for entry in split_entries(tokens) {
        let Some((key, eq_span, value)) = diag.take(split_key_value(entry)) else {
            continue;
        };
        let name = key.to_string();
        let Some(canonical) = canonical_key(&name) else {
            diag.error(key.span(), unknown_key_message(&name));
            continue;
        };
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == canonical) {
            let message = if *first == name {
                format!("`{name}` is set twice")
            } else {
                format!("`{canonical}` is set twice (`topic` and `topics` are the same key)")
            };
            diag.error(key.span(), message);
            continue;
        }
        seen.push((canonical, key.clone()));
        if value.is_empty() {
            diag.error(eq_span, format!("`{name}` needs a value after `=`"));
            continue;
        }
        parse_value(&mut attr, canonical, value, diag);
    }
    attr
}

fn parse_value(
    attr: &mut HandlerAttr,
    key: &'static str,
    value: TokenStream,
    diag: &mut Diagnostics,
) {
    match key {
        "topic" => {
            attr.topic_given = true;
            attr.topics = diag.take(parse_topics.parse2(value));
        }
        "group" => attr.group = diag.take(parse_group.parse2(value)),
        "retry" => attr.retry = diag.take((|i: ParseStream| parse_types(i, "retry")).parse2(value)),
        "fatal" => attr.fatal = diag.take((|i: ParseStream| parse_types(i, "fatal")).parse2(value)),
        "policy" => attr.policy = diag.take(parse_path.parse2(value)),
        "max_attempts" => {
            attr.max_attempts = diag
                .take((|i: ParseStream| whole(i, rules::check_max_attempts)).parse2(value))
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        }
        "backoff" => attr.backoff = diag.take(parse_backoff.parse2(value)),
        "timeout" => attr.timeout = diag.take(parse_timeout.parse2(value)),
        "ordering" => attr.ordering = diag.take(parse_ordering.parse2(value)),
        "concurrency" => {
            attr.concurrency = diag
                .take((|i: ParseStream| whole(i, rules::check_concurrency)).parse2(value))
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        }
        "dead_letter_topic" => attr.dead_letter_topic = diag.take(parse_topic.parse2(value)),
        "retry_topics" => attr.retry_topics = diag.take(parse_retry_topics.parse2(value)),
        "retry_topic_name" => {
            attr.retry_topic_name = diag.take(
                (|i: ParseStream| {
                    i.parse::<LitStr>().map_err(|e| {
                        syn::Error::new(
                            e.span(),
                            "expected a name pattern in quotes, e.g. \"{topic}-retry-{level}\"",
                        )
                    })
                })
                .parse2(value),
            )
        }
        "crate" => attr.krate = diag.take(parse_path.parse2(value)),
        _ => unreachable!("canonical_key returns only known keys"),
    }
}

/// Splits the attribute at its top-level commas. Commas inside `<...>`
/// (generic arguments of an error type) do not split.
fn split_entries(tokens: TokenStream) -> Vec<Vec<TokenTree>> {
    let mut entries = vec![Vec::new()];
    let mut angle_depth = 0usize;
    let mut after_minus = false;
    for tree in tokens {
        if let TokenTree::Punct(p) = &tree {
            match p.as_char() {
                ',' if angle_depth == 0 => {
                    entries.push(Vec::new());
                    after_minus = false;
                    continue;
                }
                '<' => angle_depth += 1,
                '>' if !after_minus => angle_depth = angle_depth.saturating_sub(1),
                _ => {}
            }
            after_minus = p.as_char() == '-' && p.spacing() == Spacing::Joint;
        } else {
            after_minus = false;
        }
        if let Some(last) = entries.last_mut() {
            last.push(tree);
        }
    }
    entries.retain(|e| !e.is_empty());
    entries
}

/// `key = value` -> (key, span of `=`, value).
fn split_key_value(entry: Vec<TokenTree>) -> syn::Result<(Ident, Span, TokenStream)> {
    let mut trees = entry.into_iter();
    let first = trees.next();
    let expected = || {
        format!(
            "expected `key = value`; valid keys are {}",
            KEYS.iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let key = match first {
        Some(TokenTree::Ident(key)) => key,
        Some(other) => return Err(syn::Error::new(other.span(), expected())),
        None => return Err(syn::Error::new(Span::call_site(), expected())),
    };
    match trees.next() {
        Some(TokenTree::Punct(eq)) if eq.as_char() == '=' => Ok((key, eq.span(), trees.collect())),
        Some(other) => Err(syn::Error::new(
            other.span(),
            format!("expected `=` after `{key}`"),
        )),
        None if canonical_key(&key.to_string()).is_none() => Err(syn::Error::new(
            key.span(),
            unknown_key_message(&key.to_string()),
        )),
        None => Err(syn::Error::new(
            key.span(),
            format!("expected `{key} = ...`"),
        )),
    }
}

fn canonical_key(name: &str) -> Option<&'static str> {
    match name {
        "topics" => Some("topic"),
        _ => KEYS.iter().copied().find(|k| *k == name),
    }
}

fn unknown_key_message(name: &str) -> String {
    let valid = KEYS
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let hint = suggest::hint(name, KEYS.iter().copied());
    format!("unknown key `{name}`{hint}; valid keys are {valid}")
}

fn parse_topic(input: ParseStream) -> syn::Result<LitStr> {
    let lit: LitStr = input.parse().map_err(|e| {
        syn::Error::new(e.span(), "expected a topic name in quotes, e.g. \"orders\"")
    })?;
    topic::check(&lit.value()).map_err(|m| syn::Error::new(lit.span(), m))?;
    Ok(lit)
}

fn parse_topics(input: ParseStream) -> syn::Result<Vec<LitStr>> {
    if !input.peek(syn::token::Bracket) {
        if !input.peek(LitStr) {
            return Err(input.error(
                "expected a topic name or a list of them: `topic = \"orders\"` or `topic = [\"a\", \"b\"]`",
            ));
        }
        return Ok(vec![parse_topic(input)?]);
    }
    let content;
    let brackets = bracketed!(content in input);
    let mut errors = Diagnostics::default();
    let mut topics: Vec<LitStr> = Vec::new();
    while !content.is_empty() {
        if !content.peek(LitStr) {
            // Report the bad token and go on, so the rest of the list is
            // still checked.
            let bad: TokenTree = content.parse()?;
            errors.error(
                bad.span(),
                "expected a topic name in quotes, e.g. \"orders\"",
            );
        } else if let Some(lit) = errors.take(parse_topic(&content)) {
            if topics.iter().any(|t| t.value() == lit.value()) {
                errors.error(
                    lit.span(),
                    format!("topic `{}` is listed twice", lit.value()),
                );
            }
            topics.push(lit);
        }
        if content.is_empty() {
            break;
        }
        content.parse::<Token![,]>()?;
    }
    if topics.is_empty() && errors.is_empty() {
        errors.error(brackets.span.join(), "`topic` needs at least one topic");
    }
    errors.finish().map(|()| topics)
}

fn parse_group(input: ParseStream) -> syn::Result<LitStr> {
    let lit: LitStr = input.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            "expected a consumer group id in quotes, e.g. \"billing\"",
        )
    })?;
    if lit.value().is_empty() {
        return Err(syn::Error::new(
            lit.span(),
            "the consumer group id cannot be empty",
        ));
    }
    Ok(lit)
}

/// `T` or `[A, B, ...]`; an empty list is allowed (`retry = []` means
/// nothing retries).
fn parse_types(input: ParseStream, key: &str) -> syn::Result<Vec<Type>> {
    if !input.peek(syn::token::Bracket) {
        return Ok(vec![input.parse()?]);
    }
    let content;
    bracketed!(content in input);
    let types = Punctuated::<Type, Token![,]>::parse_terminated(&content)?;
    let mut errors = Diagnostics::default();
    let mut seen: Vec<String> = Vec::new();
    for ty in &types {
        let name = type_name(ty);
        if seen.contains(&name) {
            errors.push(syn::Error::new_spanned(
                ty,
                format!("`{name}` is listed twice in `{key}`"),
            ));
        }
        seen.push(name);
    }
    errors.finish().map(|()| types.into_iter().collect())
}

fn parse_path(input: ParseStream) -> syn::Result<Path> {
    input.parse()
}

/// A whole number checked by `rule`, which also words the error.
fn whole(input: ParseStream, rule: fn(u64) -> Result<(), String>) -> syn::Result<u64> {
    let expected = |span| syn::Error::new(span, rule(0).err().unwrap_or_default());
    let lit: LitInt = input.parse().map_err(|e| expected(e.span()))?;
    let n: u64 = lit.base10_parse().map_err(|_| expected(lit.span()))?;
    rule(n).map_err(|m| syn::Error::new(lit.span(), m))?;
    Ok(n)
}

/// `retry_topics = ["1s", "30s", "5m"]`: the delays of the retry levels,
/// checked (well-formed, ascending, non-empty) with a span on the
/// offending literal.
fn parse_retry_topics(input: ParseStream) -> syn::Result<Vec<u64>> {
    let expected = "expected a list of delays, e.g. `retry_topics = [\"1s\", \"30s\", \"5m\"]`";
    if !input.peek(syn::token::Bracket) {
        return Err(input.error(expected));
    }
    let content;
    let brackets = bracketed!(content in input);
    let lits: Punctuated<LitStr, Token![,]> =
        Punctuated::parse_terminated(&content).map_err(|e| syn::Error::new(e.span(), expected))?;
    let mut delays = Vec::new();
    for lit in &lits {
        delays.push(duration_millis(lit)?);
    }
    rules::check_retry_delays(&delays).map_err(|(i, message)| {
        let span = lits
            .iter()
            .nth(i)
            .map_or(brackets.span.join(), LitStr::span);
        syn::Error::new(span, message)
    })?;
    Ok(delays)
}

fn duration_millis(lit: &LitStr) -> syn::Result<u64> {
    duration::parse_millis(&lit.value()).map_err(|m| syn::Error::new(lit.span(), m))
}

fn parse_duration(input: ParseStream) -> syn::Result<(u64, Span)> {
    let lit: LitStr = input.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("expected a duration in quotes: {}", duration::ACCEPTED),
        )
    })?;
    Ok((duration_millis(&lit)?, lit.span()))
}

fn parse_timeout(input: ParseStream) -> syn::Result<u64> {
    let (millis, span) = parse_duration(input)?;
    rules::check_timeout(millis).map_err(|m| syn::Error::new(span, m))?;
    Ok(millis)
}

fn parse_ordering(input: ParseStream) -> syn::Result<Ordering> {
    let expected = "expected `key`, `partition` or `unordered`";
    let ident: Ident = input
        .parse()
        .map_err(|e| syn::Error::new(e.span(), expected))?;
    match ident.to_string().as_str() {
        "key" => Ok(Ordering::Key),
        "partition" => Ok(Ordering::Partition),
        "unordered" => Ok(Ordering::Unordered),
        other => Err(syn::Error::new(
            ident.span(),
            format!("unknown ordering `{other}`: {expected}"),
        )),
    }
}

const BACKOFF_FORMS: &str = "expected `fixed(\"200ms\")` or `exponential(initial = \"100ms\", max = \"10s\", factor = 2.0, jitter = 0.2)`";

fn parse_backoff(input: ParseStream) -> syn::Result<Backoff> {
    let kind: Ident = input
        .parse()
        .map_err(|e| syn::Error::new(e.span(), BACKOFF_FORMS))?;
    let content;
    match kind.to_string().as_str() {
        "fixed" => {
            parenthesized!(content in input);
            let (millis, _) = parse_duration(&content)?;
            if !content.is_empty() {
                return Err(content.error("`fixed` takes one duration, e.g. `fixed(\"200ms\")`"));
            }
            Ok(Backoff::Fixed(millis))
        }
        "exponential" => {
            parenthesized!(content in input);
            parse_exponential(&content)
        }
        other => Err(syn::Error::new(
            kind.span(),
            format!("unknown backoff `{other}`: {BACKOFF_FORMS}"),
        )),
    }
}

fn parse_exponential(input: ParseStream) -> syn::Result<Backoff> {
    const ARGS: &str = "`initial`, `max`, `factor` and `jitter`";
    let mut initial = (100, Span::call_site());
    let mut max = 10_000;
    let mut factor = 2.0;
    let mut jitter = 0.0;
    let mut seen: Vec<String> = Vec::new();
    let mut errors = Diagnostics::default();
    while !input.is_empty() {
        let name: Ident = input.parse()?;
        input.parse::<Token![=]>()?;
        let key = name.to_string();
        if seen.contains(&key) {
            errors.error(name.span(), format!("`{key}` is set twice"));
        }
        seen.push(key.clone());
        match key.as_str() {
            "initial" => {
                if let Some(v) = errors.take(parse_duration(input)) {
                    initial = v;
                }
            }
            "max" => {
                if let Some((v, _)) = errors.take(parse_duration(input)) {
                    max = v;
                }
            }
            "factor" => {
                if let Some((v, span)) = errors.take(parse_number(input)) {
                    if let Err(m) = rules::check_factor(v) {
                        errors.error(span, m);
                    }
                    factor = v;
                }
            }
            "jitter" => {
                if let Some((v, span)) = errors.take(parse_number(input)) {
                    if let Err(m) = rules::check_jitter(v) {
                        errors.error(span, m);
                    }
                    jitter = v;
                }
            }
            _ => {
                errors.error(
                    name.span(),
                    format!(
                        "unknown argument `{key}` of `exponential`; valid arguments are {ARGS}"
                    ),
                );
            }
        }
        // After a bad value, resume at the next argument.
        while !input.is_empty() && !input.peek(Token![,]) {
            input.parse::<TokenTree>()?;
        }
        if input.is_empty() {
            break;
        }
        input.parse::<Token![,]>()?;
    }
    errors.finish()?;
    Ok(Backoff::Exponential {
        initial,
        max,
        factor,
        jitter,
    })
}

fn parse_number(input: ParseStream) -> syn::Result<(f64, Span)> {
    if input.peek(LitInt) {
        let lit: LitInt = input.parse()?;
        return Ok((lit.base10_parse()?, lit.span()));
    }
    let lit: LitFloat = input
        .parse()
        .map_err(|e| syn::Error::new(e.span(), "expected a number, e.g. `2.0`"))?;
    Ok((lit.base10_parse()?, lit.span()))
}

/// A type as written, without the spaces token printing adds:
/// `std::io::Error`, `Box<dyn Error>`.
pub(crate) fn type_name(ty: &Type) -> String {
    let printed = quote::ToTokens::to_token_stream(ty).to_string();
    let chars: Vec<char> = printed.chars().collect();
    let word = |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric() || *c == '_');
    let mut out = String::with_capacity(printed.len());
    for (i, c) in chars.iter().enumerate() {
        if *c == ' ' {
            let before = out.chars().last();
            if !(word(before.as_ref()) && word(chars.get(i + 1))) {
                continue;
            }
        }
        out.push(*c);
    }
    out
}
