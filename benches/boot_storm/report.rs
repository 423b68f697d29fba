//! `RESULT` lines: writing them (one per storm, from a [`StormReport`]) and
//! reading them back (`summarize`: medians per server and phone count, as
//! markdown tables). `benches/run.sh` and `summarize` parse the
//! `key=value` fields, so their names and formats must not change.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::measure::{median, percentile};
use crate::storm::Failure;

/// What one storm measured; printed as a `RESULT` line.
pub(crate) struct StormReport {
    pub(crate) phones: usize,
    pub(crate) files_ok: usize,
    pub(crate) failures: BTreeMap<Failure, usize>,
    pub(crate) wall: Duration,
    pub(crate) latencies: Vec<Duration>,
    /// Sorted latencies of the phones' 1st, 2nd, ... file.
    pub(crate) by_position: Vec<Vec<Duration>>,
    /// Files that took at least a retransmit time-out (a request or a block
    /// was lost or ignored somewhere).
    pub(crate) slow: usize,
    /// Loss at the target's listening socket (`/proc/net/udp` drops).
    pub(crate) listener_drops: Option<u64>,
    /// Loss at the phones' own sockets.
    pub(crate) client_drops: u64,
    /// System-wide UDP receive-buffer errors during the storm.
    pub(crate) rcvbuf_errors: i64,
    /// CPU seconds the load generator used during the storm.
    pub(crate) client_cpu: f64,
    /// CPU seconds the server used (when its pid is known).
    pub(crate) server_cpu: Option<f64>,
    /// The whole machine during the storm: CPU seconds busy (every process,
    /// softirq included) and idle, from `/proc/stat`.
    pub(crate) machine_busy: f64,
    pub(crate) machine_idle: f64,
}

impl StormReport {
    fn files_per_s(&self) -> f64 {
        self.files_ok as f64 / self.wall.as_secs_f64()
    }

    fn failed(&self) -> usize {
        self.failures.values().sum()
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        percentile(&self.latencies, p).as_secs_f64() * 1000.0
    }

    /// The `RESULT` line of run `run`, with `extra` (` key=value` pairs)
    /// appended.
    pub(crate) fn result_line(&self, label: &str, run: usize, extra: &str) -> String {
        let failures: Vec<String> = self
            .failures
            .iter()
            .map(|(k, v)| format!("{k:?}:{v}"))
            .collect();
        format!(
            "RESULT label={label} phones={} run={run} files={} files_per_s={:.0} failures={} \
             p50_ms={:.1} p99_ms={:.1} max_ms={:.1} slow_1s={} wall_s={:.3} listener_drops={} \
             client_drops={} rcvbuf_errors={} client_cpu_s={:.2} server_cpu_s={} \
             machine_busy_s={:.2} machine_idle_s={:.2} p99_by_file_ms={}{}{}",
            self.phones,
            self.files_ok,
            self.files_per_s(),
            self.failed(),
            self.percentile_ms(0.50),
            self.percentile_ms(0.99),
            self.percentile_ms(1.0),
            self.slow,
            self.wall.as_secs_f64(),
            self.listener_drops
                .map_or_else(|| "-".to_owned(), |d| d.to_string()),
            self.client_drops,
            self.rcvbuf_errors,
            self.client_cpu,
            self.server_cpu
                .map_or_else(|| "-".to_owned(), |c| format!("{c:.4}")),
            self.machine_busy,
            self.machine_idle,
            self.by_position
                .iter()
                .map(|v| format!("{:.0}", percentile(v, 0.99).as_secs_f64() * 1000.0))
                .collect::<Vec<_>>()
                .join("/"),
            if failures.is_empty() {
                String::new()
            } else {
                format!(" kinds={}", failures.join(","))
            },
            extra,
        )
    }
}

// ---- summarize -----------------------------------------------------------------

