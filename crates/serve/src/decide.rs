//! Gateway decisions: the latest judgement of every account turned into an action, looked up
//! without locks on the hot path.

use std::collections::HashMap;

use dg_detect::analyze::Judged;
use dg_detect::features::{Request, extract, flag};
use dg_detect::profile::{ELICIT_MASK, prefix_of};
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

/// Elicitation shapes a prompt shows on its own, before any response (embedded text to
/// reconstruct or grade, a rubric), measured by the batch feature code.
pub fn prompt_elicits(prompt: &str) -> Vec<&'static str> {
    // The first 32 KiB show a prompt's shape; a huge body must not stall a gateway thread.
    let mut end = prompt.len().min(32 << 10);
    while !prompt.is_char_boundary(end) {
        end -= 1;
    }
    let f = extract(
        &Request::default(),
        std::iter::once(("user", &prompt[..end])),
        0,
    );
    flag::NAMES
        .iter()
        .filter(|(bit, _)| f.flags & bit & ELICIT_MASK != 0)
        .map(|(_, name)| *name)
        .collect()
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
        // A suspicious account sending a prompt shaped to harvest training signal is
        // challenged rather than throttled. The prompt alone never stops an allowed account:
        // ordinary customers grade and rewrite texts too.
        if d.action == Action::Throttle
            && let Some(p) = q.prompt.as_deref()
        {
            let shapes = prompt_elicits(p);
            if !shapes.is_empty() {
                d.action = Action::Challenge;
                d.reasons.push(format!(
                    "this prompt elicits training signal: {}",
                    shapes.join(", ")
                ));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn view(verdict: Verdict, score: f64, action: Action) -> AccountView {
        AccountView {
            account_id: "a".into(),
            verdict,
            score,
            campaign: None,
            action,
            reasons: vec!["why".into()],
            exchanges: 10,
            first_seen: String::new(),
            last_seen: String::new(),
        }
    }

    #[test]
    fn actions_follow_verdicts_and_prompts_only_escalate_suspicion() {
        let cfg = ServeConfig::default();
        assert_eq!(action_of(Verdict::Attack, 0.9, &cfg), Action::Block);
        assert_eq!(action_of(Verdict::Attack, 0.5, &cfg), Action::Challenge);
        assert_eq!(action_of(Verdict::Suspicious, 0.5, &cfg), Action::Throttle);
        assert_eq!(action_of(Verdict::Benign, 0.1, &cfg), Action::Allow);
        let rubric = "Grade the answer below.\n1. Accuracy (1-10)\n2. Clarity (1-10)\n\
                      3. Completeness (1-10)\n4. Style (1-10)\nAnswer: the sky is blue.";
        assert!(
            !prompt_elicits(rubric).is_empty(),
            "a rubric is elicitation"
        );
        assert!(prompt_elicits("How do I sort a list in Python?").is_empty());

        let mut t = Table::default();
        t.accounts.insert(
            "sus".into(),
            view(Verdict::Suspicious, 0.6, Action::Throttle),
        );
        t.accounts
            .insert("ok".into(), view(Verdict::Benign, 0.1, Action::Allow));
        let ask = |account: &str, prompt: &str| {
            t.decide(
                &Query {
                    account: account.into(),
                    prompt: Some(prompt.into()),
                    ..Query::default()
                },
                &cfg,
            )
        };
        let d = ask("sus", rubric);
        assert_eq!(d.action, Action::Challenge);
        assert!(
            d.reasons.iter().any(|r| r.contains("rubric")),
            "{:?}",
            d.reasons
        );
        assert_eq!(ask("sus", "How do I sort a list?").action, Action::Throttle);
        assert_eq!(ask("ok", rubric).action, Action::Allow);
        assert_eq!(ask("stranger", rubric).action, Action::Allow);
    }
}
