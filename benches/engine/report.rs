//! The results: one row per measurement with a value per registry (the median over rounds, or
//! for memory the maximum, with the range beside it), the ratio regapp / docker-registry, the
//! issue's goal and whether it is met; then where the CPU went. Printed as Markdown tables,
//! ready for BENCHMARKS.md.

use std::fmt::Write as _;

use crate::server::Kind;

#[derive(Clone, Copy)]
pub enum Unit {
    MibPerS,
    ReqPerS,
    Seconds,
    Mib,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::MibPerS => "MiB/s",
            Unit::ReqPerS => "req/s",
            Unit::Seconds => "s",
            Unit::Mib => "MiB",
        }
    }

    fn format(self, value: f64) -> String {
        match self {
            Unit::MibPerS | Unit::Mib => format!("{value:.1}"),
            Unit::ReqPerS => format!("{value:.0}"),
            Unit::Seconds if value < 0.1 => format!("{value:.5}"),
            Unit::Seconds => format!("{value:.3}"),
        }
    }
}

/// The target for a measurement.
#[derive(Clone, Copy)]
pub enum Goal {
    None,
    /// regapp / docker-registry must be at least this.
    RatioAtLeast(f64),
    /// regapp / docker-registry must be at most this (times).
    RatioAtMost(f64),
    /// regapp's own value must be at most this many MiB.
    RegappAtMost(f64),
}

struct Row {
    label: String,
    unit: Unit,
    goal: Goal,
    /// One value per round, per registry (in `Kind::ALL` order).
    values: [Vec<f64>; 2],
}

impl Row {
    /// What the table shows for one registry: the median, or for memory the maximum.
    fn summary(&self, slot: usize) -> Option<f64> {
        let mut values = self.values[slot].clone();
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        Some(match self.unit {
            Unit::Mib => values[values.len() - 1],
            _ if values.len() % 2 == 1 => values[values.len() / 2],
            _ => (values[values.len() / 2 - 1] + values[values.len() / 2]) / 2.0,
        })
    }

    fn cell(&self, slot: usize) -> String {
        let Some(summary) = self.summary(slot) else {
            return "–".to_owned();
        };
        let values = &self.values[slot];
        let mut cell = self.unit.format(summary);
        if values.len() > 1 {
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let _ = write!(
                cell,
                " ({}–{})",
                self.unit.format(min),
                self.unit.format(max)
            );
        }
        cell
    }
}

/// Wall time and CPU of one phase on one registry, added up over the rounds.
struct UsageRow {
    label: String,
    registry: &'static str,
    rounds: usize,
    wall: f64,
    server_cpu: f64,
    client_cpu: f64,
    peak_mib: f64,
}

#[derive(Default)]
pub struct Report {
    rows: Vec<Row>,
    usage: Vec<UsageRow>,
    notes: Vec<String>,
}

fn slot(registry: &str) -> usize {
    Kind::ALL
        .iter()
        .position(|k| k.name() == registry)
        .expect("a known registry")
}

impl Report {
    pub fn record(&mut self, label: &str, unit: Unit, goal: Goal, registry: &str, value: f64) {
        let index = match self.rows.iter().position(|r| r.label == label) {
            Some(index) => index,
            None => {
                self.rows.push(Row {
                    label: label.to_owned(),
                    unit,
                    goal,
                    values: [Vec::new(), Vec::new()],
                });
                self.rows.len() - 1
            }
        };
        self.rows[index].values[slot(registry)].push(value);
    }

    pub fn usage(
        &mut self,
        label: &str,
        registry: &'static str,
        wall: f64,
        server: f64,
        client: f64,
        peak_mib: f64,
    ) {
        let existing = self
            .usage
            .iter_mut()
            .find(|u| u.label == label && u.registry == registry);
        match existing {
            Some(u) => {
                u.rounds += 1;
                u.wall += wall;
                u.server_cpu += server;
                u.client_cpu += client;
                u.peak_mib = u.peak_mib.max(peak_mib);
            }
            None => self.usage.push(UsageRow {
                label: label.to_owned(),
                registry,
                rounds: 1,
                wall,
                server_cpu: server,
                client_cpu: client,
                peak_mib,
            }),
        }
    }

    pub fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    /// The results table, Markdown.
    pub fn results(&self) -> String {
        let mut out = String::from(
            "| measurement | unit | regapp | docker-registry | regapp / docker-registry | target | met? |\n\
             |---|---|--:|--:|--:|---|---|\n",
        );
        for row in &self.rows {
            let ratio = match (row.summary(0), row.summary(1)) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            };
            let (target, met) = match row.goal {
                Goal::None => (String::new(), None),
                Goal::RatioAtLeast(x) => (format!("≥ {x}×"), ratio.map(|r| r >= x)),
                Goal::RatioAtMost(x) => (format!("≤ {x}×"), ratio.map(|r| r <= x)),
                Goal::RegappAtMost(x) => {
                    (format!("regapp ≤ {x} MiB"), row.summary(0).map(|v| v <= x))
                }
            };
            let met = match met {
                None if target.is_empty() => "",
                None => "not measured",
                Some(true) => "met",
                Some(false) => "**not met**",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {target} | {met} |",
                row.label,
                row.unit.name(),
                row.cell(0),
                row.cell(1),
                ratio.map_or("–".to_owned(), |r| format!("{r:.2}×")),
            );
        }
        out
    }

    /// Wall time and CPU per phase and registry over all rounds, Markdown.
    pub fn cpu(&self) -> String {
        let mut out = String::from(
            "| phase | registry | rounds | wall s | server CPU s | client CPU s | server cores busy | client cores busy | server VmHWM after, MiB |\n\
             |---|---|--:|--:|--:|--:|--:|--:|--:|\n",
        );
        for u in &self.usage {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.3} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} |",
                u.label,
                u.registry,
                u.rounds,
                u.wall,
                u.server_cpu,
                u.client_cpu,
                u.server_cpu / u.wall,
                u.client_cpu / u.wall,
                u.peak_mib,
            );
        }
        out
    }

    pub fn notes(&self) -> &[String] {
        &self.notes
    }
}
