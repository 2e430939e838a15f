//! End to end: simulate, analyze, evaluate against ground truth, and hold the quality targets
//! of the detection issue — on the demo scenario and on seeds and settings detection was not
//! tuned on (the evasive adversary included). Also: one file or many partitions, same result.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use dg_contract::Diagnostics;
use dg_detect::eval::{EvalReport, evaluate, read_exchanges, read_result, read_truth};
use dg_detect::{Config, analyze};
use dg_engine::{Engine, Inputs};
use dg_sim::{OutFormat, Scenario};

fn simulate(dir: &Path, scenario: &str, scale: f64, seed: Option<u64>, format: OutFormat) {
    let sc = Scenario::load(scenario).unwrap();
    let seed = seed.unwrap_or(sc.seed);
    dg_sim::simulate(sc, scale, seed, dir, format, 2, &AtomicU64::new(0)).unwrap();
}

fn inputs(data: &Path, exchanges: PathBuf, ext: &str) -> Inputs {
    Inputs {
        exchanges: vec![exchanges],
        accounts: vec![data.join(format!("accounts.{ext}"))],
        model_releases: vec![data.join(format!("model_releases.{ext}"))],
        labels: Vec::new(),
    }
}

fn run(inputs: &Inputs, out: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async {
        let diag = Arc::new(Diagnostics::new(out.join("quarantine.jsonl")));
        let engine = Engine::open(inputs, Default::default(), diag.clone()).unwrap();
        analyze(
            &engine,
            &Config::default(),
            out,
            &Default::default(),
            |_| {},
        )
        .await
        .unwrap();
        diag.flush().unwrap();
        assert_eq!(diag.report().bad_total(), 0);
    });
}

fn labels(path: &Path) -> HashMap<String, String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (labels, bad) = rt
        .block_on(dg_detect::eval::read_labels(
            &[path.to_path_buf()],
            Path::new("/dev/null"),
        ))
        .unwrap();
    assert_eq!(bad, 0);
    labels
}

fn scenario_report(scenario: &str, scale: f64, seed: Option<u64>) -> EvalReport {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("result");
    simulate(&data, scenario, scale, seed, OutFormat::Parquet);
    run(&inputs(&data, data.join("exchanges"), "parquet"), &out);
    let truth = read_truth(&data.join("truth.csv")).unwrap();
    let report = evaluate(
        &labels(&data.join("labels.parquet")),
        Some(&truth),
        &read_result(&out).unwrap(),
        &read_exchanges(&out).unwrap(),
    );
    // Every account with an exchange has exactly one verdict row.
    let csv = std::fs::read_to_string(out.join("accounts.csv")).unwrap();
    assert!(csv.starts_with("account_id,verdict,score,campaign_id,reasons\n"));
    assert_eq!(csv.lines().count() - 1, truth.len());
    report
}

/// The quality targets of the detection issue.
fn assert_targets(name: &str, r: &EvalReport) {
    let ctx = format!("{name}: {r:#?}");
    assert!(r.account_recall >= 0.99, "account recall {ctx}");
    assert!(r.exchange_recall >= 0.995, "exchange-weighted recall {ctx}");
    // ≤ 0.01% of benign accounts: with a few hundred benign accounts, that is none.
    assert!(
        r.benign_fpr * r.benign_accounts as f64 <= (r.benign_accounts as f64 * 1e-4).floor(),
        "benign FPR {ctx}"
    );
    for c in &r.per_class {
        if ["enterprise", "eval_harness", "reseller", "synthetic_data"].contains(&c.class.as_str())
        {
            assert_eq!(c.flagged, 0, "{} flagged: {ctx}", c.class);
        }
    }
    assert!(r.adjusted_rand_index >= 0.95, "ARI {ctx}");
    assert!(r.campaign_purity >= 0.95, "purity {ctx}");
    assert_eq!(r.predicted_campaigns, r.true_campaigns, "{ctx}");
}

#[test]
fn demo_scenario_meets_the_quality_targets() {
    assert_targets("small", &scenario_report("small", 1.0, None));
}

