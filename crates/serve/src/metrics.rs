//! Prometheus metrics (`GET /metrics`, text exposition format).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::decide::Action;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub events: Counter,
    pub duplicates: Counter,
    pub bad_events: Counter,
    pub judgements: Counter,
    pub checkpoints: Counter,
    pub overloaded: Counter,
    pub accounts: Gauge,
    pub resident_accounts: Gauge,
    pub cold_accounts: Gauge,
    pub resident_request_ids: Gauge,
    pub evictions: Counter,
    pub reloads: Counter,
    pub background_errors: Counter,
    pub campaigns: Gauge,
    pub judge_seconds: Gauge<f64, AtomicU64>,
    /// Decisions per action, indexed like [`Action`].
    decisions: [Counter; 4],
    pub decide_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("distillguard");
        let m = Metrics {
            events: Counter::default(),
            duplicates: Counter::default(),
            bad_events: Counter::default(),
            judgements: Counter::default(),
            checkpoints: Counter::default(),
            overloaded: Counter::default(),
            accounts: Gauge::default(),
            resident_accounts: Gauge::default(),
            cold_accounts: Gauge::default(),
            resident_request_ids: Gauge::default(),
            evictions: Counter::default(),
            reloads: Counter::default(),
            background_errors: Counter::default(),
            campaigns: Gauge::default(),
            judge_seconds: Gauge::default(),
            decisions: Default::default(),
            decide_seconds: Histogram::new(exponential_buckets(5e-6, 2.0, 16)),
            registry: Registry::default(),
        };
        registry.register(
            "events",
            "Exchanges counted (each request id once)",
            m.events.clone(),
        );
        registry.register(
            "duplicate_events",
            "Exchanges refused as already counted",
            m.duplicates.clone(),
        );
        registry.register(
            "bad_events",
            "Exchange records that break the data contract (quarantined)",
            m.bad_events.clone(),
        );
        registry.register(
            "judgements",
            "Judgements of all accounts",
            m.judgements.clone(),
        );
        registry.register("checkpoints", "Checkpoints written", m.checkpoints.clone());
        registry.register(
            "overloaded_requests",
            "Requests answered 503 or with the overload decision",
            m.overloaded.clone(),
        );
        registry.register("accounts", "Accounts with state", m.accounts.clone());
        registry.register(
            "resident_accounts",
            "Accounts whose profile is in memory",
            m.resident_accounts.clone(),
        );
        registry.register(
            "cold_accounts",
            "Idle accounts whose profile is on disk",
            m.cold_accounts.clone(),
        );
        registry.register(
            "evictions",
            "Profiles and days of request ids moved to disk",
            m.evictions.clone(),
        );
        registry.register(
            "reloads",
            "Profiles and days of request ids read back from disk",
            m.reloads.clone(),
        );
        registry.register(
            "background_errors",
            "Failed judgements, checkpoints and evictions (logged; retried next round)",
            m.background_errors.clone(),
        );
        registry.register(
            "campaigns",
            "Campaigns at the last judgement",
            m.campaigns.clone(),
        );
        registry.register(
            "judge_seconds",
            "Duration of the last judgement",
            m.judge_seconds.clone(),
        );
        let family = Family::<ActionLabel, Counter>::default();
        registry.register("decisions", "Decisions by action", family.clone());
        registry.register(
            "decide_seconds",
            "Time to answer a decision, inside the service",
            m.decide_seconds.clone(),
        );
        let decisions = [
            Action::Allow,
            Action::Throttle,
            Action::Challenge,
            Action::Block,
        ]
        .map(|a| (*family.get_or_create(&ActionLabel { action: a.as_str() })).clone());
        Metrics {
            registry,
            decisions,
            ..m
        }
    }

    pub fn decision(&self, a: Action) {
        self.decisions[a as usize].inc();
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a string");
        out
    }
}
