//! Command-line arguments. Each flag is defined once here; clap derives parsing and `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use dg_contract::{DirectIo, ReadOptions};
use dg_engine::Inputs;

#[derive(Parser, Debug)]
#[command(
    name = "distillguard",
    version,
    about = "Detect and stop distillation attacks on LLM APIs",
    long_about = "Detect and stop distillation attacks on LLM APIs.\n\nReads provider logs in the \
                  distillguard data contract (JSON Lines, plain or .gz/.zst, and Parquet; files or \
                  directories), checks them, and lets analysts query them with SQL."
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug); DISTILLGUARD_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate input files against the data contract and print a summary.
    ///
    /// Prints rows, accounts, time range, models, top ASNs and countries, and bad records by
    /// reason. Bad records are written unchanged to the quarantine file.
    Check(CheckArgs),
    /// Run SQL over the input tables (exchanges, accounts, model_releases, labels).
    ///
    /// Example: distillguard sql "SELECT account_id, count(*) AS n FROM exchanges GROUP BY 1
    /// ORDER BY n DESC LIMIT 10" --exchanges logs/
    Sql(SqlArgs),
    /// Find distillation campaigns: features, account links, campaigns and verdicts.
    ///
    /// Writes DIR/accounts.csv (one verdict per account), DIR/campaigns.json,
    /// DIR/lookalikes.json (benign clusters and why they were cleared), DIR/summary.json,
    /// DIR/account_features.parquet and DIR/exchange_features/ (query them with
    /// `distillguard sql --result DIR`).
    Analyze(AnalyzeArgs),
    /// Score an analysis result against ground truth (labels, and truth.csv classes).
    Eval(EvalArgs),
    /// Simulate the `small` scenario, analyze it, evaluate the result and print a summary.
    Demo(DemoArgs),
    /// Export a result for partners: `export stix --result DIR --out bundle.json`.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Import partners' indicators: `import stix bundle.json` (used by the next `analyze`).
    #[command(subcommand)]
    Import(ImportCommand),
    /// Simulate LLM API traffic with ground truth: benign customers (hard negatives
    /// included) and distillation campaigns, written in the data contract.
    ///
    /// Writes DIR/exchanges/part-*.parquet (or .jsonl), DIR/accounts, DIR/model_releases,
    /// DIR/labels and DIR/truth.csv. Same scenario, scale and seed give byte-identical output.
    Simulate(SimulateArgs),
    /// Online enforcement: ingest exchange events, judge accounts continuously, answer
    /// gateways (`/v1/decide`, nginx `auth_request` on `/v1/auth`).
    ///
    /// State (checkpoint, write-ahead log, quarantine) lives in --state; after a crash the
    /// service resumes from it with nothing lost and nothing counted twice. Ingest and admin
    /// routes need the bearer token in DISTILLGUARD_TOKEN (or --token-file).
    Serve(ServeArgs),
    /// Stream a dataset's exchanges in time order to a running `serve`.
    Replay(ReplayArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Config (TOML): a [serve] section plus any detection keys of `analyze --print-config`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// State directory (created if absent).
    #[arg(long, value_name = "DIR", default_value = "distillguard-state")]
    pub state: PathBuf,

    /// Listen address [default: the config's serve.listen, 127.0.0.1:8700].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// Accounts table (optional): sign-up facts used by detection. Repeatable.
    #[arg(long, value_name = "PATH")]
    pub accounts: Vec<PathBuf>,

    /// Model releases table (optional). Repeatable.
    #[arg(long, alias = "model-releases", value_name = "PATH")]
    pub releases: Vec<PathBuf>,

    /// Partner indicators imported with `distillguard import stix`.
    #[arg(long, value_name = "FILE")]
    pub partner_indicators: Option<PathBuf>,

    /// File whose first line is the bearer token (DISTILLGUARD_TOKEN takes precedence).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Print the default config ([serve] and detection) and exit.
    #[arg(long)]
    pub print_config: bool,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// A simulator output directory (its exchanges/), or exchange files or a directory.
    #[arg(value_name = "DATASET")]
    pub dataset: PathBuf,

    /// The service, http://HOST:PORT, or a NATS server, nats://HOST:PORT (events are
    /// published to --subject, captured by the service's JetStream stream).
    #[arg(long, value_name = "URL")]
    pub to: String,

    /// NATS subject to publish to.
    #[arg(long, default_value = "dg.exchanges.replay")]
    pub subject: String,

    /// `max`, or a factor such as `3600x` (an hour of traffic per second).
    #[arg(long, default_value = "max")]
    pub speed: String,

    /// Exchanges per request.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_rows: u32,

    /// Largest HTTP request; batches are split to fit (keep it under the service's
    /// `max_body_bytes`, 64 MiB by default).
    #[arg(long, default_value_t = 32 << 20)]
    pub max_request_bytes: usize,

    /// Requests in flight at once (ordering between them is not kept: at most this many
    /// batches arrive out of time order).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,

    /// Keep re-sending a batch the service did not acknowledge for this long (the service
    /// counts each request id once, so re-sending is safe).
    #[arg(long, default_value_t = 60.0)]
    pub retry_seconds: f64,

    /// File whose first line is the bearer token (DISTILLGUARD_TOKEN takes precedence).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Where bad records of the dataset are written.
    #[arg(long, value_name = "FILE", default_value = "replay-quarantine.jsonl")]
    pub quarantine: PathBuf,
}

