//! Writing the simulated tables in the data contract: Parquet (default) or JSON Lines, the
//! exchanges split into part files that are generated and written in parallel, each part
//! always holding the same accounts, so the output is byte-identical run after run.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Float32Builder, ListBuilder, StringBuilder,
    StructBuilder, TimestampMicrosecondBuilder, UInt16Builder, UInt32Builder,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, SecondsFormat, Utc};
use dg_contract::Table;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::Serialize;

use crate::traffic::{Exchange, account_exchanges};
use crate::world::{Account, Class, World};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutFormat {
    Parquet,
    Jsonl,
}

impl OutFormat {
    fn ext(self) -> &'static str {
        match self {
            OutFormat::Parquet => "parquet",
            OutFormat::Jsonl => "jsonl",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Encode { path: PathBuf, message: String },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn enc(path: &Path) -> impl Fn(String) -> WriteError + '_ {
    move |message| WriteError::Encode {
        path: path.to_path_buf(),
        message,
    }
}

fn rfc3339(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .expect("simulated times are in range")
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Splits accounts (in world order) into parts of similar volume: about 1/32 of the
/// exchanges, between 10,000 and 200,000 — enough parts for parallelism, rows enough for
/// good Parquet files. Depends only on the world, never on the thread count.
pub fn parts(world: &World) -> Vec<std::ops::Range<usize>> {
    let total: u64 = world.accounts.iter().map(|a| a.exchanges).sum();
    let part_exchanges = (total / 32).clamp(10_000, 200_000);
    let mut out = Vec::new();
    let mut start = 0;
    let mut acc = 0;
    for (i, a) in world.accounts.iter().enumerate() {
        acc += a.exchanges;
        if acc >= part_exchanges {
            out.push(start..i + 1);
            start = i + 1;
            acc = 0;
        }
    }
    if start < world.accounts.len() {
        out.push(start..world.accounts.len());
    }
    out
}

/// Generates and writes every part of `exchanges/`, on `threads` threads. `progress` counts
/// exchanges written. Returns exchanges per account, in world order.
pub fn write_exchanges(
    world: &World,
    dir: &Path,
    format: OutFormat,
    threads: usize,
    progress: &AtomicU64,
) -> Result<Vec<u64>, WriteError> {
    let parts = parts(world);
    let exdir = dir.join("exchanges");
    std::fs::create_dir_all(&exdir).map_err(io(&exdir))?;
    let next = AtomicUsize::new(0);
    let counts: Vec<AtomicU64> = world.accounts.iter().map(|_| AtomicU64::new(0)).collect();
    let first_error: std::sync::Mutex<Option<WriteError>> = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let p = next.fetch_add(1, Ordering::Relaxed);
                    if p >= parts.len() || first_error.lock().unwrap().is_some() {
                        return;
                    }
                    let mut rows = Vec::new();
                    for i in parts[p].clone() {
                        let before = rows.len();
                        account_exchanges(world, &world.accounts[i], &mut rows);
                        counts[i].store((rows.len() - before) as u64, Ordering::Relaxed);
                    }
                    rows.sort_by(|a, b| {
                        a.ts.cmp(&b.ts)
                            .then_with(|| a.request_id.cmp(&b.request_id))
                    });
                    let path = exdir.join(format!("part-{p:05}.{}", format.ext()));
                    let n = rows.len() as u64;
                    let result = match format {
                        OutFormat::Parquet => write_parquet_exchanges(&path, &rows),
                        OutFormat::Jsonl => write_jsonl(&path, rows.iter().map(ExchangeJson::from)),
                    };
                    if let Err(e) = result {
                        first_error.lock().unwrap().get_or_insert(e);
                        return;
                    }
                    progress.fetch_add(n, Ordering::Relaxed);
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap() {
        return Err(e);
    }
    Ok(counts.into_iter().map(AtomicU64::into_inner).collect())
}

fn props() -> WriterProperties {
    // Dictionaries only where values repeat: building one over prompt text costs time and
    // is thrown away.
    // Statistics likewise: min/max over long strings is costly and prunes nothing.
    let mut b = WriterProperties::builder()
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::None);
    for col in ["ts", "account_id", "model"] {
        b = b.set_column_statistics_enabled(ColumnPath::from(col), EnabledStatistics::Page);
    }
    for col in [
        "account_id",
        "api_key_id",
        "model",
        "asn",
        "country",
        "user_agent",
        "tls_ja4",
        "verification",
        "billing_country",
        "email_domain",
        "campaign",
    ] {
        b = b.set_column_dictionary_enabled(ColumnPath::from(col), true);
    }
    b.set_compression(Compression::LZ4_RAW)
        .set_max_row_group_row_count(Some(64 * 1024))
        .set_created_by("distillguard simulate".into())
        .build()
}

fn write_parquet_exchanges(path: &Path, rows: &[Exchange]) -> Result<(), WriteError> {
    let f = File::create(path).map_err(io(path))?;
    let schema = file_schema();
    let mut w = ArrowWriter::try_new(f, schema.clone(), Some(props()))
        .map_err(|e| enc(path)(e.to_string()))?;
    for chunk in rows.chunks(8192) {
        let batch = exchange_batch(chunk, &schema);
        w.write(&batch).map_err(|e| enc(path)(e.to_string()))?;
    }
    w.close().map_err(|e| enc(path)(e.to_string()))?;
    Ok(())
}

/// One batch of exchanges in the written layout (`schema`, from [`file_schema`]).
fn exchange_batch(rows: &[Exchange], schema: &SchemaRef) -> RecordBatch {
    let n = rows.len();
    let mut ts = TimestampMicrosecondBuilder::with_capacity(n);
    let s = |f: &dyn Fn(&Exchange) -> Option<&str>| -> ArrayRef {
        let bytes = rows.iter().filter_map(f).map(str::len).sum();
        let mut b = StringBuilder::with_capacity(n, bytes);
        for r in rows {
            b.append_option(f(r));
        }
        Arc::new(b.finish())
    };
    let request_id = s(&|r| Some(&r.request_id));
    let account_id = s(&|r| Some(&r.account_id));
    let api_key_id = s(&|r| r.api_key_id.as_deref());
    let model = s(&|r| Some(&r.model));
    let client_ip = s(&|r| Some(&r.client_ip));
    let country = s(&|r| r.country);
    let user_agent = s(&|r| r.user_agent.as_deref());
    let tls_ja4 = s(&|r| r.tls_ja4);
    let system = s(&|r| r.system.as_deref());
    let response = s(&|_| None);
    let conversation_id = s(&|r| r.conversation_id.as_deref());
    let u32s = |f: &dyn Fn(&Exchange) -> Option<u32>| -> ArrayRef {
        let mut b = UInt32Builder::with_capacity(n);
        for r in rows {
            b.append_option(f(r));
        }
        Arc::new(b.finish())
    };
    let asn = u32s(&|r| r.asn);
    let max_tokens = u32s(&|r| r.max_tokens);
    let input_tokens = u32s(&|r| Some(r.input_tokens));
    let output_tokens = u32s(&|r| Some(r.output_tokens));
    let reasoning_tokens = u32s(&|r| r.reasoning_tokens);
    let mut temperature = Float32Builder::with_capacity(n);
    let mut stream = BooleanBuilder::with_capacity(n);
    let mut status = UInt16Builder::with_capacity(n);
    let mut tools = ListBuilder::new(StringBuilder::new());
    // Prompt text is most of the bytes: size its buffer exactly, once.
    let turns: usize = rows.iter().map(|r| r.messages.len()).sum();
    let text: usize = rows
        .iter()
        .flat_map(|r| &r.messages)
        .map(|(_, c)| c.len())
        .sum();
    let message_builders: Vec<Box<dyn ArrayBuilder>> = vec![
        Box::new(StringBuilder::with_capacity(turns, turns * 9)),
        Box::new(StringBuilder::with_capacity(turns, text)),
    ];
    let mut messages = ListBuilder::with_capacity(
        StructBuilder::new(built_message_fields(), message_builders),
        n,
    )
    .with_field(Arc::new(Field::new(
        "item",
        DataType::Struct(built_message_fields()),
        true,
    )));
    for r in rows {
        ts.append_value(r.ts);
        temperature.append_option(r.temperature);
        stream.append_option(r.stream);
        status.append_value(r.status);
        match &r.tools {
            Some(t) => {
                for x in t {
                    tools.values().append_value(x);
                }
                tools.append(true);
            }
            None => tools.append(false),
        }
        let sb = messages.values();
        for (role, content) in &r.messages {
            sb.field_builder::<StringBuilder>(0)
                .unwrap()
                .append_value(role);
            sb.field_builder::<StringBuilder>(1)
                .unwrap()
                .append_value(content);
            sb.append(true);
        }
        messages.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ts.finish().with_timezone("UTC")),
        request_id,
        account_id,
        api_key_id,
        model,
        client_ip,
        asn,
        country,
        user_agent,
        tls_ja4,
        system,
        Arc::new(messages.finish()),
        Arc::new(tools.finish()),
        max_tokens,
        Arc::new(temperature.finish()),
        Arc::new(stream.finish()),
        input_tokens,
        output_tokens,
        reasoning_tokens,
        response,
        Arc::new(status.finish()),
        conversation_id,
    ];
    RecordBatch::try_new(schema.clone(), columns).expect("simulated rows follow the contract")
}

