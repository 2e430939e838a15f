//! The batch pipeline: one DataFusion plan over the exchanges, then linking and verdicts in
//! memory over account-level state only.
//!
//! 1. **Features and profiles** — `exchanges` → `dg_exchange_features` (scalar UDF) → a
//!    [`TeeTable`] that writes every batch to `DIR/exchange_features/` (Parquet, narrow: the
//!    request id, account, time, model, features and redacted snippet; no prompt text) →
//!    `GROUP BY account_id` with `dg_account_profile` (UDAF, mergeable partial states) → one
//!    profile per account. The exchanges are read once.
//! 2. **Traits, links, verdicts** — per account, then over the account graph.
//! 3. **Outputs** — `accounts.csv`, `campaigns.json`, `account_features.parquet`,
//!    `lookalikes.json`, `summary.json`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Builder, RecordBatch, StringBuilder, UInt32Builder,
    UInt64Builder,
};
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::prelude::ParquetReadOptions;
use dg_engine::{Engine, EngineError};
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::Serialize;

use crate::config::Config;
use crate::features::{ExchangeFeaturesUdf, FIELDS, UDF_NAME};
use crate::link::{Links, link};
use crate::profile::{ARGS, AccountProfileUdaf, FEATURE_ARGS, Profile, UDAF_NAME};
use crate::sharing::PartnerIndex;
use crate::tee::TeeTable;
use crate::traits::{AccountFacts, Release, Trait, Traits, Window, compute};
use crate::verdict::{Outcome, Verdict, decide};

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl From<datafusion::error::DataFusionError> for AnalyzeError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        AnalyzeError::Engine(e.into())
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AnalyzeError + '_ {
    move |source| AnalyzeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Stage names reported to the caller's progress callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Features,
    Profiles,
    Linking,
    Writing,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Features => "features and account profiles (reading every exchange)",
            Stage::Profiles => "decoding account profiles",
            Stage::Linking => "linking and verdicts",
            Stage::Writing => "writing results",
        }
    }
}

/// Figures of one run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunStats {
    pub accounts: usize,
    pub exchanges: u64,
    pub prompt_chars: u64,
    pub campaigns: usize,
    pub attack_accounts: usize,
    pub suspicious_accounts: usize,
    pub clusters: usize,
    pub candidate_pairs: usize,
    pub edges: usize,
    /// Reading the exchanges, their features (written to `exchange_features/`) and the
    /// per-account aggregate: one plan.
    pub seconds_features: f64,
    /// Decoding the aggregate's account states.
    pub seconds_profiles: f64,
    pub seconds_linking: f64,
    pub seconds_total: f64,
}

pub struct Analysis {
    pub names: Vec<String>,
    pub profiles: Vec<Profile>,
    pub facts: Vec<AccountFacts>,
    pub traits: Vec<Traits>,
    pub links: Links,
    pub outcome: Outcome,
    pub stats: RunStats,
    pub window: Window,
    pub releases: Vec<Release>,
}

/// Registers the UDF and UDAF on the engine's session.
pub fn register_functions(engine: &Engine) {
    engine
        .ctx
        .register_udf(ScalarUDF::from(ExchangeFeaturesUdf::default()));
    engine
        .ctx
        .register_udf(ScalarUDF::from(crate::features::PromptSnippetUdf::default()));
    engine
        .ctx
        .register_udaf(AggregateUDF::from(AccountProfileUdaf::default()));
}

/// The feature query. The features stay one struct column: a projection of its fields would
/// be merged by the optimiser into one UDF call per field.
pub fn features_sql() -> String {
    format!(
        "SELECT request_id, account_id, api_key_id, ts, model, client_ip, asn, country, tls_ja4, \
         conversation_id, input_tokens, output_tokens, reasoning_tokens, max_tokens, \
         {UDF_NAME}({}) AS features, dg_prompt_snippet(request_id, messages) AS snippet \
         FROM exchanges",
        FEATURE_ARGS.join(", ")
    )
}

