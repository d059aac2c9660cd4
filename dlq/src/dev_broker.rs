//! `dlq dev-broker`: the embedded broker as a local development broker.
//!
//! librdkafka's mock cluster binds each broker to a port the kernel picks
//! (`rd_kafka_mock_broker_new` binds 127.0.0.1 port 0) and has no setting
//! for it; `rd_kafka_mock_broker_set_host_port` changes only the address
//! it advertises. So this listens on the requested port itself and
//! forwards each connection to the mock broker: that serves the bootstrap,
//! after which clients use the 127.0.0.1 address the mock advertises in
//! its metadata directly.

use crate::cli::DevBrokerArgs;
use anyhow::{anyhow, Context};
use dispatcher::broker::EmbeddedBroker;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};

/// Starts the broker, creates the topics, serves the bootstrap on
/// 127.0.0.1:`port` and writes `KAFKA_BROKERS=<address>` (flushed) to
/// `out`; runs until `shutdown` completes, then stops the broker.
pub async fn dev_broker(
    args: &DevBrokerArgs,
    out: &mut (dyn Write + Send),
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| {
            format!(
                "listening on 127.0.0.1:{} (in use? choose another with --port, or --port 0 for a free one)",
                args.port
            )
        })?;
    let address = listener.local_addr().context("the listener's address")?;
    let broker = tokio::task::spawn_blocking(|| EmbeddedBroker::start(1))
        .await
        .context("starting the embedded broker")??;
    let mock: SocketAddr = broker
        .bootstrap_servers()
        .split(',')
        .next()
        .and_then(|a| a.trim().parse().ok())
        .ok_or_else(|| {
            anyhow!(
                "unexpected bootstrap address {:?}",
                broker.bootstrap_servers()
            )
        })?;
    for topic in &args.topics {
        broker
            .create_topic(topic, args.partitions)
            .with_context(|| format!("creating topic {topic}"))?;
    }
    writeln!(
        out,
        "dlq dev-broker: librdkafka's mock cluster, in memory, on 127.0.0.1 only (the bootstrap on {address} forwards to the mock broker at {mock})"
    )?;
    for topic in &args.topics {
        writeln!(out, "topic {topic}: {} partitions", args.partitions)?;
    }
    writeln!(out, "KAFKA_BROKERS={address}")?;
    writeln!(out, "Ctrl-C stops it; its data goes with it")?;
    out.flush()?;

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    tokio::spawn(forward(client, mock));
                }
                Err(e) => eprintln!("dlq dev-broker: accepting a connection: {e}"),
            },
        }
    }
    drop(listener);
    // Dropping the broker joins its thread.
    tokio::task::spawn_blocking(move || drop(broker))
        .await
        .context("stopping the embedded broker")?;
    writeln!(out, "dlq dev-broker: stopped")?;
    Ok(())
}

/// Copies bytes both ways between a client and the mock broker until
/// either side closes.
async fn forward(mut client: TcpStream, mock: SocketAddr) {
    let _ = client.set_nodelay(true);
    match TcpStream::connect(mock).await {
        Ok(mut upstream) => {
            let _ = upstream.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
        Err(e) => eprintln!("dlq dev-broker: connecting to the mock broker at {mock}: {e}"),
    }
}
