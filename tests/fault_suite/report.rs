//! One report row per scenario: printed, and appended to the report file.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// What one scenario found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Row {
    /// The scenario, e.g. `1. crash loop`.
    pub(crate) scenario: String,
    /// The broker it ran on (see [`crate::setup::broker_name`]).
    pub(crate) broker: String,
    /// Records produced.
    pub(crate) records: u64,
    /// Records never handled nor dead-lettered.
    pub(crate) lost: u64,
    /// Records handled more than once (redeliveries).
    pub(crate) duplicates: u64,
    /// Records in the dead-letter topic (distinct source records).
    pub(crate) dead_lettered: u64,
    /// How long recovery took, when the scenario has a fault that clears.
    pub(crate) recovery: Option<Duration>,
    /// What else a reader should know (faults injected, kills, rounds).
    pub(crate) notes: String,
}

/// The table's header, in Markdown.
pub(crate) const HEADER: &str = "| scenario | broker | records | lost | duplicates | dead-lettered | recovery | notes |\n|---|---|---:|---:|---:|---:|---:|---|\n";

fn report_path() -> PathBuf {
    std::env::var_os("FAULT_REPORT")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            dispatcher_tests::tansu::workspace_root().join("target/fault-suite/report.md")
        })
}

impl Row {
    /// The row as a Markdown table line.
    pub(crate) fn line(&self) -> String {
        let recovery = self
            .recovery
            .map_or_else(|| "-".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()));
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            self.scenario,
            self.broker,
            self.records,
            self.lost,
            self.duplicates,
            self.dead_lettered,
            recovery,
            self.notes.replace('|', "/")
        )
    }

    /// Prints the row and appends it to the report file (with the header
    /// when the file is new). A report that cannot be written is a test
    /// failure: the row is the scenario's output.
    pub(crate) fn emit(&self) {
        let line = self.line();
        println!("fault-suite: {line}");
        let path = report_path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let new = file.metadata().map(|m| m.len() == 0).unwrap_or(true);
        let text = if new {
            format!("{HEADER}{line}\n")
        } else {
            format!("{line}\n")
        };
        file.write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
    }
}