/// The table the profile query reads: the feature query's output on its way to
/// `exchange_features/`.
const FEATURE_STREAM: &str = "dg_feature_stream";

/// The profile query, over `table` (the feature stream, or a written feature table).
pub fn profiles_sql(table: &str) -> String {
    let feature_names: Vec<&str> = FIELDS.iter().map(|(n, _)| *n).collect();
    let args: Vec<String> = ARGS
        .iter()
        .map(|a| {
            if feature_names.contains(a) {
                format!("features['{a}']")
            } else {
                a.to_string()
            }
        })
        .collect();
    format!(
        "SELECT account_id, {UDAF_NAME}({}) AS profile FROM {table} GROUP BY account_id",
        args.join(", ")
    )
}

/// The columns of `exchange_features`: the request's id (the key that joins it to
/// `exchanges`), what the timeline groups by, the features and the redacted snippet. The
/// feature stream also carries the profile's other inputs (addresses, keys, token counts, …);
/// they are in `exchanges` already, and copying them cost about a third of the writing.
const WRITTEN_FEATURE_COLUMNS: [&str; 6] = [
    "request_id",
    "account_id",
    "ts",
    "model",
    "features",
    "snippet",
];

/// How `exchange_features` is written: LZ4 like the simulator's files (Zstandard, DataFusion's
/// default, cost a tenth of the whole run to compress a table that is read by analysts only),
/// dictionaries only for the columns with few distinct values (accounts, models) — building
/// one for (almost) unique values is wasted work — and no min/max statistics for the columns
/// of (almost) unique text, whose ranges prune nothing.
fn feature_table_properties() -> WriterProperties {
    let mut props = WriterProperties::builder()
        .set_compression(Compression::LZ4_RAW)
        .set_dictionary_enabled(false);
    for column in ["request_id", "snippet"] {
        props =
            props.set_column_statistics_enabled(ColumnPath::from(column), EnabledStatistics::None);
    }
    for column in ["account_id", "model"] {
        props = props.set_column_dictionary_enabled(ColumnPath::from(column), true);
    }
    props.build()
}

