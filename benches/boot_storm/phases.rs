//! The `phases` subcommand: joins a storm's `--dump` with tftproxy's
//! `served ... ms=` log lines (matched on client address and file name) to
//! split each file's latency into the time before its transfer task started
//! (listener, queueing) and the time inside the transfer.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Result;

/// Removes ANSI colour sequences.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of `key=` in a tracing text line (quotes removed).
fn log_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        quoted.split('"').next()
    } else {
        rest.split_whitespace().next()
    }
}

/// `phases`: the table of latency before and inside the transfer task, by
/// file position.
pub(crate) fn phases_command(log: &Path, dump: &Path) -> Result<()> {
    // (client address, name) -> server-side milliseconds of the transfer.
    let mut served: HashMap<(String, String), f64> = HashMap::new();
    for line in std::fs::read_to_string(log)?.lines() {
        let line = strip_ansi(line);
        if !line.contains(" served ") {
            continue;
        }
        if let (Some(client), Some(name), Some(ms)) = (
            log_field(&line, "client"),
            log_field(&line, "name"),
            log_field(&line, "ms").and_then(|m| m.parse().ok()),
        ) {
            served.insert((client.to_owned(), name.to_owned()), ms);
        }
    }
    /// Client latency, time before the transfer task, time inside it (ms).
    type Samples = (Vec<f64>, Vec<f64>, Vec<f64>);
    let mut by_kind: BTreeMap<&str, Samples> = BTreeMap::new();
    let mut matched = 0;
    for line in std::fs::read_to_string(dump)?.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [addr, name, _start, latency, "ok"] = f[..] else {
            continue;
        };
        let Some(&server_ms) = served.get(&(addr.to_owned(), name.to_owned())) else {
            continue;
        };
        let latency: f64 = latency.parse()?;
        matched += 1;
        let kind = if name.starts_with("SEP") {
            "1st file (SEP<MAC>.cnf.xml)"
        } else {
            "files 2-4"
        };
        for k in ["all", kind] {
            let e = by_kind.entry(k).or_default();
            e.0.push(latency);
            e.1.push((latency - server_ms).max(0.0));
            e.2.push(server_ms);
        }
    }
    println!("{matched} files matched between the dump and the log");
    println!("| files | n | client latency p50 / p99 ms | before the transfer task p50 / p99 ms | inside the transfer p50 / p99 ms |");
    println!("|---|---:|---:|---:|---:|");
    let p = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
        v.get(rank - 1).copied().unwrap_or(f64::NAN)
    };
    for (kind, (mut lat, mut pre, mut inside)) in by_kind {
        println!(
            "| {kind} | {} | {:.0} / {:.0} | {:.0} / {:.0} | {:.0} / {:.0} |",
            lat.len(),
            p(&mut lat, 0.5),
            p(&mut lat, 0.99),
            p(&mut pre, 0.5),
            p(&mut pre, 0.99),
            p(&mut inside, 0.5),
            p(&mut inside, 0.99),
        );
    }
    Ok(())
}
