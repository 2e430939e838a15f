//! The service's settings: a `[serve]` section next to the detection sections of the same
//! `dg.toml` that `distillguard analyze --config` reads, so batch and online run on one file.

use dg_detect::Config;
use dg_detect::config::{LinkConfig, TraitConfig, VerdictConfig};
use serde::{Deserialize, Serialize};

/// The whole file: detection settings (exactly those of `analyze`) plus `[serve]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeFile {
    pub serve: ServeConfig,
    pub link: LinkConfig,
    pub traits: TraitConfig,
    pub verdict: VerdictConfig,
}

impl ServeFile {
    pub fn from_toml(text: &str) -> Result<ServeFile, toml::de::Error> {
        toml::from_str(text)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }

    /// The detection part, as `analyze` would read it from the same file.
    pub fn detection(&self) -> Config {
        Config {
            link: self.link.clone(),
            traits: self.traits.clone(),
            verdict: self.verdict.clone(),
        }
    }
}

/// What the gateway is told when the service cannot answer in time (overload).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overload {
    /// Let the request through (availability first).
    FailOpen,
    /// Refuse it (protection first).
    FailClosed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Address the HTTP API listens on.
    pub listen: String,
    /// Seconds between re-judgements of all accounts (traits, links, clusters, verdicts).
    /// Decisions carry this as their `ttl`.
    pub relink_seconds: f64,
    /// Also re-judge after this many new exchanges, whichever comes first (0 = time only).
    pub relink_every_exchanges: u64,
    /// Seconds between checkpoints of the whole state (the write-ahead log is replayed
    /// from the last checkpoint after a crash).
    pub checkpoint_seconds: f64,
    /// `fsync` the write-ahead log before acknowledging events (survives power loss, not
    /// only a killed process).
    pub fsync: bool,
    /// Largest accepted request body, bytes.
    pub max_body_bytes: usize,
    /// Requests handled at once; more are answered 503 (ingest) or with the overload
    /// decision (decide, auth).
    pub max_in_flight: usize,
    pub overload: Overload,
    /// An account judged `attack` with at least this score is blocked; below it, challenged.
    pub block_score: f64,
    /// `suspicious` accounts are throttled.
    pub throttle_suspicious: bool,
    /// Unknown accounts arriving from an address, /24 or API key that a campaign shares are
    /// challenged (new heads of a hydra reuse its proxy pool).
    pub challenge_campaign_infrastructure: bool,
    /// Accounts with no exchange for this many hours (of event time: against the latest
    /// exchange seen, so a fast replay behaves like live traffic) leave memory for the
    /// state directory's cold store and are read back on their next exchange; 0: never.
    pub evict_idle_hours: f64,
    /// At most this many accounts in memory; beyond it the least recently active are
    /// evicted even when not idle. 0: no cap.
    pub max_resident_accounts: usize,
    /// NATS JetStream ingestion and decision publishing (off unless `nats.url` is set).
    pub nats: NatsConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL, e.g. `nats://127.0.0.1:4222`; empty: no NATS.
    pub url: String,
    /// Stream holding exchange events (created if absent, capturing `subjects`).
    pub stream: String,
    pub subjects: Vec<String>,
    /// Durable pull consumer (explicit acks): restarts resume where acks stopped.
    pub consumer: String,
    /// Key-value bucket where decisions other than `allow` are written after each
    /// judgement (key: account id; deleted when an account is allowed again), so gateways
    /// can read them without calling the service.
    pub decisions_bucket: String,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: String::new(),
            stream: "DG_EXCHANGES".into(),
            subjects: vec!["dg.exchanges.>".into()],
            consumer: "distillguard".into(),
            decisions_bucket: "dg_decisions".into(),
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: "127.0.0.1:8700".into(),
            relink_seconds: 30.0,
            relink_every_exchanges: 0,
            checkpoint_seconds: 60.0,
            fsync: true,
            max_body_bytes: 64 << 20,
            max_in_flight: 512,
            overload: Overload::FailOpen,
            block_score: 0.6,
            throttle_suspicious: true,
            challenge_campaign_infrastructure: true,
            evict_idle_hours: 24.0,
            max_resident_accounts: 0,
            nats: NatsConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_for_batch_and_online() {
        let f = ServeFile::from_toml(
            "[serve]\nrelink_seconds = 5\noverload = \"fail-closed\"\n[verdict]\nmin_campaign_accounts = 4\n",
        )
        .unwrap();
        assert_eq!(f.serve.relink_seconds, 5.0);
        assert_eq!(f.serve.overload, Overload::FailClosed);
        assert_eq!(f.detection().verdict.min_campaign_accounts, 4);
        assert!(ServeFile::from_toml("[serve]\nrelink_secs = 5\n").is_err());
        assert!(ServeFile::from_toml("[verdikt]\n").is_err());
        let round = ServeFile::from_toml(&ServeFile::default().to_toml()).unwrap();
        assert_eq!(round, ServeFile::default());
    }
}