/// Runs the whole analysis and writes the results to `out`.
pub async fn analyze(
    engine: &Engine,
    cfg: &Config,
    out: &Path,
    partners: &PartnerIndex,
    mut progress: impl FnMut(Stage),
) -> Result<Analysis, AnalyzeError> {
    let t0 = Instant::now();
    std::fs::create_dir_all(out).map_err(io(out))?;
    register_functions(engine);

    progress(Stage::Features);
    let feat_dir = out.join("exchange_features");
    if feat_dir.exists() {
        std::fs::remove_dir_all(&feat_dir).map_err(io(&feat_dir))?;
    }
    std::fs::create_dir_all(&feat_dir).map_err(io(&feat_dir))?;
    // One plan: the features of every exchange, written to `exchange_features/` as they
    // stream into the per-account aggregate.
    let features = engine
        .ctx
        .sql(&features_sql())
        .await?
        .create_physical_plan()
        .await?;
    let tee = TeeTable::new(features, feat_dir.clone(), feature_table_properties())
        .writing(&WRITTEN_FEATURE_COLUMNS)?;
    engine.ctx.register_table(FEATURE_STREAM, Arc::new(tee))?;
    let df = engine.ctx.sql(&profiles_sql(FEATURE_STREAM)).await?;
    if tracing::enabled!(tracing::Level::DEBUG) {
        let plan = df.clone().create_physical_plan().await?;
        tracing::debug!(
            "feature and profile plan:\n{}",
            datafusion::physical_plan::displayable(plan.as_ref()).indent(true)
        );
    }
    let batches = df.collect().await;
    engine.ctx.deregister_table(FEATURE_STREAM)?;
    let batches = batches?;
    let seconds_features = t0.elapsed().as_secs_f64();

    progress(Stage::Profiles);
    let t1 = Instant::now();
    engine
        .ctx
        .register_parquet(
            "exchange_features",
            &format!("{}/", feat_dir.display()),
            ParquetReadOptions::default(),
        )
        .await?;
    let mut rows: Vec<(String, Profile)> = Vec::new();
    for b in &batches {
        let ids = arrow::compute::cast(b.column(0), &DataType::Utf8)
            .map_err(|e| AnalyzeError::Other(e.to_string()))?;
        let ids = ids.as_string::<i32>();
        let prof = b.column(1).as_binary::<i64>();
        for i in 0..b.num_rows() {
            let p =
                Profile::decode(prof.value(i)).map_err(|e| AnalyzeError::Other(e.to_string()))?;
            rows.push((ids.value(i).to_string(), p));
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let (names, profiles): (Vec<String>, Vec<Profile>) = rows.into_iter().unzip();
    let seconds_profiles = t1.elapsed().as_secs_f64();

    progress(Stage::Linking);
    let t2 = Instant::now();
    let facts_by_id = load_facts(engine).await?;
    let facts: Vec<AccountFacts> = names
        .iter()
        .map(|n| facts_by_id.get(n).cloned().unwrap_or_default())
        .collect();
    let releases = load_releases(engine).await?;
    let judged = judge(&names, &profiles, &facts, &releases, partners, cfg);
    let Judged {
        window,
        traits,
        links,
        outcome,
    } = judged;
    let seconds_linking = t2.elapsed().as_secs_f64();

    progress(Stage::Writing);
    let stats = RunStats {
        accounts: names.len(),
        exchanges: profiles.iter().map(|p| p.exchanges).sum(),
        prompt_chars: profiles.iter().map(|p| p.prompt_chars).sum(),
        campaigns: outcome.campaigns.len(),
        attack_accounts: outcome
            .accounts
            .iter()
            .filter(|a| a.verdict == Verdict::Attack)
            .count(),
        suspicious_accounts: outcome
            .accounts
            .iter()
            .filter(|a| a.verdict == Verdict::Suspicious)
            .count(),
        clusters: links.clusters.len(),
        candidate_pairs: links.candidate_pairs,
        edges: links.edges,
        seconds_features,
        seconds_profiles,
        seconds_linking,
        seconds_total: 0.0,
    };
    let mut analysis = Analysis {
        names,
        profiles,
        facts,
        traits,
        links,
        outcome,
        stats,
        window,
        releases,
    };
    write_outputs(&analysis, out)?;
    analysis.stats.seconds_total = t0.elapsed().as_secs_f64();
    write_json(&out.join("summary.json"), &analysis.stats)?;
    Ok(analysis)
}

/// Account-level judgement: traits, links, clusters and verdicts.
pub struct Judged {
    pub window: Window,
    pub traits: Vec<Traits>,
    pub links: Links,
    pub outcome: Outcome,
}

/// Judges accounts from their profiles and facts (same order, `names` sorted). The batch
/// pipeline and the online service both call this, so they give the same answer on the same
/// data.
pub fn judge(
    names: &[String],
    profiles: &[Profile],
    facts: &[AccountFacts],
    releases: &[Release],
    partners: &PartnerIndex,
    cfg: &Config,
) -> Judged {
    let window = Window {
        start: profiles.iter().map(|p| p.first_ts).min().unwrap_or(0),
        end: profiles.iter().map(|p| p.last_ts).max().unwrap_or(0),
    };
    let traits: Vec<Traits> = profiles
        .iter()
        .zip(facts)
        .map(|(p, f)| {
            let mut t = compute(p, f, releases, window, &cfg.traits);
            let (hits, specific) = partners.matches(p, f);
            if specific {
                t.partner = cfg.traits.partner_boost;
            }
            t.evidence.splice(0..0, hits);
            t
        })
        .collect();
    let suspicion: Vec<f64> = traits.iter().map(|t| t.suspicion(&cfg.traits)).collect();
    let started = Instant::now();
    let links = link(profiles, facts, &suspicion, &cfg.link);
    let seconds_link = started.elapsed().as_secs_f64();
    let outcome = decide(names, profiles, &traits, &links, releases, cfg);
    tracing::debug!(
        seconds_link,
        seconds_decide = started.elapsed().as_secs_f64() - seconds_link,
        "judged"
    );
    Judged {
        window,
        traits,
        links,
        outcome,
    }
}

fn ts_micros(a: &ArrayRef) -> Result<Vec<Option<i64>>, AnalyzeError> {
    let c = arrow::compute::cast(a, &DataType::Timestamp(TimeUnit::Microsecond, None))
        .and_then(|c| arrow::compute::cast(&c, &DataType::Int64))
        .map_err(|e| AnalyzeError::Other(e.to_string()))?;
    let c = c.as_primitive::<Int64Type>();
    Ok((0..c.len())
        .map(|i| c.is_valid(i).then(|| c.value(i)))
        .collect())
}

fn strings(a: &ArrayRef) -> Result<Vec<Option<String>>, AnalyzeError> {
    let c =
        arrow::compute::cast(a, &DataType::Utf8).map_err(|e| AnalyzeError::Other(e.to_string()))?;
    let c = c.as_string::<i32>();
    Ok((0..c.len())
        .map(|i| (c.is_valid(i) && !c.value(i).is_empty()).then(|| c.value(i).to_string()))
        .collect())
}

/// Account facts from the registered `accounts` table (empty when none was given).
pub async fn load_facts(engine: &Engine) -> Result<HashMap<String, AccountFacts>, AnalyzeError> {
    let batches = engine
        .query(
            "SELECT account_id, created_at, email_domain, verification, payment_fingerprint, \
             billing_country, signup_ip FROM accounts",
        )
        .await?;
    let mut out = HashMap::new();
    for b in &batches {
        let ids = strings(b.column(0))?;
        let created = ts_micros(b.column(1))?;
        let cols: Vec<Vec<Option<String>>> = (2..7)
            .map(|i| strings(b.column(i)))
            .collect::<Result<_, _>>()?;
        for (i, id) in ids.into_iter().enumerate() {
            let Some(id) = id else { continue };
            out.insert(
                id,
                AccountFacts {
                    created_at: created[i],
                    email_domain: cols[0][i].clone(),
                    verification: cols[1][i].clone(),
                    payment: cols[2][i].clone(),
                    billing_country: cols[3][i].clone(),
                    signup_ip: cols[4][i].clone(),
                },
            );
        }
    }
    Ok(out)
}

/// Model releases from the registered `model_releases` table, oldest first.
pub async fn load_releases(engine: &Engine) -> Result<Vec<Release>, AnalyzeError> {
    let batches = engine
        .query("SELECT model, released_at FROM model_releases ORDER BY released_at, model")
        .await?;
    let mut out = Vec::new();
    for b in &batches {
        let models = strings(b.column(0))?;
        let at = ts_micros(b.column(1))?;
        for (m, t) in models.into_iter().zip(at) {
            if let (Some(model), Some(released_at)) = (m, t) {
                out.push(Release { model, released_at });
            }
        }
    }
    Ok(out)
}

/// Quotes a CSV field when it needs it (RFC 4180).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<(), AnalyzeError> {
    let f = File::create(path).map_err(io(path))?;
    let mut w = BufWriter::new(f);
    serde_json::to_writer_pretty(&mut w, v).map_err(|e| AnalyzeError::Other(e.to_string()))?;
    w.write_all(b"\n").map_err(io(path))?;
    w.flush().map_err(io(path))
}

fn write_outputs(a: &Analysis, out: &Path) -> Result<(), AnalyzeError> {
    // accounts.csv
    let path = out.join("accounts.csv");
    let mut w = BufWriter::new(File::create(&path).map_err(io(&path))?);
    writeln!(w, "account_id,verdict,score,campaign_id,reasons").map_err(io(&path))?;
    for (i, v) in a.outcome.accounts.iter().enumerate() {
        let campaign = v
            .campaign
            .map(|c| a.outcome.campaigns[c].id.as_str())
            .unwrap_or("");
        let reasons: Vec<String> = v.reasons.iter().map(|r| r.replace(';', ",")).collect();
        writeln!(
            w,
            "{},{},{:.4},{},{}",
            csv_field(&a.names[i]),
            v.verdict.as_str(),
            v.score,
            campaign,
            csv_field(&reasons.join("; "))
        )
        .map_err(io(&path))?;
    }
    w.flush().map_err(io(&path))?;
    write_json(&out.join("campaigns.json"), &a.outcome.campaigns)?;
    write_json(&out.join("lookalikes.json"), &a.outcome.look_alikes)?;
    write_account_features(a, &out.join("account_features.parquet"))
}

fn write_account_features(a: &Analysis, path: &Path) -> Result<(), AnalyzeError> {
    let n = a.names.len();
    let mut id = StringBuilder::with_capacity(n, n * 24);
    let mut verdict = StringBuilder::with_capacity(n, n * 8);
    let mut campaign = StringBuilder::with_capacity(n, n * 12);
    let mut country = StringBuilder::with_capacity(n, n * 2);
    let mut u64s: Vec<(&str, UInt64Builder)> = [
        "exchanges",
        "input_tokens",
        "output_tokens",
        "reasoning_tokens",
        "prompt_chars",
        "tool_messages",
        "cjk_prompts",
        "eliciting_requests",
        "active_days",
    ]
    .into_iter()
    .map(|c| (c, UInt64Builder::with_capacity(n)))
    .collect();
    let mut f64s: Vec<(String, Float64Builder)> = [
        "score",
        "suspicion",
        "distinct_addresses",
        "distinct_prefixes",
        "distinct_conversations",
        "active_buckets",
        "mean_max_tokens",
        "output_input_ratio",
        "around_the_clock",
    ]
    .into_iter()
    .map(String::from)
    .chain(Trait::ALL.iter().map(|t| format!("trait_{}", t.name())))
    .map(|c| (c, Float64Builder::with_capacity(n)))
    .collect();
    let mut first = arrow::array::TimestampMicrosecondBuilder::with_capacity(n);
    let mut last = arrow::array::TimestampMicrosecondBuilder::with_capacity(n);
    let mut cluster = UInt32Builder::with_capacity(n);
    let mut implied = arrow::array::Int32Builder::with_capacity(n);
    let mut interarrival_cv = Float64Builder::with_capacity(n);
    let mut burst_share = Float64Builder::with_capacity(n);
    for i in 0..n {
        let p = &a.profiles[i];
        let v = &a.outcome.accounts[i];
        let rhythm = p.rhythm();
        id.append_value(&a.names[i]);
        verdict.append_value(v.verdict.as_str());
        match v.campaign {
            Some(c) => campaign.append_value(&a.outcome.campaigns[c].id),
            None => campaign.append_null(),
        }
        country.append_option(a.traits[i].claimed_country.as_deref());
        for (j, x) in [
            p.exchanges,
            p.input_tokens,
            p.output_tokens,
            p.reasoning_tokens,
            p.prompt_chars,
            p.tool_messages,
            p.cjk_prompts,
            p.elicit,
            p.days.len() as u64,
        ]
        .into_iter()
        .enumerate()
        {
            u64s[j].1.append_value(x);
        }
        let mut vals = vec![
            v.score,
            v.suspicion,
            p.ips.distinct(),
            p.prefixes.distinct(),
            p.conversations.distinct(),
            p.buckets.distinct(),
            p.mean_max_tokens().unwrap_or(0.0),
            p.output_tokens as f64 / p.input_tokens.max(1) as f64,
            rhythm.around_the_clock,
        ];
        interarrival_cv.append_option(rhythm.interarrival_cv);
        burst_share.append_option(rhythm.burst_share);
        vals.extend(Trait::ALL.iter().map(|&t| a.traits[i].get(t)));
        for (j, x) in vals.into_iter().enumerate() {
            f64s[j].1.append_value(x);
        }
        first.append_value(p.first_ts);
        last.append_value(p.last_ts);
        cluster.append_option(a.links.cluster_of[i]);
        implied.append_option(a.traits[i].implied_utc_offset);
    }
    let mut cols: Vec<(String, ArrayRef)> = vec![
        ("account_id".into(), Arc::new(id.finish())),
        ("verdict".into(), Arc::new(verdict.finish())),
        ("campaign_id".into(), Arc::new(campaign.finish())),
        ("claimed_country".into(), Arc::new(country.finish())),
        (
            "first_ts".into(),
            Arc::new(first.finish().with_timezone("UTC")),
        ),
        (
            "last_ts".into(),
            Arc::new(last.finish().with_timezone("UTC")),
        ),
        ("cluster".into(), Arc::new(cluster.finish())),
        ("implied_utc_offset".into(), Arc::new(implied.finish())),
    ];
    for (name, mut b) in u64s {
        cols.push((name.into(), Arc::new(b.finish())));
    }
    for (name, mut b) in f64s {
        cols.push((name, Arc::new(b.finish())));
    }
    cols.push(("interarrival_cv".into(), Arc::new(interarrival_cv.finish())));
    cols.push(("burst_share".into(), Arc::new(burst_share.finish())));
    let batch = RecordBatch::try_from_iter(cols).map_err(|e| AnalyzeError::Other(e.to_string()))?;
    let file = File::create(path).map_err(io(path))?;
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)
        .map_err(|e| AnalyzeError::Other(e.to_string()))?;
    w.write(&batch)
        .map_err(|e| AnalyzeError::Other(e.to_string()))?;
    w.close().map_err(|e| AnalyzeError::Other(e.to_string()))?;
    Ok(())
}

