//! Account linking: accounts as nodes, typed weighted edges from shared values, clusters as
//! the connected components of strong edges.
//!
//! A shared value counts by how rare it is (inverse document frequency over accounts, like
//! IDF), a value shared by very many accounts counts for nothing (a campus or cloud NAT, a
//! popular SDK), and each *kind* of evidence contributes at most once per pair, so an edge
//! strong enough to join two accounts needs either one very specific shared fact (a payment
//! instrument) or several independent ones (network, identity, tooling, timing).

use std::collections::HashMap;

use crate::config::LinkConfig;
use crate::profile::{BUCKET_MICROS, Profile, with_prefix};
use crate::sketch::Folded;
use crate::traits::AccountFacts;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Address,
    Prefix,
    SignupAddress,
    Payment,
    EmailDomain,
    SignupBurst,
    Client,
    SystemPrompt,
    Template,
}

/// Independent groups of evidence: within a group only the strongest shared value counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    Network = 0,
    Payment = 1,
    Identity = 2,
    Tooling = 3,
    Timing = 4,
}

pub const GROUPS: [&str; 5] = ["network", "payment", "identity", "tooling", "timing"];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Address => "address",
            Kind::Prefix => "prefix",
            Kind::SignupAddress => "signup_address",
            Kind::Payment => "payment_fingerprint",
            Kind::EmailDomain => "email_domain",
            Kind::SignupBurst => "signup_burst",
            Kind::Client => "client_fingerprint",
            Kind::SystemPrompt => "system_prompt_fingerprint",
            Kind::Template => "template_fingerprint",
        }
    }
    pub fn group(self) -> Group {
        match self {
            Kind::Address | Kind::Prefix | Kind::SignupAddress => Group::Network,
            Kind::Payment => Group::Payment,
            Kind::EmailDomain | Kind::SignupBurst => Group::Identity,
            Kind::Client | Kind::SystemPrompt | Kind::Template => Group::Tooling,
        }
    }
    fn weight(self, c: &LinkConfig) -> f64 {
        match self {
            Kind::Address => c.w_address,
            Kind::Prefix => c.w_prefix,
            Kind::SignupAddress => c.w_signup_address,
            Kind::Payment => c.w_payment,
            Kind::EmailDomain => c.w_email_domain,
            Kind::SignupBurst => c.w_signup_burst,
            Kind::Client => c.w_client,
            Kind::SystemPrompt => c.w_system_prompt,
            Kind::Template => c.w_template,
        }
    }
}

/// A shared value: its kind, its text, and the accounts (indices) that have it.
#[derive(Clone, Debug)]
pub struct Indicator {
    pub kind: Kind,
    pub value: String,
    pub accounts: Vec<u32>,
    /// Rarity in [0, 1]: 1 when only two accounts share it, 0 when all do.
    pub rarity: f64,
    /// Too common to link anything.
    pub infrastructure: bool,
    /// Too common for pairwise links but held almost only by suspicious accounts.
    pub campaign_wide: bool,
    /// For a payment instrument: the distinct billing countries its holders claim.
    pub billing_countries: usize,
}

/// The linking result.
#[derive(Debug, Default)]
pub struct Links {
    pub indicators: Vec<Indicator>,
    /// Cluster index per account (`None`: linked to nobody).
    pub cluster_of: Vec<Option<u32>>,
    /// Members of each cluster (account indices, ascending).
    pub clusters: Vec<Vec<u32>>,
    /// Accepted edges per cluster, per evidence group.
    pub edge_groups: Vec<[u64; 5]>,
    /// Mean lockstep (Jaccard of active buckets) over the accepted edges of each cluster.
    pub lockstep: Vec<f64>,
    /// Up to [`MAX_EDGE_SAMPLE`] accepted edges per cluster: (account, account, strongest
    /// evidence group), for drawing.
    pub edge_sample: Vec<Vec<(u32, u32, u8)>>,
    /// Per cluster: the identities its members present besides countries.
    pub identities: Vec<Identities>,
    pub candidate_pairs: usize,
    pub edges: usize,
}

/// What a cluster's accounts present themselves as, besides their countries: a company, a
/// university or an office has one mail domain of its own and often one card; one operator
/// posing as unrelated customers has many.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Identities {
    /// Distinct e-mail domains that are not public mail providers (see
    /// `public_domain_countries`): organisations, or disposable domains.
    pub private_domains: usize,
    /// Distinct payment instruments that each pay for two or more of its accounts (a pool of
    /// cards; an office pays with one card, or each employee with their own).
    pub shared_cards: usize,
}

/// The largest public mail providers. Their users are unrelated customers: a shared domain
/// of these links nobody and does not make an organisation.
const PUBLIC_MAIL: &[&str] = &[
    "126.com",
    "163.com",
    "aol.com",
    "daum.net",
    "fastmail.com",
    "free.fr",
    "gmail.com",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "googlemail.com",
    "hanmail.net",
    "hotmail.co.uk",
    "hotmail.com",
    "hotmail.fr",
    "icloud.com",
    "inbox.ru",
    "laposte.net",
    "libero.it",
    "live.com",
    "mac.com",
    "mail.com",
    "mail.ru",
    "me.com",
    "msn.com",
    "naver.com",
    "orange.fr",
    "outlook.com",
    "proton.me",
    "protonmail.com",
    "qq.com",
    "rambler.ru",
    "rediffmail.com",
    "seznam.cz",
    "sina.com",
    "t-online.de",
    "tutanota.com",
    "web.de",
    "wp.pl",
    "yahoo.co.jp",
    "yahoo.co.uk",
    "yahoo.com",
    "yandex.com",
    "yandex.ru",
    "ymail.com",
    "zoho.com",
];

