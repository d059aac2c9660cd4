//! A log subscriber for programs that set none (the `logging` feature, on
//! by default).

/// Installs a `tracing` subscriber printing to stderr, filtered by
/// `RUST_LOG` (default `info`), unless the program installed one already.
/// [`run`](crate::run) calls it.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