#[test]
fn unseen_seeds_and_settings_meet_the_quality_targets() {
    // Seeds and scales never used while choosing weights and thresholds.
    assert_targets(
        "small seed 31337 ×1.3",
        &scenario_report("small", 1.3, Some(31337)),
    );
    assert_targets(
        "evasive seed 2027",
        &scenario_report("evasive", 1.0, Some(2027)),
    );
}

#[test]
fn small_evasive_hydras_meet_the_quality_targets() {
    // A few hundred accounts, a hydra of 26 to 39: too few accounts for a card shared by
    // five to be rare by frequency alone, and the hydra's exits are geo-targeted, so each
    // claimed country's accounts form their own pool. Before cards billed in several countries
    // linked at full weight, these gave recall 0.88 and 0.65. (Seeds 77 and 202 at × 0.2 were
    // used to find the cause; these were not.)
    assert_targets(
        "evasive seed 303 ×0.2",
        &scenario_report("evasive", 0.2, Some(303)),
    );
    assert_targets(
        "evasive seed 404 ×0.3",
        &scenario_report("evasive", 0.3, Some(404)),
    );
}

/// A built-in scenario whose operator claims a single country for every account.
fn claiming_one_country(scenario: &str, country: &str, dir: &Path) -> String {
    let (_, toml) = dg_sim::scenario::BUILT_IN
        .iter()
        .find(|(name, _)| *name == scenario)
        .unwrap();
    let line = toml
        .lines()
        .find(|l| l.starts_with("claimed_countries"))
        .unwrap();
    let path = dir.join(format!("{scenario}-{country}.toml"));
    let one = toml.replace(line, &format!("claimed_countries = [\"{country}\"]"));
    std::fs::write(&path, one).unwrap();
    path.display().to_string()
}

#[test]
fn campaigns_claiming_a_single_country_meet_the_quality_targets() {
    // No spread of countries to give the operator away: it still presents many
    // organisations (private mail domains) and pays with a pool of shared cards, where an
    // office, a campus or a company presents one. Before that counted, `evasive` claiming one
    // country gave recall 0.0 and `small` 0.86 (other seeds and countries than these).
    let dir = tempfile::tempdir().unwrap();
    assert_targets(
        "evasive claiming US, seed 2468 ×0.6",
        &scenario_report(
            &claiming_one_country("evasive", "US", dir.path()),
            0.6,
            Some(2468),
        ),
    );
    // Claiming Japan hid the operator's hours (UTC+8 against +9) and, while Han counted as
    // Japanese, its Chinese prompts: the reasoning campaign's members looked ordinary (recall
    // 0.88). Japanese prompts carry kana; Han without kana is Chinese.
    assert_targets(
        "evasive claiming JP, seed 4711 ×0.6",
        &scenario_report(
            &claiming_one_country("evasive", "JP", dir.path()),
            0.6,
            Some(4711),
        ),
    );
    assert_targets(
        "small claiming DE, seed 9090 ×0.5",
        &scenario_report(
            &claiming_one_country("small", "DE", dir.path()),
            0.5,
            Some(9090),
        ),
    );
}

#[test]
fn one_file_or_many_partitions_give_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    simulate(&data, "small", 0.5, Some(4242), OutFormat::Jsonl);
    // Many partitions: the simulator's part files. One file: all of them concatenated.
    let parts = data.join("exchanges");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&parts)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert!(
        names.len() > 2,
        "need several partitions, got {}",
        names.len()
    );
    let single = dir.path().join("all.jsonl");
    let mut all = Vec::new();
    // Reverse order, so that row order differs too.
    for n in names.iter().rev() {
        all.extend(std::fs::read(n).unwrap());
    }
    std::fs::write(&single, all).unwrap();
    let (a, b) = (dir.path().join("many"), dir.path().join("one"));
    run(&inputs(&data, parts, "jsonl"), &a);
    run(&inputs(&data, single, "jsonl"), &b);
    for f in ["accounts.csv", "campaigns.json", "lookalikes.json"] {
        let (x, y) = (
            std::fs::read_to_string(a.join(f)).unwrap(),
            std::fs::read_to_string(b.join(f)).unwrap(),
        );
        assert!(x == y, "{f} differs between one file and many partitions");
    }
}