struct UnionFind(Vec<u32>);

impl UnionFind {
    fn new(n: usize) -> Self {
        UnionFind((0..n as u32).collect())
    }
    fn find(&mut self, mut x: u32) -> u32 {
        while self.0[x as usize] != x {
            let p = self.0[x as usize];
            self.0[x as usize] = self.0[p as usize];
            x = p;
        }
        x
    }
    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = (ra.min(rb), ra.max(rb));
            self.0[hi as usize] = lo;
        }
    }
}

/// Values an account carries, per kind.
fn values_of(p: &Profile, f: &AccountFacts, c: &LinkConfig, mut push: impl FnMut(Kind, &str)) {
    use std::fmt::Write;
    for e in p.ips.entries() {
        push(Kind::Address, &e.value);
    }
    for e in p.prefixes.entries() {
        push(Kind::Prefix, &e.value);
    }
    // Fingerprints are written as 16 hex digits, on the stack: most are looked up, not kept.
    let mut hex = |kind: Kind, v: u64| {
        let mut buf = dg_contract::values::StackText::<16>::default();
        let _ = write!(buf, "{v:016x}");
        push(kind, buf.as_str());
    };
    for e in p.clients.entries() {
        hex(Kind::Client, e.value);
    }
    for e in p.systems.entries() {
        hex(Kind::SystemPrompt, e.value);
    }
    for e in p.templates.entries() {
        // A template counts as the account's own only when it is used repeatedly.
        if e.count >= 2 {
            hex(Kind::Template, e.value);
        }
    }
    if let Some(pay) = &f.payment {
        push(Kind::Payment, pay);
    }
    if let Some(d) = &f.email_domain {
        push(Kind::EmailDomain, &d.to_ascii_lowercase());
    }
    if let Some(ip) = &f.signup_ip {
        push(Kind::SignupAddress, ip);
        with_prefix(ip, |p| push(Kind::Prefix, p));
    }
    if let Some(t) = f.created_at {
        let w = c.signup_burst_minutes.max(1) * 60_000_000;
        push(Kind::SignupBurst, &t.div_euclid(w).to_string());
    }
}

/// Indicator ids by (kind, value), without a copy of the value per lookup: keyed by a 64-bit
/// hash of the value, checked against the indicator's own value; the values of a (never yet
/// seen) hash collision go to an exact map.
struct IndicatorIds<S = foldhash::quality::FixedState> {
    hasher: S,
    by_hash: HashMap<(Kind, u64), u32, foldhash::fast::RandomState>,
    collided: HashMap<(Kind, String), u32>,
}

impl IndicatorIds {
    fn new() -> Self {
        IndicatorIds::with_hasher(foldhash::quality::FixedState::with_seed(0x6c69_6e6b))
    }
}

impl<S: std::hash::BuildHasher> IndicatorIds<S> {
    fn with_hasher(hasher: S) -> Self {
        IndicatorIds {
            hasher,
            by_hash: HashMap::default(),
            collided: HashMap::new(),
        }
    }

    /// The id of `(kind, value)` among `indicators`, a new indicator if there is none.
    fn id(&mut self, indicators: &mut Vec<Indicator>, kind: Kind, value: &str) -> u32 {
        use std::collections::hash_map::Entry;
        let next = indicators.len() as u32;
        let add = |indicators: &mut Vec<Indicator>| {
            indicators.push(Indicator {
                kind,
                value: value.to_string(),
                accounts: Vec::new(),
                rarity: 0.0,
                infrastructure: false,
                campaign_wide: false,
                billing_countries: 0,
            });
            next
        };
        match self.by_hash.entry((kind, self.hasher.hash_one(value))) {
            Entry::Vacant(v) => *v.insert(add(indicators)),
            Entry::Occupied(o) if indicators[*o.get() as usize].value == value => *o.get(),
            Entry::Occupied(_) => match self.collided.entry((kind, value.to_string())) {
                Entry::Occupied(o) => *o.get(),
                Entry::Vacant(v) => *v.insert(add(indicators)),
            },
        }
    }
}

