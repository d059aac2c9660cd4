//! `dlq`: list, inspect and replay dead letters; run a development broker.

use clap::Parser;
use dispatcher_dlq::{Cli, Command, Outcome};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        // As a shell reports a program ended by SIGINT.
        Ok(Outcome::Interrupted) => ExitCode::from(130),
        // `dlq list | head`: the reader has what it wanted.
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dlq: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    // Registered before anything starts, so no Ctrl-C is missed.
    let mut signals = runtime.block_on(async { Signals::new() })?;
    if let Command::DevBroker(args) = &cli.command {
        let mut out = std::io::stdout();
        runtime.block_on(dispatcher_dlq::dev_broker::dev_broker(
            args,
            &mut out,
            signals.recv(),
        ))?;
        return Ok(Outcome::Done);
    }
    // Ctrl-C (or SIGTERM) ends a replay between two records, committed; a
    // second one, or one during another command, ends the program at once.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let replay = matches!(cli.command, Command::Replay(_));
    runtime.spawn(async move {
        if replay {
            signals.recv().await;
            flag.store(true, Ordering::Relaxed);
            eprintln!("dlq: stopping after the record at hand (Ctrl-C again to quit at once)");
        }
        signals.recv().await;
        std::process::exit(130);
    });
    let mut out = std::io::stdout().lock();
    dispatcher_dlq::run(cli, &mut out, &stop)
}

/// SIGINT (Ctrl-C) and SIGTERM.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Starts listening; needs a Tokio runtime.
    fn new() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Completes on the next signal.
    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
