//! `dlq`: list, inspect and replay the dead letters that dispatcher
//! handlers write (`<topic>.DLT` by default), and run the embedded broker
//! as a local development broker.
//!
//! The binary is a thin shell around [`run`]; the commands are library
//! functions so that tests (and other tools) can call them:
//!
//! - [`list::list`]: a table, or one JSON object per line, of the dead
//!   letters of a topic, read from its beginning to its end as of the start;
//! - [`show::show`]: every header and the payload of one record;
//! - [`replay::replay`]: dead letters sent back to their original topic,
//!   exactly once across interruptions (a transactional producer that
//!   commits the consumer group's offsets in its transactions);
//! - [`dev_broker::dev_broker`]: librdkafka's mock cluster on 127.0.0.1,
//!   reachable on a chosen port, until Ctrl-C.
//!
//! What a dead letter's `dlt.*` headers say is read by the dispatcher
//! library itself, [`dispatcher::dead_letter::DeadLetterInfo::from_headers`],
//! with the header names of [`dispatcher::dead_letter::headers`].

pub mod cli;
pub mod dev_broker;
pub mod filter;
pub mod list;
mod render;
pub mod replay;
pub mod scan;
pub mod show;

use std::io::Write;
use std::sync::atomic::AtomicBool;

pub use cli::{Cli, Command};

/// The header a replayed record carries: `<dead-letter topic>/<partition>/<offset>`
/// of the dead letter it was made from.
pub use dispatcher::dead_letter::headers::REPLAYED_FROM;

/// Runs one command of the command line, writing its output to `out`.
/// `stop` interrupts a replay between two records (Ctrl-C sets it in the
/// binary); a replay stopped that way commits what it sent and returns
/// its summary with `interrupted` set. `dev-broker` needs a Tokio runtime:
/// call [`dev_broker::dev_broker`] for it.
pub fn run(cli: Cli, out: &mut dyn Write, stop: &AtomicBool) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::List(args) => list::list(&args, out).map(|_| Outcome::Done),
        Command::Show(args) => show::show(&args, out).map(|_| Outcome::Done),
        Command::Replay(args) => replay::replay(&args, out, stop).map(|s| {
            if s.interrupted {
                Outcome::Interrupted
            } else {
                Outcome::Done
            }
        }),
        Command::DevBroker(_) => Err(anyhow::anyhow!(
            "dev-broker runs on a Tokio runtime: call dev_broker::dev_broker"
        )),
    }
}

/// How a command ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did all it was asked.
    Done,
    /// A replay was interrupted (Ctrl-C): it committed what it sent and
    /// stopped; running it again resumes.
    Interrupted,
}

/// Parses a command line (the first item is the program name) and runs it
/// like the binary does, but writes to `out`: for tests and scripts.
pub fn run_args<I, T>(args: I, out: &mut dyn Write) -> anyhow::Result<Outcome>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::Parser;
    let cli = Cli::try_parse_from(args)?;
    run(cli, out, &AtomicBool::new(false))
}
