//! Gateway decisions: the latest judgement of every account turned into an action, looked up
//! without locks on the hot path.

use std::collections::HashMap;

use dg_detect::analyze::Judged;
use dg_detect::profile::prefix_of;
use dg_detect::verdict::{Campaign, Verdict};
use serde::{Deserialize, Serialize};

use crate::config::ServeConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Throttle,
    Challenge,
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Throttle => "throttle",
            Action::Challenge => "challenge",
            Action::Block => "block",
        }
    }
}

/// What a gateway asks about one request. Every field but `account` is optional.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Query {
    pub account: String,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub ja4: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub prompt: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    pub action: Action,
    pub score: f64,
    pub campaign: Option<String>,
    pub reasons: Vec<String>,
    /// Seconds this decision stays valid (until the next judgement).
    pub ttl: f64,
}

/// One account's latest judgement.
#[derive(Clone, Debug, Serialize)]
pub struct AccountView {
    pub account_id: String,
    pub verdict: Verdict,
    pub score: f64,
    pub campaign: Option<String>,
    pub action: Action,
    pub reasons: Vec<String>,
    pub exchanges: u64,
    pub first_seen: String,
    pub last_seen: String,
}

/// All decisions of one judgement. Immutable: a new judgement builds a new table.
#[derive(Default)]
pub struct Table {
    pub accounts: HashMap<String, AccountView>,
    pub campaigns: Vec<Campaign>,
    /// Campaign infrastructure: address, /24 or /48 prefix, or API key → campaign index.
    infra: HashMap<String, usize>,
    /// Exchanges counted when the judgement started.
    pub exchanges: u64,
    /// Unix time (seconds) of the judgement.
    pub judged_at: f64,
    pub ttl: f64,
}

fn action_of(verdict: Verdict, score: f64, cfg: &ServeConfig) -> Action {
    match verdict {
        Verdict::Attack if score >= cfg.block_score => Action::Block,
        Verdict::Attack => Action::Challenge,
        Verdict::Suspicious if cfg.throttle_suspicious => Action::Throttle,
        _ => Action::Allow,
    }
}

impl Table {
    pub fn build(
        names: &[String],
        profiles: &[dg_detect::profile::Profile],
        judged: Judged,
        exchanges: u64,
        cfg: &ServeConfig,
    ) -> Table {
        let campaigns = judged.outcome.campaigns;
        let mut accounts = HashMap::with_capacity(names.len());
        for ((name, v), p) in names.iter().zip(judged.outcome.accounts).zip(profiles) {
            accounts.insert(
                name.clone(),
                AccountView {
                    account_id: name.clone(),
                    verdict: v.verdict,
                    score: v.score,
                    campaign: v.campaign.map(|c| campaigns[c].id.clone()),
                    action: action_of(v.verdict, v.score, cfg),
                    reasons: v.reasons,
                    exchanges: p.exchanges,
                    first_seen: dg_detect::verdict::rfc3339(p.first_ts),
                    last_seen: dg_detect::verdict::rfc3339(p.last_ts),
                },
            );
        }
        let mut infra = HashMap::new();
        for (i, c) in campaigns.iter().enumerate() {
            for ind in &c.shared_indicators {
                if matches!(ind.kind, "address" | "prefix") {
                    infra.entry(ind.value.clone()).or_insert(i);
                }
            }
            for k in &c.api_keys {
                infra.entry(format!("key:{k}")).or_insert(i);
            }
        }
        Table {
            accounts,
            campaigns,
            infra,
            exchanges,
            judged_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            ttl: cfg.relink_seconds,
        }
    }

    /// The decision for one request.
    pub fn decide(&self, q: &Query, cfg: &ServeConfig) -> Decision {
        let mut d = Decision {
            action: Action::Allow,
            score: 0.0,
            campaign: None,
            reasons: Vec::new(),
            ttl: self.ttl,
        };
        if let Some(a) = self.accounts.get(&q.account) {
            d.action = a.action;
            d.score = a.score;
            d.campaign = a.campaign.clone();
            d.reasons = a.reasons.clone();
        }
        // A key of a campaign under another account id is the campaign's.
        if let Some(key) = &q.key
            && let Some(&c) = self.infra.get(&format!("key:{key}"))
            && d.action != Action::Block
        {
            let c = &self.campaigns[c];
            d.action = Action::Block;
            d.score = d.score.max(c.confidence);
            d.campaign = Some(c.id.clone());
            d.reasons.push(format!("API key used by campaign {}", c.id));
        }
        if cfg.challenge_campaign_infrastructure
            && d.action == Action::Allow
            && let Some(addr) = q.address.as_deref().filter(|a| !a.is_empty())
        {
            let prefix = prefix_of(addr);
            let hit = [addr, prefix.as_str()]
                .into_iter()
                .find_map(|v| self.infra.get(v).map(|&c| (v, c)));
            if let Some((value, c)) = hit {
                let c = &self.campaigns[c];
                d.action = Action::Challenge;
                d.campaign = Some(c.id.clone());
                d.score = d.score.max(c.confidence * 0.5);
                d.reasons.push(format!(
                    "address {value} is shared infrastructure of campaign {}",
                    c.id
                ));
            }
        }
        d
    }
}
