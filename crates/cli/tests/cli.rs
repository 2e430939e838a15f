//! End-to-end tests of the `distillguard` binary: what a user types, what they see.
//!
//! - `check_*`: the summary (snapshot on the committed example) and bad-input behaviour.
//! - `sql_*`: queries over the registered tables and the output formats.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use expect_test::expect;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_distillguard"))
}

fn example(name: &str) -> PathBuf {
    // Read at run time: a build cache shared between checkouts keeps the compile-time path.
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo test"))
        .join("../../examples/tiny")
        .join(name)
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("binary runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    );
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    (status.success(), stdout, stderr)
}

#[test]
fn check_summarises_the_example() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = run(bin()
        .current_dir(dir.path())
        .arg("check")
        .arg("--exchanges")
        .arg(example("exchanges.jsonl"))
        .arg("--accounts")
        .arg(example("accounts.jsonl"))
        .arg("--releases")
        .arg(example("model_releases.jsonl")));
    assert!(ok, "{err}");
    expect![[r#"
        exchanges       50 rows from 1 file (28.5 KiB)
          accounts      7
          time range    2026-02-03T00:07:11Z .. 2026-02-05T04:30:06Z
          tokens        38,890 in, 131,902 out
          models        atlas-2 (38), atlas-3 (12)
          top ASNs      20473 (24), 16509 (10), 3320 (8), 7922 (8)
          top countries SG (24), US (18), DE (8)
        accounts        7 rows from 1 file (1.5 KiB)
          created       2023-03-15T00:00:00Z .. 2026-02-03T23:13:00Z
          verification  card (5), enterprise (1), phone (1)
          with payment  7
        model_releases  2 rows from 1 file (120 B)
          atlas-2       released 2025-10-01T17:00:00Z
          atlas-3       released 2026-02-05T00:00:00Z
        bad records     none
    "#]]
    .assert_eq(&out);
    assert!(
        !dir.path().join("quarantine.jsonl").exists(),
        "no bad records, no quarantine file"
    );
}

#[test]
fn check_reports_bad_records_by_reason_and_quarantines_them() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(example("exchanges.jsonl")).unwrap();
    let first = good.lines().next().unwrap();
    let data = format!(
        "{good}{first}\n{{\"broken\": \n{}\n",
        first.replace("Z\"", "\"").replace("req-", "req-x")
    );
    std::fs::write(dir.path().join("ex.jsonl"), data).unwrap();
    let (ok, out, err) =
        run(bin()
            .current_dir(dir.path())
            .args(["check", "--exchanges", "ex.jsonl"]));
    assert!(ok, "{err}");
    assert!(out.contains("exchanges       50 rows from 1 file"), "{out}");
    assert!(out.contains("; 2 bad, 1 duplicate"), "{out}");
    assert!(
        out.contains("bad records     2, written to quarantine.jsonl"),
        "{out}"
    );
    assert!(
        out.contains("  invalid_json  1\n  bad_timestamp 1\n"),
        "{out}"
    );
    assert!(
        out.contains("duplicates      1 (each key counted once)"),
        "{out}"
    );
    let q = std::fs::read_to_string(dir.path().join("quarantine.jsonl")).unwrap();
    assert_eq!(q.lines().count(), 2);

    let (ok, out, _) = run(bin().current_dir(dir.path()).args([
        "check",
        "--format",
        "json",
        "--exchanges",
        "ex.jsonl",
        "--quarantine",
        "q/bad.jsonl",
    ]));
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["summary"]["exchanges"]["rows"], 50);
    assert_eq!(v["load"]["tables"]["exchanges"]["bad"]["invalid_json"], 1);
    assert!(dir.path().join("q/bad.jsonl").exists());
}

#[test]
fn check_strict_fails_on_the_first_bad_record() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ex.jsonl"), "{\"ts\": 5}\n").unwrap();
    let (ok, _, err) =
        run(bin()
            .current_dir(dir.path())
            .args(["check", "--strict", "--exchanges", "ex.jsonl"]));
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "error: ex.jsonl:line 1: field `ts`: wrong_type: invalid type: integer `5`, expected a string"
    );
}

