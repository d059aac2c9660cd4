//! The layers' precedence, the errors' words, and secrets kept secret.

use super::*;
use figment::value::Value;
use std::time::Duration;

/// A TOML file in a directory of its own, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(contents: &str) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "dispatcher-config-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("dispatcher.toml");
        std::fs::write(&path, contents).expect("write the file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn env(pairs: &[(&str, &str)]) -> Layer {
    environment(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .expect("a valid environment")
}

fn settings(file: Option<&TempFile>, env: Layer, builder: Layer) -> Result<Settings, ConfigError> {
    let layers = Layers::load(file.map(|f| f.0.as_path()), env, builder)?;
    let model = layers.extract()?;
    validate(model, &layers, "program", (None, None))
}

fn builder(key: &str, value: Value) -> Layer {
    let mut layer = Layer::default();
    layer.set(&[key], value, format!("Dispatcher::builder().{key}(..)"));
    layer
}

#[test]
fn defaults_then_file_then_environment_then_builder() {
    let file = TempFile::new("max_in_flight = 100\npartition_buffer = 200\ndrain_timeout = \"3s\"\ngroup_id = \"from-file\"\n");
    let s = settings(None, env(&[]), Layer::default()).expect("defaults");
    assert_eq!((s.max_in_flight, s.partition_buffer), (10_000, 5_000));
    assert_eq!(s.group_id.value, "program");
    let s = settings(Some(&file), env(&[]), Layer::default()).expect("file");
    assert_eq!(
        (s.max_in_flight, s.partition_buffer, s.drain_timeout),
        (100, 200, Duration::from_secs(3))
    );
    assert!(
        s.group_id.origin.contains("dispatcher.toml line 4"),
        "{}",
        s.group_id.origin
    );
    let e = env(&[
        ("DISPATCHER_MAX_IN_FLIGHT", "64"),
        ("KAFKA_GROUP_ID", "from-env"),
    ]);
    let s = settings(Some(&file), e.clone(), Layer::default()).expect("env");
    assert_eq!(
        (s.max_in_flight, s.partition_buffer),
        (64, 200),
        "the environment wins key by key"
    );
    assert_eq!(s.group_id.origin, "environment variable KAFKA_GROUP_ID");
    let s = settings(Some(&file), e, builder("max_in_flight", Value::from(7u64))).expect("builder");
    assert_eq!(
        (
            s.max_in_flight,
            s.partition_buffer,
            s.group_id.value.as_str()
        ),
        (7, 200, "from-env")
    );
}

#[test]
fn durations_are_written_as_text_everywhere() {
    let s = settings(
        None,
        env(&[
            ("DISPATCHER_COMMIT_INTERVAL", "250ms"),
            ("DISPATCHER_ERROR_TIMEOUT", "2m"),
        ]),
        Layer::default(),
    )
    .expect("valid");
    assert_eq!(
        (s.commit_interval, s.error_timeout),
        (Duration::from_millis(250), Duration::from_secs(120))
    );
    let file = TempFile::new("drain_timeout = 10\n");
    let err =
        settings(Some(&file), env(&[]), Layer::default()).expect_err("a number is not a duration");
    let msg = err.to_string();
    assert!(
        msg.contains("drain_timeout") && msg.contains("line 1") && msg.contains("\"10s\""),
        "{msg}"
    );
    let err = settings(
        None,
        env(&[("DISPATCHER_DRAIN_TIMEOUT", "soon")]),
        Layer::default(),
    )
    .expect_err("malformed");
    let msg = err.to_string();
    assert!(
        msg.contains("DISPATCHER_DRAIN_TIMEOUT") && msg.contains("malformed duration"),
        "{msg}"
    );
}

#[test]
fn unknown_keys_name_the_layer_and_a_likely_fix() {
    let file = TempFile::new("max_in_flight = 1\n\n[handlers.on_order]\nconcurrncy = 3\n");
    let msg = settings(Some(&file), env(&[]), Layer::default())
        .expect_err("unknown")
        .to_string();
    assert!(
        msg.contains("line 4") && msg.contains("did you mean `concurrency`?"),
        "{msg}"
    );
    let file = TempFile::new("max_in_flght = 1\n");
    let msg = settings(Some(&file), env(&[]), Layer::default())
        .expect_err("unknown")
        .to_string();
    assert!(
        msg.contains("did you mean `max_in_flight`?") && msg.contains("line 1"),
        "{msg}"
    );
    let err = environment([("DISPATCHER_DRAIN_TIMEOUT_MS".to_owned(), "100".to_owned())])
        .expect_err("an old name");
    let msg = err.to_string();
    assert!(
        msg.contains("did you mean `DISPATCHER_DRAIN_TIMEOUT`?"),
        "{msg}"
    );
    let err = environment([(
        "DISPATCHER_HANDLERS__ON_ORDER__TOPIC".to_owned(),
        "x".to_owned(),
    )])
    .expect_err("unknown");
    assert!(err.to_string().contains("did you mean `topics`?"), "{err}");
}

#[test]
fn values_out_of_range_name_the_key_and_what_is_allowed() {
    let err = settings(
        None,
        env(&[("DISPATCHER_MAX_IN_FLIGHT", "0")]),
        Layer::default(),
    )
    .expect_err("zero");
    assert_eq!(err.key, "DISPATCHER_MAX_IN_FLIGHT");
    assert_eq!(err.origin, "environment variable DISPATCHER_MAX_IN_FLIGHT");
    assert!(err.reason.contains("from 1 to"), "{err}");
    let err = settings(
        None,
        env(&[("DISPATCHER_MAX_IN_FLIGHT", "lots")]),
        Layer::default(),
    )
    .expect_err("text");
    assert!(
        err.to_string().contains("DISPATCHER_MAX_IN_FLIGHT"),
        "{err}"
    );
    let err = settings(
        None,
        env(&[("KAFKA_BROKERS", "localhost")]),
        Layer::default(),
    )
    .expect_err("no port");
    assert!(err.to_string().contains("host:port"), "{err}");
    let mut b = Layer::default();
    b.set(
        &["kafka", "enable.auto.commit"],
        Value::from("false"),
        "Dispatcher::builder().kafka_property(\"enable.auto.commit\", ..)",
    );
    let err = settings(None, env(&[]), b).expect_err("reserved");
    assert!(
        err.to_string().contains("kafka_property")
            && err.to_string().contains("managed by the dispatcher"),
        "{err}"
    );
}

#[test]
fn a_drain_timeout_must_fit_within_max_poll_interval() {
    let err = settings(
        None,
        env(&[("DISPATCHER_DRAIN_TIMEOUT", "5m")]),
        Layer::default(),
    )
    .expect_err("too long");
    let msg = err.to_string();
    assert!(
        msg.contains("DISPATCHER_DRAIN_TIMEOUT") && msg.contains("max.poll.interval.ms"),
        "{msg}"
    );
    let err = settings(
        None,
        env(&[("DISPATCHER_RDKAFKA_MAX_POLL_INTERVAL_MS", "12000")]),
        Layer::default(),
    )
    .expect_err("the default drain timeout does not fit");
    assert!(err.to_string().contains("max.poll.interval.ms"), "{err}");
    let s = settings(
        None,
        env(&[
            ("DISPATCHER_RDKAFKA_MAX_POLL_INTERVAL_MS", "12000"),
            ("DISPATCHER_DRAIN_TIMEOUT", "2s"),
        ]),
        Layer::default(),
    )
    .expect("2 s + 5 s fit in 12 s");
    assert_eq!(s.drain_timeout, Duration::from_secs(2));
}

#[test]
fn kafka_properties_go_to_every_client_the_consumers_or_the_producer() {
    let file = TempFile::new("[kafka]\n\"security.protocol\" = \"SSL\"\n\"socket.timeout.ms\" = 30000\n[kafka.consumer]\n\"fetch.wait.max.ms\" = 10\n[kafka.producer]\n\"linger.ms\" = \"5\"\n");
    let e = env(&[
        ("DISPATCHER_RDKAFKA_CONSUMER_FETCH_MIN_BYTES", "1"),
        ("DISPATCHER_RDKAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
    ]);
    let s = settings(Some(&file), e, Layer::default()).expect("valid");
    let shown = s.shown_properties();
    assert_eq!(
        shown["security.protocol"], "SASL_SSL",
        "the environment wins"
    );
    assert_eq!(shown["socket.timeout.ms"], "30000");
    assert_eq!(shown["consumer:fetch.wait.max.ms"], "10");
    assert_eq!(shown["consumer:fetch.min.bytes"], "1");
    assert_eq!(shown["producer:linger.ms"], "5");
    assert!(
        !shown.contains_key("linger.ms"),
        "a producer property stays with the producer"
    );
}

#[test]
fn handler_tables_rename_topics_and_override_the_policy() {
    let file = TempFile::new("[handlers.on_order]\ntopics = [\"staging.orders\"]\nmax_attempts = 5\nbackoff = \"200ms\"\ntimeout = \"30s\"\nordering = \"partition\"\n[handlers.on_refund]\nbackoff = { initial = \"50ms\", max = \"1s\" }\n");
    let s = settings(
        Some(&file),
        env(&[("DISPATCHER_HANDLERS__ON_ORDER__CONCURRENCY", "8")]),
        Layer::default(),
    )
    .expect("valid");
    let o = &s.handlers["on_order"];
    assert_eq!(
        o.topics.as_deref(),
        Some(&["staging.orders".to_owned()][..])
    );
    assert_eq!((o.max_attempts, o.concurrency), (Some(5), Some(8)));
    assert_eq!(
        o.backoff,
        Some(crate::policy::Backoff::Fixed(Duration::from_millis(200)))
    );
    assert_eq!(o.ordering, Some(crate::policy::OrderingMode::Partition));
    let file = TempFile::new("[handlers.on_order]\nmax_attempts = 0\n");
    let err = settings(Some(&file), env(&[]), Layer::default()).expect_err("zero attempts");
    assert!(
        err.to_string()
            .contains("`max_attempts` must be an integer of at least 1")
            && err.to_string().contains("line 2"),
        "the attribute's words: {err}"
    );
    let file = TempFile::new("[handlers.on_order]\nbackoff = { initial = \"2s\", max = \"1s\" }\n");
    let err = settings(Some(&file), env(&[]), Layer::default()).expect_err("initial > max");
    assert!(err.to_string().contains("longer than `max`"), "{err}");
}

#[test]
fn secrets_never_appear_in_errors_debug_output_or_the_shown_properties() {
    const SECRET: &str = "hunter2-s3cr3t";
    for key in [
        "sasl.password",
        "ssl.key.password",
        "ssl.keystore.password",
        "sasl.oauthbearer.client.secret",
        "ssl.key.pem",
    ] {
        // The builder's Debug output.
        let mut b = Layer::default();
        b.set(
            &["kafka", key],
            Value::from(SECRET),
            format!("Dispatcher::builder().kafka_property({key:?}, ..)"),
        );
        assert!(!format!("{b:?}").contains(SECRET), "{key}: {b:?}");
        // The settings' Debug output and what startup logs.
        let s = settings(None, env(&[]), b).expect("valid");
        assert!(!format!("{s:?}").contains(SECRET), "{key}");
        assert!(
            !format!("{:?}", s.shown_properties()).contains(SECRET),
            "{key}"
        );
        assert_eq!(
            s.kafka.common[key].0.expose(),
            SECRET,
            "the client still gets it"
        );
        // An error about the key.
        let env_name = format!(
            "DISPATCHER_RDKAFKA_{}",
            key.to_uppercase().replace('.', "_")
        );
        let file = TempFile::new(&format!(
            "[kafka]\n\"{key}\" = \"{SECRET}\"\n\"enable.auto.commit\" = \"x\"\n"
        ));
        let err = settings(Some(&file), env(&[(&env_name, SECRET)]), Layer::default())
            .expect_err("reserved key");
        assert!(!err.to_string().contains(SECRET), "{key}: {err}");
        let err = ConfigError::new(key, SECRET, "somewhere", "bad");
        assert!(!format!("{err} {err:?}").contains(SECRET), "{key}: {err}");
    }
}
