//! The results: one row per measurement with a value per registry (the median over rounds, or
//! for memory the maximum, with the range beside it), the ratio regapp / docker-registry, the
//! issue's goal and whether it is met; then where the CPU went. Printed as Markdown tables,
//! ready for BENCHMARKS.md. With `--cluster` every rate and time is also held to 3 nodes
//! within 0.8× of 1 node (issue 32), beside the S3 issue's target against docker-registry.

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
    /// The first column / the second at least `.0`, and the first / docker-registry (the third
    /// column without it) at least `.1` (edge: regapp-edge / nginx, and regapp-edge /
    /// docker-registry without auth, wherever `--registries` put it).
    RatioAtLeastBoth(f64, f64),
    /// `--cluster`: the first column (3 nodes) / the second (1 node) at least
    /// [`CLUSTER_AT_LEAST`] (for times: at most its inverse), and the first / the third
    /// (docker-registry behind HAProxy) as the S3 goal says, if it says anything.
    Cluster(Option<f64>),
}

/// Issue 32: 3 nodes keep at least this share of 1 node's speed on every phase.
const CLUSTER_AT_LEAST: f64 = 0.8;

impl Goal {
    /// The `--cluster` form of an S3 goal (memory goals stay as they are).
    fn in_cluster(self) -> Goal {
        match self {
            Goal::None => Goal::Cluster(None),
            Goal::RatioAtLeast(x) | Goal::RatioAtMost(x) => Goal::Cluster(Some(x)),
            other => other,
        }
    }
}

struct Row {
    label: String,
    unit: Unit,
    goal: Goal,
    /// One value per round, per registry (in `Kind::ALL` order).
    values: Vec<Vec<f64>>,
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

pub struct Report {
    /// The registries compared, in `Kind::ALL` order: the first is the one under test.
    columns: Vec<Kind>,
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
    pub fn new(registries: &[Kind]) -> Report {
        Report {
            columns: Kind::ALL
                .into_iter()
                .filter(|k| registries.contains(k))
                .collect(),
            rows: Vec::new(),
            usage: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Whether this is the edge comparison (regapp-edge first), whose targets differ.
    pub fn edge(&self) -> bool {
        self.columns.first() == Some(&Kind::RegappEdge)
    }

    /// Whether this is the S3 comparison (regapp-s3 first), whose targets differ too.
    pub fn s3(&self) -> bool {
        self.columns.first() == Some(&Kind::RegappS3)
    }

    /// Whether this is the cluster comparison (a registry behind HAProxy first).
    pub fn cluster(&self) -> bool {
        self.columns
            .first()
            .is_some_and(|k| k.cluster_nodes().is_some())
    }

    /// The target for the plain engines, the edge comparison or the S3 one (which the
    /// cluster's targets build on).
    pub fn goal(&self, plain: Goal, edge: Goal, s3: Goal) -> Goal {
        if self.edge() {
            edge
        } else if self.s3() || self.cluster() {
            s3
        } else {
            plain
        }
    }

    pub fn record(&mut self, label: &str, unit: Unit, goal: Goal, registry: &str, value: f64) {
        let goal = if self.cluster() {
            goal.in_cluster()
        } else {
            goal
        };
        let index = match self.rows.iter().position(|r| r.label == label) {
            Some(index) => index,
            None => {
                self.rows.push(Row {
                    label: label.to_owned(),
                    unit,
                    goal,
                    values: vec![Vec::new(); Kind::ALL.len()],
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
        let names: Vec<&str> = self.columns.iter().map(|k| k.name()).collect();
        let slots: Vec<usize> = self.columns.iter().map(|k| slot(k.name())).collect();
        let first = names.first().copied().unwrap_or("");
        // Ratios of the first column to each other one.
        let mut out = format!("| measurement | unit | {} |", names.join(" | "));
        for other in names.iter().skip(1) {
            let _ = write!(out, " {first} / {other} |");
        }
        out.push_str(" target | met? |\n|---|---|");
        for _ in 0..(names.len() * 2).saturating_sub(1) {
            out.push_str("--:|");
        }
        out.push_str("---|---|\n");
        for row in &self.rows {
            let ratios: Vec<Option<f64>> = slots
                .iter()
                .skip(1)
                .map(|&other| match (row.summary(slots[0]), row.summary(other)) {
                    (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                    _ => None,
                })
                .collect();
            let ratio = |i: usize| ratios.get(i).copied().flatten();
            let second = names.get(1).copied().unwrap_or("");
            let verdict = |met: Option<bool>| match met {
                None => "not measured",
                Some(true) => "met",
                Some(false) => "**not met**",
            };
            let (target, met) = match row.goal {
                Goal::None => (String::new(), String::new()),
                Goal::RatioAtLeast(x) => (
                    format!("≥ {x}× {second}"),
                    verdict(ratio(0).map(|r| r >= x)).to_owned(),
                ),
                Goal::RatioAtMost(x) => (
                    format!("≤ {x}× {second}"),
                    verdict(ratio(0).map(|r| r <= x)).to_owned(),
                ),
                Goal::RegappAtMost(x) => (
                    format!("{first} ≤ {x} MiB"),
                    verdict(row.summary(slots[0]).map(|v| v <= x)).to_owned(),
                ),
                Goal::RatioAtLeastBoth(x, y) => {
                    let third = names
                        .iter()
                        .skip(2)
                        .position(|&n| n == "docker-registry")
                        .map_or(1, |i| i + 1);
                    (
                        format!(
                            "≥ {x}× {second}, ≥ {y}× {}",
                            names.get(third + 1).copied().unwrap_or("")
                        ),
                        verdict(ratio(0).zip(ratio(third)).map(|(a, b)| a >= x && b >= y))
                            .to_owned(),
                    )
                }
                Goal::Cluster(peer) => {
                    // Times (the catalog) are better lower: at most the inverse share.
                    let times = matches!(row.unit, Unit::Seconds);
                    let (sign, nodes) = if times {
                        ("≤", 1.0 / CLUSTER_AT_LEAST)
                    } else {
                        ("≥", CLUSTER_AT_LEAST)
                    };
                    let holds = |r: f64, x: f64| if times { r <= x } else { r >= x };
                    let mut target = format!("{sign} {nodes}× {second}");
                    let mut met = verdict(ratio(0).map(|r| holds(r, nodes))).to_owned();
                    if let Some(x) = peer {
                        let third = names.get(2).copied().unwrap_or("");
                        let _ = write!(target, "; {sign} {x}× {third}");
                        let _ = write!(met, "; {}", verdict(ratio(1).map(|r| holds(r, x))));
                    }
                    (target, met)
                }
            };
            let _ = write!(out, "| {} | {} |", row.label, row.unit.name());
            for &s in &slots {
                let _ = write!(out, " {} |", row.cell(s));
            }
            for i in 0..ratios.len() {
                let _ = write!(
                    out,
                    " {} |",
                    ratio(i).map_or("–".to_owned(), |r| format!("{r:.2}×"))
                );
            }
            let _ = writeln!(out, " {target} | {met} |");
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