/// Where the input tables are and how to read them.
#[derive(Args, Debug, Clone)]
pub struct InputArgs {
    /// Exchanges: a .jsonl[.gz|.zst] or .parquet file, or a directory of them. Repeatable.
    #[arg(long, value_name = "PATH")]
    pub exchanges: Vec<PathBuf>,

    /// Accounts table (optional): file or directory. Repeatable.
    #[arg(long, value_name = "PATH")]
    pub accounts: Vec<PathBuf>,

    /// Model releases table (optional): file or directory. Repeatable.
    #[arg(long, alias = "model-releases", value_name = "PATH")]
    pub releases: Vec<PathBuf>,

    /// Labels table (evaluation only; never read by detection). Repeatable.
    #[arg(long, value_name = "PATH")]
    pub labels: Vec<PathBuf>,

    /// Where bad records are written, one JSON object per line [default: quarantine.jsonl in
    /// the output directory, or in the current directory for commands without one].
    #[arg(long, value_name = "FILE")]
    pub quarantine: Option<PathBuf>,

    /// Stop at the first bad record with its file, line, field and reason (exit code 1).
    #[arg(long)]
    pub strict: bool,

    /// Longest accepted JSON Lines line, in bytes; longer lines are quarantined.
    #[arg(long, value_name = "BYTES", default_value_t = 8 << 20)]
    pub max_line_bytes: usize,

    /// Rows per record batch.
    #[arg(long, value_name = "ROWS", default_value_t = 8192, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,

    /// Bytes per record batch, roughly (of input for JSON Lines, of decoded columns for
    /// Parquet): a batch is cut at this size even when it holds fewer than --batch-size rows.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_bytes: u64,

    /// Read Parquet row groups past the page cache (O_DIRECT, Linux), each whole and the
    /// next one ahead: saves the kernel's copy of every byte. `auto`: for a table whose
    /// files are larger than the memory available, which the page cache cannot keep anyway.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    pub direct_io: DirectIoArg,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum DirectIoArg {
    Auto,
    On,
    Off,
}

impl InputArgs {
    /// The quarantine file: the flag's value, else `quarantine.jsonl` in `dir`.
    pub fn quarantine_in(&self, dir: Option<&std::path::Path>) -> PathBuf {
        self.quarantine.clone().unwrap_or_else(|| {
            dir.map_or_else(
                || PathBuf::from("quarantine.jsonl"),
                |d| d.join("quarantine.jsonl"),
            )
        })
    }

    pub fn inputs(&self) -> Inputs {
        Inputs {
            exchanges: self.exchanges.clone(),
            accounts: self.accounts.clone(),
            model_releases: self.releases.clone(),
            labels: self.labels.clone(),
        }
    }

