//! The same logs give the same answers whether they come as one file or as many files read
//! by parallel partitions, in either format.

use std::path::Path;
use std::sync::Arc;

use arrow::util::pretty::pretty_format_batches;
use dg_contract::{Diagnostics, DirectIo, ReadOptions, Table, discover, read_table};
use dg_engine::{Engine, Inputs};

const QUERY: &str = "SELECT count(*) AS n, count(DISTINCT account_id) AS accounts, sum(input_tokens) AS tin, \
                     min(ts) AS first, max(ts) AS last, count(DISTINCT client_ip) AS ips FROM exchanges";

fn answer(exchanges: &Path, dir: &Path) -> (String, u64) {
    answer_with(exchanges, dir, ReadOptions::default())
}

fn answer_with(exchanges: &Path, dir: &Path, opts: ReadOptions) -> (String, u64) {
    let diag = Arc::new(Diagnostics::new(dir.join("q.jsonl")));
    let inputs = Inputs {
        exchanges: vec![exchanges.to_path_buf()],
        ..Inputs::default()
    };
    let engine = Engine::open(&inputs, opts, diag.clone()).unwrap();
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

    // The same parts as Parquet (row groups of 3 rows), read through the page cache or past
    // it with each next file's first row group read ahead.
    let pq = dir.path().join("parquet");
    std::fs::create_dir_all(&pq).unwrap();
    let diag = Diagnostics::new(dir.path().join("convert.jsonl"));
    for k in 0..7 {
        let part = discover(&split.join(format!("part-{k}.jsonl"))).unwrap();
        let batches = read_table(Table::Exchanges, &part, &ReadOptions::default(), &diag).unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(3))
            .set_compression(parquet::basic::Compression::LZ4_RAW)
            .build();
        let file = std::fs::File::create(pq.join(format!("part-{k}.parquet"))).unwrap();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(file, Table::Exchanges.schema(), Some(props))
                .unwrap();
        for b in &batches {
            w.write(b).unwrap();
        }
        w.close().unwrap();
    }
    for direct_io in [DirectIo::Off, DirectIo::On] {
        let opts = ReadOptions {
            direct_io,
            ..ReadOptions::default()
        };
        let (parts, dups) = answer_with(&pq, dir.path(), opts);
        assert_eq!(parts, whole, "{direct_io:?}");
        assert_eq!(dups, 5, "{direct_io:?}");
    }
}
