//! What scenarios 2 and 6 share: the handler that counts its calls and
//! fails poison records, the check of their dead letters, and waiting until
//! every record is finished and committed.

use dispatcher::event::Outcome;
use dispatcher::handler::{Handler, HandlerError, HandlerFuture, HandlerSpec};
use dispatcher::testing::TestKit;
use dispatcher::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The payload suffix that marks a poison record.
pub(super) const POISON: &str = ":poison";

/// The liveness bound: a phase that has not recovered by then fails.
pub(super) const LIVENESS: Duration = Duration::from_secs(60);

/// What a poison record fails with: not retryable, so it is dead-lettered.
#[derive(Debug)]
pub(super) struct Poison;

impl std::fmt::Display for Poison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("poison record (the fault suite marks some records so)")
    }
}

impl std::error::Error for Poison {}

/// What the handler saw, shared between the test and the handler.
#[derive(Default)]
pub(super) struct Calls {
    /// Handler invocations per (partition, offset).
    counts: Mutex<BTreeMap<(i32, i64), u32>>,
    /// While set, poison records wait in the handler before failing.
    hold_poison: AtomicBool,
}

impl Calls {
    /// Invocations of the record at (partition, offset).
    pub(super) fn count(&self, at: (i32, i64)) -> u32 {
        self.lock().get(&at).copied().unwrap_or(0)
    }

    /// Invocations beyond the first, over every record: redeliveries.
    pub(super) fn extra(&self) -> u64 {
        self.lock().values().map(|c| u64::from(c - 1)).sum()
    }

    /// Makes poison records wait in the handler (`true`) or fail (`false`).
    pub(super) fn hold_poison(&self, hold: bool) {
        self.hold_poison.store(hold, Ordering::SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(i32, i64), u32>> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The scenarios' handler: counts each invocation, fails records whose
/// payload ends in [`POISON`] with [`Poison`] (after waiting while
/// [`Calls::hold_poison`] is set), and takes a couple of milliseconds for
/// every fourth record, so records are in flight when a fault begins.
struct Recorder {
    /// Shared with the test.
    calls: Arc<Calls>,
}

impl Handler for Recorder {
    fn call(&self, msg: Message) -> HandlerFuture<'static> {
        let calls = self.calls.clone();
        Box::pin(async move {
            *calls
                .lock()
                .entry((msg.partition(), msg.offset()))
                .or_default() += 1;
            if msg
                .payload()
                .is_some_and(|p| p.ends_with(POISON.as_bytes()))
            {
                while calls.hold_poison.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                return Err(HandlerError::new(Poison));
            }
            if msg.offset() % 4 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Ok(())
        })
    }
}

/// A handler called `name` consuming `topic` with the default policy (key
/// ordering; [`Poison`] is dead-lettered), and what it sees. The spec
/// needs `'static` names and handler: they are leaked, a few bytes per
/// scenario.
pub(super) fn recorder(name: &'static str, topic: &str) -> (HandlerSpec, Arc<Calls>) {
    let calls = Arc::new(Calls::default());
    let handler: &'static Recorder = Box::leak(Box::new(Recorder {
        calls: calls.clone(),
    }));
    let topic: &'static str = Box::leak(topic.to_owned().into_boxed_str());
    let topics: &'static [&'static str] = Box::leak(Box::new([topic]));
    let spec =
        HandlerSpec::new(name, topics, handler).declared_at(module_path!(), file!(), line!());
    (spec, calls)
}

/// Whether `outcome` is the right final outcome for a record that is
/// (`poison`) or is not a poison record.
pub(super) fn expected(outcome: Option<&Outcome>, poison: bool) -> bool {
    match outcome {
        Some(Outcome::DeadLettered { .. }) => poison,
        Some(Outcome::Handled { .. }) => !poison,
        _ => false,
    }
}