    pub fn read_options(&self) -> ReadOptions {
        ReadOptions {
            batch_size: self.batch_size as usize,
            batch_bytes: usize::try_from(self.batch_bytes).unwrap_or(usize::MAX),
            max_line_bytes: self.max_line_bytes,
            strict: self.strict,
            direct_io: match self.direct_io {
                DirectIoArg::Auto => DirectIo::Auto,
                DirectIoArg::On => DirectIo::On,
                DirectIoArg::Off => DirectIo::Off,
            },
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// Human-readable summary.
    Text,
    /// One JSON object with every figure.
    Json,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub input: InputArgs,

    /// Output format.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum SqlFormat {
    /// An aligned table.
    Table,
    /// CSV with a header row.
    Csv,
    /// JSON Lines, one object per row.
    Json,
}

#[derive(Args, Debug)]
pub struct SqlArgs {
    /// The query. Tables: exchanges, accounts, model_releases (always), labels (when given).
    pub query: String,

    #[command(flatten)]
    pub input: InputArgs,

    /// Output format.
    #[arg(long, value_enum, default_value_t = SqlFormat::Table)]
    pub format: SqlFormat,

    /// Also register an analysis result: tables exchange_features and account_features.
    #[arg(long, value_name = "DIR")]
    pub result: Option<PathBuf>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum SimFormat {
    Parquet,
    Jsonl,
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Built-in scenario (seed, small, evasive) or the path of a scenario .toml file.
    #[arg(long, value_name = "NAME|FILE", default_value = "small")]
    pub scenario: String,

    /// Multiply every account and exchange count by this factor.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,

    /// Random seed (default: the scenario's own).
    #[arg(long)]
    pub seed: Option<u64>,

    /// Output directory; must be empty or absent unless --force.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Output format.
    #[arg(long, value_enum, default_value_t = SimFormat::Parquet)]
    pub format: SimFormat,

    /// Replace the simulator's files in a non-empty output directory.
    #[arg(long)]
    pub force: bool,

    /// Worker threads (default: all cores). The output does not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    #[command(flatten)]
    pub input: InputArgs,

    /// Detection config (TOML; any subset of the keys of --print-config).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Output directory (created if absent; earlier results in it are replaced).
    #[arg(long, value_name = "DIR", required_unless_present = "print_config")]
    pub out: Option<PathBuf>,

    /// Print the default config (every weight and threshold, documented) and exit.
    #[arg(long)]
    pub print_config: bool,

    /// Partner indicators imported with `distillguard import stix` [default:
    /// partner-indicators.jsonl, when present]. Keyed fingerprints match only under the same
    /// DISTILLGUARD_SHARING_KEY.
    #[arg(long, value_name = "FILE")]
    pub partner_indicators: Option<PathBuf>,

    /// Show the example requests' prompt text in report.html (default: redacted snippets).
    #[arg(long)]
    pub include_text: bool,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Labels table (account_id, campaign): file or directory in the data contract.
    #[arg(long, value_name = "PATH", required = true)]
    pub labels: Vec<PathBuf>,

    /// truth.csv from the simulator (account_id, class): per-class false-positive rates.
    #[arg(long, value_name = "FILE")]
    pub truth: Option<PathBuf>,

    /// The output directory of `distillguard analyze`.
    #[arg(long, value_name = "DIR")]
    pub result: PathBuf,

    /// Output format.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Working directory for the simulated data and the result.
    #[arg(long, value_name = "DIR", default_value = "distillguard-demo")]
    pub out: PathBuf,

    /// Built-in scenario or scenario file.
    #[arg(long, value_name = "NAME|FILE", default_value = "small")]
    pub scenario: String,

    /// Random seed (default: the scenario's own).
    #[arg(long)]
    pub seed: Option<u64>,
}

#[derive(Subcommand, Debug)]
pub enum ExportCommand {
    /// A STIX 2.1 bundle: identity, campaigns, indicators (addresses, prefixes, ASNs, JA4,
    /// keyed payment/template/client fingerprints — never prompt text) and relationships.
    /// Keyed fingerprints use DISTILLGUARD_SHARING_KEY (agree on it with your partners).
    Stix(StixExportArgs),
}

#[derive(Args, Debug)]
pub struct StixExportArgs {
    /// The output directory of `distillguard analyze`.
    #[arg(long, value_name = "DIR")]
    pub result: PathBuf,
    /// Where to write the bundle.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Your organisation's name, for the bundle's identity.
    #[arg(long, default_value = "distillguard user")]
    pub identity: String,
}

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// Add a partner's STIX 2.1 bundle to the partner indicator store.
    Stix(StixImportArgs),
}

#[derive(Args, Debug)]
pub struct StixImportArgs {
    /// The bundle (JSON).
    pub bundle: PathBuf,
    /// The partner indicator store that `analyze` reads.
    #[arg(long, value_name = "FILE", default_value = "partner-indicators.jsonl")]
    pub store: PathBuf,
    /// Partner name to use instead of the bundle's identity.
    #[arg(long)]
    pub partner: Option<String>,
}