#[test]
fn check_gives_one_line_errors_for_unreadable_input() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.csv"), "a,b\n1,2\n").unwrap();
    std::fs::write(dir.path().join("x.parquet"), "a,b\n1,2\n").unwrap();
    for (args, want) in [
        (
            vec!["--exchanges", "nope.jsonl"],
            "nope.jsonl: no such file or directory",
        ),
        (
            vec!["--exchanges", "data.csv"],
            "data.csv: unsupported file type: CSV is not part of the data contract",
        ),
        (
            vec!["--exchanges", "x.parquet"],
            "x.parquet: not a Parquet file",
        ),
    ] {
        let (ok, out, err) = run(bin().current_dir(dir.path()).arg("check").args(&args));
        assert!(!ok, "{args:?}");
        assert!(out.is_empty());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains(want), "{err}");
    }
    let (ok, _, err) = run(bin().current_dir(dir.path()).arg("check"));
    assert!(!ok);
    assert!(err.contains("--exchanges"), "{err}");
}

#[test]
fn a_damaged_page_that_trips_the_parquet_decoder_is_one_clean_error() {
    use dg_contract::{Diagnostics, ReadOptions, Table};
    // The example as Zstandard Parquet (no page checksum), then single-bit flips until one
    // decompresses cleanly into values that make the `parquet` crate's decoder panic.
    let dir = tempfile::tempdir().unwrap();
    let read = |path: &Path| {
        let diag = Diagnostics::new(dir.path().join("q.jsonl"));
        let files = dg_contract::discover(path).unwrap();
        dg_contract::read_table(Table::Exchanges, &files, &ReadOptions::default(), &diag)
    };
    let batches = read(&example("exchanges.jsonl")).unwrap();
    let clean = dir.path().join("clean.parquet");
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&clean).unwrap(),
        batches[0].schema(),
        Some(props),
    )
    .unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
    let bytes = std::fs::read(&clean).unwrap();
    let meta_len = u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap());
    let pages_end = bytes.len() - 8 - meta_len as usize;
    let bad = dir.path().join("bad.parquet");
    let mut x = 0x2545_F491_4F6C_DD1D_u64;
    let found = (0..3000).any(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut damaged = bytes.clone();
        damaged[4 + (x as usize) % (pages_end - 4)] ^= 1 << ((x >> 32) % 8);
        std::fs::write(&bad, &damaged).unwrap();
        read(&bad).is_err_and(|e| e.to_string().contains("the decoder failed"))
    });
    assert!(found, "no single-bit flip tripped the decoder");
    assert!(!dg_contract::in_guarded_decode());
    // The binary reports it as one error naming the file, and prints no panic (`run` checks).
    let (ok, _, err) = run(bin().arg("check").arg("--exchanges").arg(&bad));
    assert!(!ok);
    assert!(
        err.contains("bad.parquet") && err.contains("the decoder failed ("),
        "{err}"
    );
}

