//! Scenario files: what population and which campaigns to simulate. A scenario is TOML;
//! unknown keys are rejected so that a typo never silently changes a benchmark. The
//! built-in scenarios live in `scenarios/` at the repository root and are compiled in.

use serde::{Deserialize, Serialize};

/// A whole simulated world.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in reports.
    pub name: String,
    /// One paragraph saying what this scenario is for.
    #[serde(default)]
    pub description: String,
    /// Default seed; `--seed` overrides it.
    #[serde(default)]
    pub seed: u64,
    /// Start of the simulated window, RFC 3339 with offset.
    pub start: String,
    /// Length of the window, in days.
    pub days: f64,
    /// Models available from the start.
    pub models: Vec<String>,
    /// A model released during the window.
    pub release: Release,
    /// Where campaign operators really are.
    pub operator: Operator,
    /// Legitimate customers, hard negatives included.
    pub benign: Benign,
    /// Distillation campaigns.
    #[serde(default, rename = "campaign")]
    pub campaigns: Vec<Campaign>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// Name of the new model.
    pub model: String,
    /// Day of the window (fractional) when it becomes available.
    pub day: f64,
}

/// The restricted region the campaigns operate from.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    /// UTC offset of the operators' working hours, in hours.
    pub utc_offset: i32,
    /// Language of part of the operators' prompts: `zh` or `en`.
    pub language: String,
    /// Countries the campaigns' addresses, billing and sign-ups claim (all allowed ones).
    pub claimed_countries: Vec<String>,
}

/// Size of one class or campaign.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Size {
    /// Number of accounts.
    pub accounts: u64,
    /// Total exchanges over all its accounts.
    pub exchanges: u64,
    /// Inequality of volume between accounts: log-normal sigma of per-account weights.
    #[serde(default = "default_spread")]
    pub spread: f64,
}

fn default_spread() -> f64 {
    1.0
}

/// The benign population. Every class is a hard negative for one trait of an attack.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Benign {
    /// People chatting through apps built on the API: multi-turn, evenings and weekends,
    /// residential and mobile addresses.
    pub chat: Size,
    /// Developers running coding agents with tools, working hours, office and home.
    pub developer: Size,
    /// Enterprise batch pipelines: one template, huge volume, 24/7, cloud addresses.
    pub enterprise: Size,
    /// Evaluation harnesses of research labs: the same public benchmark, "think step by
    /// step", in bursts, several labs.
    pub eval_harness: Size,
    /// Agent platforms serving many end users with tools.
    pub agent_platform: Size,
    /// Routers and resellers: one account, thousands of client addresses, every kind of content.
    pub reseller: Size,
    /// Students behind campus NATs, one e-mail domain per campus, deadline waves.
    pub student: Size,
    /// Startups: employee accounts on one office address, some sharing a card.
    pub startup: Size,
    /// Single verified accounts generating synthetic training data for their own
    /// classifiers (the gray class: benign).
    pub synthetic_data: Size,
}

/// The three campaign archetypes of the public record.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Archetype {
    /// Chain-of-thought elicitation, rubric grading, censorship-safe rewrites; lockstep
    /// timing, few shared cards, hosting addresses.
    Reasoning,
    /// Tool use, coding, data analysis, computer use and vision through accounts from
    /// several access pathways; a reasoning-trace phase later.
    Agentic,
    /// A reselling proxy running many short-lived accounts through a residential proxy
    /// pool, mixed with unrelated customer traffic; pivots to new models within a day.
    Hydra,
}

/// One campaign.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Campaign {
    /// Label written to `labels.campaign` for its accounts.
    pub id: String,
    pub archetype: Archetype,
    #[serde(flatten)]
    pub size: Size,
    /// Day the campaign starts.
    #[serde(default)]
    pub start_day: f64,
    /// Day the campaign ends (default: end of window).
    pub end_day: Option<f64>,
    /// Mean lifetime of one account in days (churn: a retired account is replaced by a new
    /// one). Absent: accounts live for the whole campaign.
    pub account_lifetime_days: Option<f64>,
    /// Share of traffic moved to the newly released model within 24 hours of its release.
    #[serde(default)]
    pub model_pivot: f64,
    /// How the adversary hides.
    #[serde(default)]
    pub adversary: Adversary,
}

