//! The command line: `dlq list | show | replay | dev-broker`.

use clap::{Args, Parser, Subcommand};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// List, inspect and replay the dead letters of dispatcher handlers.
#[derive(Debug, Parser)]
#[command(name = "dlq", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The dead letters of a topic as a table (or JSON lines), read from its
    /// beginning to its end as of the start.
    List(ListArgs),
    /// Every header and the payload of one record of a topic.
    Show(ShowArgs),
    /// Sends dead letters back to their original topic (or `--to`), exactly
    /// once across interruptions.
    #[command(long_about = REPLAY_ABOUT)]
    Replay(ReplayArgs),
    /// Runs the embedded broker (librdkafka's mock cluster, in memory) as a
    /// local development broker on 127.0.0.1 until Ctrl-C.
    #[command(long_about = DEV_BROKER_ABOUT)]
    DevBroker(DevBrokerArgs),
}

const REPLAY_ABOUT: &str = "\
Sends the selected dead letters back to their original topic \
(dlt.original.topic) or to --to, with their original key, payload and \
headers other than dlt.*, plus dlt.replayed.from = <topic>/<partition>/<offset> \
of the dead letter. It reads the dead-letter topic up to its end offsets as \
of the start; dead letters that do not match the filters are skipped, and \
the replay moves past them all the same.

Exactly once across interruptions: the dead-letter topic is read with a \
consumer group (--group), and a transactional producer (transactional.id \
<group>.producer) writes the records and commits the group's offsets in the \
same transactions. Ctrl-C, --limit or a crash leaves the group at the end of \
the last committed transaction, and the next run resumes there; records of a \
transaction that did not commit are invisible to read_committed consumers \
(librdkafka's default) and are written again by the next run.

On librdkafka's mock cluster (dlq dev-broker, the embedded broker), which \
accepts offsets in a transaction without keeping them, the offsets are \
committed right after each transaction instead: there an interruption \
between the two can send that transaction's records again, and aborted \
records stay visible.";

const DEV_BROKER_ABOUT: &str = "\
Runs the embedded broker (librdkafka's mock cluster, in memory) as a local \
development broker that several programs can share, on 127.0.0.1 only, and \
prints the bootstrap address to use (KAFKA_BROKERS=...). It stays up until \
Ctrl-C; its data is gone when it stops.

librdkafka's mock cluster always binds its brokers to ports of its own \
choosing (port 0: the kernel picks), and cannot be told a port. So dev-broker \
listens on --port itself and forwards each connection to the mock broker: \
that serves the bootstrap. The mock then advertises its own 127.0.0.1 \
address in its metadata, and clients talk to it there directly, so only \
programs on this machine can use it.

Topics named with --topic are created with --partitions partitions; a \
producer's first write to any other topic creates it with 4 partitions.";

/// Where the brokers are, and how to reach them.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// Bootstrap servers, e.g. `kafka-1:9092,kafka-2:9092`.
    #[arg(long, env = "KAFKA_BROKERS", value_name = "HOST:PORT,...")]
    pub brokers: String,
    /// A librdkafka property for every client of the command, e.g.
    /// `-X security.protocol=SSL`; repeatable.
    #[arg(short = 'X', long = "property", value_name = "NAME=VALUE", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
    /// How long to wait for the brokers (metadata, offsets, a read that
    /// makes no progress, a transaction), e.g. `30s`.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Which dead letters a command takes. All given filters must match.
#[derive(Debug, Clone, Default, Args)]
pub struct Filters {
    /// Only those of this handler: its qualified name
    /// (`billing::on_order`) or its last segments (`on_order`).
    #[arg(long, value_name = "NAME")]
    pub handler: Option<String>,
    /// Only those whose error had this Rust type: the whole path
    /// (`billing::ConfigError`) or its last segments (`ConfigError`).
    #[arg(long, value_name = "TYPE")]
    pub error_type: Option<String>,
    /// Only those whose last failure was at or after this time: RFC 3339
    /// in UTC (`2024-05-01T12:00:00Z`), milliseconds since the epoch, or a
    /// duration ago (`2h`).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<SystemTime>,
    /// Only those whose last failure was before this time (same forms as
    /// `--since`).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<SystemTime>,
    /// Only those dead-lettered for this reason: `not-retryable`,
    /// `retries-exhausted` or `undecodable`.
    #[arg(long, value_name = "REASON")]
    pub reason: Option<String>,
    /// Only those with this key (as UTF-8 text).
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
}

/// `dlq list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// The dead-letter topic, e.g. `orders.DLT`.
    pub topic: String,
    /// Which dead letters.
    #[command(flatten)]
    pub filters: Filters,
    /// One JSON object per dead letter and line, for scripts: every field
    /// the `dlt.*` headers give, the record's place in the dead-letter
    /// topic, its key and its payload (as text when it is UTF-8, else as
    /// hex in `payload_hex`).
    #[arg(long)]
    pub json: bool,
    /// The brokers.
    #[command(flatten)]
    pub connection: Connection,
}