/// Checks that `letters` (read back from the dead-letter topic) hold a
/// dead letter for every record of `poison` ((partition, offset) ->
/// payload), with `dlt.original.*` headers naming it, its payload and the
/// group; returns the records that have none. Panics on a letter that
/// names the wrong topic or payload.
pub(super) fn missing_letters(
    letters: &[(
        dispatcher::testing::ReadRecord,
        dispatcher::dead_letter::DeadLetterInfo,
    )],
    topic: &str,
    group: &str,
    poison: &BTreeMap<(i32, i64), String>,
) -> BTreeSet<(i32, i64)> {
    let mut found = BTreeSet::new();
    for (record, info) in letters {
        assert_eq!(info.original_topic, topic, "{info:?}");
        assert_eq!(info.consumer_group, group, "{info:?}");
        assert_eq!(info.reason, "not-retryable", "{info:?}");
        let at = (info.original_partition, info.original_offset);
        let payload = poison
            .get(&at)
            .unwrap_or_else(|| panic!("a dead letter for {topic}{at:?}, not a poison record"));
        assert_eq!(
            record.payload.as_deref(),
            Some(payload.as_bytes()),
            "the dead letter of {topic}{at:?} keeps the payload"
        );
        found.insert(at);
    }
    poison
        .keys()
        .copied()
        .filter(|at| !found.contains(at))
        .collect()
}

/// Reads the dead-letter topic from its beginning until it holds a letter
/// for every record of `poison` (a record dead-lettered twice, after a
/// redelivery, leaves two) or nothing more arrives within 10 s; returns
/// what was read.
pub(super) async fn letters_for(
    kit: &TestKit,
    dead_letter_topic: &str,
    poison: &BTreeMap<(i32, i64), String>,
) -> Vec<(
    dispatcher::testing::ReadRecord,
    dispatcher::dead_letter::DeadLetterInfo,
)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut letters = Vec::new();
    let mut want = poison.len();
    while Instant::now() < deadline {
        match kit
            .dead_letters(dead_letter_topic, want, Duration::from_secs(10))
            .await
        {
            Ok(read) => letters = read,
            Err(_) => break,
        }
        let found: BTreeSet<(i32, i64)> = letters
            .iter()
            .map(|(_, info)| (info.original_partition, info.original_offset))
            .collect();
        let missing = poison.keys().filter(|at| !found.contains(at)).count();
        if missing == 0 {
            break;
        }
        want = letters.len() + missing;
    }
    letters
}

/// Waits until every published record has its final outcome and the
/// committed offsets equal `ends`; `Err` with what was missing after
/// `timeout`.
pub(super) async fn settle(
    kit: &TestKit,
    topic: &str,
    mut unfinished: impl FnMut(&TestKit) -> BTreeSet<(i32, i64)>,
    ends: &BTreeMap<i32, i64>,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        let open = unfinished(kit);
        if open.is_empty() {
            match kit.committed_offsets(topic).await {
                Ok(committed) if ends.iter().all(|(p, e)| committed.get(p) == Some(e)) => {
                    return Ok(());
                }
                Ok(committed) => last = format!("committed {committed:?}, ends {ends:?}"),
                Err(e) => last = format!("committed offsets unreadable: {e}"),
            }
        } else {
            let first: Vec<_> = open.iter().take(5).collect();
            last = format!("{} records unfinished, first {first:?}", open.len());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(last)
}

/// What a test knows of a published record, at least its payload.
pub(super) trait Payload {
    /// The record's payload.
    fn payload(&self) -> &str;
}

impl Payload for String {
    fn payload(&self) -> &str {
        self
    }
}

/// A payload and the phase it was published in.
impl Payload for (String, usize) {
    fn payload(&self) -> &str {
        &self.0
    }
}

/// Whether `payload` is a poison record's.
pub(super) fn is_poison(payload: &str) -> bool {
    payload.ends_with(POISON)
}

/// The poison records of `published`: (partition, offset) -> payload.
pub(super) fn poison_of<P: Payload>(
    published: &BTreeMap<(i32, i64), P>,
) -> BTreeMap<(i32, i64), String> {
    published
        .iter()
        .filter(|(_, r)| is_poison(r.payload()))
        .map(|(at, r)| (*at, r.payload().to_owned()))
        .collect()
}

/// One past the highest published offset of each partition.
pub(super) fn ends<P>(published: &BTreeMap<(i32, i64), P>) -> BTreeMap<i32, i64> {
    dispatcher_tests::ends_of(published.keys().copied())
}

/// The published records without the right final outcome in `kit` yet.
pub(super) fn unfinished<P: Payload>(
    kit: &TestKit,
    topic: &str,
    published: &BTreeMap<(i32, i64), P>,
) -> BTreeSet<(i32, i64)> {
    let outcomes = kit.final_outcomes(topic);
    published
        .iter()
        .filter(|(at, r)| !expected(outcomes.get(at), is_poison(r.payload())))
        .map(|(at, _)| *at)
        .collect()
}
