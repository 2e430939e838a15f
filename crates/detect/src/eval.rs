//! Scoring a result against ground truth: account recall, benign false-positive rate (overall
//! and per class), exchange-weighted recall, campaign purity and adjusted Rand index.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::UInt64Type;
use serde::Serialize;

/// One row of `accounts.csv`.
#[derive(Clone, Debug)]
pub struct ResultRow {
    pub verdict: String,
    pub campaign: String,
}

/// Splits one CSV record (RFC 4180 quoting; no embedded newlines in our own files).
pub fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn read_csv(path: &Path, want: &[&str]) -> Result<Vec<Vec<String>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = text.lines();
    let header = split_csv(
        lines
            .next()
            .ok_or(format!("{}: empty file", path.display()))?,
    );
    let idx: Vec<usize> = want
        .iter()
        .map(|w| {
            header
                .iter()
                .position(|h| h.trim() == *w)
                .ok_or(format!("{}: no column {w}", path.display()))
        })
        .collect::<Result<_, _>>()?;
    let mut rows = Vec::new();
    for (n, l) in lines.enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let f = split_csv(l);
        let row: Option<Vec<String>> = idx.iter().map(|&i| f.get(i).cloned()).collect();
        rows.push(row.ok_or(format!("{}:{}: too few fields", path.display(), n + 2))?);
    }
    Ok(rows)
}

pub fn read_result(dir: &Path) -> Result<HashMap<String, ResultRow>, String> {
    let rows = read_csv(
        &dir.join("accounts.csv"),
        &["account_id", "verdict", "campaign_id"],
    )?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r[0].clone(),
                ResultRow {
                    verdict: r[1].clone(),
                    campaign: r[2].clone(),
                },
            )
        })
        .collect())
}

/// The `labels` table (account → true campaign, "" for benign) from files or directories in
/// the data contract; bad records go to `quarantine`. Also returns how many were bad.
pub async fn read_labels(
    paths: &[std::path::PathBuf],
    quarantine: &Path,
) -> Result<(HashMap<String, String>, u64), crate::AnalyzeError> {
    let inputs = dg_engine::Inputs {
        labels: paths.to_vec(),
        ..Default::default()
    };
    let diag = std::sync::Arc::new(dg_contract::Diagnostics::new(quarantine));
    let engine = dg_engine::Engine::open(&inputs, Default::default(), diag.clone())?;
    let batches = engine
        .query("SELECT account_id, campaign FROM labels")
        .await?;
    diag.flush()
        .map_err(|e| crate::AnalyzeError::Other(e.to_string()))?;
    let mut out = HashMap::new();
    for b in batches {
        let ids = b.column(0).as_string::<i32>();
        let camp = b.column(1).as_string::<i32>();
        for i in 0..b.num_rows() {
            let c = if camp.is_null(i) { "" } else { camp.value(i) };
            out.insert(ids.value(i).to_string(), c.to_string());
        }
    }
    Ok((out, diag.report().bad_total()))
}

/// `truth.csv`: account_id → class.
pub fn read_truth(path: &Path) -> Result<HashMap<String, String>, String> {
    Ok(read_csv(path, &["account_id", "class"])?
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect())
}

/// Exchanges per account from the result's account feature table.
pub fn read_exchanges(dir: &Path) -> Result<HashMap<String, u64>, String> {
    let path = dir.join("account_features.parquet");
    let f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .and_then(|b| b.build())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = HashMap::new();
    for b in reader {
        let b = b.map_err(|e| format!("{}: {e}", path.display()))?;
        let ids = b
            .column_by_name("account_id")
            .ok_or("no account_id")?
            .as_string::<i32>();
        let n = b
            .column_by_name("exchanges")
            .ok_or("no exchanges")?
            .as_primitive::<UInt64Type>();
        for i in 0..b.num_rows() {
            out.insert(ids.value(i).to_string(), n.value(i));
        }
    }
    Ok(out)
}