/// Messages as they are built and written: `{role, content}`, both plain strings. (The
/// contract reads `content` as a string view; writing views made the Parquet writer slower.)
fn built_message_fields() -> Fields {
    Fields::from(vec![
        Field::new("role", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
    ])
}

/// The schema of the written exchanges: the contract's, with plain-string message content.
fn file_schema() -> SchemaRef {
    let contract = Table::Exchanges.schema();
    let fields: Vec<Field> = contract
        .fields()
        .iter()
        .map(|f| {
            if f.name() == "messages" {
                let item = Field::new("item", DataType::Struct(built_message_fields()), true);
                f.as_ref()
                    .clone()
                    .with_data_type(DataType::List(Arc::new(item)))
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(
        fields,
        contract.metadata().clone(),
    ))
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'a str,
    content: &'a str,
}

/// An exchange as a JSON Lines record of the contract.
#[derive(Serialize)]
struct ExchangeJson<'a> {
    ts: String,
    request_id: &'a str,
    account_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key_id: Option<&'a str>,
    model: &'a str,
    client_ip: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    asn: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    country: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_ja4: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
    messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<&'a [&'static str]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    input_tokens: u32,
    output_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_tokens: Option<u32>,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    conversation_id: Option<&'a str>,
}

impl<'a> From<&'a Exchange> for ExchangeJson<'a> {
    fn from(r: &'a Exchange) -> Self {
        ExchangeJson {
            ts: rfc3339(r.ts),
            request_id: &r.request_id,
            account_id: &r.account_id,
            api_key_id: r.api_key_id.as_deref(),
            model: &r.model,
            client_ip: &r.client_ip,
            asn: r.asn,
            country: r.country,
            user_agent: r.user_agent.as_deref(),
            tls_ja4: r.tls_ja4,
            system: r.system.as_deref(),
            messages: r
                .messages
                .iter()
                .map(|(role, content)| Message { role, content })
                .collect(),
            tools: r.tools.as_deref(),
            max_tokens: r.max_tokens,
            temperature: r.temperature,
            stream: r.stream,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            reasoning_tokens: r.reasoning_tokens,
            status: r.status,
            conversation_id: r.conversation_id.as_deref(),
        }
    }
}