/// Links accounts. `suspicion` is each account's own trait score: it decides whether a value
/// too common for pairwise links is a campaign-wide indicator (held almost only by suspicious
/// accounts) or infrastructure (held by ordinary ones too).
pub fn link(
    profiles: &[Profile],
    facts: &[AccountFacts],
    suspicion: &[f64],
    c: &LinkConfig,
) -> Links {
    let n = profiles.len();
    let started = std::time::Instant::now();
    // Fast hashing: both maps are only looked up or drained into a sorted list, never walked
    // in their own order, so the result does not depend on the hasher.
    let mut ids = IndicatorIds::new();
    let mut indicators: Vec<Indicator> = Vec::new();
    for (a, (p, f)) in profiles.iter().zip(facts).enumerate() {
        values_of(p, f, c, |kind, value| {
            let id = ids.id(&mut indicators, kind, value);
            let acc = &mut indicators[id as usize].accounts;
            if acc.last() != Some(&(a as u32)) {
                acc.push(a as u32);
            }
        });
    }
    drop(ids);
    // Public mail domains: used from many billing countries.
    let mut domain_countries: HashMap<&str, std::collections::HashSet<&str>> = HashMap::new();
    for ind in indicators.iter().filter(|i| i.kind == Kind::EmailDomain) {
        let set = domain_countries.entry(ind.value.as_str()).or_default();
        for &a in &ind.accounts {
            if let Some(cn) = facts[a as usize].billing_country.as_deref() {
                set.insert(cn);
            }
        }
    }
    // Public mail providers: the largest by name (an input from one country's customers
    // never shows them used from many countries), and any domain used from many billing
    // countries.
    let public: std::collections::HashSet<String> = domain_countries
        .into_iter()
        .filter(|(d, s)| s.len() > c.public_domain_countries || PUBLIC_MAIL.contains(d))
        .map(|(d, _)| d.to_string())
        .collect();
    let cap = c
        .max_accounts_per_value
        .min(((n as f64) * c.max_share_per_value).ceil() as usize)
        .max(3);
    let ln_n = (n.max(3) as f64).ln();
    for ind in &mut indicators {
        let df = ind.accounts.len();
        ind.rarity = ((n as f64 / df as f64).ln() / ln_n).clamp(0.0, 1.0);
        ind.infrastructure =
            df > cap || (ind.kind == Kind::EmailDomain && public.contains(&ind.value));
        // A payment instrument has one billing address: accounts that share one while
        // claiming different billing countries misstate at least one of them. However many
        // accounts hold it, and however few accounts the input has, that is no coincidence.
        if ind.kind == Kind::Payment {
            let mut countries: Vec<&str> = ind
                .accounts
                .iter()
                .filter_map(|&a| facts[a as usize].billing_country.as_deref())
                .collect();
            countries.sort_unstable();
            countries.dedup();
            ind.billing_countries = countries.len();
            if countries.len() >= 2 {
                ind.rarity = 1.0;
                ind.infrastructure = false;
            }
        }
    }

    tracing::debug!(
        indicators = indicators.len(),
        seconds = started.elapsed().as_secs_f64(),
        "indicators"
    );
    // Candidate pairs: the strongest value per evidence group. Only values with at most
    // `max_pair_accounts` holders are expanded into pairs, so the pair list stays linear in
    // the number of values; commoner values act through the campaign-wide and pool steps.
    let pairable = |i: &Indicator| {
        !i.infrastructure && i.accounts.len() >= 2 && i.accounts.len() <= c.max_pair_accounts
    };
    let weight = |i: &Indicator| (i.kind.weight(c) * i.rarity) as f32;
    // Accept edges; add lockstep timing where it can decide. Each pair is judged on its own.
    // `b`'s folded bucket sketch (two cache lines) rules out most pairs that are not in
    // lockstep before `b`'s sketch is read; `a`'s stays in cache across its partners.
    let folded: Vec<Folded> = profiles.iter().map(|p| p.buckets.fold()).collect();
    let density = activity_density(profiles);
    let judge = |a: u32, b: u32, mut w: [f32; 5]| {
        let (a, b) = (a as usize, b as usize);
        let base: f64 = w.iter().map(|&x| f64::from(x)).sum();
        if base >= c.edge_threshold || base + c.w_lockstep < c.edge_threshold {
            return (base >= c.edge_threshold).then_some(w);
        }
        // Lockstep is the Jaccard of active buckets beyond chance: two accounts busy around
        // the clock (a reseller, a batch pipeline) overlap in nearly every bucket whatever
        // they do, and leave no room to show that they move together. `chance` is the
        // Jaccard of two independent sets of their densities; sparse accounts have almost
        // none.
        let (pa, pb) = (density[a], density[b]);
        let union = pa + pb - pa * pb;
        let chance = if union > 0.0 { pa * pb / union } else { 0.0 };
        if profiles[a].buckets.jaccard_at_most(&folded[b]) >= chance + c.lockstep_min_jaccard {
            let beyond = profiles[a].buckets.jaccard(&profiles[b].buckets) - chance;
            if beyond >= c.lockstep_min_jaccard {
                w[Group::Timing as usize] = (c.w_lockstep * (beyond / 0.5).min(1.0)) as f32;
            }
        }
        let total: f64 = w.iter().map(|&x| f64::from(x)).sum();
        (total >= c.edge_threshold).then_some(w)
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (mut accepted, candidate_pairs) =
        judge_pairs(&indicators, n, pairable, weight, judge, threads);
    tracing::debug!(
        candidate_pairs,
        edges = accepted.len(),
        seconds = started.elapsed().as_secs_f64(),
        "pairs judged"
    );
    let mut uf = UnionFind::new(n);
    for &(a, b, w) in &accepted {
        uf.union(a, b);
        tracing::trace!(a, b, ?w, "pair edge");
    }

    // Campaign-wide indicators: an exact value (not a prefix) held by many accounts, nearly
    // all of them suspicious on their own. Only its suspicious holders are joined.
    let mut wide = 0usize;
    for ind in indicators.iter_mut() {
        // Only a private client or a payment instrument qualifies: proxy exits are shared by
        // unrelated campaigns and the ordinary customers behind the same residential lines,
        // disposable mail domains by unrelated abusers, and system prompts and templates of
        // public agent tools by everyone who runs those tools.
        let too_many_for_pairs = ind.infrastructure || ind.accounts.len() > c.max_pair_accounts;
        if !too_many_for_pairs || !matches!(ind.kind, Kind::Client | Kind::Payment) {
            continue;
        }
        let holders = &ind.accounts;
        let mean =
            holders.iter().map(|&a| suspicion[a as usize]).sum::<f64>() / holders.len() as f64;
        let suspicious: Vec<u32> = holders
            .iter()
            .copied()
            .filter(|&a| suspicion[a as usize] >= c.wide_member_suspicion)
            .collect();
        if mean >= c.wide_mean_suspicion
            && suspicious.len() as f64 >= c.wide_min_share * holders.len() as f64
        {
            ind.infrastructure = false;
            ind.campaign_wide = true;
            wide += 1;
            tracing::trace!(kind = ind.kind.name(), value = %ind.value, n = suspicious.len(), first = suspicious[0], "wide");
            for w in suspicious.windows(2) {
                uf.union(w[0], w[1]);
                accepted.push((w[0], w[1], {
                    let mut g = [0.0; 5];
                    g[ind.kind.group() as usize] = 1.0;
                    g
                }));
            }
        }
    }
    tracing::debug!(campaign_wide = wide, "campaign-wide indicators");

    // Shared address pools: accounts that rotate through many of the same addresses (a proxy
    // pool), found by MinHash over their address sketches. Accounts are grouped by each of the
    // `pool_band` smallest-hash addresses they used; within a group every member is compared
    // with one suspicious reference member, so the cost stays linear in the group size.
    let mut groups: HashMap<u64, Vec<u32>> = HashMap::new();
    for (a, p) in profiles.iter().enumerate() {
        if p.ips.entries().len() < c.pool_min_addresses {
            continue;
        }
        for e in p.ips.entries().iter().take(c.pool_band) {
            groups.entry(e.hash).or_default().push(a as u32);
        }
    }
    groups.retain(|_, members| members.len() >= 2);
    let mut keys: Vec<u64> = groups.keys().copied().collect();
    keys.sort_unstable();
    // The reference must be suspicious, itself or as the mean of what it is already linked to
    // (an aged hydra account looks ordinary on its own, not once a card billed in several
    // countries ties it to the hydra's young ones); members need only share its pool (an
    // ordinary customer does not rotate through the same tens of proxy exits). Joining pools
    // can make another pool's member eligible, so this runs until nothing new joins; each
    // (member, reference) pair is compared once.
    let mut tested: std::collections::HashSet<(u32, u32)> = std::collections::HashSet::new();
    let mut pool_links = 0usize;
    loop {
        let linked_suspicion = component_suspicion(&mut uf, suspicion);
        let mut joined = false;
        for k in &keys {
            let members = &groups[k];
            let Some(reference) = members
                .iter()
                .copied()
                .filter(|&m| linked_suspicion[m as usize] >= c.wide_member_suspicion)
                .max_by_key(|&m| {
                    (
                        profiles[m as usize].ips.entries().len(),
                        std::cmp::Reverse(m),
                    )
                })
            else {
                continue;
            };
            for &m in members {
                let pair = (m.min(reference), m.max(reference));
                if m == reference || !tested.insert(pair) {
                    continue;
                }
                let j = profiles[m as usize]
                    .ips
                    .jaccard(&profiles[reference as usize].ips);
                if j >= c.pool_min_jaccard {
                    joined |= uf.find(m) != uf.find(reference);
                    uf.union(m, reference);
                    let mut g = [0.0; 5];
                    g[Group::Network as usize] = j as f32;
                    tracing::trace!(a = m, b = reference, j, "pool edge");
                    accepted.push((pair.0, pair.1, g));
                    pool_links += 1;
                }
            }
        }
        if !joined {
            break;
        }
    }
    tracing::debug!(pool_links, "address-pool links");

    // Components with two or more accounts, numbered by their smallest member.
    let mut root_to_cluster: HashMap<u32, u32> = HashMap::new();
    let mut cluster_of = vec![None; n];
    let mut sizes: HashMap<u32, usize> = HashMap::new();
    for a in 0..n as u32 {
        *sizes.entry(uf.find(a)).or_default() += 1;
    }
    let mut clusters: Vec<Vec<u32>> = Vec::new();
    for a in 0..n as u32 {
        let r = uf.find(a);
        if sizes[&r] < 2 {
            continue;
        }
        let next = clusters.len() as u32;
        let cl = *root_to_cluster.entry(r).or_insert(next);
        if cl == next {
            clusters.push(Vec::new());
        }
        clusters[cl as usize].push(a);
        cluster_of[a as usize] = Some(cl);
    }
    let mut edge_groups = vec![[0u64; 5]; clusters.len()];
    let mut edge_sample: Vec<Vec<(u32, u32, u8)>> = vec![Vec::new(); clusters.len()];
    let mut lock_sum = vec![(0.0f64, 0u64); clusters.len()];
    for (a, b, w) in &accepted {
        let cl = cluster_of[*a as usize].expect("edge endpoints are clustered") as usize;
        for g in 0..5 {
            if w[g] > 0.0 {
                edge_groups[cl][g] += 1;
            }
        }
        if edge_sample[cl].len() < MAX_EDGE_SAMPLE {
            let strongest = (0..5).max_by(|&x, &y| w[x].total_cmp(&w[y])).unwrap_or(0);
            edge_sample[cl].push((*a, *b, strongest as u8));
        }
    }
    // Cluster synchrony: mean Jaccard of active buckets over a sample of member pairs.
    for (cl, members) in clusters.iter().enumerate() {
        let sample: Vec<u32> = members.iter().copied().take(40).collect();
        for (i, &a) in sample.iter().enumerate() {
            for &b in &sample[i + 1..] {
                let j = profiles[a as usize]
                    .buckets
                    .jaccard(&profiles[b as usize].buckets);
                lock_sum[cl].0 += j;
                lock_sum[cl].1 += 1;
            }
        }
    }
    let lockstep = lock_sum
        .iter()
        .map(|(s, k)| if *k > 0 { s / *k as f64 } else { 0.0 })
        .collect();
    let identities = clusters
        .iter()
        .map(|members| {
            let mut domains = std::collections::BTreeSet::new();
            let mut cards: std::collections::BTreeMap<&str, usize> = Default::default();
            for &m in members {
                let f = &facts[m as usize];
                if let Some(d) = &f.email_domain {
                    let d = d.to_ascii_lowercase();
                    if !public.contains(&d) {
                        domains.insert(d);
                    }
                }
                if let Some(card) = &f.payment {
                    *cards.entry(card.as_str()).or_default() += 1;
                }
            }
            Identities {
                private_domains: domains.len(),
                shared_cards: cards.values().filter(|&&k| k >= 2).count(),
            }
        })
        .collect();
    let edges = accepted.len();
    tracing::debug!(seconds = started.elapsed().as_secs_f64(), "linked");
    Links {
        identities,
        indicators,
        cluster_of,
        clusters,
        edge_groups,
        lockstep,
        edge_sample,
        candidate_pairs,
        edges,
    }
}

/// Each account's share of the input's 10-minute buckets in which it was active (the
/// window runs from the first request of any account to the last).
fn activity_density(profiles: &[Profile]) -> Vec<f64> {
    let active = || profiles.iter().filter(|p| p.exchanges > 0);
    let (Some(first), Some(last)) = (
        active().map(|p| p.first_ts).min(),
        active().map(|p| p.last_ts).max(),
    ) else {
        return vec![0.0; profiles.len()];
    };
    let window = (last.div_euclid(BUCKET_MICROS) - first.div_euclid(BUCKET_MICROS) + 1) as f64;
    profiles
        .iter()
        .map(|p| (p.buckets.distinct() / window).clamp(0.0, 1.0))
        .collect()
}

/// Each account's suspicion, or the mean suspicion of its current component when that is
/// higher.
fn component_suspicion(uf: &mut UnionFind, suspicion: &[f64]) -> Vec<f64> {
    let roots: Vec<u32> = (0..suspicion.len() as u32).map(|a| uf.find(a)).collect();
    let mut sums = vec![(0.0f64, 0usize); suspicion.len()];
    for (a, &r) in roots.iter().enumerate() {
        sums[r as usize].0 += suspicion[a];
        sums[r as usize].1 += 1;
    }
    roots
        .iter()
        .enumerate()
        .map(|(a, &r)| {
            let (sum, k) = sums[r as usize];
            suspicion[a].max(sum / k as f64)
        })
        .collect()
}

/// An accepted pair of accounts (the smaller index first) and its weight per evidence group.
type Edge = (u32, u32, [f32; 5]);

/// Every pair of accounts that share at least one `pairable` value, each with the strongest
/// `weight` per evidence group, passed to `judge`; returns the pairs it accepts in (a, b) order
/// and how many pairs there were.
///
/// Pairs are gathered per account `a` from the values it holds, into a scratch row indexed by
/// the partner `b`: no table of all pairs is ever built, the pairs of one account stay in cache
/// while they are judged, and accounts are handed out to `threads` threads in runs. Small inputs
/// (the online service's frequent re-judging) run inline without spawning.
fn judge_pairs(
    indicators: &[Indicator],
    n: usize,
    pairable: impl Fn(&Indicator) -> bool,
    weight: impl Fn(&Indicator) -> f32,
    judge: impl Fn(u32, u32, [f32; 5]) -> Option<[f32; 5]> + Sync,
    threads: usize,
) -> (Vec<Edge>, usize) {
    // Values per account, as (value, position of the account among its holders), in CSR form.
    let chosen: Vec<(u32, f32, usize)> = indicators
        .iter()
        .enumerate()
        .filter(|(_, i)| pairable(i))
        .map(|(k, i)| (k as u32, weight(i), i.kind.group() as usize))
        .collect();
    let mut start = vec![0u32; n + 1];
    for &(k, ..) in &chosen {
        for &a in &indicators[k as usize].accounts {
            start[a as usize + 1] += 1;
        }
    }
    for a in 0..n {
        start[a + 1] += start[a];
    }
    let mut fill = start.clone();
    let mut held = vec![(0u32, 0u32); start[n] as usize];
    for (x, &(k, ..)) in chosen.iter().enumerate() {
        for (pos, &a) in indicators[k as usize].accounts.iter().enumerate() {
            held[fill[a as usize] as usize] = (x as u32, pos as u32);
            fill[a as usize] += 1;
        }
    }
    drop(fill);

    // One run of accounts: their accepted pairs in order, and how many pairs they had.
    let run = |accounts: std::ops::Range<usize>, scratch: &mut Scratch| {
        let mut out = Vec::new();
        let mut pairs = 0usize;
        for a in accounts {
            scratch.touched.clear();
            for &(x, pos) in &held[start[a] as usize..start[a + 1] as usize] {
                let (k, w, g) = chosen[x as usize];
                for &b in &indicators[k as usize].accounts[pos as usize + 1..] {
                    let b = b as usize;
                    if scratch.seen[b] != a as u32 + 1 {
                        scratch.seen[b] = a as u32 + 1;
                        scratch.weights[b] = [0.0; 5];
                        scratch.touched.push(b as u32);
                    }
                    scratch.weights[b][g] = scratch.weights[b][g].max(w);
                }
            }
            pairs += scratch.touched.len();
            scratch.touched.sort_unstable();
            for &b in &scratch.touched {
                if let Some(w) = judge(a as u32, b, scratch.weights[b as usize]) {
                    out.push((a as u32, b, w));
                }
            }
        }
        (out, pairs)
    };
    const RUN: usize = 512;
    let runs = n.div_ceil(RUN);
    if threads <= 1 || runs <= 1 || held.len() < 1 << 16 {
        return run(0..n, &mut Scratch::new(n));
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, Vec<Edge>, usize)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.min(runs))
            .map(|_| {
                let (run, next) = (&run, &next);
                s.spawn(move || {
                    let mut scratch = Scratch::new(n);
                    let mut done = Vec::new();
                    loop {
                        let r = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if r >= runs {
                            return done;
                        }
                        let (out, pairs) = run(r * RUN..((r + 1) * RUN).min(n), &mut scratch);
                        done.push((r, out, pairs));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("judging does not panic"))
            .collect()
    });
    done.sort_unstable_by_key(|d| d.0);
    let pairs = done.iter().map(|d| d.2).sum();
    (done.into_iter().flat_map(|d| d.1).collect(), pairs)
}

/// One thread's pair row: the weights per partner account, which partners the current account
/// has (`seen` holds the account's index plus one), and their list.
struct Scratch {
    seen: Vec<u32>,
    weights: Vec<[f32; 5]>,
    touched: Vec<u32>,
}

impl Scratch {
    fn new(n: usize) -> Self {
        Scratch {
            seen: vec![0; n],
            weights: vec![[0.0; 5]; n],
            touched: Vec::new(),
        }
    }
}

/// Edges kept per cluster for the report's graph.
pub const MAX_EDGE_SAMPLE: usize = 600;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Row;

    /// Every value hashes alike: each lookup past the first is a collision.
    #[derive(Clone, Default)]
    struct Colliding;
    impl std::hash::BuildHasher for Colliding {
        type Hasher = ConstHasher;
        fn build_hasher(&self) -> ConstHasher {
            ConstHasher
        }
    }
    struct ConstHasher;
    impl std::hash::Hasher for ConstHasher {
        fn finish(&self) -> u64 {
            7
        }
        fn write(&mut self, _: &[u8]) {}
    }

    #[test]
    fn indicator_ids_are_exact_even_when_hashes_collide() {
        let values = [
            (Kind::Address, "10.0.0.1"),
            (Kind::Address, "10.0.0.2"),
            (Kind::Prefix, "10.0.0.1"),
            (Kind::Address, "10.0.0.3"),
        ];
        let mut plain = IndicatorIds::new();
        let mut colliding = IndicatorIds::with_hasher(Colliding);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for round in 0..3 {
            for (i, &(kind, v)) in values.iter().enumerate() {
                assert_eq!(plain.id(&mut a, kind, v), i as u32, "round {round}");
                assert_eq!(colliding.id(&mut b, kind, v), i as u32, "round {round}");
            }
        }
        assert_eq!(a.len(), values.len());
        assert_eq!(b.len(), values.len());
        for (ind, &(kind, v)) in b.iter().zip(&values) {
            assert_eq!((ind.kind, ind.value.as_str()), (kind, v));
        }
    }

    fn account(ips: &[&str], hours: &[i64]) -> Profile {
        let mut p = Profile::default();
        for (i, &h) in hours.iter().enumerate() {
            p.add(&Row {
                ts: h * 3_600_000_000,
                request_id: "r",
                model: "m",
                client_ip: ips[i % ips.len()],
                ..Default::default()
            });
        }
        p
    }

    fn facts(payment: Option<&str>, domain: &str) -> AccountFacts {
        AccountFacts {
            payment: payment.map(String::from),
            email_domain: Some(domain.into()),
            billing_country: Some("US".into()),
            ..Default::default()
        }
    }

    /// Many unrelated accounts, each with its own address and domain.
    fn population(n: usize) -> (Vec<Profile>, Vec<AccountFacts>) {
        let mut p = Vec::new();
        let mut f = Vec::new();
        for i in 0..n {
            let ip: &'static str =
                Box::leak(format!("198.51.{}.{}", i / 200, i % 200 + 1).into_boxed_str());
            p.push(account(&[ip], &[(i as i64 * 7) % 500]));
            f.push(facts(None, &format!("org{i}.example")));
        }
        (p, f)
    }

    #[test]
    fn pairs_judged_per_account_match_a_table_of_all_pairs() {
        // 30,000 values over 20,000 accounts, 2 to 12 holders each, of four kinds in three
        // evidence groups; every 97th is infrastructure and must not pair anyone.
        let kinds = [
            Kind::Address,
            Kind::Payment,
            Kind::EmailDomain,
            Kind::Client,
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |m: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % m
        };
        let n = 20_000;
        let indicators: Vec<Indicator> = (0..30_000)
            .map(|v| {
                let mut accounts: Vec<u32> =
                    (0..2 + next(11)).map(|_| next(n as u64) as u32).collect();
                accounts.sort_unstable();
                accounts.dedup();
                Indicator {
                    kind: kinds[v % kinds.len()],
                    value: v.to_string(),
                    accounts,
                    rarity: 0.1 + next(90) as f64 / 100.0,
                    infrastructure: v % 97 == 0,
                    campaign_wide: false,
                    billing_countries: 0,
                }
            })
            .collect();
        let pairable = |i: &Indicator| !i.infrastructure && i.accounts.len() >= 2;
        let weight = |i: &Indicator| (i.rarity * (1.0 + i.kind as u8 as f64)) as f32;
        let judge = |a: u32, b: u32, mut w: [f32; 5]| {
            w[4] = ((a ^ b) % 7) as f32 / 10.0;
            (w.iter().sum::<f32>() >= 1.5).then_some(w)
        };
        let mut table: HashMap<(u32, u32), [f32; 5]> = HashMap::new();
        for i in indicators.iter().filter(|i| pairable(i)) {
            let g = i.kind.group() as usize;
            for (x, &a) in i.accounts.iter().enumerate() {
                for &b in &i.accounts[x + 1..] {
                    let e = table.entry((a, b)).or_default();
                    e[g] = e[g].max(weight(i));
                }
            }
        }
        let mut expected: Vec<Edge> = table
            .iter()
            .filter_map(|(&(a, b), &w)| judge(a, b, w).map(|w| (a, b, w)))
            .collect();
        expected.sort_unstable_by_key(|e| (e.0, e.1));
        assert!(expected.len() > 1_000 && expected.len() < table.len());
        for threads in [1, 2, 5] {
            let (got, pairs) = judge_pairs(&indicators, n, pairable, weight, judge, threads);
            assert_eq!(pairs, table.len(), "{threads} threads");
            assert_eq!(got, expected, "{threads} threads");
        }
        let (none, pairs) = judge_pairs(&[], 3, pairable, weight, judge, 2);
        assert!(none.is_empty() && pairs == 0);
    }

    #[test]
    fn a_shared_card_links_a_campus_nat_alone_does_not() {
        let (mut p, mut f) = population(300);
        // 40 students behind one NAT, one edu domain: common infrastructure.
        for _ in 0..40 {
            p.push(account(&["192.0.2.10"], &[10, 11]));
            f.push(facts(None, "uni.example.edu"));
        }
        // Three accounts sharing one card and a rare address.
        for _ in 0..3 {
            p.push(account(&["203.0.113.5", "203.0.113.6"], &[100, 101, 102]));
            f.push(facts(Some("pf-1"), "mail.example"));
        }
        let links = link(&p, &f, &vec![0.0; p.len()], &LinkConfig::default());
        let ring: Vec<u32> = (340..343).collect();
        let cl = links.cluster_of[340].expect("ring linked");
        assert_eq!(links.clusters[cl as usize], ring);
        assert!(
            links.cluster_of[300..340].iter().all(|c| c.is_none()),
            "NAT must not link"
        );
        assert!(links.cluster_of[..300].iter().all(|c| c.is_none()));
        let nat = links
            .indicators
            .iter()
            .find(|i| i.value == "192.0.2.10")
            .unwrap();
        assert!(nat.infrastructure);
    }

    fn billed_in(payment: &str, country: &str) -> AccountFacts {
        AccountFacts {
            payment: Some(payment.into()),
            billing_country: Some(country.into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_card_billed_in_several_countries_links_its_holders_in_a_small_input() {
        // 60 accounts: too few for a card held by four to be rare by frequency alone.
        let (mut p, mut f) = population(60);
        for (k, country) in ["US", "DE", "JP", "US"].into_iter().enumerate() {
            p.push(account(
                &[&*format!("203.0.113.{}", 10 + k)],
                &[40 + k as i64],
            ));
            f.push(billed_in("pf-hydra", country));
        }
        // An office card: four accounts, one billing country, nothing else shared.
        for k in 0..4 {
            p.push(account(
                &[&*format!("203.0.113.{}", 50 + k)],
                &[200 + 30 * k],
            ));
            f.push(billed_in("pf-office", "FR"));
        }
        let links = link(&p, &f, &vec![0.0; p.len()], &LinkConfig::default());
        let cl = links.cluster_of[60].expect("card holders linked");
        assert_eq!(links.clusters[cl as usize], vec![60, 61, 62, 63]);
        assert!(links.cluster_of[64..].iter().all(|c| c.is_none()));
        let card = |v: &str| links.indicators.iter().find(|i| i.value == v).unwrap();
        assert_eq!(card("pf-hydra").billing_countries, 3);
        assert_eq!(card("pf-hydra").rarity, 1.0);
        assert_eq!(card("pf-office").billing_countries, 1);
        assert!(card("pf-office").rarity < 0.9);
    }

    #[test]
    fn a_pool_joins_through_what_its_reference_is_already_linked_to() {
        let (mut p, mut f) = population(200);
        let pool = |base: u32| -> Vec<&'static str> {
            (0..12)
                .map(|i| &*Box::leak(format!("100.{base}.0.{i}").into_boxed_str()))
                .collect()
        };
        let (p1, p2, p3) = (pool(1), pool(2), pool(3));
        // 200: suspicious, pool 1. 201: ordinary, pool 1, card with 202 (billed US and DE).
        // 202: ordinary, pool 2. 203: ordinary, pool 2. 204, 205: ordinary, pool 3 only.
        let rows = [
            (&p1, None),
            (&p1, Some("US")),
            (&p2, Some("DE")),
            (&p2, None),
            (&p3, None),
            (&p3, None),
        ];
        for (k, (ips, card)) in rows.into_iter().enumerate() {
            // Never active at the same time: no lockstep.
            let hours: Vec<i64> = (0..24).map(|h| 1_000 + 200 * k as i64 + h).collect();
            p.push(account(ips, &hours));
            f.push(match card {
                Some(country) => billed_in("pf-1", country),
                None => AccountFacts::default(),
            });
        }
        let mut suspicion = vec![0.0; p.len()];
        suspicion[200] = 0.6;
        for s in &mut suspicion[201..] {
            *s = 0.1;
        }
        let links = link(&p, &f, &suspicion, &LinkConfig::default());
        let cl = links.cluster_of[200].expect("pool 1 linked");
        // 203 joins in a second round: 202's component (200, 201, 202) is suspicious on
        // average, though 202 is not.
        assert_eq!(links.clusters[cl as usize], vec![200, 201, 202, 203]);
        assert!(links.cluster_of[204].is_none() && links.cluster_of[205].is_none());
        // Each pool pair is an edge once, however many of its addresses group it.
        assert_eq!(links.edges, 3);
    }

    #[test]
    fn webmail_is_no_organisation_even_from_one_country() {
        // Three accounts of one country tied by a card billed there and a rare address, on
        // three large webmail providers; two more, tied by another card, on two companies'
        // domains.
        let (mut p, mut f) = population(100);
        for (k, domain) in [
            "gmail.com",
            "Outlook.com",
            "yahoo.com",
            "a.example",
            "b.example",
        ]
        .into_iter()
        .enumerate()
        {
            p.push(account(&["203.0.113.40"], &[300 + k as i64]));
            f.push(AccountFacts {
                payment: Some(if k < 3 { "pf-web" } else { "pf-co" }.into()),
                email_domain: Some(domain.into()),
                billing_country: Some("US".into()),
                ..Default::default()
            });
        }
        let links = link(&p, &f, &vec![0.0; p.len()], &LinkConfig::default());
        let web = links.cluster_of[100].expect("linked") as usize;
        assert_eq!(links.clusters[web], vec![100, 101, 102]);
        assert_eq!(
            links.identities[web],
            Identities {
                private_domains: 0,
                shared_cards: 1
            }
        );
        let co = links.cluster_of[103].expect("linked") as usize;
        assert_eq!(links.clusters[co], vec![103, 104]);
        assert_eq!(links.identities[co].private_domains, 2);
    }

    /// An account active once in each of these 10-minute buckets.
    fn active_in(ip: &str, buckets: impl Iterator<Item = i64>) -> Profile {
        let mut p = Profile::default();
        for b in buckets {
            p.add(&Row {
                ts: b * BUCKET_MICROS,
                request_id: "r",
                model: "m",
                client_ip: ip,
                ..Default::default()
            });
        }
        p
    }

    #[test]
    fn lockstep_counts_beyond_what_busy_accounts_share_by_chance() {
        // 300 accounts over 500 hours (3,000 buckets).
        let (mut p, mut f) = population(300);
        // Two around-the-clock accounts (resellers) sharing a rare address: they overlap in
        // nearly every bucket because they are always busy, not because they move together.
        p.push(active_in(
            "203.0.113.20",
            (0..3_000).filter(|b| b % 17 != 0),
        ));
        p.push(active_in(
            "203.0.113.20",
            (0..3_000).filter(|b| b % 19 != 0),
        ));
        // Two sparse accounts sharing a rare address, active in the same 40 buckets.
        for _ in 0..2 {
            p.push(active_in("203.0.113.30", (0..40).map(|k| 100 + 37 * k)));
        }
        for k in 0..4 {
            f.push(facts(None, &format!("own{k}.example")));
        }
        let links = link(&p, &f, &vec![0.0; p.len()], &LinkConfig::default());
        assert!(links.cluster_of[300].is_none() && links.cluster_of[301].is_none());
        assert!(links.cluster_of[302].is_some());
        assert_eq!(links.cluster_of[302], links.cluster_of[303]);
    }

    #[test]
    fn independent_weak_evidence_adds_up() {
        let (mut p, mut f) = population(300);
        // Same rare address and the same private domain: two kinds, an edge.
        for _ in 0..2 {
            p.push(account(&["203.0.113.9"], &[5, 6, 7]));
            f.push(facts(None, "shell-co.example"));
        }
        // Only a rare address: one kind, no edge.
        for k in 0..2 {
            p.push(account(&["203.0.113.77"], &[300 + 50 * k, 301 + 50 * k]));
            f.push(facts(None, &format!("x{}.example", p.len())));
        }
        let links = link(&p, &f, &vec![0.0; p.len()], &LinkConfig::default());
        assert!(links.cluster_of[300].is_some());
        assert_eq!(links.cluster_of[300], links.cluster_of[301]);
        assert!(links.cluster_of[302].is_none());
    }
}