/// Adversary knobs. Every default is the naive campaign of the public record.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Adversary {
    /// Random delay added to each request around the orchestrator's dispatch time, in
    /// seconds (lockstep is loose when large). 0 uses the archetype's natural jitter.
    pub timing_jitter_s: f64,
    /// Shape traffic to a human daily and weekly rhythm in the claimed country's time zone.
    pub diurnal: bool,
    /// Most exchanges one account sends per day (0: no cap).
    pub daily_cap: u64,
    /// Share of requests sent through rotating residential proxies instead of the
    /// campaign's own infrastructure.
    pub residential_rotation: f64,
    /// Share of requests carrying an official SDK's user agent and TLS fingerprint.
    pub sdk_mimicry: f64,
    /// Share of prompts whose wrapper is paraphrased from a large grammar instead of the
    /// campaign's few fixed templates.
    pub paraphrase: f64,
    /// Share of the campaign's traffic that is unrelated, benign-looking requests.
    pub benign_mix: f64,
    /// Volume ramps up linearly over this many days from the campaign start.
    pub ramp_days: f64,
    /// Share of accounts that are aged (created months before use) rather than fresh.
    pub aged_accounts: f64,
    /// Share of prompts written in the operators' language (default: archetype's own).
    pub operator_language_share: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("unknown scenario `{0}`: built-in scenarios are {1}; or give a path to a .toml file")]
    Unknown(String, String),
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// Built-in scenarios: (name, TOML text).
pub const BUILT_IN: &[(&str, &str)] = &[
    ("seed", include_str!("../../../scenarios/seed.toml")),
    ("small", include_str!("../../../scenarios/small.toml")),
    ("evasive", include_str!("../../../scenarios/evasive.toml")),
];

impl Scenario {
    /// A built-in scenario by name, or a TOML file by path.
    pub fn load(name_or_path: &str) -> Result<Scenario, ScenarioError> {
        if let Some((name, text)) = BUILT_IN.iter().find(|(n, _)| *n == name_or_path) {
            return Scenario::parse(text, &format!("scenarios/{name}.toml"));
        }
        if !name_or_path.ends_with(".toml") && !std::path::Path::new(name_or_path).exists() {
            let names = BUILT_IN
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ScenarioError::Unknown(name_or_path.into(), names));
        }
        let text = std::fs::read_to_string(name_or_path).map_err(|source| ScenarioError::Read {
            path: name_or_path.into(),
            source,
        })?;
        Scenario::parse(&text, name_or_path)
    }

    pub fn parse(text: &str, path: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: path.into(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        s.validate().map_err(|message| ScenarioError::Invalid {
            path: path.into(),
            message,
        })?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), String> {
        chrono::DateTime::parse_from_rfc3339(&self.start)
            .map_err(|e| format!("start = {:?} is not RFC 3339: {e}", self.start))?;
        if !(self.days > 0.0 && self.days <= 366.0) {
            return Err(format!("days = {} must be in (0, 366]", self.days));
        }
        if self.models.is_empty() {
            return Err("models must name at least one model".into());
        }
        if !(0.0..self.days).contains(&self.release.day) {
            return Err(format!(
                "release.day = {} must fall inside the window",
                self.release.day
            ));
        }
        if self.operator.claimed_countries.is_empty() {
            return Err("operator.claimed_countries must not be empty".into());
        }
        let mut ids = std::collections::HashSet::new();
        for c in &self.campaigns {
            if c.id.is_empty() || !ids.insert(c.id.as_str()) {
                return Err(format!("campaign id {:?} is empty or repeated", c.id));
            }
            let end = c.end_day.unwrap_or(self.days);
            if !(0.0 <= c.start_day && c.start_day < end && end <= self.days) {
                return Err(format!(
                    "campaign {}: start_day/end_day outside the window",
                    c.id
                ));
            }
            let a = &c.adversary;
            for (name, v) in [
                ("residential_rotation", a.residential_rotation),
                ("sdk_mimicry", a.sdk_mimicry),
                ("paraphrase", a.paraphrase),
                ("benign_mix", a.benign_mix),
                ("aged_accounts", a.aged_accounts),
                ("model_pivot", c.model_pivot),
                (
                    "operator_language_share",
                    a.operator_language_share.unwrap_or(0.0),
                ),
            ] {
                if !(0.0..=1.0).contains(&v) {
                    return Err(format!("campaign {}: {name} = {v} must be in [0, 1]", c.id));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_scenarios_parse() {
        for (name, _) in BUILT_IN {
            let s = Scenario::load(name).unwrap();
            assert_eq!(&s.name, name);
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let (_, text) = BUILT_IN[1];
        let bad = text.replacen("days =", "dayz = 3\ndays =", 1);
        let e = Scenario::parse(&bad, "x.toml").unwrap_err().to_string();
        assert!(e.contains("dayz"), "{e}");
        let e = Scenario::load("nonexistent").unwrap_err().to_string();
        assert!(
            e.contains("built-in scenarios are seed, small, evasive"),
            "{e}"
        );
    }
}
