//! Ingest throughput and memory: a program, not a test. Run through
//! `scripts/bench-ingest.sh`, which generates the data once and measures each format in its
//! own process so that peak memory (VmHWM) is per run.
//!
//! ```text
//! ingest gen DIR ROWS        write DIR/exchanges.jsonl and DIR/exchanges.parquet
//! ingest read FILE [LIMIT]   read FILE (optionally only its first LIMIT rows' worth), print figures
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

use dg_contract::{Dedup, Diagnostics, ReadOptions, Table, discover, read_file};

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "the",
    "model",
    "explain",
    "step",
    "reason",
    "function",
    "data",
    "table",
    "query",
    "error",
    "please",
    "write",
    "code",
    "test",
    "answer",
    "question",
    "why",
    "how",
    "result",
    "value",
    "list",
    "file",
    "user",
    "return",
    "compute",
    "prove",
    "theorem",
    "summary",
    "report",
    "graph",
    "解释",
    "步骤",
    "代码",
    "问题",
    "答案",
    "数据",
    "模型",
    "推理",
    "quickly",
    "carefully",
];

fn text(rng: &mut Rng, words: u64) -> String {
    let mut s = String::new();
    for i in 0..words {
        if i > 0 {
            s.push(if rng.below(12) == 0 { '\n' } else { ' ' });
        }
        s.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
    s
}

fn generate(dir: &Path, rows: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let jsonl = dir.join("exchanges.jsonl");
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&jsonl).unwrap());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let t0: i64 = 1_769_904_000; // 2026-02-01T00:00:00Z
    for i in 0..rows {
        let ts = chrono::DateTime::from_timestamp(
            t0 + (i as i64 * 30) / 60,
            (rng.below(1000) * 1_000_000) as u32,
        )
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let ip = if rng.below(5) == 0 {
            format!("2001:db8:{:x}::{:x}", rng.below(4096), rng.below(65536))
        } else {
            format!(
                "{}.{}.{}.{}",
                1 + rng.below(223),
                rng.below(256),
                rng.below(256),
                rng.below(256)
            )
        };
        let turns = 1 + rng.below(3);
        let mut messages = Vec::new();
        for t in 0..turns {
            let role = if t % 2 == 0 { "user" } else { "assistant" };
            let words = 20 + rng.below(120);
            messages.push(serde_json::json!({"role": role, "content": text(&mut rng, words)}));
        }
        let mut rec = serde_json::json!({
            "ts": ts,
            "request_id": format!("req-{i:012}"),
            "account_id": format!("acct-{:06}", rng.below(50_000)),
            "api_key_id": format!("key-{:06}", rng.below(80_000)),
            "model": (["atlas-2", "atlas-3", "atlas-mini"][rng.below(3) as usize]),
            "client_ip": ip,
            "asn": 1000 + rng.below(60_000),
            "country": (["US", "DE", "FR", "JP", "BR", "IN"][rng.below(6) as usize]),
            "user_agent": format!("sdk-python/0.{}.{}", rng.below(60), rng.below(10)),
            "tls_ja4": format!("t13d1516h2_8daaf6152771_{:012x}", rng.below(1 << 40)),
            "messages": messages,
            "max_tokens": 256 << rng.below(6),
            "temperature": (rng.below(10) as f64) / 10.0,
            "stream": rng.below(2) == 0,
            "input_tokens": 10 + rng.below(4000),
            "output_tokens": 1 + rng.below(8000),
        });
        if rng.below(4) == 0 {
            rec["tools"] = serde_json::json!(["read_file", "run_tests", "search"]);
            rec["system"] = serde_json::json!(text(&mut rng, 30));
        }
        serde_json::to_writer(&mut out, &rec).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
    drop(out);
    // The same records as Parquet, converted by our own reader.
    let files = discover(&jsonl).unwrap();
    let diag = Diagnostics::new(dir.join("quarantine.jsonl"));
    let pq = File::create(dir.join("exchanges.parquet")).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(pq, Table::Exchanges.schema(), Some(props)).unwrap();
    read_file(
        Table::Exchanges,
        &files[0],
        &ReadOptions::default(),
        &diag,
        &Dedup::default(),
        &mut |b| {
            w.write(&b).unwrap();
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    w.close().unwrap();
    assert_eq!(diag.report().bad_total(), 0);
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn read(path: &Path, limit: Option<u64>) {
    let files = discover(path).unwrap();
    let diag = Diagnostics::new(std::env::temp_dir().join("dg-bench-quarantine.jsonl"));
    let dedup = Dedup::default();
    let start = Instant::now();
    let mut rows = 0u64;
    read_file(
        Table::Exchanges,
        &files[0],
        &ReadOptions::default(),
        &diag,
        &dedup,
        &mut |b| {
            rows += b.num_rows() as u64;
            std::hint::black_box(&b);
            if limit.is_some_and(|l| rows >= l) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .unwrap();
    let secs = start.elapsed().as_secs_f64();
    let bytes = diag.bytes_read();
    println!(
        "{:<8} rows {:>10}  {:>7.2} s  {:>10.0} rows/s  {:>7.1} MB/s  peak RSS {:>6} MiB",
        files[0].path.extension().unwrap().to_string_lossy(),
        rows,
        secs,
        rows as f64 / secs,
        bytes as f64 / 1e6 / secs,
        peak_rss_kib() / 1024
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["gen", dir, rows] => generate(Path::new(dir), rows.parse().expect("ROWS")),
        ["read", file] => read(Path::new(file), None),
        ["read", file, limit] => read(Path::new(file), Some(limit.parse().expect("LIMIT"))),
        // No arguments, or a test-name filter from `cargo test --all-targets NAME`: nothing
        // to measure.
        [] | [_] => eprintln!(
            "usage: ingest gen DIR ROWS | ingest read FILE [LIMIT] (see scripts/bench-ingest.sh)"
        ),
        other => {
            eprintln!(
                "unknown arguments {other:?}; usage: ingest gen DIR ROWS | ingest read FILE [LIMIT]"
            );
            std::process::exit(2);
        }
    }
}