/// Registers a result directory's tables (`exchange_features`, `account_features`,
/// `verdicts`) on a session, for `distillguard sql --result DIR`.
pub async fn register_result(engine: &Engine, dir: &Path) -> Result<(), AnalyzeError> {
    let feat = dir.join("exchange_features");
    if feat.is_dir() {
        engine
            .ctx
            .register_parquet(
                "exchange_features",
                &format!("{}/", feat.display()),
                ParquetReadOptions::default(),
            )
            .await?;
    }
    let acc = dir.join("account_features.parquet");
    if acc.is_file() {
        engine
            .ctx
            .register_parquet(
                "account_features",
                &acc.display().to_string(),
                ParquetReadOptions::default(),
            )
            .await?;
    } else {
        return Err(AnalyzeError::Other(format!(
            "{}: not an analysis result (no account_features.parquet)",
            dir.display()
        )));
    }
    Ok(())
}

/// Exchanges per hour, for the report's timelines.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    /// First hour (UTC microseconds) and number of hours.
    pub start: i64,
    pub hours: usize,
    /// Per campaign id: exchanges per hour, and those on a model released during the window.
    pub campaigns: Vec<(String, Vec<u64>, Vec<u64>)>,
    /// Every exchange outside campaigns, per hour.
    pub others: Vec<u64>,
}