fn write_jsonl<T: Serialize>(path: &Path, rows: impl Iterator<Item = T>) -> Result<(), WriteError> {
    let f = File::create(path).map_err(io(path))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    for r in rows {
        serde_json::to_writer(&mut w, &r).map_err(|e| enc(path)(e.to_string()))?;
        w.write_all(b"\n").map_err(io(path))?;
    }
    w.flush().map_err(io(path))
}

#[derive(Serialize)]
struct AccountJson<'a> {
    account_id: &'a str,
    created_at: String,
    email_domain: &'a str,
    verification: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_fingerprint: Option<&'a str>,
    billing_country: &'a str,
    signup_ip: &'a str,
}

#[derive(Serialize)]
struct ReleaseJson<'a> {
    model: &'a str,
    released_at: String,
}

#[derive(Serialize)]
struct LabelJson<'a> {
    account_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    campaign: Option<&'a str>,
}

fn campaign_of<'a>(world: &'a World, a: &Account) -> Option<&'a str> {
    world.campaign(a.class).map(|c| c.spec.id.as_str())
}

/// Writes `accounts`, `model_releases`, `labels` and `truth.csv`.
pub fn write_tables(world: &World, dir: &Path, format: OutFormat) -> Result<(), WriteError> {
    let ext = format.ext();
    let accounts: Vec<AccountJson> = world
        .accounts
        .iter()
        .map(|a| AccountJson {
            account_id: &a.id,
            created_at: rfc3339(a.created_at),
            email_domain: &a.email_domain,
            verification: a.verification,
            payment_fingerprint: a.payment.as_deref(),
            billing_country: a.billing_country,
            signup_ip: &a.signup_ip,
        })
        .collect();
    let release_day = |m: &str| {
        if m == world.scenario.release.model {
            world.release
        } else {
            world.start - 120 * crate::world::MICROS_PER_DAY
        }
    };
    let mut models: Vec<&str> = world.scenario.models.iter().map(String::as_str).collect();
    models.push(&world.scenario.release.model);
    let releases: Vec<ReleaseJson> = models
        .iter()
        .map(|m| ReleaseJson {
            model: m,
            released_at: rfc3339(release_day(m)),
        })
        .collect();
    let labels: Vec<LabelJson> = world
        .accounts
        .iter()
        .map(|a| LabelJson {
            account_id: &a.id,
            campaign: campaign_of(world, a),
        })
        .collect();
    match format {
        OutFormat::Jsonl => {
            write_jsonl(&dir.join(format!("accounts.{ext}")), accounts.iter())?;
            write_jsonl(&dir.join(format!("model_releases.{ext}")), releases.iter())?;
            write_jsonl(&dir.join(format!("labels.{ext}")), labels.iter())?;
        }
        OutFormat::Parquet => {
            write_parquet_via_json(dir, Table::Accounts, accounts.iter())?;
            write_parquet_via_json(dir, Table::ModelReleases, releases.iter())?;
            write_parquet_via_json(dir, Table::Labels, labels.iter())?;
        }
    }
    let truth = dir.join("truth.csv");
    let f = File::create(&truth).map_err(io(&truth))?;
    let mut w = BufWriter::new(f);
    writeln!(w, "account_id,class,campaign").map_err(io(&truth))?;
    for a in &world.accounts {
        writeln!(
            w,
            "{},{},{}",
            a.id,
            a.class.name(&world.scenario),
            campaign_of(world, a).unwrap_or("")
        )
        .map_err(io(&truth))?;
    }
    w.flush().map_err(io(&truth))
}

