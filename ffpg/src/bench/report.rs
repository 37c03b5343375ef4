//! The benchmark's Markdown table.

use std::fmt::Write;
use std::time::Duration;

use super::Measurement;

fn ms(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.2}", d.as_secs_f64() * 1000.0))
        .unwrap_or_else(|| "–".into())
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}")).unwrap_or_else(|| "–".into())
}

/// Render measurements as a Markdown table: one row per measurement, with
/// p50/p99 per operation in milliseconds.
pub fn markdown(rows: &[Measurement]) -> String {
    let mut out = String::new();
    out.push_str("| workload | backend | parameters | jobs/s | latency p50 / p99 (ms) | write tx/job | stmts/job | WAL B/job | note |\n");
    out.push_str("|---|---|---|---:|---|---:|---:|---:|---|\n");
    for m in rows {
        let latencies = m
            .latencies
            .iter()
            .map(|(op, p50, p99)| format!("{op} {} / {}", ms(*p50), ms(*p99)))
            .collect::<Vec<_>>()
            .join("<br>");
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} |",
            m.workload,
            m.subject,
            m.parameter,
            m.rate(),
            if latencies.is_empty() { "–".into() } else { latencies },
            opt(m.tx_per_job, 2),
            opt(m.statements_per_job, 2),
            opt(m.wal_per_job, 0),
            m.note,
        );
    }
    out
}