const HOUR_MICROS: i64 = 3_600_000_000;

/// Hourly exchange counts per campaign and for everything else, from `exchange_features`
/// (one scan of the narrow table).
pub async fn timeline(engine: &Engine, a: &Analysis) -> Result<Timeline, AnalyzeError> {
    use arrow::array::StringArray;
    let ids = StringArray::from(a.names.clone());
    let camps: StringArray = a
        .outcome
        .accounts
        .iter()
        .map(|v| v.campaign.map(|c| a.outcome.campaigns[c].id.clone()))
        .collect();
    let batch = RecordBatch::try_from_iter(vec![
        ("account_id", Arc::new(ids) as ArrayRef),
        ("campaign_id", Arc::new(camps) as ArrayRef),
    ])
    .map_err(|e| AnalyzeError::Other(e.to_string()))?;
    let _ = engine.ctx.deregister_table("verdict_map");
    engine.ctx.register_batch("verdict_map", batch)?;
    let new_models: Vec<String> = a
        .releases
        .iter()
        .filter(|r| r.released_at > a.window.start && r.released_at <= a.window.end)
        .map(|r| format!("'{}'", r.model.replace('\'', "''")))
        .collect();
    let is_new = if new_models.is_empty() {
        "0".to_string()
    } else {
        format!(
            "CASE WHEN e.model IN ({}) THEN 1 ELSE 0 END",
            new_models.join(", ")
        )
    };
    let sql = format!(
        "SELECT m.campaign_id, CAST(e.ts AS BIGINT) / {HOUR_MICROS} AS h, count(*) AS n, \
         sum({is_new}) AS new FROM exchange_features e JOIN verdict_map m \
         ON e.account_id = m.account_id GROUP BY 1, 2"
    );
    let batches = engine.query(&sql).await?;
    let start_h = a.window.start.div_euclid(HOUR_MICROS);
    let hours = ((a.window.end.div_euclid(HOUR_MICROS) - start_h) + 1).clamp(1, 24 * 400) as usize;
    let mut t = Timeline {
        start: start_h * HOUR_MICROS,
        hours,
        campaigns: a
            .outcome
            .campaigns
            .iter()
            .map(|c| (c.id.clone(), vec![0; hours], vec![0; hours]))
            .collect(),
        others: vec![0; hours],
    };
    for b in &batches {
        let camp = strings(b.column(0))?;
        let h = arrow::compute::cast(b.column(1), &DataType::Int64)
            .map_err(|e| AnalyzeError::Other(e.to_string()))?;
        let h = h.as_primitive::<Int64Type>();
        let n = arrow::compute::cast(b.column(2), &DataType::Int64)
            .map_err(|e| AnalyzeError::Other(e.to_string()))?;
        let n = n.as_primitive::<Int64Type>();
        let new = arrow::compute::cast(b.column(3), &DataType::Int64)
            .map_err(|e| AnalyzeError::Other(e.to_string()))?;
        let new = new.as_primitive::<Int64Type>();
        for (i, camp) in camp.iter().enumerate() {
            let idx = h.value(i) - start_h;
            if idx < 0 || idx as usize >= hours {
                continue;
            }
            let idx = idx as usize;
            match camp {
                Some(c) => {
                    if let Some(e) = t.campaigns.iter_mut().find(|x| &x.0 == c) {
                        e.1[idx] += n.value(i) as u64;
                        e.2[idx] += new.value(i).max(0) as u64;
                    }
                }
                None => t.others[idx] += n.value(i) as u64,
            }
        }
    }
    Ok(t)
}

