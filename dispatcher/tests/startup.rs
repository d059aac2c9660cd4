//! Startup validation through `Dispatcher::builder()...build()` and
//! `run()`: what only the whole program can see is rejected with an error
//! that names the place and the fix.

use dispatcher::{Dispatcher, Error};
use std::time::Duration;

#[dispatcher::kafka_handler(topic = "it-startup-dup")]
async fn dup_first(_msg: &dispatcher::Message) -> Result<(), std::io::Error> {
    Ok(())
}

#[dispatcher::kafka_handler(topic = ["it-startup-other", "it-startup-dup"])]
async fn dup_second(_msg: &dispatcher::Message) -> Result<(), std::io::Error> {
    Ok(())
}

#[dispatcher::kafka_handler(topic = "it-startup-split", group = "it-startup-group-a")]
async fn split_a(_msg: &dispatcher::Message) -> Result<(), std::io::Error> {
    Ok(())
}

#[dispatcher::kafka_handler(topic = "it-startup-split", group = "it-startup-group-b")]
async fn split_b(_msg: &dispatcher::Message) -> Result<(), std::io::Error> {
    Ok(())
}

#[dispatcher::kafka_handler(topic = "it-startup-one")]
async fn only_one(_msg: &dispatcher::Message) -> Result<(), std::io::Error> {
    Ok(())
}

/// The registered spec of the handler named `name`.
fn spec(name: &str) -> dispatcher::handler::HandlerSpec {
    dispatcher::handler::registered()
        .into_iter()
        .find(|h| h.name == name)
        .unwrap_or_else(|| panic!("handler {name} is registered"))
}

fn builder() -> dispatcher::DispatcherBuilder {
    Dispatcher::builder()
        .ignore_environment()
        .handle_signals(false)
}

#[test]
fn two_handlers_on_one_topic_in_one_group_are_rejected_naming_both() {
    let err = builder()
        .group_id("it-startup-dup-group")
        .topics(["it-startup-dup"])
        .build()
        .expect_err("two handlers claim it-startup-dup");
    let msg = err.to_string();
    match &err {
        Error::DuplicateTopic {
            topic,
            group,
            first,
            second,
        } => {
            assert_eq!(topic, "it-startup-dup");
            assert_eq!(group, "it-startup-dup-group");
            let names = [first.as_str(), second.as_str()];
            for h in [spec("dup_first"), spec("dup_second")] {
                assert_eq!(h.file, file!(), "{h:?} is declared in this file");
                assert!(h.line > 0, "{h:?} has a line");
                let described = format!("{} ({})", h.qualified_name(), h.location());
                assert!(
                    names.contains(&described.as_str()),
                    "{described:?} is one of {names:?}"
                );
                assert!(msg.contains(&h.qualified_name()), "{msg}");
                assert!(msg.contains(&h.location()), "{msg}");
            }
            assert_ne!(first, second);
        }
        other => panic!("expected DuplicateTopic, got {other:?}"),
    }
    assert!(
        msg.contains("group = "),
        "the message says how to fix it: {msg}"
    );
}

#[test]
fn the_same_topic_in_different_groups_builds() {
    let dispatcher = builder()
        .group_id("it-startup-default-group")
        .topics(["it-startup-split"])
        .build()
        .expect("different groups may share a topic");
    let subs = dispatcher.subscriptions();
    assert_eq!(
        subs.get("it-startup-group-a"),
        Some(&vec!["it-startup-split".to_owned()])
    );
    assert_eq!(
        subs.get("it-startup-group-b"),
        Some(&vec!["it-startup-split".to_owned()])
    );
    assert_eq!(subs.len(), 2, "no other group: {subs:?}");
}

#[test]
fn a_filter_that_leaves_no_handler_is_rejected() {
    let err = builder()
        .topics(["it-startup-nobody-consumes-this"])
        .build()
        .expect_err("no handler left");
    match &err {
        Error::NoHandlers { filter } => {
            assert!(
                filter.contains("it-startup-nobody-consumes-this"),
                "the error names the filter: {filter}"
            );
        }
        other => panic!("expected NoHandlers, got {other:?}"),
    }
    let err = builder()
        .without_registered_handlers()
        .build()
        .expect_err("no handler at all");
    assert!(matches!(err, Error::NoHandlers { .. }), "{err:?}");
}