#[test]
fn sql_queries_the_registered_tables() {
    let (ok, out, err) = run(bin()
        .args([
            "sql",
            "SELECT e.account_id, count(*) AS n, max(a.verification) AS v \
             FROM exchanges e LEFT JOIN accounts a USING (account_id) \
             GROUP BY e.account_id ORDER BY n DESC, e.account_id LIMIT 3",
            "--format",
            "csv",
        ])
        .arg("--exchanges")
        .arg(example("exchanges.jsonl"))
        .arg("--accounts")
        .arg(example("accounts.jsonl")));
    assert!(ok, "{err}");
    expect![[r#"
        account_id,n,v
        acct-ent-03,10,enterprise
        acct-chat-01,8,phone
        acct-dev-02,8,card
    "#]]
    .assert_eq(&out);

    let (ok, out, _) = run(bin()
        .args([
            "sql",
            "SELECT model, count(*) AS n FROM exchanges GROUP BY model ORDER BY model",
            "--format",
            "json",
        ])
        .arg("--exchanges")
        .arg(example("exchanges.jsonl")));
    assert!(ok);
    assert_eq!(
        out,
        "{\"model\":\"atlas-2\",\"n\":38}\n{\"model\":\"atlas-3\",\"n\":12}\n"
    );

    let (ok, out, _) = run(bin().args(["sql", "SELECT count(*) AS n FROM model_releases"]));
    assert!(ok, "tables not given are empty");
    assert!(out.contains("| 0 |"), "{out}");

    let (ok, _, err) = run(bin().args(["sql", "SELECT nope FROM exchanges"]));
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn sql_self_join_quarantines_each_bad_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(example("exchanges.jsonl")).unwrap();
    std::fs::write(dir.path().join("ex.jsonl"), format!("{good}oops\n")).unwrap();
    let (ok, out, err) = run(bin().current_dir(dir.path()).args([
        "sql",
        "SELECT count(*) AS n FROM exchanges a JOIN exchanges b ON a.request_id = b.request_id",
        "--format",
        "csv",
        "--exchanges",
        "ex.jsonl",
    ]));
    assert!(ok, "{err}");
    assert_eq!(out, "n\n50\n");
    assert!(err.contains("1 bad records skipped"), "{err}");
    let q = std::fs::read_to_string(dir.path().join("quarantine.jsonl")).unwrap();
    assert_eq!(q.lines().count(), 1);
}

#[test]
fn simulate_writes_a_dataset_that_check_reads_with_no_bad_record() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sim");
    let (ok, stdout, err) = run(bin()
        .args([
            "simulate",
            "--scenario",
            "small",
            "--scale",
            "0.05",
            "--seed",
            "3",
            "--out",
        ])
        .arg(&out));
    assert!(ok, "{err}");
    assert!(
        stdout.starts_with("simulated small (seed 3, scale 0.05)"),
        "{stdout}"
    );
    for class in [
        "chat",
        "enterprise",
        "eval_harness",
        "reseller",
        "student",
        "hydra",
        "reasoning",
        "agentic",
    ] {
        assert!(
            stdout.contains(&format!("\n{class} ")),
            "{class} missing: {stdout}"
        );
    }
    let (ok, stdout, err) = run(bin().current_dir(&out).args([
        "check",
        "--exchanges",
        "exchanges",
        "--accounts",
        "accounts.parquet",
        "--releases",
        "model_releases.parquet",
        "--labels",
        "labels.parquet",
    ]));
    assert!(ok, "{err}");
    assert!(stdout.contains("bad records     none"), "{stdout}");
    assert!(stdout.contains("atlas-3       released"), "{stdout}");

    let (ok, _, err) = run(bin()
        .args(["simulate", "--scale", "0.05", "--out"])
        .arg(&out));
    assert!(
        !ok,
        "a non-empty directory is not overwritten without --force"
    );
    assert!(err.contains("--force"), "{err}");
    let (ok, _, err) = run(bin()
        .args(["simulate", "--scale", "0.05", "--force", "--out"])
        .arg(&out));
    assert!(ok, "{err}");
    let (ok, _, err) = run(bin()
        .args(["simulate", "--scenario", "nope", "--out"])
        .arg(dir.path().join("x")));
    assert!(!ok);
    assert!(
        err.contains("built-in scenarios are seed, small, evasive"),
        "{err}"
    );
}

#[test]
fn analyze_writes_one_verdict_per_account_and_sql_reads_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("result");
    let (ok, stdout, err) = run(bin()
        .arg("analyze")
        .arg("--exchanges")
        .arg(example("exchanges.jsonl"))
        .arg("--accounts")
        .arg(example("accounts.jsonl"))
        .arg("--releases")
        .arg(example("model_releases.jsonl"))
        .arg("--out")
        .arg(&out));
    assert!(ok, "{err}");
    assert!(stdout.contains("results in"), "{stdout}");
    let csv = std::fs::read_to_string(out.join("accounts.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("account_id,verdict,score,campaign_id,reasons")
    );
    let rows: Vec<&str> = lines.collect();
    // One row per account with exchanges, each with a verdict and a score in [0, 1].
    let (ok, accounts, _) = run(bin()
        .current_dir(dir.path())
        .args([
            "sql",
            "--format",
            "csv",
            "SELECT count(DISTINCT account_id) FROM exchanges",
        ])
        .arg("--exchanges")
        .arg(example("exchanges.jsonl")));
    assert!(ok);
    let n: usize = accounts.lines().nth(1).unwrap().trim().parse().unwrap();
    assert_eq!(rows.len(), n);
    for r in &rows {
        let f: Vec<&str> = r.splitn(5, ',').collect();
        assert!(["attack", "suspicious", "benign"].contains(&f[1]), "{r}");
        let score: f64 = f[2].parse().unwrap();
        assert!((0.0..=1.0).contains(&score), "{r}");
        assert!(!f[4].is_empty(), "every verdict has reasons: {r}");
    }
    let campaigns: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("campaigns.json")).unwrap())
            .unwrap();
    assert!(campaigns.is_array());
    // The result's tables are queryable.
    let (ok, table, err) = run(bin()
        .current_dir(dir.path())
        .args(["sql", "--format", "csv", "--result"])
        .arg(&out)
        .arg("SELECT count(*) AS n FROM account_features")
        .arg("--exchanges")
        .arg(example("exchanges.jsonl")));
    assert!(ok, "{err}");
    assert_eq!(table.lines().nth(1), Some(n.to_string().as_str()));
    // `exchange_features` has one row per exchange, keyed by `request_id`: the request's
    // other fields join from `exchanges`.
    let (ok, joined, err) = run(bin()
        .current_dir(dir.path())
        .args(["sql", "--format", "csv", "--result"])
        .arg(&out)
        .arg(
            "SELECT count(*) AS n, count(DISTINCT f.account_id) AS a, \
             sum(CASE WHEN f.ts = e.ts AND f.model = e.model AND f.account_id = e.account_id \
             THEN 1 ELSE 0 END) AS same \
             FROM exchange_features f JOIN exchanges e ON f.request_id = e.request_id",
        )
        .arg("--exchanges")
        .arg(example("exchanges.jsonl")));
    assert!(ok, "{err}");
    let (ok, total, _) = run(bin()
        .current_dir(dir.path())
        .args(["sql", "--format", "csv", "SELECT count(*) FROM exchanges"])
        .arg("--exchanges")
        .arg(example("exchanges.jsonl")));
    assert!(ok);
    let total = total.lines().nth(1).unwrap().trim();
    assert_eq!(
        joined.lines().nth(1),
        Some(format!("{total},{n},{total}").as_str()),
        "{joined}"
    );
}

