//! Values the application hands its handlers: `builder().state(pool)`, and
//! a handler takes `State<Pool>`.
//!
//! The dispatcher keeps one map of them, by type. While a handler that asks
//! for state starts (its first poll, where the macro's code extracts the
//! arguments), the map is the task-local [`CURRENT`], so the extractor finds
//! it without the record carrying anything.

use crate::extract::{DecodeError, FromMessage};
use crate::message::Message;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// A value given with
/// [`DispatcherBuilder::state`](crate::DispatcherBuilder::state), as a
/// handler argument: a shared reference to it (a connection pool, a client,
/// a cache). A handler that asks for a `State<T>` nobody provided stops
/// `build()` with an error naming the handler and `T`.
///
/// ```no_run
/// use dispatcher::extract::State;
/// use dispatcher::{kafka_handler, Json};
///
/// struct Prices { vat_percent: u32 }
///
/// #[kafka_handler(topic = "orders")]
/// async fn on_order(order: Json<serde_json::Value>, prices: State<Prices>) -> Result<(), std::io::Error> {
///     println!("{} with {}% VAT", order.0, prices.vat_percent);
///     Ok(())
/// }
///
/// # async fn demo() -> dispatcher::Result<()> {
/// dispatcher::Dispatcher::builder()
///     .state(Prices { vat_percent: 20 })
///     .build()?
///     .run()
///     .await
/// # }
/// ```
///
/// Write the type as `State<T>` (or `dispatcher::extract::State<T>`) in the
/// handler's signature: the macro recognises it by that name to check at
/// startup that it was provided.
pub struct State<T: ?Sized>(pub Arc<T>);

impl<T: ?Sized> Deref for State<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: ?Sized> Clone for State<T> {
    fn clone(&self) -> Self {
        State(Arc::clone(&self.0))
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for State<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("State").field(&&*self.0).finish()
    }
}

impl<'a, T: Send + Sync + 'static> FromMessage<'a> for State<T> {
    fn from_message(_msg: &'a Message) -> Result<Self, DecodeError> {
        States::current::<T>().map(State).ok_or_else(|| {
                DecodeError::new(
                    &format!("State<{}>", std::any::type_name::<T>()),
                    "no such state was provided: give it with Dispatcher::builder().state(..), and declare the handler with #[kafka_handler] or HandlerSpec::with_states so startup checks it",
                )
            })
    }
}

/// A state type a handler needs, for the startup check: what
/// [`HandlerSpec::with_states`](crate::handler::HandlerSpec::with_states)
/// takes. The macro makes these for `State<T>` arguments.
#[derive(Clone, Copy)]
pub struct StateKey {
    type_id: fn() -> TypeId,
    type_name: &'static str,
}

impl StateKey {
    /// The key of `State<T>`.
    pub const fn of<T: 'static>(type_name: &'static str) -> Self {
        StateKey {
            type_id: TypeId::of::<T>,
            type_name,
        }
    }

    /// Whether this is the key of `T`.
    pub(crate) fn is<T: 'static>(&self) -> bool {
        (self.type_id)() == TypeId::of::<T>()
    }

    /// The type as the handler wrote it.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }
}

impl fmt::Debug for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "State<{}>", self.type_name)
    }
}

/// The values given with `builder().state(..)`, by type.
#[derive(Clone, Default)]
pub(crate) struct States {
    values: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl States {
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.values.insert(TypeId::of::<T>(), Arc::new(value));
    }

    pub(crate) fn contains(&self, key: &StateKey) -> bool {
        self.values.contains_key(&(key.type_id)())
    }

    /// The value of type `T` in the states in scope, if any.
    pub(crate) fn current<T: Send + Sync + 'static>() -> Option<Arc<T>> {
        CURRENT.try_with(|states| states.get::<T>()).ok().flatten()
    }

    fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.values
            .get(&TypeId::of::<T>())
            .cloned()
            .and_then(|v| v.downcast::<T>().ok())
    }
}

tokio::task_local! {
    /// The states, while a handler that asks for them starts.
    pub(crate) static CURRENT: Arc<States>;
}