fn parse_result(line: &str) -> Option<HashMap<String, String>> {
    let rest = line.trim().strip_prefix("RESULT ")?;
    Some(
        rest.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

pub(crate) type Row = HashMap<String, String>;

pub(crate) fn field_median(rows: &[Row], key: &str) -> f64 {
    let mut v: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.get(key).and_then(|x| x.parse().ok()))
        .collect();
    median(&mut v)
}

pub(crate) fn field_max(rows: &[Row], key: &str) -> f64 {
    rows.iter()
        .filter_map(|r| r.get(key).and_then(|x| x.parse::<f64>().ok()))
        .fold(0.0, f64::max)
}

/// Median CPU microseconds per file served, of `key` (a CPU seconds field).
pub(crate) fn cpu_per_file(rows: &[Row], key: &str) -> String {
    let mut v: Vec<f64> = rows
        .iter()
        .filter_map(|r| {
            let cpu: f64 = r.get(key)?.parse().ok()?;
            let files: f64 = r.get("files")?.parse().ok()?;
            (files > 0.0).then(|| cpu / files * 1e6)
        })
        .collect();
    let m = median(&mut v);
    if m.is_nan() {
        "-".to_owned()
    } else {
        format!("{m:.0}")
    }
}

/// Rows grouped by a key, groups in order of first appearance.
pub(crate) fn group_by(rows: Vec<Row>, key: impl Fn(&Row) -> String) -> Vec<(String, Vec<Row>)> {
    let mut groups: Vec<(String, Vec<Row>)> = Vec::new();
    for row in rows {
        let k = key(&row);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, v)) => v.push(row),
            None => groups.push((k, vec![row])),
        }
    }
    groups
}

