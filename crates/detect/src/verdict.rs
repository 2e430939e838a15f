//! Scoring at cluster level, then verdicts and reasons per account.
//!
//! A cluster of linked accounts is one decision: it becomes a campaign when it is large
//! enough and its members, on average, look like extraction (young, churned, off-hours for
//! the claimed country, foreign-script prompts, eliciting training signal, pivoting at once
//! onto new models). A startup's dozen accounts on one office address form a cluster too,
//! but an ordinary one: its members are cleared, and the report lists it as a look-alike.
//! Accounts outside any campaign are never `attack`; a striking one is `suspicious`.

use serde::Serialize;

use crate::config::Config;
use crate::features::Capability;
use crate::link::{GROUPS, Links};
use crate::profile::Profile;
use crate::traits::{Release, Trait, Traits};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Attack,
    Suspicious,
    Benign,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Attack => "attack",
            Verdict::Suspicious => "suspicious",
            Verdict::Benign => "benign",
        }
    }
}

#[derive(Clone, Debug)]
pub struct AccountVerdict {
    pub verdict: Verdict,
    pub score: f64,
    pub campaign: Option<usize>,
    pub suspicion: f64,
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SharedIndicator {
    pub kind: &'static str,
    pub value: String,
    /// Accounts of the campaign that share it.
    pub accounts: usize,
    /// Accounts in the whole input that have it.
    pub accounts_overall: usize,
    pub rarity: f64,
    /// For a payment instrument: how many billing countries its holders claim (more than one
    /// is itself a misstatement, and links them however common the card).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billing_countries: Option<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Pivot {
    pub model: String,
    pub released_at: String,
    /// Share of the campaign's exchanges after the release that went to the new model.
    pub share_after_release: f64,
    /// Hours from release to the campaign's first request on it.
    pub hours_to_first_use: Option<f64>,
    /// Share of the campaign's accounts that used it within 24 hours of release.
    pub accounts_within_24h: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Campaign {
    pub id: String,
    pub accounts: usize,
    pub exchanges: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub confidence: f64,
    /// Cluster score: mean member suspicion × (1 + w × spread of identities: countries or
    /// private mail domains, and shared cards).
    pub suspicion: f64,
    /// Distinct countries its accounts claim (billing, else geolocation).
    pub claimed_countries: usize,
    /// Distinct e-mail domains of its accounts that are not public mail providers.
    pub private_mail_domains: usize,
    /// Distinct payment instruments that each pay for two or more of its accounts.
    pub shared_payment_instruments: usize,
    /// Share of exchanges per capability area, largest first.
    pub capability_focus: Vec<(String, f64)>,
    pub model_pivot: Vec<Pivot>,
    /// Mean of each trait over the members.
    pub traits: Vec<(String, f64)>,
    /// Shape of use, mean over the members (where an account has the figure): output/input
    /// token ratio, requested `max_tokens`, inter-arrival CV, burst share, around-the-clock
    /// (see [`crate::profile::Rhythm`]).
    pub shape: Vec<(String, f64)>,
    /// Accepted links per evidence group.
    pub link_evidence: Vec<(String, u64)>,
    /// Mean Jaccard of members' active 10-minute buckets (1 = perfect lockstep).
    pub lockstep: f64,
    pub shared_indicators: Vec<SharedIndicator>,
    /// ASNs and JA4 fingerprints most used by its accounts: (value, accounts using it).
    pub top_asns: Vec<(u32, usize)>,
    pub top_ja4: Vec<(String, usize)>,
    pub example_request_ids: Vec<String>,
    pub account_ids: Vec<String>,
    /// API keys its accounts used (for block lists).
    pub api_keys: Vec<String>,
}

/// A benign cluster that looks like a campaign at first sight, and why it was cleared.
#[derive(Clone, Debug, Serialize)]
pub struct LookAlike {
    pub accounts: usize,
    pub exchanges: u64,
    pub suspicion: f64,
    pub shared_indicators: Vec<SharedIndicator>,
    pub why_cleared: String,
    pub account_ids: Vec<String>,
}

pub struct Outcome {
    pub accounts: Vec<AccountVerdict>,
    pub campaigns: Vec<Campaign>,
    /// The largest cleared clusters (at most 50 are described).
    pub look_alikes: Vec<LookAlike>,
    /// All cleared clusters and their accounts.
    pub cleared_clusters: usize,
    pub cleared_accounts: usize,
}

pub fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn shared_indicators(links: &Links, members: &[u32], limit: usize) -> Vec<SharedIndicator> {
    let mut inside = vec![false; links.cluster_of.len()];
    for &m in members {
        inside[m as usize] = true;
    }
    let mut out: Vec<SharedIndicator> = links
        .indicators
        .iter()
        .filter(|ind| ind.accounts.len() >= 2 && (!ind.infrastructure || ind.campaign_wide))
        .filter_map(|ind| {
            let k = ind.accounts.iter().filter(|&&a| inside[a as usize]).count();
            (k >= 2).then(|| SharedIndicator {
                kind: ind.kind.name(),
                value: ind.value.clone(),
                accounts: k,
                accounts_overall: ind.accounts.len(),
                rarity: (ind.rarity * 1000.0).round() / 1000.0,
                billing_countries: (ind.kind == crate::link::Kind::Payment)
                    .then_some(ind.billing_countries),
            })
        })
        .collect();
    // Most shared inside, and most specific to the cluster, first.
    out.sort_by(|a, b| {
        let sa = a.accounts as f64 * a.accounts as f64 / a.accounts_overall as f64;
        let sb = b.accounts as f64 * b.accounts as f64 / b.accounts_overall as f64;
        sb.total_cmp(&sa).then_with(|| a.value.cmp(&b.value))
    });
    out.truncate(limit);
    out
}

/// Mean shape-of-use figures over a cluster's members; an account without a figure (no
/// `max_tokens` sent, too few or too many active buckets) does not count towards its mean.
fn shape_means(profiles: &[Profile], members: &[u32]) -> Vec<(String, f64)> {
    let mut sums = [(0.0f64, 0usize); 5];
    for &m in members {
        let p = &profiles[m as usize];
        let r = p.rhythm();
        let figures = [
            (p.input_tokens > 0).then(|| p.output_tokens as f64 / p.input_tokens as f64),
            p.mean_max_tokens(),
            r.interarrival_cv,
            r.burst_share,
            (p.exchanges > 0).then_some(r.around_the_clock),
        ];
        for (s, f) in sums.iter_mut().zip(figures) {
            if let Some(x) = f {
                s.0 += x;
                s.1 += 1;
            }
        }
    }
    [
        "output_input_ratio",
        "mean_max_tokens",
        "interarrival_cv",
        "burst_share",
        "around_the_clock",
    ]
    .into_iter()
    .zip(sums)
    .filter(|(_, (_, k))| *k > 0)
    .map(|(name, (sum, k))| (name.to_string(), (sum / k as f64 * 1000.0).round() / 1000.0))
    .collect()
}

pub fn decide(
    names: &[String],
    profiles: &[Profile],
    traits: &[Traits],
    links: &Links,
    releases: &[Release],
    cfg: &Config,
) -> Outcome {
    let n = profiles.len();
    let suspicion: Vec<f64> = traits.iter().map(|t| t.suspicion(&cfg.traits)).collect();
    let v = &cfg.verdict;
    // Score every cluster.
    struct Scored {
        cluster: usize,
        /// Cluster score: mean member suspicion, raised by the spread of identities.
        mean: f64,
        member_mean: f64,
        countries: usize,
        identities: crate::link::Identities,
        exchanges: u64,
    }
    let mut campaigns_idx: Vec<Scored> = Vec::new();
    let mut look: Vec<Scored> = Vec::new();
    for (cl, members) in links.clusters.iter().enumerate() {
        let member_mean =
            members.iter().map(|&m| suspicion[m as usize]).sum::<f64>() / members.len() as f64;
        // One operator posing as unrelated customers claims many countries; an office, a
        // campus or a company's accounts claim one.
        let countries = members
            .iter()
            .filter_map(|&m| traits[m as usize].claimed_country.as_deref())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        // An office, a campus or a company presents one identity; one operator posing as
        // many customers presents many: countries or organisations' mail domains (alternative
        // views of the same claim), and a pool of cards each paying for several accounts.
        let s_of = |k: usize| ((k.max(1) - 1) as f64 / 3.0).min(1.0);
        let id = links.identities.get(cl).copied().unwrap_or_default();
        let spread =
            s_of(countries).max(s_of(id.private_domains)) + v.card_spread * s_of(id.shared_cards);
        let mean = (member_mean * (1.0 + v.w_identity_spread * spread)).min(1.0);
        let exchanges = members
            .iter()
            .map(|&m| profiles[m as usize].exchanges)
            .sum();
        let s = Scored {
            cluster: cl,
            mean,
            member_mean,
            countries,
            identities: id,
            exchanges,
        };
        if members.len() >= v.min_campaign_accounts && mean >= v.campaign_suspicion {
            campaigns_idx.push(s);
        } else {
            look.push(s);
        }
    }
    // Largest campaigns first; ties by first member for a stable numbering.
    campaigns_idx.sort_by(|a, b| {
        b.exchanges
            .cmp(&a.exchanges)
            .then(links.clusters[a.cluster][0].cmp(&links.clusters[b.cluster][0]))
    });
    let mut accounts: Vec<AccountVerdict> = (0..n)
        .map(|a| AccountVerdict {
            verdict: Verdict::Benign,
            score: (suspicion[a] * 0.5).clamp(0.0, 0.499),
            campaign: None,
            suspicion: suspicion[a],
            reasons: Vec::new(),
        })
        .collect();
    let mut campaigns = Vec::new();
    for (ci, s) in campaigns_idx.iter().enumerate() {
        let members = &links.clusters[s.cluster];
        let id = format!("campaign-{:02}", ci + 1);
        let size_bonus = 0.1 * (members.len() as f64).log10();
        let confidence = (0.5 + (s.mean - v.campaign_suspicion) + size_bonus).clamp(0.5, 0.99);
        let indicators = shared_indicators(links, members, v.max_indicators);
        let groups = links.edge_groups[s.cluster];
        let link_evidence: Vec<(String, u64)> = GROUPS
            .iter()
            .zip(groups)
            .filter(|(_, k)| *k > 0)
            .map(|(g, k)| (g.to_string(), k))
            .collect();
        let trait_means: Vec<(String, f64)> = Trait::ALL
            .iter()
            .map(|&t| {
                let m = members
                    .iter()
                    .map(|&a| traits[a as usize].get(t))
                    .sum::<f64>()
                    / members.len() as f64;
                (t.name().to_string(), (m * 1000.0).round() / 1000.0)
            })
            .collect();
        let top_links: Vec<String> = indicators
            .iter()
            .take(2)
            .map(|i| match i.billing_countries {
                Some(k) if k >= 2 => format!(
                    "shares {} with {} accounts, billed in {k} countries",
                    i.kind,
                    i.accounts - 1
                ),
                _ => format!("shares {} with {} accounts", i.kind, i.accounts - 1),
            })
            .collect();
        let strong_traits: Vec<String> = trait_means
            .iter()
            .filter(|(_, m)| *m >= 0.3)
            .map(|(t, m)| format!("{t} {:.0}%", m * 100.0))
            .collect();
        for &m in members {
            let a = &mut accounts[m as usize];
            a.verdict = Verdict::Attack;
            a.campaign = Some(ci);
            a.score = (0.5 + 0.5 * (0.5 * confidence + 0.5 * suspicion[m as usize].max(s.mean)))
                .clamp(0.5, 1.0);
            a.reasons.push(format!(
                "member of {id} ({} linked accounts claiming {} countries, {} private mail domains, {} shared cards; cluster score {:.2})",
                members.len(),
                s.countries,
                s.identities.private_domains,
                s.identities.shared_cards,
                s.mean
            ));
            a.reasons.extend(top_links.iter().cloned());
            if !strong_traits.is_empty() {
                a.reasons
                    .push(format!("campaign traits: {}", strong_traits.join(", ")));
            }
            a.reasons
                .extend(traits[m as usize].evidence.iter().take(3).cloned());
        }
        let (mut exchanges, mut inp, mut out, mut first, mut last) = (0, 0, 0, i64::MAX, i64::MIN);
        let mut caps = [0u64; 6];
        let mut examples: Vec<(u64, String)> = Vec::new();
        for &m in members {
            let p = &profiles[m as usize];
            exchanges += p.exchanges;
            inp += p.input_tokens;
            out += p.output_tokens;
            first = first.min(p.first_ts);
            last = last.max(p.last_ts);
            for (c, x) in caps.iter_mut().zip(p.capability) {
                *c += x;
            }
            examples.extend(
                p.examples
                    .entries()
                    .iter()
                    .map(|e| (e.hash, e.value.clone())),
            );
        }
        examples.sort();
        let mut capability_focus: Vec<(String, f64)> = Capability::ALL
            .iter()
            .zip(caps)
            .filter(|(_, k)| *k > 0)
            .map(|(c, k)| {
                (
                    c.name().to_string(),
                    ((k as f64 / exchanges.max(1) as f64) * 1000.0).round() / 1000.0,
                )
            })
            .collect();
        capability_focus.sort_by(|a, b| b.1.total_cmp(&a.1));
        let model_pivot = releases
            .iter()
            .filter(|r| r.released_at > first && r.released_at < last)
            .map(|r| pivot(r, members, profiles))
            .collect();
        let mut asn_use: std::collections::BTreeMap<u32, usize> = Default::default();
        let mut ja4_use: std::collections::BTreeMap<String, usize> = Default::default();
        let mut api_keys: Vec<String> = Vec::new();
        for &m in members {
            let p = &profiles[m as usize];
            for e in p.asns.entries() {
                *asn_use.entry(e.value).or_default() += 1;
            }
            for e in p.ja4s.entries() {
                *ja4_use.entry(e.value.clone()).or_default() += 1;
            }
            api_keys.extend(p.api_keys.entries().iter().map(|e| e.value.clone()));
        }
        api_keys.sort();
        api_keys.dedup();
        let top_asns = top_by_accounts(asn_use.into_iter().collect());
        let top_ja4 = top_by_accounts(ja4_use.into_iter().collect());
        let mut account_ids: Vec<String> =
            members.iter().map(|&m| names[m as usize].clone()).collect();
        account_ids.sort();
        campaigns.push(Campaign {
            id,
            accounts: members.len(),
            exchanges,
            input_tokens: inp,
            output_tokens: out,
            first_seen: rfc3339(first),
            last_seen: rfc3339(last),
            confidence: (confidence * 1000.0).round() / 1000.0,
            suspicion: (s.mean * 1000.0).round() / 1000.0,
            claimed_countries: s.countries,
            private_mail_domains: s.identities.private_domains,
            shared_payment_instruments: s.identities.shared_cards,
            capability_focus,
            model_pivot,
            traits: trait_means,
            shape: shape_means(profiles, members),
            link_evidence,
            lockstep: (links.lockstep[s.cluster] * 1000.0).round() / 1000.0,
            shared_indicators: indicators,
            top_asns,
            top_ja4,
            api_keys,
            example_request_ids: examples
                .into_iter()
                .take(v.example_requests)
                .map(|e| e.1)
                .collect(),
            account_ids,
        });
    }
    // Cleared clusters (look-alikes), largest first.
    look.sort_by_key(|s| std::cmp::Reverse(s.exchanges));
    let mut look_alikes = Vec::new();
    for s in &look {
        let members = &links.clusters[s.cluster];
        let why = if members.len() < v.min_campaign_accounts {
            format!(
                "only {} linked accounts (a campaign needs {})",
                members.len(),
                v.min_campaign_accounts
            )
        } else {
            format!(
                "members look ordinary: cluster score {:.2} < {:.2} (mean member suspicion {:.2}, {} claimed countries, {} private mail domains, {} shared cards)",
                s.mean,
                v.campaign_suspicion,
                s.member_mean,
                s.countries,
                s.identities.private_domains,
                s.identities.shared_cards
            )
        };
        for &m in members {
            accounts[m as usize].reasons.push(format!(
                "linked with {} accounts but cleared: {why}",
                members.len() - 1
            ));
        }
        if look_alikes.len() < 50 {
            let mut ids: Vec<String> = members.iter().map(|&m| names[m as usize].clone()).collect();
            ids.sort();
            ids.truncate(100);
            look_alikes.push(LookAlike {
                accounts: members.len(),
                exchanges: s.exchanges,
                suspicion: (s.mean * 1000.0).round() / 1000.0,
                shared_indicators: shared_indicators(links, members, 8),
                why_cleared: why,
                account_ids: ids,
            });
        }
    }
    // Accounts outside campaigns.
    for (a, acc) in accounts.iter_mut().enumerate() {
        if acc.verdict == Verdict::Attack {
            continue;
        }
        if suspicion[a] >= v.suspicious_account {
            acc.verdict = Verdict::Suspicious;
            acc.reasons.insert(
                0,
                format!(
                    "account traits score {:.2} but no linked campaign",
                    suspicion[a]
                ),
            );
        }
        acc.reasons
            .extend(traits[a].evidence.iter().take(3).cloned());
        if acc.reasons.is_empty() {
            acc.reasons.push("no shared evidence, ordinary use".into());
        }
    }
    Outcome {
        accounts,
        campaigns,
        look_alikes,
        cleared_clusters: look.len(),
        cleared_accounts: look.iter().map(|s| links.clusters[s.cluster].len()).sum(),
    }
}

/// The ten values used by the most accounts, most first (ties in value order).
fn top_by_accounts<T: Ord>(mut v: Vec<(T, usize)>) -> Vec<(T, usize)> {
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(10);
    v
}

fn pivot(r: &Release, members: &[u32], profiles: &[Profile]) -> Pivot {
    let (mut on_new, mut first, mut quick) = (0u64, i64::MAX, 0usize);
    let mut after = 0u64;
    for &m in members {
        let p = &profiles[m as usize];
        // Exchanges after the release, estimated from the account's active span.
        if p.last_ts > r.released_at {
            let span = (p.last_ts - p.first_ts).max(1) as f64;
            let part = ((p.last_ts - r.released_at.max(p.first_ts)) as f64 / span).clamp(0.0, 1.0);
            after += (p.exchanges as f64 * part).round() as u64;
        }
        if let Some(mu) = p.models.iter().find(|x| x.model == r.model) {
            on_new += mu.exchanges;
            first = first.min(mu.first_ts);
            if mu.first_ts - r.released_at <= 24 * 3_600_000_000 {
                quick += 1;
            }
        }
    }
    Pivot {
        model: r.model.clone(),
        released_at: rfc3339(r.released_at),
        share_after_release: ((on_new as f64 / after.max(on_new).max(1) as f64) * 1000.0).round()
            / 1000.0,
        hours_to_first_use: (first != i64::MAX)
            .then(|| (((first - r.released_at) as f64 / 3.6e9) * 10.0).round() / 10.0),
        accounts_within_24h: ((quick as f64 / members.len() as f64) * 1000.0).round() / 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traits::Trait;

    /// Three linked accounts, young and eliciting with tool traces (suspicion 0.42 each),
    /// claiming the given countries.
    fn outcome(countries: [&str; 3]) -> Outcome {
        outcome_presenting(countries, crate::link::Identities::default())
    }

    fn outcome_presenting(countries: [&str; 3], identities: crate::link::Identities) -> Outcome {
        let names: Vec<String> = (0..3).map(|i| format!("a{i}")).collect();
        let profiles = vec![Profile::default(); 3];
        let traits: Vec<Traits> = countries
            .iter()
            .map(|c| {
                let mut t = Traits::default();
                t.values[Trait::Young as usize] = 1.0;
                t.values[Trait::Elicit as usize] = 1.0;
                t.values[Trait::ToolTrace as usize] = 1.0;
                t.claimed_country = Some(c.to_string());
                t
            })
            .collect();
        let links = Links {
            cluster_of: vec![Some(0); 3],
            clusters: vec![vec![0, 1, 2]],
            edge_groups: vec![[2, 1, 0, 0, 0]],
            lockstep: vec![0.0],
            identities: vec![identities],
            ..Default::default()
        };
        decide(&names, &profiles, &traits, &links, &[], &Config::default())
    }

    #[test]
    fn a_new_startup_in_one_country_is_cleared() {
        // A startup's new employee accounts: one office, one card, coding agents.
        let o = outcome(["DE", "DE", "DE"]);
        assert!(o.campaigns.is_empty());
        assert!(o.accounts.iter().all(|a| a.verdict != Verdict::Attack));
        assert_eq!(o.look_alikes.len(), 1);
        assert!(o.look_alikes[0].why_cleared.contains("1 claimed countries"));
    }

    #[test]
    fn one_country_but_many_organisations_and_a_pool_of_cards_is_a_campaign() {
        use crate::link::Identities;
        // The startup again, paying with one company card or each employee's own: cleared.
        for shared_cards in [0, 1] {
            let one_org = Identities {
                private_domains: 1,
                shared_cards,
            };
            assert!(outcome_presenting(["DE"; 3], one_org).campaigns.is_empty());
        }
        // The same accounts signed up from three organisations' domains: not one office.
        let three_orgs = Identities {
            private_domains: 3,
            shared_cards: 0,
        };
        let o = outcome_presenting(["DE"; 3], three_orgs);
        assert_eq!(o.campaigns.len(), 1);
        assert_eq!(o.campaigns[0].private_mail_domains, 3);
        // Countries and domains are two views of one claim: both at once count once.
        let spread_once = outcome_presenting(["DE", "US", "SG"], three_orgs).campaigns[0].suspicion;
        assert_eq!(
            spread_once,
            outcome(["DE", "US", "SG"]).campaigns[0].suspicion
        );
        // A pool of shared cards adds to either.
        let pool = Identities {
            private_domains: 3,
            shared_cards: 4,
        };
        let o = outcome_presenting(["DE"; 3], pool);
        assert!(o.campaigns[0].suspicion > spread_once);
        assert_eq!(o.campaigns[0].shared_payment_instruments, 4);
        assert!(o.accounts[0].reasons[0].contains("3 private mail domains, 4 shared cards"));
    }

    #[test]
    fn the_same_accounts_posing_as_customers_in_many_countries_are_a_campaign() {
        let o = outcome(["DE", "US", "SG"]);
        assert_eq!(o.campaigns.len(), 1);
        assert_eq!(o.campaigns[0].claimed_countries, 3);
        assert!(o.accounts.iter().all(|a| a.verdict == Verdict::Attack));
        assert!(o.accounts.iter().all(|a| a.score >= 0.5 && a.score <= 1.0));
        assert!(o.accounts[0].reasons[0].contains("campaign-01"));
    }

    #[test]
    fn shape_means_count_only_accounts_that_have_the_figure() {
        let mut p = vec![Profile::default(); 3];
        // a0: 100 in, 300 out, max_tokens 1000 and 3000, three requests an hour apart.
        // a1: 100 in, 100 out, no max_tokens, one request. a2: no requests.
        p[0].input_tokens = 100;
        p[0].output_tokens = 300;
        (p[0].max_tokens_sum, p[0].max_tokens_n) = (4000, 2);
        for t in 0..3 {
            p[0].add(&crate::profile::Row {
                ts: t * 3_600_000_000,
                request_id: "r",
                model: "m",
                client_ip: "10.0.0.1",
                ..Default::default()
            });
        }
        p[1].input_tokens = 100;
        p[1].output_tokens = 100;
        p[1].exchanges = 1;
        p[1].hours[5] = 1;
        let shape: std::collections::HashMap<String, f64> =
            shape_means(&p, &[0, 1, 2]).into_iter().collect();
        assert_eq!(shape["output_input_ratio"], 2.0);
        assert_eq!(shape["mean_max_tokens"], 2000.0);
        assert_eq!(shape["interarrival_cv"], 0.0);
        assert_eq!(shape["burst_share"], 0.333);
        // a0 spreads over 3 hours (ln 3 / ln 24), a1 over one (0).
        let expected = ((3f64.ln() / 24f64.ln()) / 2.0 * 1000.0).round() / 1000.0;
        assert_eq!(shape["around_the_clock"], expected);
        assert!(shape_means(&p, &[2]).is_empty());
    }
}
