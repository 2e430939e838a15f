//! Every weight and threshold of detection, in one typed config with documented defaults.
//! `distillguard analyze --config dg.toml` reads a TOML file with any subset of these keys
//! (unknown keys are an error); `distillguard analyze --print-config` prints the defaults.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub link: LinkConfig,
    pub traits: TraitConfig,
    pub verdict: VerdictConfig,
}

/// How accounts are linked: shared values weighed by rarity, grouped into independent kinds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkConfig {
    /// A value shared by more accounts than this is infrastructure (a NAT, a cloud egress, a
    /// popular SDK), never a link.
    pub max_accounts_per_value: usize,
    /// A value shared by more than this share of all accounts is infrastructure too.
    pub max_share_per_value: f64,
    /// Values with more holders than this are not expanded into account pairs (cost); they
    /// still count as campaign-wide indicators or through address pools.
    pub max_pair_accounts: usize,
    /// Edge weight needed to put two accounts in one cluster (sum over evidence kinds; each
    /// kind contributes at most its weight times the rarity of the best shared value).
    pub edge_threshold: f64,
    /// Weights per evidence kind (rarity 1.0 = a value shared only by these accounts).
    pub w_address: f64,
    pub w_prefix: f64,
    pub w_signup_address: f64,
    pub w_payment: f64,
    pub w_email_domain: f64,
    pub w_signup_burst: f64,
    pub w_client: f64,
    pub w_system_prompt: f64,
    pub w_template: f64,
    /// Weight of lockstep timing between accounts already sharing some value: the Jaccard of
    /// their active 10-minute buckets minus what two independent accounts as busy would
    /// share by chance; counts from `lockstep_min_jaccard` upward, fully from 0.5.
    pub w_lockstep: f64,
    pub lockstep_min_jaccard: f64,
    /// Accounts created in the same window of this many minutes share a "sign-up burst".
    pub signup_burst_minutes: i64,
    /// E-mail domains used by accounts of more than this many billing countries are public
    /// mail providers, not an organisation.
    pub public_domain_countries: usize,
    /// A value too common for pairwise links still joins its holders when their mean
    /// suspicion reaches `wide_mean_suspicion` and at least `wide_min_share` of them reach
    /// `wide_member_suspicion` (only those are joined): a campaign's private client, proxy
    /// pool or card, as opposed to a NAT or SDK shared with ordinary customers.
    pub wide_mean_suspicion: f64,
    pub wide_member_suspicion: f64,
    pub wide_min_share: f64,
    /// Address pools: two suspicious accounts, each with at least `pool_min_addresses`
    /// addresses, whose address sets have a Jaccard similarity of `pool_min_jaccard` or more
    /// rotate through one proxy pool. `pool_band` smallest-hash addresses form the LSH keys.
    pub pool_min_addresses: usize,
    pub pool_min_jaccard: f64,
    pub pool_band: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            max_accounts_per_value: 5000,
            max_share_per_value: 0.05,
            max_pair_accounts: 64,
            edge_threshold: 0.9,
            w_address: 0.6,
            w_prefix: 0.3,
            w_signup_address: 0.5,
            w_payment: 1.0,
            w_email_domain: 0.3,
            w_signup_burst: 0.2,
            w_client: 0.4,
            w_system_prompt: 0.4,
            w_template: 0.3,
            w_lockstep: 0.5,
            lockstep_min_jaccard: 0.15,
            signup_burst_minutes: 60,
            public_domain_countries: 6,
            wide_mean_suspicion: 0.33,
            wide_member_suspicion: 0.22,
            wide_min_share: 0.8,
            pool_min_addresses: 8,
            pool_min_jaccard: 0.15,
            pool_band: 8,
        }
    }
}

/// Per-account traits: each in [0, 1], combined with these weights into the account's
/// suspicion. No single trait can make a verdict (see [`VerdictConfig`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TraitConfig {
    /// Fresh account: first exchange within `young_days` of sign-up (half weight up to 7×).
    pub w_young: f64,
    pub young_days: f64,
    /// Short-lived account inside the observed window (churn).
    pub w_churn: f64,
    pub churn_max_days: f64,
    /// Daily rhythm that places the operator in another time zone than the claimed country.
    pub w_timezone: f64,
    /// Hours of difference between implied and claimed time zone that count as a mismatch.
    pub timezone_min_hours: i32,
    /// Share of prompts in a script not used in the claimed country.
    pub w_language: f64,
    pub language_min_share: f64,
    /// Share of requests that elicit training signal (long outputs, embedded texts, rubrics,
    /// reasoning-heavy outputs).
    pub w_elicit: f64,
    /// Tool-use trajectories.
    pub w_tool_trace: f64,
    /// Moved onto a newly released model within `pivot_hours` of its release.
    pub w_pivot: f64,
    pub pivot_hours: f64,
    pub pivot_min_share: f64,
    /// Exchanges below which rhythm and language are not judged.
    pub min_exchanges_for_rhythm: u64,
    /// Added to an account's suspicion when a partner's shared indicator matches one of its
    /// values (`distillguard import stix`).
    pub partner_boost: f64,
}

impl Default for TraitConfig {
    fn default() -> Self {
        TraitConfig {
            w_young: 1.0,
            young_days: 2.0,
            w_churn: 1.0,
            churn_max_days: 7.0,
            w_timezone: 1.0,
            timezone_min_hours: 4,
            w_language: 1.0,
            language_min_share: 0.04,
            w_elicit: 1.0,
            w_tool_trace: 0.5,
            w_pivot: 0.5,
            pivot_hours: 48.0,
            pivot_min_share: 0.2,
            min_exchanges_for_rhythm: 12,
            partner_boost: 0.35,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerdictConfig {
    /// A cluster needs at least this many accounts to be a campaign.
    pub min_campaign_accounts: usize,
    /// Cluster score from which a cluster is a campaign. The score is the mean member
    /// suspicion × (1 + `w_identity_spread` × spread): one operator posing as many customers
    /// claims many countries or many organisations (private e-mail domains) and pays with a
    /// pool of cards each shared by several accounts, where an office, a campus or a company
    /// presents one country and one domain and pays with one card or each employee's own.
    /// With s(k) = min(1, (k − 1) / 3) for k distinct values, spread = max(s(countries),
    /// s(private domains)) + `card_spread` × s(cards shared by two or more members).
    pub campaign_suspicion: f64,
    pub w_identity_spread: f64,
    pub card_spread: f64,
    /// Suspicion from which an account outside any campaign is `suspicious`.
    pub suspicious_account: f64,
    /// Example request ids listed per campaign.
    pub example_requests: usize,
    /// Shared indicators listed per campaign.
    pub max_indicators: usize,
}

impl Default for VerdictConfig {
    fn default() -> Self {
        VerdictConfig {
            min_campaign_accounts: 3,
            campaign_suspicion: 0.45,
            w_identity_spread: 0.5,
            card_spread: 0.5,
            suspicious_account: 0.55,
            example_requests: 5,
            max_indicators: 25,
        }
    }
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_files_and_unknown_keys() {
        let c = Config::from_toml("[verdict]\nmin_campaign_accounts = 5\n").unwrap();
        assert_eq!(c.verdict.min_campaign_accounts, 5);
        assert_eq!(c.link, LinkConfig::default());
        assert!(Config::from_toml("[verdict]\nmin_campaing_accounts = 5\n").is_err());
        let round = Config::from_toml(&Config::default().to_toml()).unwrap();
        assert_eq!(round, Config::default());
    }
}
