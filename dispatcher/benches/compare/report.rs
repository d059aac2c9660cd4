//! What the run found: the tables, the targets of issue 13, and the results files.

use crate::setup::Setup;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

/// A table for stdout and for the markdown results.
pub(super) struct Table {
    title: String,
    headers: Vec<&'static str>,
    pub(super) rows: Vec<Vec<String>>,
}

impl Table {
    pub(super) fn new(title: impl Into<String>, headers: &[&'static str]) -> Table {
        Table {
            title: title.into(),
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    fn text(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut s = String::new();
            for (i, (cell, w)) in cells.zip(&widths).enumerate() {
                let pad = w.saturating_sub(cell.chars().count());
                if i == 0 {
                    let _ = write!(s, "{cell}{}", " ".repeat(pad));
                } else {
                    let _ = write!(s, "  {}{cell}", " ".repeat(pad));
                }
            }
            s.trim_end().to_owned()
        };
        let mut out = format!("\n## {}\n", self.title);
        out += &line(&mut self.headers.iter().copied());
        out.push('\n');
        for row in &self.rows {
            out += &line(&mut row.iter().map(String::as_str));
            out.push('\n');
        }
        out
    }

    fn markdown(&self) -> String {
        let mut out = format!(
            "\n### {}\n\n| {} |\n|",
            self.title,
            self.headers.join(" | ")
        );
        out += &" --- |".repeat(self.headers.len());
        out.push('\n');
        for row in &self.rows {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        out
    }
}

/// A target of issue 13: pass or miss, never an assertion.
pub(super) struct Goal {
    pub(super) name: String,
    pub(super) measured: f64,
    pub(super) reference: f64,
    pub(super) unit: &'static str,
    pub(super) goal: String,
    pub(super) pass: Option<bool>,
}

impl Goal {
    /// measured / reference.
    fn ratio(&self) -> f64 {
        self.measured / self.reference
    }
}

/// Everything the run found, for the closing table and the results files.
pub(super) struct Report {
    pub(super) tables: Vec<Table>,
    pub(super) goals: Vec<Goal>,
    pub(super) json: serde_json::Map<String, Value>,
}

impl Report {
    /// An empty report whose JSON holds the broker, the machine and the
    /// settings.
    pub(super) fn new(broker_name: &str, machine: Value, setup: &Setup) -> Report {
        let mut report = Report {
            tables: Vec::new(),
            goals: Vec::new(),
            json: serde_json::Map::new(),
        };
        report.json.insert("broker".into(), json!(broker_name));
        report.json.insert("machine".into(), machine);
        report.json.insert("settings".into(), setup.json());
        report
    }

    pub(super) fn table(&mut self, t: Table) {
        print!("{}", t.text());
        self.tables.push(t);
    }

    /// Closes the run: prints the targets table, adds the targets and the
    /// wall time since `started` to the JSON, and writes results.json and
    /// results.md (the targets first, then each part) to [`out_dir`].
    /// Returns the overhead part's `ratio_noop_vs_raw`, if it ran.
    pub(super) fn finish(
        mut self,
        setup: &Setup,
        broker_name: &str,
        started: Instant,
    ) -> Option<f64> {
        let mut goals = Table::new(
            "Targets (issue 13)",
            &["target", "measured", "reference", "ratio", "goal", "result"],
        );
        for g in &self.goals {
            let v = |x: f64| match g.unit {
                "records/s" => format!("{} records/s", fmt_rate(x)),
                unit => format!("{x:.3} {unit}"),
            };
            goals.rows.push(vec![
                g.name.clone(),
                v(g.measured),
                v(g.reference),
                format!("{:.3}", g.ratio()),
                g.goal.clone(),
                match g.pass {
                    Some(true) => "pass",
                    Some(false) => "MISS",
                    None => "no verdict",
                }
                .into(),
            ]);
        }
        self.table(goals);
        let goals_json: Vec<Value> = self
            .goals
            .iter()
            .map(|g| json!({"target": g.name, "measured": g.measured, "reference": g.reference, "unit": g.unit, "ratio": g.ratio(), "goal": g.goal, "pass": g.pass}))
            .collect();
        self.json.insert("targets".into(), json!(goals_json));
        self.json.insert(
            "wall_seconds".into(),
            json!(started.elapsed().as_secs_f64()),
        );
        let dir = out_dir();
        let mut md = format!(
            "Broker: {broker_name}; {} CPUs ({}); scale {}, {} rounds.\n",
            self.json["machine"]["cpus"],
            self.json["machine"]["model"].as_str().unwrap_or(""),
            setup.scale,
            setup.rounds
        );
        // The targets first, then each part.
        if let Some(t) = self.tables.last() {
            md += &t.markdown();
        }
        for t in &self.tables[..self.tables.len().saturating_sub(1)] {
            md += &t.markdown();
        }
        let json_text =
            serde_json::to_string_pretty(&Value::Object(self.json.clone())).unwrap_or_default();
        for (name, text) in [("results.json", json_text), ("results.md", md)] {
            let path = dir.join(name);
            match std::fs::write(&path, text) {
                Ok(()) => println!("results: {}", path.display()),
                Err(e) => eprintln!("results {}: {e}", path.display()),
            }
        }
        self.json.get("ratio_noop_vs_raw").and_then(Value::as_f64)
    }
}

pub(super) fn fmt_rate(r: f64) -> String {
    if r.is_nan() {
        "-".into()
    } else if r >= 1e4 {
        format!("{:.0}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

pub(super) fn rounds_list(values: &[f64], f: impl Fn(f64) -> String) -> String {
    values.iter().map(|v| f(*v)).collect::<Vec<_>>().join(" ")
}

/// `BENCH_OUT`, default `target/bench`; relative paths from the workspace
/// root (cargo runs benches in dispatcher/).
pub(super) fn out_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().map_or(manifest.clone(), PathBuf::from);
    let dir = std::env::var("BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target/bench"));
    let dir = if dir.is_absolute() {
        dir
    } else {
        root.join(dir)
    };
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// This machine: CPUs and the model name.
pub(super) fn machine() -> Value {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    json!({"cpus": cpus, "model": model})
}