/// Small tables go through the contract's own JSON Lines reader into Arrow, then Parquet:
/// one code path decides their exact schema.
fn write_parquet_via_json<T: Serialize>(
    dir: &Path,
    table: Table,
    rows: impl Iterator<Item = T>,
) -> Result<(), WriteError> {
    let tmp = dir.join(format!(".{}.jsonl", table.name()));
    write_jsonl(&tmp, rows)?;
    let path = dir.join(format!("{}.parquet", table.name()));
    let files = dg_contract::discover(&tmp).map_err(|e| enc(&tmp)(e.to_string()))?;
    let diag = dg_contract::Diagnostics::new(dir.join(".sim-quarantine.jsonl"));
    let batches =
        dg_contract::read_table(table, &files, &dg_contract::ReadOptions::default(), &diag)
            .map_err(|e| enc(&tmp)(e.to_string()))?;
    assert_eq!(
        diag.report().bad_total(),
        0,
        "simulated {table} rows follow the contract"
    );
    let f = File::create(&path).map_err(io(&path))?;
    let mut w = ArrowWriter::try_new(f, table.schema(), Some(props()))
        .map_err(|e| enc(&path)(e.to_string()))?;
    for b in &batches {
        w.write(b).map_err(|e| enc(&path)(e.to_string()))?;
    }
    w.close().map_err(|e| enc(&path)(e.to_string()))?;
    std::fs::remove_file(&tmp).map_err(io(&tmp))?;
    Ok(())
}

/// Class of each account, for reports.
pub fn class_of(world: &World, i: usize) -> Class {
    world.accounts[i].class
}
