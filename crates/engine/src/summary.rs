//! The figures `distillguard check` prints, each table read in one scan (grouping sets), so
//! the summary costs one pass over the logs and its quarantine counts are complete.

use arrow::array::AsArray;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use arrow::record_batch::RecordBatch;
use dg_contract::Table;
use serde::Serialize;

use crate::session::{Engine, EngineError};

/// A value and how many rows have it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Count {
    /// `None` when the field is absent.
    pub value: Option<String>,
    pub rows: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ExchangeSummary {
    pub rows: u64,
    pub accounts: u64,
    /// First and last `ts`, as UTC microseconds.
    pub first_ts: Option<i64>,
    pub last_ts: Option<i64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Every model, most used first.
    pub models: Vec<Count>,
    /// Every ASN, most used first.
    pub asns: Vec<Count>,
    /// Every country, most used first.
    pub countries: Vec<Count>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct AccountSummary {
    pub rows: u64,
    pub first_created: Option<i64>,
    pub last_created: Option<i64>,
    pub with_payment: u64,
    pub verification: Vec<Count>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Release {
    pub model: String,
    pub released_at: i64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub exchanges: ExchangeSummary,
    pub accounts: AccountSummary,
    pub model_releases: Vec<Release>,
    /// Rows per campaign (`None`: benign); present only when labels were given.
    pub labels: Option<Vec<Count>>,
}

fn ints(batch: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>, EngineError> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| EngineError::Query(format!("summary column {name} missing")))?;
    let col = cast(col, &DataType::Int64).map_err(|e| EngineError::Query(e.to_string()))?;
    Ok(col.as_primitive::<Int64Type>().iter().collect())
}

fn strings(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>, EngineError> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| EngineError::Query(format!("summary column {name} missing")))?;
    let col = cast(col, &DataType::Utf8).map_err(|e| EngineError::Query(e.to_string()))?;
    Ok(col
        .as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_owned))
        .collect())
}

fn sorted(mut v: Vec<Count>) -> Vec<Count> {
    v.sort_by(|a, b| b.rows.cmp(&a.rows).then_with(|| a.value.cmp(&b.value)));
    v
}

fn u(v: Option<i64>) -> u64 {
    v.unwrap_or(0).max(0) as u64
}

const EXCHANGES_SQL: &str = "
SELECT grouping(model) AS g_model, grouping(asn) AS g_asn, grouping(country) AS g_country,
       grouping(account_id) AS g_account,
       model, CAST(asn AS VARCHAR) AS asn, country,
       count(*) AS n, min(CAST(ts AS BIGINT)) AS first_ts, max(CAST(ts AS BIGINT)) AS last_ts,
       sum(input_tokens) AS in_tok, sum(output_tokens) AS out_tok
FROM exchanges
GROUP BY GROUPING SETS ((), (model), (asn), (country), (account_id))";

const ACCOUNTS_SQL: &str = "
SELECT grouping(verification) AS g_verification, verification, count(*) AS n,
       min(CAST(created_at AS BIGINT)) AS first_created, max(CAST(created_at AS BIGINT)) AS last_created,
       count(payment_fingerprint) AS with_payment
FROM accounts
GROUP BY GROUPING SETS ((), (verification))";

async fn exchanges(engine: &Engine) -> Result<ExchangeSummary, EngineError> {
    let mut s = ExchangeSummary::default();
    let (mut models, mut asns, mut countries) = (Vec::new(), Vec::new(), Vec::new());
    for batch in engine.query(EXCHANGES_SQL).await? {
        let (gm, ga, gc, gacc) = (
            ints(&batch, "g_model")?,
            ints(&batch, "g_asn")?,
            ints(&batch, "g_country")?,
            ints(&batch, "g_account")?,
        );
        let (model, asn, country) = (
            strings(&batch, "model")?,
            strings(&batch, "asn")?,
            strings(&batch, "country")?,
        );
        let (n, first, last, tin, tout) = (
            ints(&batch, "n")?,
            ints(&batch, "first_ts")?,
            ints(&batch, "last_ts")?,
            ints(&batch, "in_tok")?,
            ints(&batch, "out_tok")?,
        );
        for i in 0..batch.num_rows() {
            let rows = u(n[i]);
            match (gm[i], ga[i], gc[i], gacc[i]) {
                (Some(0), ..) => models.push(Count {
                    value: model[i].clone(),
                    rows,
                }),
                (_, Some(0), ..) => asns.push(Count {
                    value: asn[i].clone(),
                    rows,
                }),
                (_, _, Some(0), _) => countries.push(Count {
                    value: country[i].clone(),
                    rows,
                }),
                (_, _, _, Some(0)) => s.accounts += 1,
                _ => {
                    s.rows = rows;
                    s.first_ts = first[i];
                    s.last_ts = last[i];
                    s.input_tokens = u(tin[i]);
                    s.output_tokens = u(tout[i]);
                }
            }
        }
    }
    s.models = sorted(models);
    s.asns = sorted(asns);
    s.countries = sorted(countries);
    Ok(s)
}

async fn accounts(engine: &Engine) -> Result<AccountSummary, EngineError> {
    let mut s = AccountSummary::default();
    let mut verification = Vec::new();
    for batch in engine.query(ACCOUNTS_SQL).await? {
        let g = ints(&batch, "g_verification")?;
        let v = strings(&batch, "verification")?;
        let (n, first, last, pay) = (
            ints(&batch, "n")?,
            ints(&batch, "first_created")?,
            ints(&batch, "last_created")?,
            ints(&batch, "with_payment")?,
        );
        for i in 0..batch.num_rows() {
            if g[i] == Some(0) {
                verification.push(Count {
                    value: v[i].clone(),
                    rows: u(n[i]),
                });
            } else {
                s.rows = u(n[i]);
                s.first_created = first[i];
                s.last_created = last[i];
                s.with_payment = u(pay[i]);
            }
        }
    }
    s.verification = sorted(verification);
    Ok(s)
}

/// Reads every registered table once and returns its figures.
pub async fn summarize(engine: &Engine) -> Result<Summary, EngineError> {
    let exchanges = exchanges(engine).await?;
    let accounts = accounts(engine).await?;
    let mut model_releases = Vec::new();
    for batch in engine
        .query(
            "SELECT model, CAST(released_at AS BIGINT) AS t FROM model_releases ORDER BY t, model",
        )
        .await?
    {
        let (m, t) = (strings(&batch, "model")?, ints(&batch, "t")?);
        for i in 0..batch.num_rows() {
            model_releases.push(Release {
                model: m[i].clone().unwrap_or_default(),
                released_at: t[i].unwrap_or_default(),
            });
        }
    }
    let labels = if engine.files(Table::Labels).is_empty()
        && engine.ctx.table_exist(Table::Labels.name()).ok() != Some(true)
    {
        None
    } else {
        let mut counts = Vec::new();
        for batch in engine
            .query("SELECT campaign, count(*) AS n FROM labels GROUP BY campaign")
            .await?
        {
            let (c, n) = (strings(&batch, "campaign")?, ints(&batch, "n")?);
            for i in 0..batch.num_rows() {
                counts.push(Count {
                    value: c[i].clone(),
                    rows: u(n[i]),
                });
            }
        }
        Some(sorted(counts))
    };
    Ok(Summary {
        exchanges,
        accounts,
        model_releases,
        labels,
    })
}