#[derive(Clone, Debug, Serialize)]
pub struct ClassRate {
    pub class: String,
    pub accounts: usize,
    pub flagged: usize,
    pub suspicious: usize,
    pub rate: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub attack_accounts: usize,
    pub benign_accounts: usize,
    pub account_recall: f64,
    pub exchange_recall: f64,
    pub benign_flagged: usize,
    pub benign_fpr: f64,
    pub per_class: Vec<ClassRate>,
    pub predicted_campaigns: usize,
    pub true_campaigns: usize,
    pub campaign_purity: f64,
    pub adjusted_rand_index: f64,
    /// Accounts in labels but not in the result (counted as missed when attack).
    pub missing_from_result: usize,
}

/// `labels`: account → true campaign ("" benign). `truth`: account → class, optional.
pub fn evaluate(
    labels: &HashMap<String, String>,
    truth: Option<&HashMap<String, String>>,
    result: &HashMap<String, ResultRow>,
    exchanges: &HashMap<String, u64>,
) -> EvalReport {
    let (mut attack, mut benign, mut hit, mut fp, mut missing) = (0, 0, 0, 0, 0);
    let (mut ex_all, mut ex_hit) = (0u64, 0u64);
    let mut per_class: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    let mut truth_lab = Vec::new();
    let mut pred_lab = Vec::new();
    let mut names: Vec<&String> = labels.keys().collect();
    names.sort();
    for id in names {
        let camp = &labels[id];
        let r = result.get(id);
        if r.is_none() {
            missing += 1;
        }
        let flagged = r.is_some_and(|r| r.verdict == "attack");
        let suspicious = r.is_some_and(|r| r.verdict == "suspicious");
        let ex = exchanges.get(id).copied().unwrap_or(0);
        if camp.is_empty() {
            benign += 1;
            fp += usize::from(flagged);
        } else {
            attack += 1;
            hit += usize::from(flagged);
            ex_all += ex;
            if flagged {
                ex_hit += ex;
            }
        }
        let class = truth.and_then(|t| t.get(id).cloned()).unwrap_or_else(|| {
            if camp.is_empty() {
                "benign".into()
            } else {
                camp.clone()
            }
        });
        let e = per_class.entry(class).or_default();
        e.0 += 1;
        e.1 += usize::from(flagged);
        e.2 += usize::from(suspicious);
        // Clustering comparison over accounts that are attack in truth or in the result.
        if !camp.is_empty() || flagged {
            truth_lab.push(if camp.is_empty() {
                "benign".to_string()
            } else {
                camp.clone()
            });
            pred_lab.push(match r {
                Some(r) if flagged && !r.campaign.is_empty() => r.campaign.clone(),
                Some(_) if flagged => format!("single:{id}"),
                _ => "not-flagged".into(),
            });
        }
    }
    // Purity: each predicted campaign's largest true group, weighted by size.
    let mut by_pred: HashMap<&str, HashMap<&str, usize>> = HashMap::new();
    for (t, p) in truth_lab.iter().zip(&pred_lab) {
        if p != "not-flagged" {
            *by_pred.entry(p).or_default().entry(t).or_default() += 1;
        }
    }
    let total: usize = by_pred.values().flat_map(|m| m.values()).sum();
    let pure: usize = by_pred
        .values()
        .map(|m| m.values().copied().max().unwrap_or(0))
        .sum();
    let predicted = result
        .values()
        .filter(|r| !r.campaign.is_empty())
        .map(|r| r.campaign.as_str())
        .collect::<std::collections::HashSet<_>>()
        .len();
    let true_campaigns = labels
        .values()
        .filter(|c| !c.is_empty())
        .collect::<std::collections::HashSet<_>>()
        .len();
    let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    EvalReport {
        attack_accounts: attack,
        benign_accounts: benign,
        account_recall: ratio(hit, attack),
        exchange_recall: if ex_all == 0 {
            1.0
        } else {
            ex_hit as f64 / ex_all as f64
        },
        benign_flagged: fp,
        benign_fpr: if benign == 0 {
            0.0
        } else {
            fp as f64 / benign as f64
        },
        per_class: per_class
            .into_iter()
            .map(|(class, (n, f, s))| ClassRate {
                class,
                accounts: n,
                flagged: f,
                suspicious: s,
                rate: ratio(f, n),
            })
            .collect(),
        predicted_campaigns: predicted,
        true_campaigns,
        campaign_purity: ratio(pure, total),
        adjusted_rand_index: adjusted_rand_index(&truth_lab, &pred_lab),
        missing_from_result: missing,
    }
}

