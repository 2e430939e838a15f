//! `distillguard analyze`, `eval` and `demo`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use dg_contract::Diagnostics;
use dg_detect::eval::{EvalReport, evaluate, read_exchanges, read_result, read_truth};
use dg_detect::sharing::PartnerIndex;
use dg_detect::{Analysis, Config, Stage};

/// Where `import stix` keeps partners' indicators and `analyze` looks for them.
pub const DEFAULT_STORE: &str = "partner-indicators.jsonl";
use dg_engine::{Engine, Inputs};

use crate::args::{AnalyzeArgs, CheckFormat, DemoArgs, EvalArgs, SimFormat, SimulateArgs};
use crate::fmt::{bad_records_note, count};
use crate::progress::{ReadProgress, StageProgress};

/// A TOML config file read with `parse`, or the defaults when no file is given.
pub(crate) fn load_toml<T: Default, E: std::fmt::Display>(
    path: Option<&Path>,
    parse: fn(&str) -> Result<T, E>,
) -> anyhow::Result<T> {
    match path {
        None => Ok(T::default()),
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
        }
    }
}

fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    load_toml(path, Config::from_toml)
}

pub async fn run(a: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    if a.print_config {
        crate::say!("{}", Config::default().to_toml().trim_end());
        return Ok(ExitCode::SUCCESS);
    }
    let out = a.out.clone().expect("clap requires --out");
    if a.input.exchanges.is_empty() {
        bail!("analyze needs --exchanges PATH: the exchanges table is required");
    }
    let cfg = load_config(a.config.as_deref())?;
    let quarantine = a.input.quarantine_in(Some(&out));
    let partners = load_partners(
        a.partner_indicators
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_STORE)),
        a.partner_indicators.is_some(),
    )?;
    let analysis = analyze_inputs(
        &a.input.inputs(),
        a.input.read_options(),
        &quarantine,
        &cfg,
        &out,
        &partners,
        a.include_text,
    )
    .await?;
    print_summary(&analysis, &out);
    Ok(ExitCode::SUCCESS)
}

/// The sharing key: `DISTILLGUARD_SHARING_KEY`, else the public default.
pub fn sharing_key() -> Vec<u8> {
    std::env::var("DISTILLGUARD_SHARING_KEY")
        .unwrap_or_else(|_| dg_detect::sharing::DEFAULT_KEY.to_string())
        .into_bytes()
}

/// Partner indicators from the store, when there is one.
pub(crate) fn load_partners(path: &Path, explicit: bool) -> anyhow::Result<PartnerIndex> {
    if !path.exists() {
        if explicit {
            bail!("{}: no such partner indicator store", path.display());
        }
        return Ok(PartnerIndex::default());
    }
    let inds = dg_detect::sharing::read_store(path).map_err(anyhow::Error::msg)?;
    eprintln!(
        "using {} partner indicators from {}",
        inds.len(),
        path.display()
    );
    Ok(PartnerIndex::new(&sharing_key(), &inds))
}

async fn analyze_inputs(
    inputs: &Inputs,
    opts: dg_contract::ReadOptions,
    quarantine: &Path,
    cfg: &Config,
    out: &Path,
    partners: &PartnerIndex,
    include_text: bool,
) -> anyhow::Result<Analysis> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let diag = Arc::new(Diagnostics::new(quarantine));
    let engine = Engine::open(inputs, opts, diag.clone())?;
    let mut progress = Some(ReadProgress::start(diag.clone(), engine.input_bytes()));
    let mut stages = StageProgress::new();
    let result = dg_detect::analyze(&engine, cfg, out, partners, |stage| {
        if stage != Stage::Features {
            progress.take();
        }
        stages.stage(stage.name(), stage != Stage::Features);
        tracing::info!(stage = stage.name(), "analyze");
    })
    .await;
    drop(progress);
    diag.flush()?;
    let analysis = result?;
    let path = out.join("blocklist.csv");
    dg_report::blocklist::write(&analysis, &path)
        .with_context(|| format!("writing {}", path.display()))?;
    stages.stage("report (timelines, examples)", true);
    let timeline = dg_detect::analyze::timeline(&engine, &analysis).await?;
    let examples = dg_detect::analyze::example_texts(&engine, &analysis, include_text).await?;
    let path = out.join("report.html");
    std::fs::write(
        &path,
        dg_report::html::render(&analysis, &timeline, &examples, include_text),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    stages.finish();
    if let Some(note) = bad_records_note(&diag.report()) {
        eprintln!("note: {note}");
    }
    Ok(analysis)
}

