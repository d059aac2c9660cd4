//! What librdkafka's mock cluster (the embedded broker) does with
//! transactions, as `dlq replay` relies on it. Read in librdkafka 2.12.1's
//! `rdkafka_mock_handlers.c` and checked here:
//!
//! - InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit
//!   and EndTxn are answered, with no transaction-log settings needed:
//!   a transactional producer initializes, produces and commits;
//! - TxnOffsetCommit is answered without storing the offsets (only a plain
//!   OffsetCommit stores them), so `dlq replay` commits them again after
//!   each transaction on such a broker;
//! - EndTxn ignores an abort: no markers are written, the last stable
//!   offset is the high watermark and no aborted transactions are listed,
//!   so a `read_committed` consumer sees records of aborted transactions;
//! - a second InitProducerId for the same transactional id gets a new
//!   producer id instead of bumping the epoch, so an older producer is not
//!   fenced.
//!
//! Should a librdkafka upgrade change one of these, the assertion says
//! what to revisit.

use dispatcher::broker::EmbeddedBroker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

fn transactional(brokers: &str, id: &str) -> BaseProducer {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("transactional.id", id)
        .create()
        .expect("a transactional producer");
    p.init_transactions(T)
        .expect("init_transactions on the mock");
    p
}

fn consumer(brokers: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("a consumer")
}

fn send(p: &BaseProducer, topic: &str, payload: &str) {
    p.send(
        BaseRecord::<(), str>::to(topic)
            .payload(payload)
            .partition(0),
    )
    .map_err(|(e, _)| e)
    .expect("send");
}

fn committed(c: &BaseConsumer, topic: &str) -> Offset {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let got = c.committed_offsets(tpl, T).expect("committed offsets");
    got.find_partition(topic, 0).expect("partition 0").offset()
}

#[test]
fn the_mock_cluster_runs_transactions_but_keeps_no_transactional_offsets() {
    let broker = EmbeddedBroker::start(1).expect("a broker of this test's own");
    let brokers = broker.bootstrap_servers().to_owned();
    broker.create_topic("in", 1).expect("topic");
    broker.create_topic("out", 1).expect("topic");
    let group = consumer(&brokers, "g");
    let producer = transactional(&brokers, "tx-1");

    // A committed transaction with consumed offsets.
    producer.begin_transaction().expect("begin");
    send(&producer, "out", "committed");
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("in", 0, Offset::Offset(5))
        .expect("offsets");
    let metadata = group.group_metadata().expect("group metadata");
    producer
        .send_offsets_to_transaction(&offsets, &metadata, T)
        .expect("send_offsets_to_transaction on the mock");
    producer
        .commit_transaction(T)
        .expect("commit_transaction on the mock");
    assert_eq!(group.fetch_watermarks("out", 0, T).expect("marks"), (0, 1));
    assert_eq!(
        committed(&group, "in"),
        Offset::Invalid,
        "the mock now stores offsets committed in a transaction: \
         dlq replay's commit after each transaction is no longer needed on it"
    );
    // A plain commit is stored.
    group
        .commit(&offsets, rdkafka::consumer::CommitMode::Sync)
        .expect("a plain commit");
    assert_eq!(committed(&group, "in"), Offset::Offset(5));

    // An aborted transaction's record is visible all the same.
    producer.begin_transaction().expect("begin");
    send(&producer, "out", "aborted");
    producer.flush(T).expect("flush");
    producer
        .abort_transaction(T)
        .expect("abort_transaction on the mock");
    assert_eq!(
        group.fetch_watermarks("out", 0, T).expect("marks"),
        (0, 2),
        "the mock now writes transaction markers"
    );
    let read = dispatcher::testing::read_topic(&brokers, "out", 2, T).expect("read");
    assert_eq!(
        read[1].payload.as_deref(),
        Some(b"aborted".as_slice()),
        "the mock now hides aborted records from read_committed consumers"
    );

    // A second producer with the same transactional id does not fence the
    // first.
    let second = transactional(&brokers, "tx-1");
    producer.begin_transaction().expect("begin");
    send(&producer, "out", "zombie");
    assert!(
        producer.commit_transaction(T).is_ok(),
        "the mock now fences an older producer of the same transactional id"
    );
    drop(second);
}
