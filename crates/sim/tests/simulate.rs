//! The simulator as a benchmark must be: deterministic, faithful to its scenario file,
//! valid under the data contract, and its labels must agree with its truth.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::AtomicU64;

use arrow::array::{Array, AsArray, RecordBatch};
use dg_contract::{Diagnostics, ReadOptions, Table, discover, read_table};
use dg_sim::{OutFormat, Scenario, SimReport, simulate};

fn run(
    name: &str,
    scale: f64,
    seed: Option<u64>,
    dir: &Path,
    format: OutFormat,
    threads: usize,
) -> SimReport {
    let scenario = Scenario::load(name).unwrap();
    let seed = seed.unwrap_or(scenario.seed);
    simulate(
        scenario,
        scale,
        seed,
        dir,
        format,
        threads,
        &AtomicU64::new(0),
    )
    .unwrap()
}

fn load(table: Table, path: &Path) -> (Vec<RecordBatch>, u64) {
    let files = discover(path).unwrap();
    let diag = Diagnostics::new(path.with_extension("quarantine.jsonl"));
    let batches = read_table(table, &files, &ReadOptions::default(), &diag).unwrap();
    (batches, diag.report().bad_total())
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in walk(dir) {
        let rel = entry
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        out.insert(rel, std::fs::read(&entry).unwrap());
    }
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn same_scenario_scale_and_seed_give_byte_identical_output_whatever_the_threads() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for format in [OutFormat::Parquet, OutFormat::Jsonl] {
        run("evasive", 0.3, Some(11), a.path(), format, 1);
        run("evasive", 0.3, Some(11), b.path(), format, 3);
        let (fa, fb) = (files(a.path()), files(b.path()));
        assert!(fa.len() >= 6, "{:?}", fa.keys());
        assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
        for (k, v) in &fa {
            assert!(v == &fb[k], "{k} differs between runs");
        }
    }
    let c = tempfile::tempdir().unwrap();
    run("evasive", 0.3, Some(12), c.path(), OutFormat::Jsonl, 2);
    assert_ne!(
        files(a.path()),
        files(c.path()),
        "another seed gives other traffic"
    );
}

#[test]
fn small_has_every_class_and_campaign_in_the_scenarios_proportions() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario::load("small").unwrap();
    let report = run("small", 1.0, None, dir.path(), OutFormat::Parquet, 2);
    let b = &scenario.benign;
    let expected = [
        ("chat", &b.chat),
        ("developer", &b.developer),
        ("enterprise", &b.enterprise),
        ("eval_harness", &b.eval_harness),
        ("agent_platform", &b.agent_platform),
        ("reseller", &b.reseller),
        ("student", &b.student),
        ("startup", &b.startup),
        ("synthetic_data", &b.synthetic_data),
    ];
    for (class, size) in expected {
        let (accounts, exchanges) = report.classes[class];
        assert_eq!(accounts, size.accounts, "{class} accounts");
        let err = (exchanges as f64 - size.exchanges as f64).abs() / size.exchanges as f64;
        assert!(
            err < 0.02,
            "{class}: {exchanges} exchanges, scenario says {}",
            size.exchanges
        );
    }
    for c in &scenario.campaigns {
        let (accounts, exchanges) = report.campaigns[&c.id];
        assert_eq!(accounts, c.size.accounts, "{}", c.id);
        let err = (exchanges as f64 - c.size.exchanges as f64).abs() / c.size.exchanges as f64;
        assert!(
            err < 0.05,
            "{}: {exchanges} exchanges, scenario says {}",
            c.id,
            c.size.exchanges
        );
    }
    // Attack traffic is about half of all traffic, as in the seed scenario.
    let attack: u64 = report.campaigns.values().map(|v| v.1).sum();
    let share = attack as f64 / report.exchanges as f64;
    assert!((0.4..0.6).contains(&share), "attack share {share}");
}