/// The example requests of each campaign: redacted snippets from `exchange_features`, or,
/// with `include_text`, the start of the prompt itself from `exchanges` (a scan of the logs).
pub async fn example_texts(
    engine: &Engine,
    a: &Analysis,
    include_text: bool,
) -> Result<HashMap<String, String>, AnalyzeError> {
    let ids: Vec<String> = a
        .outcome
        .campaigns
        .iter()
        .flat_map(|c| c.example_request_ids.iter().cloned())
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let list = ids
        .iter()
        .map(|i| format!("'{}'", i.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = if include_text {
        format!("SELECT request_id, messages FROM exchanges WHERE request_id IN ({list})")
    } else {
        format!("SELECT request_id, snippet FROM exchange_features WHERE request_id IN ({list})")
    };
    let mut out = HashMap::new();
    for b in &engine.query(&sql).await? {
        let texts = if include_text {
            let mut v = Vec::with_capacity(b.num_rows());
            crate::features::for_each_last_user(b.column(1), |p| {
                v.push(p.map(|t| t.chars().take(600).collect::<String>()))
            })?;
            v
        } else {
            strings(b.column(1))?
        };
        for (id, text) in strings(b.column(0))?.into_iter().zip(texts) {
            if let (Some(id), Some(text)) = (id, text) {
                out.insert(id, text);
            }
        }
    }
    Ok(out)
}