#[test]
fn analyze_config_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, cfg, _) = run(bin().args(["analyze", "--print-config"]));
    assert!(ok);
    assert!(cfg.contains("edge_threshold"), "{cfg}");
    let bad = dir.path().join("dg.toml");
    std::fs::write(&bad, "[link]\nedge_treshold = 2\n").unwrap();
    let (ok, _, err) = run(bin()
        .arg("analyze")
        .arg("--exchanges")
        .arg(example("exchanges.jsonl"))
        .arg("--config")
        .arg(&bad)
        .arg("--out")
        .arg(dir.path().join("r")));
    assert!(!ok);
    assert!(err.contains("edge_treshold"), "{err}");
    let (ok, _, err) = run(bin()
        .args(["eval", "--labels"])
        .arg(example("accounts.jsonl"))
        .arg("--result")
        .arg(dir.path().join("missing")));
    assert!(!ok);
    assert!(
        err.starts_with("error:") && err.lines().count() == 1,
        "{err}"
    );
}

/// The Python interpreter with the `stix2` library, set by scripts/test.sh. Without it the
/// client check is skipped with a note, unless DG_REQUIRE_CLIENTS=1 (as in CI), where it fails.
fn client_python() -> Option<String> {
    match std::env::var("DG_PYTHON") {
        Ok(p) => Some(p),
        Err(_) if std::env::var("DG_REQUIRE_CLIENTS").is_ok() => {
            panic!("DG_REQUIRE_CLIENTS is set but DG_PYTHON is not")
        }
        Err(_) => {
            eprintln!("note: DG_PYTHON not set; run scripts/test.sh to validate with stix2");
            None
        }
    }
}

/// `small` at 0.4 scale with `seed`, simulated into `dir/data`.
fn simulate_small(dir: &Path, seed: u64) -> PathBuf {
    let data = dir.join("data");
    let (ok, _, err) = run(bin()
        .args([
            "simulate",
            "--scenario",
            "small",
            "--scale",
            "0.4",
            "--seed",
        ])
        .arg(seed.to_string())
        .arg("--out")
        .arg(&data));
    assert!(ok, "{err}");
    data
}

/// `distillguard analyze` over a simulated data set, run from `cwd`.
fn analyze_cmd(cwd: &Path, data: &Path, out: &Path) -> Command {
    let mut cmd = bin();
    cmd.current_dir(cwd)
        .arg("analyze")
        .arg("--exchanges")
        .arg(data.join("exchanges"))
        .arg("--accounts")
        .arg(data.join("accounts.parquet"))
        .arg("--releases")
        .arg(data.join("model_releases.parquet"))
        .arg("--out")
        .arg(out);
    cmd
}