pub(crate) fn summarize(files: &[PathBuf], ours: &str, reference: &str) -> Result<()> {
    let mut text = String::new();
    for file in files {
        if file.as_os_str() == "-" {
            use std::io::Read;
            std::io::stdin().read_to_string(&mut text)?;
        } else {
            text.push_str(&std::fs::read_to_string(file)?);
        }
        text.push('\n');
    }
    let rows: Vec<Row> = text.lines().filter_map(parse_result).collect();
    let label = |r: &Row| r.get("label").cloned().unwrap_or_default();
    let (hold, rows): (Vec<Row>, Vec<Row>) = rows
        .into_iter()
        .partition(|r| r.get("kind").map(String::as_str) == Some("hold"));
    let (flood, rows): (Vec<Row>, Vec<Row>) = rows
        .into_iter()
        .partition(|r| label(r).starts_with("flood-"));
    crate::ratios::hold_and_flood_tables(hold, flood);
    let (storms, rest): (Vec<Row>, Vec<Row>) = rows
        .into_iter()
        .partition(|r| !label(r).starts_with("proxy-") && label(r) != "first-byte");
    let (proxy, first): (Vec<Row>, Vec<Row>) = rest
        .into_iter()
        .partition(|r| label(r).starts_with("proxy-"));
    if !storms.is_empty() {
        storm_tables(&storms, ours, reference);
        crate::ratios::reference_table(&storms, reference);
    }
    if !proxy.is_empty() {
        println!();
        println!("| storm | runs | files/s | failures (max) | p50 ms | p99 ms | p99 ms by file (cnf/ITL/SK/default) | upstream requests (new) | upstream total per distinct name | max per (cluster, name) | TCP connections per cluster |");
        println!("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|");
        for (label, rows) in group_by(proxy, label) {
            println!(
                "| {label} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {} | {:.0} (max {:.0}) | {:.2} | {:.0} | {} |",
                rows.len(),
                field_median(&rows, "files_per_s"),
                field_max(&rows, "failures"),
                field_median(&rows, "p50_ms"),
                field_median(&rows, "p99_ms"),
                rows.iter().filter_map(|r| r.get("p99_by_file_ms").cloned()).collect::<Vec<_>>().join(", "),
                field_median(&rows, "upstream_new"),
                field_max(&rows, "upstream_new"),
                field_median(&rows, "per_distinct_name"),
                field_max(&rows, "max_per_cluster_name"),
                rows.iter().filter_map(|r| r.get("upstream_connections").cloned()).collect::<Vec<_>>().join(", "),
            );
        }
    }
    if !first.is_empty() {
        println!();
        println!("| strategy | clusters | delay per cluster | invocations | median time to first byte | all medians ms |");
        println!("|---|---:|---:|---:|---:|---|");
        for (strategy, rows) in group_by(first, |r| r.get("strategy").cloned().unwrap_or_default())
        {
            println!(
                "| {} | {} | {} ms | {} | {:.1} ms | {} |",
                strategy.to_lowercase(),
                rows[0].get("clusters").cloned().unwrap_or_default(),
                rows[0].get("delay_ms").cloned().unwrap_or_default(),
                rows.len(),
                field_median(&rows, "median_ms"),
                rows.iter()
                    .filter_map(|r| r.get("median_ms").cloned())
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
    }
    Ok(())
}

/// Rows by phone count, then by label (in order of first appearance).
pub(crate) fn by_phones_and_label(rows: &[Row]) -> BTreeMap<usize, Vec<(String, Vec<Row>)>> {
    let mut groups = BTreeMap::new();
    for (phones, rows) in group_by(rows.to_vec(), |r| {
        r.get("phones").cloned().unwrap_or_default()
    }) {
        let phones: usize = phones.parse().unwrap_or(0);
        groups.insert(
            phones,
            group_by(rows, |r| r.get("label").cloned().unwrap_or_default()),
        );
    }
    groups
}

/// The medians table, and `ours` against the best other server (the
/// reference responder is no peer: it has its own table).
fn storm_tables(rows: &[Row], ours: &str, reference: &str) {
    let groups = by_phones_and_label(rows);
    println!("| phones | server | runs | files/s | failures (median / max) | p50 ms | p99 ms | files ≥ 1 s | listener drops | server CPU µs/file | client CPU µs/file |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (phones, labels) in &groups {
        for (label, rows) in labels {
            let drops = field_median(rows, "listener_drops");
            println!(
                "| {phones} | {label} | {} | {:.0} | {:.0} / {:.0} | {:.1} | {:.1} | {:.0} | {} | {} | {} |",
                rows.len(),
                field_median(rows, "files_per_s"),
                field_median(rows, "failures"),
                field_max(rows, "failures"),
                field_median(rows, "p50_ms"),
                field_median(rows, "p99_ms"),
                field_median(rows, "slow_1s"),
                if drops.is_nan() {
                    "-".to_owned()
                } else {
                    format!("{drops:.0}")
                },
                cpu_per_file(rows, "server_cpu_s"),
                cpu_per_file(rows, "client_cpu_s"),
            );
        }
    }
    println!();
    println!("| phones | {ours} files/s | best other | its files/s | ratio | {ours} p99 ms | its p99 ms | {ours} failures | its failures |");
    println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|");
    let mut ours_at = BTreeMap::new();
    for (phones, labels) in &groups {
        let Some((_, mine)) = labels.iter().find(|(l, _)| l == ours) else {
            continue;
        };
        let mine_fps = field_median(mine, "files_per_s");
        ours_at.insert(*phones, mine_fps);
        let best = labels
            .iter()
            .filter(|(l, _)| l != ours && l != reference)
            .map(|(l, rows)| (l, rows, field_median(rows, "files_per_s")))
            .max_by(|a, b| a.2.partial_cmp(&b.2).unwrap());
        if let Some((label, rows, fps)) = best {
            println!(
                "| {phones} | {mine_fps:.0} | {label} | {fps:.0} | {:.2}× | {:.1} | {:.1} | {:.0} | {:.0} |",
                mine_fps / fps,
                field_median(mine, "p99_ms"),
                field_median(rows, "p99_ms"),
                field_median(mine, "failures"),
                field_median(rows, "failures"),
            );
        }
    }
    if let (Some((&lo, &at_lo)), Some((&hi, &at_hi))) =
        (ours_at.iter().next(), ours_at.iter().next_back())
    {
        if lo != hi {
            println!();
            println!(
                "{ours}: files/s at {hi} phones = {:.0} % of its figure at {lo} phones.",
                100.0 * at_hi / at_lo
            );
        }
    }
}
