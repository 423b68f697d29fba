//! `summarize`'s tables for issue 11 and issue 10: every server against the
//! minimal reference responder measured in the same run (files/s, p99,
//! max latency, failures, CPU and instructions per file, each with its
//! ratio to the reference's), the `hold` lines (resident memory with N
//! transfers open) and the `flood` lines.

use crate::report::{by_phones_and_label, cpu_per_file, field_max, field_median, group_by, Row};

/// Median instructions per file (`instr_per_file`, from `run.sh INSTR=`).
fn instructions(rows: &[Row]) -> f64 {
    field_median(rows, "instr_per_file")
}

/// The largest value of `key`; NaN when no row has a number there.
fn parsed_max(rows: &[Row], key: &str) -> f64 {
    rows.iter()
        .filter_map(|r| r.get(key)?.parse::<f64>().ok())
        .reduce(f64::max)
        .unwrap_or(f64::NAN)
}

/// `value (ratio×)` against the reference's value, or `-`.
fn with_ratio(value: f64, reference: Option<f64>, digits: usize) -> String {
    if value.is_nan() {
        return "-".to_owned();
    }
    match reference.filter(|r| r.is_finite() && *r > 0.0) {
        Some(r) => format!("{value:.digits$} ({:.2}×)", value / r),
        None => format!("{value:.digits$}"),
    }
}

/// Per phone count, every server beside the reference responder.
pub(crate) fn reference_table(rows: &[Row], reference: &str) {
    let groups = by_phones_and_label(rows);
    if !groups
        .values()
        .any(|labels| labels.iter().any(|(l, _)| l == reference))
    {
        return;
    }
    println!();
    println!(
        "Against `{reference}` (the minimal responder), same run, medians; (×) = ratio to it:"
    );
    println!();
    println!("| phones | server | runs | files/s | p99 ms | max ms | failures (median / max) | server CPU µs/file | instructions/file |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for (phones, labels) in &groups {
        let base = labels.iter().find(|(l, _)| l == reference).map(|(_, r)| r);
        let of = |f: &dyn Fn(&[Row]) -> f64| base.map(|b| f(b));
        let cpu = |r: &[Row]| cpu_per_file(r, "server_cpu_s").parse().unwrap_or(f64::NAN);
        for (label, rows) in labels {
            println!(
                "| {phones} | {label} | {} | {} | {} | {} | {:.0} / {:.0} | {} | {} |",
                rows.len(),
                with_ratio(
                    field_median(rows, "files_per_s"),
                    of(&|r: &[Row]| field_median(r, "files_per_s")),
                    0
                ),
                with_ratio(
                    field_median(rows, "p99_ms"),
                    of(&|r: &[Row]| field_median(r, "p99_ms")),
                    1
                ),
                with_ratio(
                    field_median(rows, "max_ms"),
                    of(&|r: &[Row]| field_median(r, "max_ms")),
                    1
                ),
                field_median(rows, "failures"),
                field_max(rows, "failures"),
                with_ratio(cpu(rows), of(&cpu), 0),
                with_ratio(instructions(rows), of(&instructions), 0),
            );
        }
    }
}

/// The `hold` and `flood` lines, when there are any.
pub(crate) fn hold_and_flood_tables(hold: Vec<Row>, flood: Vec<Row>) {
    let label = |r: &Row| r.get("label").cloned().unwrap_or_default();
    if !hold.is_empty() {
        println!("| server | transfers held | runs | started (min) | RSS before MiB | RSS peak MiB | KiB per transfer | blocks/s |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        for (server, rows) in group_by(hold, label) {
            let min_started = rows
                .iter()
                .filter_map(|r| r.get("started")?.parse::<f64>().ok())
                .fold(f64::INFINITY, f64::min);
            println!(
                "| {server} | {} | {} | {min_started:.0} | {:.1} | {:.1} | {:.1} | {:.0} |",
                rows[0].get("transfers").cloned().unwrap_or_default(),
                rows.len(),
                field_median(&rows, "rss_before_kib") / 1024.0,
                field_median(&rows, "rss_peak_kib") / 1024.0,
                field_median(&rows, "rss_per_transfer_kib"),
                field_median(&rows, "blocks_per_s"),
            );
        }
        println!();
    }
    if !flood.is_empty() {
        println!("| flood | runs | flood req/s | phones | success % (min) | p99 ms | max ms | tftproxy RSS before → peak MiB | amplification (max) | HTTP statuses of the flood |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        for (kind, rows) in group_by(flood, label) {
            let min_success = rows
                .iter()
                .filter_map(|r| r.get("success_pct")?.parse::<f64>().ok())
                .fold(f64::INFINITY, f64::min);
            println!(
                "| {kind} | {} | {} | {} | {:.2} ({min_success:.2}) | {:.1} | {:.1} | {:.1} → {:.1} | {} ({}) | {} |",
                rows.len(),
                rows[0].get("flood_rate").cloned().unwrap_or_default(),
                rows[0].get("phones").cloned().unwrap_or_default(),
                field_median(&rows, "success_pct"),
                field_median(&rows, "p99_ms"),
                field_median(&rows, "max_ms"),
                field_median(&rows, "rss_before_kib") / 1024.0,
                field_median(&rows, "rss_peak_kib") / 1024.0,
                with_ratio(field_median(&rows, "amplification"), None, 2),
                with_ratio(parsed_max(&rows, "amplification"), None, 2),
                rows.iter()
                    .filter_map(|r| r.get("http_statuses").cloned())
                    .collect::<Vec<_>>()
                    .join("; "),
            );
        }
        println!();
    }
}