#[test]
fn stix_bundle_validates_with_stix2_and_feeds_the_next_analysis() {
    let dir = tempfile::tempdir().unwrap();
    let data = simulate_small(dir.path(), 77);
    let analyze = |out: &Path, store: Option<&Path>| {
        let mut cmd = analyze_cmd(dir.path(), &data, out);
        if let Some(s) = store {
            cmd.arg("--partner-indicators").arg(s);
        }
        let (ok, _, err) = run(&mut cmd);
        assert!(ok, "{err}");
    };
    let first = dir.path().join("r1");
    analyze(&first, None);
    let blocklist = std::fs::read_to_string(first.join("blocklist.csv")).unwrap();
    assert!(blocklist.starts_with("action,type,value,campaign_id,reason\n"));
    assert!(blocklist.contains("block,account,") && blocklist.contains("block,api_key,"));
    let bundle = dir.path().join("bundle.json");
    let (ok, _, err) = run(bin()
        .args(["export", "stix", "--identity", "Provider A", "--result"])
        .arg(&first)
        .arg("--out")
        .arg(&bundle)
        .env("DISTILLGUARD_SHARING_KEY", "k1"));
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&bundle).unwrap();
    // No prompt text, no raw payment fingerprints.
    assert!(!text.contains("pf-"), "raw payment fingerprint exported");
    if let Some(py) = client_python() {
        let out = Command::new(py)
            .arg("-c")
            .arg(
                "import sys, stix2\n\
                 b = stix2.parse(open(sys.argv[1]).read(), allow_custom=True)\n\
                 kinds = {o.type for o in b.objects}\n\
                 assert {'identity', 'campaign', 'indicator', 'relationship'} <= kinds, kinds\n\
                 print(len(b.objects))",
            )
            .arg(&bundle)
            .output()
            .expect("python runs");
        assert!(
            out.status.success(),
            "stix2 rejected the bundle: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let store = dir.path().join("partners.jsonl");
    let (ok, stdout, err) = run(bin()
        .args(["import", "stix"])
        .arg(&bundle)
        .arg("--store")
        .arg(&store));
    assert!(ok, "{err}");
    assert!(stdout.contains("imported"), "{stdout}");
    let second = dir.path().join("r2");
    analyze(&second, Some(&store));
    let csv = std::fs::read_to_string(second.join("accounts.csv")).unwrap();
    assert!(
        csv.contains("indicator shared by partner Provider A"),
        "partner evidence named in reasons"
    );
}

/// Headless Chromium, set by scripts/test.sh (same rules as [`client_python`]).
fn client_chromium() -> Option<String> {
    match std::env::var("DG_CHROMIUM") {
        Ok(p) if !p.is_empty() => Some(p),
        _ if std::env::var("DG_REQUIRE_CLIENTS").is_ok() => {
            panic!("DG_REQUIRE_CLIENTS is set but DG_CHROMIUM is not")
        }
        _ => {
            eprintln!("note: DG_CHROMIUM not set; run scripts/test.sh to render the report");
            None
        }
    }
}

/// Renders a page headless and returns the screenshot's size and Chromium's log.
fn screenshot(chromium: &str, page: &Path, png: &Path, profile: &Path) -> (u64, String) {
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1200,2600",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "chromium failed: {log}");
    (
        std::fs::metadata(png).expect("screenshot written").len(),
        log,
    )
}

#[test]
fn report_is_self_contained_and_renders_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let data = simulate_small(dir.path(), 78);
    let out = dir.path().join("r");
    let (ok, _, err) = run(&mut analyze_cmd(dir.path(), &data, &out));
    assert!(ok, "{err}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    // Self-contained: no scripts, no external resources.
    for bad in ["<script", "src=\"http", "href=\"http", "@import", "url("] {
        assert!(!html.contains(bad), "report references {bad}");
    }
    // Every campaign has its timeline, bars, graph and indicator table.
    let campaigns: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("campaigns.json")).unwrap())
            .unwrap();
    let n = campaigns.as_array().unwrap().len();
    assert!(n >= 1);
    assert_eq!(html.matches("aria-label=\"timeline\"").count(), n);
    assert_eq!(html.matches("aria-label=\"account graph\"").count(), n);
    assert_eq!(html.matches("aria-label=\"cluster graph\"").count(), 1);
    assert!(html.contains("Benign look-alikes") && html.contains("(redacted)"));
    // The same data gives the same report, byte for byte.
    let again = dir.path().join("r2");
    let (ok, _, err) = run(&mut analyze_cmd(dir.path(), &data, &again));
    assert!(ok, "{err}");
    let html2 = std::fs::read_to_string(again.join("report.html")).unwrap();
    assert!(
        html == html2,
        "two runs over the same data wrote different reports"
    );
    let Some(chromium) = client_chromium() else {
        return;
    };
    let blank = dir.path().join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let (blank_size, _) = screenshot(
        &chromium,
        &blank,
        &dir.path().join("blank.png"),
        &dir.path().join("p1"),
    );
    let (size, log) = screenshot(
        &chromium,
        &out.join("report.html"),
        &dir.path().join("report.png"),
        &dir.path().join("p2"),
    );
    assert!(
        !log.contains("Uncaught") && !log.contains(":ERROR:CONSOLE"),
        "console errors: {log}"
    );
    assert!(
        size > 4 * blank_size.max(1),
        "screenshot looks blank: {size} bytes against {blank_size} for an empty page"
    );
}
