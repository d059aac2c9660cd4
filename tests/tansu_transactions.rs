//! What the broker process (tansu 0.6.0) does with transactions, for a
//! transactional hand-off, which librdkafka's mock cluster cannot prove (it
//! keeps no offsets committed in a transaction, ignores aborts and fences
//! nobody; see `dlq/tests/mock_transactions.rs`). On tansu, offsets sent in
//! a transaction are committed with it and a producer is fenced by a newer
//! one with the same transactional id, but an aborted transaction's records
//! are still read by `read_committed` consumers (its fetch responses list
//! no aborted transactions). Should an upgrade change that, the assertion
//! says what to revisit.

use dispatcher_tests::tansu::Tansu;
use dispatcher_tests::WorkDir;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

fn transactional(brokers: &str, id: &str) -> BaseProducer {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("transactional.id", id)
        .create()
        .expect("a transactional producer");
    p.init_transactions(T).expect("init_transactions");
    p
}

fn send(p: &BaseProducer, payload: &str) {
    p.send(
        BaseRecord::<(), str>::to("tx-out")
            .payload(payload)
            .partition(0),
    )
    .map_err(|(e, _)| e)
    .expect("send");
}

/// The payloads a `read_committed` consumer reads from `tx-out` until
/// `last` arrives.
fn read_committed_until(brokers: &str, last: &str) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "tx-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("a consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("tx-out", 0, Offset::Beginning)
        .expect("partition");
    c.assign(&tpl).expect("assign");
    let deadline = Instant::now() + T;
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some(last) {
        assert!(
            Instant::now() < deadline,
            "timed out reading; read {seen:?}"
        );
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            seen.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    seen
}

#[test]
fn tansu_commits_offsets_in_transactions_hides_aborted_records_and_fences_zombies() {
    let dir = WorkDir::new("tansu-transactions");
    let tansu = Tansu::start(dir.path(), None);
    let brokers = tansu.advertised.clone();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("admin");
    let created = tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(admin.create_topics(
            &[
                NewTopic::new("tx-in", 1, TopicReplication::Fixed(1)),
                NewTopic::new("tx-out", 1, TopicReplication::Fixed(1)),
            ],
            &AdminOptions::new(),
        ))
        .expect("create topics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let group: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "tx-group")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    let producer = transactional(&brokers, "tx-1");

    // Committed, with consumed offsets: both land.
    producer.begin_transaction().expect("begin");
    send(&producer, "committed");
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("tx-in", 0, Offset::Offset(5))
        .expect("offsets");
    let metadata = group.group_metadata().expect("group metadata");
    producer
        .send_offsets_to_transaction(&offsets, &metadata, T)
        .expect("send_offsets_to_transaction");
    producer.commit_transaction(T).expect("commit_transaction");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("tx-in", 0);
    let committed = group.committed_offsets(tpl, T).expect("committed offsets");
    assert_eq!(
        committed.find_partition("tx-in", 0).map(|e| e.offset()),
        Some(Offset::Offset(5)),
        "the offsets of a committed transaction are committed"
    );

    // Aborted: still read by read_committed consumers on tansu 0.6.0.
    producer.begin_transaction().expect("begin");
    send(&producer, "aborted");
    producer.flush(T).expect("flush");
    producer.abort_transaction(T).expect("abort_transaction");
    producer.begin_transaction().expect("begin");
    send(&producer, "after");
    producer.commit_transaction(T).expect("commit_transaction");
    assert_eq!(
        read_committed_until(&brokers, "after"),
        ["committed", "aborted", "after"],
        "tansu now hides aborted records from read_committed consumers: \
         it can prove a transactional hand-off end to end"
    );

    // A newer producer with the same transactional id fences the older.
    let _newer = transactional(&brokers, "tx-1");
    producer.begin_transaction().expect("begin");
    send(&producer, "zombie");
    let zombie = producer.commit_transaction(T);
    assert!(zombie.is_err(), "the older producer is fenced: {zombie:?}");
}
