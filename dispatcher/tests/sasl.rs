//! SASL is compiled in: for each mechanism, the client's SaslHandshake names
//! the configured mechanism (seen by a listener in the test that speaks just
//! enough Kafka: it answers ApiVersions and reads the handshake), and an
//! OAUTHBEARER client asks the application's token provider first.

use dispatcher::client::OAuthToken;
use dispatcher::{Dispatcher, Error};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

#[dispatcher::kafka_handler(topic = "it-sasl")]
async fn sasl_handler(_msg: &dispatcher::Message) -> Result<(), std::io::Error> {
    Ok(())
}

/// SaslHandshake's API key.
const SASL_HANDSHAKE: i16 = 17;
/// ApiVersions' API key.
const API_VERSIONS: i16 = 18;

/// An ApiVersions v3 response (flexible encoding) offering ApiVersions,
/// Metadata and the SASL requests, for `correlation_id`.
fn api_versions_response(correlation_id: i32) -> Vec<u8> {
    let apis: [(i16, i16, i16); 4] = [
        (API_VERSIONS, 0, 3),
        (SASL_HANDSHAKE, 0, 1),
        (36, 0, 1),
        (3, 0, 4),
    ];
    let mut body = Vec::new();
    body.extend_from_slice(&correlation_id.to_be_bytes()); // header v0
    body.extend_from_slice(&0i16.to_be_bytes()); // error code
    body.push(u8::try_from(apis.len() + 1).expect("few apis")); // compact array length
    for (key, min, max) in apis {
        for v in [key, min, max] {
            body.extend_from_slice(&v.to_be_bytes());
        }
        body.push(0); // no tagged fields
    }
    body.extend_from_slice(&0i32.to_be_bytes()); // throttle time
    body.push(0); // no tagged fields
    let mut framed = i32::try_from(body.len())
        .expect("small")
        .to_be_bytes()
        .to_vec();
    framed.extend_from_slice(&body);
    framed
}

/// Answers ApiVersions and sends the mechanism of the SaslHandshake that
/// follows (header v1; body: the mechanism), then drops the connection.
async fn handshake_reader(listener: TcpListener, seen: mpsc::UnboundedSender<String>) {
    while let Ok((mut socket, _)) = listener.accept().await {
        let seen = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok(size) = socket.read_i32().await else {
                    return;
                };
                let mut request = vec![0; usize::try_from(size).unwrap_or(0).min(1 << 16)];
                if socket.read_exact(&mut request).await.is_err() {
                    return;
                }
                let mut r = request.as_slice();
                let i16_at = |r: &mut &[u8]| -> Option<i16> {
                    let (head, rest) = r.split_first_chunk::<2>()?;
                    *r = rest;
                    Some(i16::from_be_bytes(*head))
                };
                let api_key = i16_at(&mut r).unwrap_or(-1);
                let _version = i16_at(&mut r);
                let Some((correlation, rest)) = r.split_first_chunk::<4>() else {
                    return;
                };
                let correlation_id = i32::from_be_bytes(*correlation);
                r = rest;
                match api_key {
                    API_VERSIONS => {
                        let response = api_versions_response(correlation_id);
                        if socket.write_all(&response).await.is_err() {
                            return;
                        }
                    }
                    SASL_HANDSHAKE => {
                        let client_id = i16_at(&mut r).unwrap_or(-1);
                        r = r
                            .get(usize::try_from(client_id).unwrap_or(0)..)
                            .unwrap_or_default();
                        let len = usize::try_from(i16_at(&mut r).unwrap_or(0)).unwrap_or(0);
                        let mechanism = r.get(..len).map(String::from_utf8_lossy);
                        let _ = seen.send(mechanism.unwrap_or_default().into_owned());
                        return;
                    }
                    other => {
                        let _ = seen.send(format!("(request {other} before a SaslHandshake)"));
                        return;
                    }
                }
            }
        });
    }
}

/// Runs a dispatcher with `mechanism` against a handshake reader and
/// returns the mechanism the client offered, and how `run()` ended.
async fn offered(
    mechanism: &str,
    token_calls: Arc<AtomicUsize>,
) -> (String, dispatcher::Result<()>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let address = listener.local_addr().expect("address").to_string();
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(handshake_reader(listener, tx));
    let calls = token_calls.clone();
    let dispatcher = Dispatcher::builder()
        .ignore_environment()
        .handle_signals(false)
        .topics(["it-sasl"])
        .brokers(&address)
        .kafka_property("security.protocol", "SASL_PLAINTEXT")
        .kafka_property("sasl.mechanism", mechanism)
        .kafka_property("sasl.username", "billing")
        .kafka_property("sasl.password", "not-a-real-secret")
        .oauth_token_provider(move |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(OAuthToken::new(
                "header.payload.signature",
                "billing",
                SystemTime::now() + Duration::from_secs(600),
            ))
        })
        .build()
        .expect("valid configuration");
    let result = tokio::time::timeout(Duration::from_secs(60), dispatcher.run())
        .await
        .expect("run() gives up on a broker that never answers");
    let mechanism = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| "(no SaslHandshake)".to_owned());
    (mechanism, result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_offers_each_configured_mechanism() {
    let mechanisms = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];
    let calls: Vec<_> = mechanisms
        .iter()
        .map(|_| Arc::new(AtomicUsize::new(0)))
        .collect();
    let runs = mechanisms
        .iter()
        .zip(&calls)
        .map(|(m, c)| offered(m, c.clone()));
    let results = futures::future::join_all(runs).await;
    for ((mechanism, (offered, result)), calls) in mechanisms.iter().zip(results).zip(&calls) {
        assert_eq!(&offered, mechanism);
        assert!(
            matches!(result, Err(Error::Unreachable { .. })),
            "{mechanism}: the listener never completes the login: {result:?}"
        );
        let calls = calls.load(Ordering::SeqCst);
        if *mechanism == "OAUTHBEARER" {
            assert!(calls > 0, "the token provider was asked for a token");
        } else {
            assert_eq!(calls, 0, "{mechanism} needs no token");
        }
    }
}