/// Adjusted Rand index of two labelings of the same items (Hubert and Arabie, 1985).
pub fn adjusted_rand_index<A: std::hash::Hash + Eq, B: std::hash::Hash + Eq>(
    a: &[A],
    b: &[B],
) -> f64 {
    let n = a.len();
    if n < 2 {
        return 1.0;
    }
    let c2 = |x: usize| (x * x.saturating_sub(1)) as f64 / 2.0;
    let mut cells: HashMap<(&A, &B), usize> = HashMap::new();
    let mut rows: HashMap<&A, usize> = HashMap::new();
    let mut cols: HashMap<&B, usize> = HashMap::new();
    for (x, y) in a.iter().zip(b) {
        *cells.entry((x, y)).or_default() += 1;
        *rows.entry(x).or_default() += 1;
        *cols.entry(y).or_default() += 1;
    }
    let index: f64 = cells.values().map(|&v| c2(v)).sum();
    let sa: f64 = rows.values().map(|&v| c2(v)).sum();
    let sb: f64 = cols.values().map(|&v| c2(v)).sum();
    let expected = sa * sb / c2(n);
    let max = (sa + sb) / 2.0;
    if (max - expected).abs() < 1e-12 {
        return 1.0;
    }
    (index - expected) / (max - expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ari_known_values() {
        assert_eq!(
            adjusted_rand_index(&[1, 1, 2, 2], &["a", "a", "b", "b"]),
            1.0
        );
        // Label names do not matter, only the partition.
        assert_eq!(adjusted_rand_index(&[1, 1, 2, 2], &[9, 9, 3, 3]), 1.0);
        // sklearn: adjusted_rand_score([0,0,1,1],[0,0,1,2]) = 0.5714285714
        let v = adjusted_rand_index(&[0, 0, 1, 1], &[0, 0, 1, 2]);
        assert!((v - 0.571_428_571_4).abs() < 1e-9, "{v}");
        // Independent labelings score near or below zero.
        assert!(adjusted_rand_index(&[0, 0, 1, 1], &[0, 1, 0, 1]) < 0.0);
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(
            split_csv("a,\"b,c\",\"d\"\"e\",,"),
            vec!["a", "b,c", "d\"e", "", ""]
        );
    }

    #[test]
    fn metrics_on_a_toy_result() {
        let labels: HashMap<String, String> = [
            ("a1", "X"),
            ("a2", "X"),
            ("a3", "Y"),
            ("b1", ""),
            ("b2", ""),
        ]
        .into_iter()
        .map(|(a, c)| (a.to_string(), c.to_string()))
        .collect();
        let res = |v: &str, c: &str| ResultRow {
            verdict: v.into(),
            campaign: c.into(),
        };
        let result: HashMap<String, ResultRow> = [
            ("a1", res("attack", "c1")),
            ("a2", res("attack", "c1")),
            ("a3", res("benign", "")),
            ("b1", res("attack", "c1")),
            ("b2", res("benign", "")),
        ]
        .into_iter()
        .map(|(a, r)| (a.to_string(), r))
        .collect();
        let ex: HashMap<String, u64> = [("a1", 10), ("a2", 10), ("a3", 80)]
            .into_iter()
            .map(|(a, n)| (a.to_string(), n))
            .collect();
        let r = evaluate(&labels, None, &result, &ex);
        assert!((r.account_recall - 2.0 / 3.0).abs() < 1e-9);
        assert!((r.exchange_recall - 0.2).abs() < 1e-9);
        assert_eq!(r.benign_flagged, 1);
        assert!((r.benign_fpr - 0.5).abs() < 1e-9);
        assert!((r.campaign_purity - 2.0 / 3.0).abs() < 1e-9);
        assert!(r.adjusted_rand_index < 1.0);
    }
}
