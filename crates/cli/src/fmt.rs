//! Small formatting helpers for terminal output.

/// `println!` that ends the process quietly when the reader has gone away (`| head`), and
/// with a one-line error on any other write failure, instead of panicking.
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($t)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("error: writing to stdout: {e}");
            std::process::exit(1);
        }
    }};
}

use chrono::{DateTime, Utc};

/// `1234567` as `1,234,567`.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `n bad records skipped and written to FILE (reason n, …)`, when a run met bad records.
pub fn bad_records_note(report: &dg_contract::LoadReport) -> Option<String> {
    let bad = report.bad_total();
    if bad == 0 {
        return None;
    }
    let reasons = report
        .bad_by_reason()
        .iter()
        .map(|(r, n)| format!("{r} {}", count(*n)))
        .collect::<Vec<_>>()
        .join(", ");
    let file = report
        .quarantine
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Some(format!(
        "{} bad records skipped and written to {file} ({reasons})",
        count(bad)
    ))
}

/// Bytes in binary units.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// UTC microseconds as RFC 3339 with seconds.
pub fn time(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| format!("{micros}µs"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_and_bytes() {
        assert_eq!(super::count(0), "0");
        assert_eq!(super::count(1234567), "1,234,567");
        assert_eq!(super::bytes(512), "512 B");
        assert_eq!(super::bytes(1536), "1.5 KiB");
    }
}