/// Builds the one-handler set with `configure` applied and expects a
/// configuration error naming `key` and coming from the builder.
fn expect_config_error(
    configure: impl FnOnce(dispatcher::DispatcherBuilder) -> dispatcher::DispatcherBuilder,
    want_key: &str,
    want_value: &str,
) {
    let err = configure(builder().topics(["it-startup-one"]))
        .build()
        .expect_err("invalid configuration");
    let msg = err.to_string();
    match &err {
        Error::Config(c) => {
            assert_eq!(c.key, want_key, "{msg}");
            assert_eq!(c.value, want_value, "{msg}");
            assert!(
                c.origin.contains("builder"),
                "origin names the builder: {msg}"
            );
        }
        other => panic!("expected Config for {want_key}, got {other:?}"),
    }
    assert!(
        msg.contains(want_key) && msg.contains("builder"),
        "the message names the key and the origin: {msg}"
    );
}

#[test]
fn invalid_configuration_names_the_key_and_origin() {
    expect_config_error(|b| b.max_in_flight(0), "max_in_flight", "0");
    expect_config_error(|b| b.partition_buffer(0), "partition_buffer", "0");
    expect_config_error(|b| b.brokers("nohostport"), "brokers", "nohostport");
    expect_config_error(
        |b| b.kafka_property("enable.auto.commit", "false"),
        "enable.auto.commit",
        "false",
    );
    expect_config_error(
        |b| b.kafka_property("group.id", "sneaky"),
        "group.id",
        "sneaky",
    );
    expect_config_error(|b| b.group_id(" "), "group_id", " ");
    expect_config_error(
        |b| b.handler_concurrency("only_onee", 4),
        "handlers.only_onee",
        "",
    );
    // And a valid set builds, with the handler's limit set by configuration.
    builder()
        .topics(["it-startup-one"])
        .brokers("127.0.0.1:9")
        .max_in_flight(1)
        .handler_concurrency("only_one", 3)
        .build()
        .expect("valid configuration");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_brokers_stop_run_with_unreachable() {
    let dispatcher = builder()
        .topics(["it-startup-one"])
        .brokers("127.0.0.1:1")
        .build()
        .expect("the configuration itself is valid");
    let result = tokio::time::timeout(Duration::from_secs(60), dispatcher.run())
        .await
        .expect("run() gives up on unreachable brokers instead of hanging");
    match result {
        Err(Error::Unreachable { brokers, .. }) => assert_eq!(brokers, "127.0.0.1:1"),
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

/// TLS is compiled in (the default `tls` feature), and a TLS client that
/// meets a listener it cannot handshake with stops startup with the reason,
/// not only "cannot reach Kafka".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_tls_handshake_stops_run_with_the_reason() {
    // A listener that answers like a web server, not a TLS one.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let address = listener.local_addr().expect("address").to_string();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    let dispatcher = builder()
        .topics(["it-startup-one"])
        .brokers(&address)
        .kafka_property("security.protocol", "SSL")
        .build()
        .expect("SSL is a valid security.protocol with the tls feature");
    let result = tokio::time::timeout(Duration::from_secs(60), dispatcher.run())
        .await
        .expect("run() gives up on a listener that refuses TLS");
    match result {
        Err(err @ Error::Unreachable { .. }) => {
            let text = err.to_string();
            assert!(
                text.contains("SSL") && text.contains("security.protocol"),
                "the error says TLS failed and what to check: {text}"
            );
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

/// A CA file that does not exist stops startup, naming the property.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_ca_file_stops_run_naming_the_property() {
    let dispatcher = builder()
        .topics(["it-startup-one"])
        .brokers("127.0.0.1:9")
        .kafka_property("security.protocol", "SSL")
        .kafka_property("ssl.ca.location", "/nonexistent/dispatcher-ca.pem")
        .build()
        .expect("the path is checked by the client");
    let err = tokio::time::timeout(Duration::from_secs(60), dispatcher.run())
        .await
        .expect("run() fails at once")
        .expect_err("the CA file does not exist");
    let text = format!("{err:?}");
    assert!(
        text.contains("ssl.ca.location"),
        "the error names the property: {text}"
    );
}

/// The client is built with what the secured-cluster recipes need.
#[test]
fn the_client_supports_tls_scram_oauthbearer_and_zstd() {
    let features = rdkafka::config::ClientConfig::new()
        .create_native_config()
        .expect("a native config")
        .get("builtin.features")
        .expect("builtin.features");
    for needed in [
        "ssl",
        "sasl_plain",
        "sasl_scram",
        "sasl_oauthbearer",
        "zstd",
    ] {
        assert!(
            features.split(',').any(|f| f == needed),
            "librdkafka is built with {needed}: {features}"
        );
    }
}
