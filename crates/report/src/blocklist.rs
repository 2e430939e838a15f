//! `DIR/blocklist.csv`: what a gateway should do, per account, API key and address.

use std::io::Write;
use std::path::Path;

use dg_detect::Analysis;
use dg_detect::verdict::Verdict;

/// One action.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Action {
    pub action: &'static str,
    pub kind: &'static str,
    pub value: String,
    pub campaign: String,
    pub reason: String,
}

fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Block every account and API key of a campaign; block addresses and challenge prefixes that
/// only campaign accounts used; challenge suspicious accounts.
pub fn actions(a: &Analysis) -> Vec<Action> {
    let mut out = Vec::new();
    for c in &a.outcome.campaigns {
        for id in &c.account_ids {
            out.push(Action {
                action: "block",
                kind: "account",
                value: id.clone(),
                campaign: c.id.clone(),
                reason: format!("member of {} ({} accounts)", c.id, c.accounts),
            });
        }
        for k in &c.api_keys {
            out.push(Action {
                action: "block",
                kind: "api_key",
                value: k.clone(),
                campaign: c.id.clone(),
                reason: format!("key of an account in {}", c.id),
            });
        }
        for i in &c.shared_indicators {
            let exclusive = i.accounts == i.accounts_overall;
            let (action, kind) = match i.kind {
                "address" if exclusive => ("block", "address"),
                "prefix" if exclusive => ("challenge", "prefix"),
                _ => continue,
            };
            out.push(Action {
                action,
                kind,
                value: i.value.clone(),
                campaign: c.id.clone(),
                reason: format!(
                    "used by {} campaign accounts and no other account",
                    i.accounts
                ),
            });
        }
    }
    for (i, v) in a.outcome.accounts.iter().enumerate() {
        if v.verdict == Verdict::Suspicious {
            out.push(Action {
                action: "challenge",
                kind: "account",
                value: a.names[i].clone(),
                campaign: String::new(),
                reason: v.reasons.first().cloned().unwrap_or_default(),
            });
        }
    }
    out
}

pub fn write(a: &Analysis, path: &Path) -> std::io::Result<usize> {
    let rows = actions(a);
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(w, "action,type,value,campaign_id,reason")?;
    for r in &rows {
        writeln!(
            w,
            "{},{},{},{},{}",
            r.action,
            r.kind,
            csv(&r.value),
            csv(&r.campaign),
            csv(&r.reason)
        )?;
    }
    w.flush()?;
    Ok(rows.len())
}