#[test]
fn output_follows_the_contract_with_no_bad_record_and_labels_agree_with_truth() {
    for (name, scale, seed, format) in [
        ("small", 0.4, 5, OutFormat::Parquet),
        ("evasive", 0.4, 6, OutFormat::Jsonl),
        ("seed", 0.002, 7, OutFormat::Parquet),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let report = run(name, scale, Some(seed), dir.path(), format, 2);
        let ext = if format == OutFormat::Parquet {
            "parquet"
        } else {
            "jsonl"
        };
        let (ex, bad) = load(Table::Exchanges, &dir.path().join("exchanges"));
        assert_eq!(bad, 0, "{name}: bad exchanges");
        let rows: usize = ex.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(
            rows as u64, report.exchanges,
            "{name}: no duplicate request ids"
        );
        let (accts, bad) = load(Table::Accounts, &dir.path().join(format!("accounts.{ext}")));
        assert_eq!(bad, 0);
        assert_eq!(
            accts.iter().map(RecordBatch::num_rows).sum::<usize>() as u64,
            report.accounts
        );
        let (labels, bad) = load(Table::Labels, &dir.path().join(format!("labels.{ext}")));
        assert_eq!(bad, 0);
        let mut label_of: HashMap<String, Option<String>> = HashMap::new();
        for b in &labels {
            let ids = b.column(0).as_string::<i32>();
            let camp = b.column(1).as_string::<i32>();
            for i in 0..b.num_rows() {
                label_of.insert(
                    ids.value(i).into(),
                    camp.is_valid(i).then(|| camp.value(i).into()),
                );
            }
        }
        let truth = std::fs::read_to_string(dir.path().join("truth.csv")).unwrap();
        let mut lines = truth.lines();
        assert_eq!(lines.next(), Some("account_id,class,campaign"));
        let benign = [
            "chat",
            "developer",
            "enterprise",
            "eval_harness",
            "agent_platform",
            "reseller",
            "student",
            "startup",
            "synthetic_data",
        ];
        let mut n = 0;
        for line in lines {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f.len(), 3, "{line}");
            let label = label_of
                .get(f[0])
                .unwrap_or_else(|| panic!("{name}: {} has no label", f[0]));
            assert_eq!(
                label.as_deref().unwrap_or(""),
                f[2],
                "{name}: label and truth disagree for {}",
                f[0]
            );
            assert_eq!(
                benign.contains(&f[1]),
                f[2].is_empty(),
                "{name}: class {} vs campaign {:?}",
                f[1],
                f[2]
            );
            n += 1;
        }
        assert_eq!(n, label_of.len());
        // Every account that sent an exchange is in labels and truth.
        for b in &ex {
            let ids = b.column_by_name("account_id").unwrap().as_string::<i32>();
            for i in 0..b.num_rows() {
                assert!(label_of.contains_key(ids.value(i)));
            }
        }
    }
}

#[test]
fn adversary_knobs_change_the_traffic() {
    let (naive, evasive) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run("small", 0.5, Some(3), naive.path(), OutFormat::Parquet, 2);
    run(
        "evasive",
        0.5,
        Some(3),
        evasive.path(),
        OutFormat::Parquet,
        2,
    );
    let stats = |dir: &Path| {
        let (labels, _) = load(Table::Labels, &dir.join("labels.parquet"));
        let mut attack = std::collections::HashSet::new();
        for b in &labels {
            let ids = b.column(0).as_string::<i32>();
            let camp = b.column(1).as_string::<i32>();
            for i in 0..b.num_rows() {
                if camp.is_valid(i) {
                    attack.insert(ids.value(i).to_string());
                }
            }
        }
        let (ex, _) = load(Table::Exchanges, &dir.join("exchanges"));
        let (mut n, mut sdk, mut max_day) = (0u64, 0u64, 0u64);
        let mut per_day: HashMap<(String, i64), u64> = HashMap::new();
        for b in &ex {
            let ids = b.column_by_name("account_id").unwrap().as_string::<i32>();
            let ua = b.column_by_name("user_agent").unwrap().as_string::<i32>();
            let ts = b
                .column_by_name("ts")
                .unwrap()
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
            for i in 0..b.num_rows() {
                if attack.contains(ids.value(i)) {
                    n += 1;
                    sdk += ua.value(i).starts_with("atlas-") as u64;
                    let d = per_day
                        .entry((ids.value(i).to_string(), ts.value(i) / 86_400_000_000))
                        .or_default();
                    *d += 1;
                    max_day = max_day.max(*d);
                }
            }
        }
        (sdk as f64 / n as f64, max_day)
    };
    let (naive_sdk, naive_max) = stats(naive.path());
    let (evasive_sdk, evasive_max) = stats(evasive.path());
    assert!(
        naive_sdk < 0.05,
        "naive campaigns use their own client: {naive_sdk}"
    );
    assert!(
        evasive_sdk > 0.8,
        "evasive campaigns mimic the SDK: {evasive_sdk}"
    );
    assert!(evasive_max <= 150, "daily cap respected: {evasive_max}");
    assert!(naive_max > evasive_max, "{naive_max} vs {evasive_max}");
}
