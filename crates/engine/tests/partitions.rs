//! The same logs give the same answers whether they come as one file or as many files read
//! by parallel partitions, in either format.

use std::path::Path;
use std::sync::Arc;

use arrow::util::pretty::pretty_format_batches;
use dg_contract::{Diagnostics, ReadOptions};
use dg_engine::{Engine, Inputs};

const QUERY: &str = "SELECT count(*) AS n, count(DISTINCT account_id) AS accounts, sum(input_tokens) AS tin, \
                     min(ts) AS first, max(ts) AS last, count(DISTINCT client_ip) AS ips FROM exchanges";

fn answer(exchanges: &Path, dir: &Path) -> (String, u64) {
    let diag = Arc::new(Diagnostics::new(dir.join("q.jsonl")));
    let inputs = Inputs {
        exchanges: vec![exchanges.to_path_buf()],
        ..Inputs::default()
    };
    let engine = Engine::open(&inputs, ReadOptions::default(), diag.clone()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let batches = rt.block_on(engine.query(QUERY)).unwrap();
    (
        pretty_format_batches(&batches).unwrap().to_string(),
        diag.report().tables.values().map(|t| t.duplicates).sum(),
    )
}

#[test]
fn one_file_or_many_partitions_give_the_same_answer() {
    let example = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo test"))
        .join("../../examples/tiny/exchanges.jsonl");
    let text = std::fs::read_to_string(&example).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (whole, dups) = answer(&example, dir.path());
    assert_eq!(dups, 0);
    assert!(whole.contains("| 50 "), "{whole}");

    // Split into 7 files, with every 10th line repeated in another file (retried shipping).
    let split = dir.path().join("split");
    std::fs::create_dir_all(&split).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for k in 0..7 {
        let mut part = String::new();
        for (i, l) in lines.iter().enumerate() {
            if i % 7 == k || (i % 10 == 0 && (i + 1) % 7 == k) {
                part.push_str(l);
                part.push('\n');
            }
        }
        std::fs::write(split.join(format!("part-{k}.jsonl")), part).unwrap();
    }
    let (parts, dups) = answer(&split, dir.path());
    assert_eq!(parts, whole);
    assert_eq!(dups, 5, "each repeated request counted once");
}
