//! A keyed producer that writes `key:seq` records (some of them poison
//! records) while a scenario runs.

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The key of index `i`.
pub fn key_name(i: usize) -> String {
    format!("k{i:02}")
}

/// Whether record `seq` of key number `key` is a poison record when the
/// producer makes them: one in a hundred of every key.
pub fn is_poison(key: usize, seq: u64) -> bool {
    (key as u64 * 7919 + seq * 29) % 100 == 42
}

/// Produces keyed records continuously: rounds of one record per key
/// (payload `key:seq`, seq counting from 0 per key, or `key:seq:poison`
/// for the [`is_poison`] ones when started with poison), each round
/// acknowledged before the next starts, so per key the offsets follow the
/// seqs.
#[derive(Debug)]
pub struct KeyedProducer {
    stop: Arc<AtomicBool>,
    produced: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<u64>>,
}

impl KeyedProducer {
    /// Starts producing to `topic`, one round of `keys` records every
    /// `every`.
    pub fn start(brokers: &str, topic: &str, keys: usize, every: Duration) -> Self {
        Self::start_with(brokers, topic, keys, every, false)
    }

    /// Like [`KeyedProducer::start`], with one record in a hundred a
    /// poison record when `poison` is set.
    pub fn start_with(
        brokers: &str,
        topic: &str,
        keys: usize,
        every: Duration,
        poison: bool,
    ) -> Self {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("linger.ms", "1")
            .set("message.timeout.ms", "30000")
            .create()
            .expect("create the producer");
        let stop = Arc::new(AtomicBool::new(false));
        let produced = Arc::new(AtomicU64::new(0));
        let (s, p, topic) = (stop.clone(), produced.clone(), topic.to_owned());
        let task = tokio::spawn(async move {
            let names: Vec<String> = (0..keys).map(key_name).collect();
            let mut seq: u64 = 0;
            let mut tick = tokio::time::interval(every);
            while !s.load(Ordering::Acquire) {
                tick.tick().await;
                let payloads: Vec<String> = names
                    .iter()
                    .enumerate()
                    .map(|(i, k)| {
                        if poison && is_poison(i, seq) {
                            format!("{k}:{seq}:poison")
                        } else {
                            format!("{k}:{seq}")
                        }
                    })
                    .collect();
                let sends = names.iter().zip(&payloads).map(|(k, v)| {
                    producer.send(
                        FutureRecord::to(&topic).key(k.as_str()).payload(v.as_str()),
                        Duration::from_secs(30),
                    )
                });
                for r in futures::future::join_all(sends).await {
                    if let Err((e, _)) = r {
                        panic!("producing failed: {e}");
                    }
                }
                seq += 1;
                p.fetch_add(keys as u64, Ordering::Release);
            }
            vec![seq; keys]
        });
        KeyedProducer {
            stop,
            produced,
            task,
        }
    }

    /// Records acknowledged so far.
    pub fn produced(&self) -> u64 {
        self.produced.load(Ordering::Acquire)
    }

    /// Stops after the current round; returns the count produced per key.
    pub async fn stop(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Release);
        self.task.await.expect("the producer task panicked")
    }
}

/// The poison records ([`is_poison`]) among `produced[i]` records of key
/// `k{i:02}`.
pub fn poison_records(produced: &[u64]) -> Vec<(String, u64)> {
    produced
        .iter()
        .enumerate()
        .flat_map(|(i, &n)| {
            (0..n)
                .filter(move |&s| is_poison(i, s))
                .map(move |s| (key_name(i), s))
        })
        .collect()
}