/// `dlq show`.
#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// The topic, e.g. `orders.DLT`.
    pub topic: String,
    /// The record: `<partition>:<offset>`, as `dlq list` shows it.
    #[arg(value_name = "PARTITION:OFFSET", value_parser = parse_coordinates)]
    pub at: (i32, i64),
    /// The brokers.
    #[command(flatten)]
    pub connection: Connection,
}

/// `dlq replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// The dead-letter topic, e.g. `orders.DLT`.
    pub topic: String,
    /// Which dead letters; the others are skipped, and the replay moves
    /// past them all the same.
    #[command(flatten)]
    pub filters: Filters,
    /// Send to this topic instead of each dead letter's original topic
    /// (`dlt.original.topic`).
    #[arg(long, value_name = "TOPIC")]
    pub to: Option<String>,
    /// Write nothing and commit nothing: print what would be sent.
    #[arg(long)]
    pub dry_run: bool,
    /// The consumer group whose committed offsets say where the replay
    /// stands (default: `dlq-replay-<topic>`). The transactional id of the
    /// producer is `<group>.producer`, so a new replay of one group fences
    /// an older one still running (on a real broker).
    #[arg(long, value_name = "ID")]
    pub group: Option<String>,
    /// Stop after sending this many (committed); run again to go on.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// The brokers.
    #[command(flatten)]
    pub connection: Connection,
}

/// `dlq dev-broker`.
#[derive(Debug, Clone, Args)]
pub struct DevBrokerArgs {
    /// The port on 127.0.0.1 to serve the bootstrap on; 0 picks a free one.
    #[arg(long, default_value_t = 9092)]
    pub port: u16,
    /// Partitions of each `--topic`.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub partitions: i32,
    /// A topic to create at start; repeatable.
    #[arg(long = "topic", value_name = "TOPIC")]
    pub topics: Vec<String>,
}

impl ReplayArgs {
    /// The consumer group of the replay.
    pub fn group_id(&self) -> String {
        self.group
            .clone()
            .unwrap_or_else(|| format!("dlq-replay-{}", self.topic))
    }

    /// The transactional id of the replay's producer: derived from the
    /// group, so that a second replay of the same group fences the first.
    pub fn transactional_id(&self) -> String {
        format!("{}.producer", self.group_id())
    }
}

fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("{text:?} is not NAME=VALUE")),
    }
}

fn parse_coordinates(text: &str) -> Result<(i32, i64), String> {
    let bad = || format!("{text:?} is not PARTITION:OFFSET (e.g. 0:42)");
    let (p, o) = text.split_once(':').ok_or_else(bad)?;
    let p: i32 = p.trim().parse().map_err(|_| bad())?;
    let o: i64 = o.trim().parse().map_err(|_| bad())?;
    if p < 0 || o < 0 {
        return Err(bad());
    }
    Ok((p, o))
}

/// Parses a time: RFC 3339 in UTC, milliseconds since the epoch, or a
/// duration ago (`90m`, `2h`, `1day`).
pub fn parse_time(text: &str) -> Result<SystemTime, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let ms: u64 = text
            .parse()
            .map_err(|_| format!("{text:?}: too large for milliseconds since the epoch"))?;
        return Ok(UNIX_EPOCH + Duration::from_millis(ms));
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(t);
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        return SystemTime::now()
            .checked_sub(ago)
            .ok_or_else(|| format!("{text:?} ago is before the epoch"));
    }
    Err(format!(
        "{text:?} is not a time: give RFC 3339 in UTC (2024-05-01T12:00:00Z), \
         milliseconds since the epoch (1714564800000) or a duration ago (2h)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_each_form() {
        let t = UNIX_EPOCH + Duration::from_millis(1_714_564_800_000);
        assert_eq!(parse_time("1714564800000"), Ok(t));
        assert_eq!(parse_time("2024-05-01T12:00:00Z"), Ok(t));
        assert_eq!(parse_time("2024-05-01 12:00:00"), Ok(t));
        let ago = parse_time("2h").expect("a duration ago");
        let age = SystemTime::now().duration_since(ago).expect("in the past");
        assert!(age >= Duration::from_secs(7200) && age < Duration::from_secs(7300));
        let e = parse_time("yesterday").expect_err("not a time");
        assert!(e.contains("RFC 3339"), "{e}");
    }

    #[test]
    fn coordinates_and_properties() {
        assert_eq!(parse_coordinates("3:1041"), Ok((3, 1041)));
        assert!(parse_coordinates("3").is_err());
        assert!(parse_coordinates("-1:2").is_err());
        assert_eq!(
            parse_property("security.protocol=SSL"),
            Ok(("security.protocol".into(), "SSL".into()))
        );
        assert!(parse_property("=x").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
