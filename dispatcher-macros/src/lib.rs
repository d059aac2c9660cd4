//! The `#[kafka_handler]` attribute. Use it through the `dispatcher` crate,
//! which re-exports it; this crate has no API of its own.

mod handler;

use proc_macro::TokenStream;

/// Turns an `async fn` into a registered Kafka record handler.
///
/// ```
/// use dispatcher::{kafka_handler, Json};
///
/// #[derive(serde::Deserialize)]
/// struct Order {
///     id: u64,
///     amount_cents: i64,
/// }
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("the rules service is misconfigured")]
/// struct ConfigError;
///
/// #[kafka_handler(topic = "orders", retry = std::io::Error, fatal = ConfigError, max_attempts = 5)]
/// async fn on_order(order: Json<Order>) -> Result<(), anyhow::Error> {
///     if order.amount_cents < 0 {
///         anyhow::bail!("order {} has a negative amount", order.id);
///     }
///     Ok(())
/// }
///
/// # fn main() {
/// let handlers = dispatcher::handler::registered();
/// assert_eq!(handlers[0].name, "on_order");
/// assert_eq!(handlers[0].policy.max_attempts(), 5);
/// # }
/// ```
///
/// `dispatcher::run()` finds every handler declared this way; there is
/// nothing to register by hand.
///
/// # Grammar
///
/// ```text
/// #[kafka_handler( entry, entry, ... )]          entries in any order, each key at most once
///
/// entry       := "topic" = topics                  required; `topics` is another name for it
///              | "group" = "<consumer group id>"
///              | "retry" = types                   errors that are retried
///              | "fatal" = types                   errors that stop the consumer
///              | "policy" = path                   a const, static or unit struct implementing dispatcher::policy::Classify
///              | "max_attempts" = <integer >= 1>
///              | "backoff" = backoff
///              | "timeout" = duration              limit of each attempt
///              | "ordering" = key | partition | unordered
///              | "concurrency" = <integer >= 1>
///              | "dead_letter_topic" = "<topic>"
///              | "retry_topics" = [ duration, ... ] delays of retry levels on Kafka, strictly ascending;
///                                                  after `max_attempts` in place a retryable failure goes to
///                                                  `<topic>.<group>.retry.<delay>` of the next level, and after the
///                                                  last level to the dead-letter topic. Gives up per-key
///                                                  order for those records: retry in place when order matters
///              | "retry_topic_name" = "<pattern>"  default "{topic}.{group}.retry.{delay}"; also {level} (1, 2, ...)
///              | "crate" = path                    where the dispatcher crate is (default ::dispatcher)
/// topics      := "<topic>" | [ "<topic>", ... ]    at least one
/// types       := Type | [ Type, ... ]              `[]` is allowed: `retry = []` retries nothing
/// backoff     := fixed(duration)
///              | exponential(initial = duration, max = duration, factor = <float>, jitter = <float>)
///                                                  every argument optional: 100ms, 10s, 2.0, 0.0
/// duration    := "<integer><unit>"                 unit: ms | s | m | h, e.g. "250ms", "2s", "1m"
/// ```
///
/// # Requirements
///
/// Checked at compile time, each error pointing at the token to fix:
///
/// - The function is a free, non-generic `async fn` (no `self`, no type or
///   const parameters, no `impl Trait` arguments; lifetimes are fine).
/// - Every argument type implements `dispatcher::extract::FromMessage`: `Message`,
///   `&Message`, `Json<T>` (`T: DeserializeOwned`), `&[u8]`, `Vec<u8>`,
///   `bytes::Bytes`, `&str`, `String`, `State<T>` (a value given to the
///   builder; `T: Send + Sync`), `Publisher` (writes records), or `Option<_>` of a payload form (`None`
///   for a tombstone). Any number of arguments, zero included. The types of
///   the `State<T>` arguments are registered, so startup stops, naming the
///   handler and `T`, when one was not provided.
/// - The return type is a `Result` (any path whose last segment is
///   `Result`, so `anyhow::Result<()>` works) with `Ok` type `()` and an
///   error that is a `std::error::Error + Send + Sync + 'static`,
///   `anyhow::Error`, `Box<dyn Error + Send + Sync>` or
///   `dispatcher::handler::HandlerError`.
/// - The future is `Send` (do not hold an `Rc` or a `RefCell` borrow
///   across an `.await`).
/// - Topic names follow Kafka's rules: 1 to 249 characters from
///   `[a-zA-Z0-9._-]`, not `.` or `..`.
/// - Types in `retry` and `fatal` are `Error + Send + Sync + 'static`, and no
///   type is in both lists (also not under another name via a type alias).
/// - `factor >= 1.0`, `0.0 <= jitter <= 1.0`, `initial <= max`, and
///   `timeout` is longer than zero.
///
/// # Semantics
///
/// Each record of the topics is passed to the function; its arguments are
/// built from the record, and a record that cannot be decoded (bad JSON,
/// invalid UTF-8, a tombstone for a non-`Option` argument) goes to the
/// dead-letter topic without a retry. A failed attempt is classified:
/// the `policy` classifier first, then `fatal` (stop the consumer; the
/// record is not committed), then `retry` (try again after `backoff` while
/// fewer than `max_attempts` attempts ran, then dead-letter); anything else is
/// dead-lettered. A listed type matches anywhere in the error's source
/// chain. Without `retry`, `std::io::Error` retries; a timeout always
/// retries (unless a classifier or `fatal` says otherwise). Defaults:
/// 3 attempts, exponential backoff from 100 ms doubling up to 10 s, no
/// timeout, `ordering = key`, no per-handler concurrency limit, dead letters
/// to `<topic>.DLT`, the configured consumer group.
///
/// # Expansion
///
/// The function is emitted unchanged (also when the attribute has errors,
/// so IDEs keep working). Beside it, inside `const _: () = { ... };` so no
/// name leaks:
///
/// ```text
/// struct __DispatcherHandler;
/// impl ::dispatcher::__private::Handler for __DispatcherHandler {
///     fn call(&self, __msg: Message) -> HandlerFuture<'static> {
///         // Spanned at the function's name: a future that is not `Send`
///         // is reported there.
///         // The future owns the record; arguments borrow from it.
///         let __future: HandlerFuture<'static> = Box::pin(async move {
///             // Spanned at the argument type: a type that is not
///             // `FromMessage` is reported there.
///             let __arg0: Json<Order> = match <Json<Order> as FromMessage<'_>>::from_message(&__msg) {
///                 Ok(value) => value,
///                 Err(error) => return Err(HandlerError::new(error)),
///             };
///             match on_order(__arg0).await {
///                 Ok(()) => Ok(()),
///                 // Auto-ref dispatch over std errors, anyhow::Error,
///                 // boxed errors and HandlerError; spanned at `E`.
///                 Err(__error) => Err((&__error).dispatcher_error_kind().into_handler_error(__error)),
///             }
///         });
///         __future
///     }
/// }
/// // Spanned at each type: a type that is not an error is reported there.
/// static __DISPATCHER_RETRY: [ErrorMatcher; 1] = [ErrorMatcher::of::<std::io::Error>("std::io::Error")];
/// inventory::submit! {
///     Registration(
///         HandlerSpec::new("on_order", &["orders"], &__DispatcherHandler)
///             .declared_at(module_path!(), file!(), line!())
///             .with_policy(Policy::DEFAULT.with_retry(&__DISPATCHER_RETRY).with_max_attempts(5))
///     )
/// }
/// ```
///
/// With both `retry` and `fatal`, each pair of types also gets a check that
/// fails to compile (conflicting impls of a local trait
/// `ErrorTypeIsListedInBothRetryAndFatal`, reported at the `fatal` type)
/// when the two are the same type under different names:
///
/// ```text
/// const _: () = {
///     trait ErrorTypeIsListedInBothRetryAndFatal {}
///     impl ErrorTypeIsListedInBothRetryAndFatal for RetryType {}
///     impl ErrorTypeIsListedInBothRetryAndFatal for FatalType {}
/// };
/// ```
///
/// All paths go through `::dispatcher::__private` (or `<crate>::__private`
/// with `crate = ...`), so the expansion does not depend on the caller's
/// imports.
#[proc_macro_attribute]
pub fn kafka_handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    handler::kafka_handler(attr.into(), item.into()).into()
}