fn print_summary(a: &Analysis, out: &Path) {
    let s = &a.stats;
    crate::say!(
        "analyzed {} exchanges of {} accounts in {:.1} s ({:.0} exchanges/s): features and profiles {:.1} s, linking {:.1} s",
        count(s.exchanges),
        count(s.accounts as u64),
        s.seconds_total,
        s.exchanges as f64 / s.seconds_total.max(1e-9),
        s.seconds_features + s.seconds_profiles,
        s.seconds_linking
    );
    crate::say!(
        "{} campaigns, {} accounts attack, {} suspicious; {} clusters from {} candidate pairs ({} edges)",
        s.campaigns,
        count(s.attack_accounts as u64),
        count(s.suspicious_accounts as u64),
        count(s.clusters as u64),
        count(s.candidate_pairs as u64),
        count(s.edges as u64)
    );
    if !a.outcome.campaigns.is_empty() {
        crate::say!(
            "\n{:<12} {:>8} {:>11} {:>6} {:<22} top shared indicator",
            "campaign",
            "accounts",
            "exchanges",
            "conf",
            "focus"
        );
        for c in &a.outcome.campaigns {
            let focus = c
                .capability_focus
                .first()
                .map(|(k, v)| format!("{k} {:.0}%", v * 100.0))
                .unwrap_or_default();
            let top = c
                .shared_indicators
                .first()
                .map(|i| format!("{} ({} accounts)", i.kind, i.accounts))
                .unwrap_or_default();
            crate::say!(
                "{:<12} {:>8} {:>11} {:>6.2} {:<22} {top}",
                c.id,
                count(c.accounts as u64),
                count(c.exchanges),
                c.confidence,
                focus
            );
        }
    }
    if a.outcome.cleared_clusters > 0 {
        crate::say!(
            "\n{} benign look-alike clusters ({} accounts) were linked but cleared; the largest are in lookalikes.json",
            count(a.outcome.cleared_clusters as u64),
            count(a.outcome.cleared_accounts as u64)
        );
    }
    crate::say!(
        "\nresults in {}: report.html, accounts.csv, campaigns.json, blocklist.csv, lookalikes.json, summary.json, account_features.parquet, exchange_features/",
        out.display()
    );
}

async fn read_labels(paths: &[PathBuf]) -> anyhow::Result<HashMap<String, String>> {
    let quarantine = Path::new("quarantine.jsonl");
    let (labels, bad) = dg_detect::eval::read_labels(paths, quarantine).await?;
    if bad > 0 {
        eprintln!(
            "note: {bad} bad label records skipped (see {})",
            quarantine.display()
        );
    }
    Ok(labels)
}

async fn eval_report(
    labels: &[PathBuf],
    truth: Option<&Path>,
    result: &Path,
) -> anyhow::Result<EvalReport> {
    let labels = read_labels(labels).await?;
    let truth = truth
        .map(read_truth)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let res = read_result(result).map_err(anyhow::Error::msg)?;
    let ex = read_exchanges(result).map_err(anyhow::Error::msg)?;
    Ok(evaluate(&labels, truth.as_ref(), &res, &ex))
}

fn print_eval(r: &EvalReport) {
    crate::say!(
        "account recall          {:>8.4}  ({} attack accounts)",
        r.account_recall,
        count(r.attack_accounts as u64)
    );
    crate::say!("exchange-weighted recall {:>7.4}", r.exchange_recall);
    crate::say!(
        "benign false positives  {:>8.4}% ({} of {} benign accounts flagged attack)",
        r.benign_fpr * 100.0,
        r.benign_flagged,
        count(r.benign_accounts as u64)
    );
    crate::say!(
        "campaign purity         {:>8.4}  ({} predicted, {} true campaigns)",
        r.campaign_purity,
        r.predicted_campaigns,
        r.true_campaigns
    );
    crate::say!("adjusted Rand index     {:>8.4}", r.adjusted_rand_index);
    if r.missing_from_result > 0 {
        crate::say!(
            "note: {} labelled accounts have no row in the result (no exchanges?)",
            r.missing_from_result
        );
    }
    crate::say!(
        "\n{:<24} {:>8} {:>8} {:>10} {:>8}",
        "class",
        "accounts",
        "attack",
        "suspicious",
        "rate"
    );
    for c in &r.per_class {
        crate::say!(
            "{:<24} {:>8} {:>8} {:>10} {:>8.4}",
            c.class,
            c.accounts,
            c.flagged,
            c.suspicious,
            c.rate
        );
    }
}

pub async fn eval(a: EvalArgs) -> anyhow::Result<ExitCode> {
    let r = eval_report(&a.labels, a.truth.as_deref(), &a.result).await?;
    match a.format {
        CheckFormat::Text => print_eval(&r),
        CheckFormat::Json => crate::say!("{}", serde_json::to_string_pretty(&r)?),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn demo(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let data = a.out.join("data");
    let result = a.out.join("result");
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    crate::say!("== 1/3 simulate ({}) ==", a.scenario);
    crate::simulate::run(SimulateArgs {
        scenario: a.scenario.clone(),
        scale: 1.0,
        seed: a.seed,
        out: data.clone(),
        format: SimFormat::Parquet,
        force: true,
        threads: None,
    })
    .await?;
    crate::say!("\n== 2/3 analyze ==");
    let inputs = Inputs {
        exchanges: vec![data.join("exchanges")],
        accounts: vec![data.join("accounts.parquet")],
        model_releases: vec![data.join("model_releases.parquet")],
        labels: Vec::new(),
    };
    let analysis = analyze_inputs(
        &inputs,
        Default::default(),
        &result.join("quarantine.jsonl"),
        &Config::default(),
        &result,
        &PartnerIndex::default(),
        false,
    )
    .await?;
    print_summary(&analysis, &result);
    crate::say!("\n== 3/3 evaluate against the simulator's ground truth ==");
    let r = eval_report(
        &[data.join("labels.parquet")],
        Some(&data.join("truth.csv")),
        &result,
    )
    .await?;
    print_eval(&r);
    crate::say!(
        "\nnext: distillguard sql --result {} \"SELECT verdict, count(*) FROM account_features GROUP BY 1\"",
        result.display()
    );
    Ok(ExitCode::SUCCESS)
}
