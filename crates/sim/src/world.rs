//! The simulated world: every account with its facts and behaviour plan, and every
//! campaign's shared machinery (dispatch schedule, infrastructure, cards, harness). Built
//! once, cheaply and single-threaded; exchanges are then generated per account in parallel.

use chrono::DateTime;

use crate::infra::{self, Client, Net};
use crate::rng::{Rng, id_of, stream};
use crate::scenario::{Archetype, Campaign, Scenario, Size};

pub const MICROS_PER_SEC: i64 = 1_000_000;
pub const MICROS_PER_HOUR: i64 = 3600 * MICROS_PER_SEC;
pub const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

/// Benign classes, plus campaigns by index into `Scenario::campaigns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    Chat,
    Developer,
    Enterprise,
    EvalHarness,
    AgentPlatform,
    Reseller,
    Student,
    Startup,
    SyntheticData,
    Campaign(usize),
}

impl Class {
    pub const BENIGN: [Class; 9] = [
        Class::Chat,
        Class::Developer,
        Class::Enterprise,
        Class::EvalHarness,
        Class::AgentPlatform,
        Class::Reseller,
        Class::Student,
        Class::Startup,
        Class::SyntheticData,
    ];

    /// Name in `truth.csv`: the benign class, or the campaign's archetype.
    pub fn name(self, scenario: &Scenario) -> &'static str {
        match self {
            Class::Chat => "chat",
            Class::Developer => "developer",
            Class::Enterprise => "enterprise",
            Class::EvalHarness => "eval_harness",
            Class::AgentPlatform => "agent_platform",
            Class::Reseller => "reseller",
            Class::Student => "student",
            Class::Startup => "startup",
            Class::SyntheticData => "synthetic_data",
            Class::Campaign(i) => match scenario.campaigns[i].archetype {
                Archetype::Reasoning => "reasoning",
                Archetype::Agentic => "agentic",
                Archetype::Hydra => "hydra",
            },
        }
    }

    fn id(self) -> u64 {
        match self {
            Class::Campaign(i) => 100 + i as u64,
            other => Class::BENIGN.iter().position(|c| *c == other).unwrap() as u64,
        }
    }
}

/// An account id that says nothing about its class.
fn opaque_id(seed: u64, class: Class, index: u64) -> String {
    format!("acct_{:016x}", stream(seed ^ 0xacc7, &[class.id(), index]))
}

/// One account: the facts written to `accounts` and the plan its exchanges follow.
#[derive(Clone, Debug)]
pub struct Account {
    pub id: String,
    pub class: Class,
    /// Index within its class or campaign.
    pub index: u64,
    /// Lab, campus, startup, or campaign shard.
    pub group: u64,
    pub created_at: i64,
    pub email_domain: String,
    pub verification: &'static str,
    pub payment: Option<String>,
    pub billing_country: &'static str,
    pub signup_ip: String,
    /// Where the account's traffic appears to come from.
    pub country: &'static str,
    /// UTC offset of the people (or operators) behind it, in hours.
    pub tz: i32,
    pub exchanges: u64,
    pub active_from: i64,
    pub active_to: i64,
    /// Main address and its ASN.
    pub home: (String, u32),
    pub client: Client,
    /// Stream seed of this account's exchanges.
    pub seed: u64,
}

/// A campaign's shared machinery.
#[derive(Clone, Debug)]
pub struct CampaignCtx {
    pub spec: Campaign,
    pub seed: u64,
    pub start: i64,
    pub end: i64,
    /// Dispatch windows (start, width) of the orchestrator, sorted.
    pub slots: Vec<(i64, i64)>,
    /// Number of load-balancing shards accounts are spread over (1: all accounts share).
    pub shards: u64,
    pub client: Client,
    /// Size of the campaign's address pool (hosting prefixes or residential proxies).
    pub pool: u64,
    /// Share of prompts in the operators' language.
    pub operator_language: f64,
}

pub struct World {
    pub scenario: Scenario,
    pub seed: u64,
    pub start: i64,
    pub end: i64,
    pub release: i64,
    pub accounts: Vec<Account>,
    pub campaigns: Vec<CampaignCtx>,
}

const BENIGN_COUNTRIES: &[(&str, f64)] = &[
    ("US", 0.34),
    ("GB", 0.08),
    ("DE", 0.08),
    ("FR", 0.06),
    ("NL", 0.03),
    ("JP", 0.07),
    ("SG", 0.04),
    ("CA", 0.05),
    ("IN", 0.12),
    ("BR", 0.06),
    ("AU", 0.04),
    ("KR", 0.03),
];

fn pick_country(rng: &mut Rng) -> &'static str {
    let w: Vec<f64> = BENIGN_COUNTRIES.iter().map(|c| c.1).collect();
    BENIGN_COUNTRIES[rng.weighted(&w)].0
}

fn static_country(code: &str) -> &'static str {
    infra::COUNTRIES[infra::country(code)].0
}

const EMAIL_PUBLIC: &[&str] = &[
    "gmail.com",
    "outlook.com",
    "yahoo.com",
    "icloud.com",
    "proton.me",
    "gmx.de",
    "hotmail.com",
];

/// What the accounts of one lab, campus or startup share: country, address, card, e-mail domain.
type GroupFacts = (&'static str, (String, u32), Option<String>, String);

/// Per-account volumes for a total over `n` accounts with log-normal inequality.
fn volumes(rng: &mut Rng, n: u64, total: u64, spread: f64) -> Vec<u64> {
    if n == 0 {
        return Vec::new();
    }
    let w: Vec<f64> = (0..n).map(|_| rng.lognormal(1.0, spread)).collect();
    let sum: f64 = w.iter().sum();
    w.iter()
        .map(|x| ((x / sum) * total as f64).round().max(1.0) as u64)
        .collect()
}

fn scaled(size: &Size, scale: f64) -> (u64, u64) {
    if size.accounts == 0 || size.exchanges == 0 {
        return (0, 0);
    }
    let a = ((size.accounts as f64 * scale).round() as u64).max(1);
    let e = ((size.exchanges as f64 * scale).round() as u64).max(a);
    (a, e)
}

impl World {
    pub fn build(scenario: Scenario, scale: f64, seed: u64) -> World {
        let start = DateTime::parse_from_rfc3339(&scenario.start)
            .expect("validated")
            .timestamp_micros();
        let end = start + (scenario.days * MICROS_PER_DAY as f64) as i64;
        let release = start + (scenario.release.day * MICROS_PER_DAY as f64) as i64;
        let mut world = World {
            scenario,
            seed,
            start,
            end,
            release,
            accounts: Vec::new(),
            campaigns: Vec::new(),
        };
        let b = world.scenario.benign.clone();
        let sizes = [
            (Class::Chat, &b.chat),
            (Class::Developer, &b.developer),
            (Class::Enterprise, &b.enterprise),
            (Class::EvalHarness, &b.eval_harness),
            (Class::AgentPlatform, &b.agent_platform),
            (Class::Reseller, &b.reseller),
            (Class::Student, &b.student),
            (Class::Startup, &b.startup),
            (Class::SyntheticData, &b.synthetic_data),
        ];
        for (class, size) in sizes {
            let (n, total) = scaled(size, scale);
            world.add_benign(class, n, total, size.spread);
        }
        for i in 0..world.scenario.campaigns.len() {
            let spec = world.scenario.campaigns[i].clone();
            let (n, total) = scaled(&spec.size, scale);
            world.add_campaign(i, spec, n, total);
        }
        world
    }

    fn rng(&self, class: Class, what: u64) -> Rng {
        Rng::for_stream(self.seed, &[class.id(), what])
    }

    fn add_benign(&mut self, class: Class, n: u64, total: u64, spread: f64) {
        let mut rng = self.rng(class, 0);
        let vols = volumes(&mut rng, n, total, spread);
        let days = (self.end - self.start) as f64 / MICROS_PER_DAY as f64;
        // Groups: eval labs of 3 accounts, campuses of up to 400 students, startups of ~10.
        let group_size = match class {
            Class::EvalHarness => 3,
            Class::Student => 400,
            Class::Startup => 10,
            _ => 1,
        };
        let mut group_facts: Vec<GroupFacts> = Vec::new();
        for (i, &v) in vols.iter().enumerate() {
            let i = i as u64;
            let mut r = self.rng(class, 1000 + i);
            let group = i / group_size;
            if group as usize >= group_facts.len() {
                let mut g = self.rng(class, 500_000 + group);
                let (country, home, card, domain) = match class {
                    Class::Student => {
                        let (asn, cc, domain) = g.pick(infra::CAMPUS_ASNS);
                        let nat = (infra::ipv4(asn, g.below(4)), asn);
                        (static_country(cc), nat, None, domain.to_string())
                    }
                    Class::Startup => {
                        let cc = pick_country(&mut g);
                        let office = infra::address(&mut g, Net::Office, cc);
                        let card = format!("pf-{:016x}", g.next_u64());
                        let domain = format!(
                            "{}{}.example.io",
                            g.pick(crate::vocab::IDENT_A),
                            g.below(1000)
                        );
                        (cc, office, Some(card), domain)
                    }
                    Class::EvalHarness => {
                        let cc = g.pick(&["US", "GB", "DE", "CA", "JP", "FR"]);
                        let cloud = infra::address(&mut g, Net::Cloud, cc);
                        (
                            static_country(cc),
                            cloud,
                            None,
                            format!("lab{}.example.org", group),
                        )
                    }
                    _ => {
                        let cc = pick_country(&mut g);
                        (cc, (String::new(), 0), None, String::new())
                    }
                };
                group_facts.push((country, home, card, domain));
            }
            let (gcountry, ghome, gcard, gdomain) = group_facts[group as usize].clone();
            let country = if gcountry.is_empty() {
                pick_country(&mut r)
            } else {
                gcountry
            };
            let (net, verification, client) = match class {
                Class::Chat => (
                    if r.chance(0.45) {
                        Net::Mobile
                    } else {
                        Net::Residential
                    },
                    r.pick(&["email", "phone", "phone", "card"]),
                    infra::consumer_app(&mut r),
                ),
                Class::Developer => (
                    if r.chance(0.3) {
                        Net::Office
                    } else {
                        Net::Residential
                    },
                    r.pick(&["card", "card", "phone", "email"]),
                    infra::coding_harness(&mut r),
                ),
                Class::Enterprise => (Net::Cloud, "enterprise", infra::http_library(&mut r)),
                Class::EvalHarness => (
                    Net::Cloud,
                    r.pick(&["research", "enterprise"]),
                    infra::http_library(&mut r),
                ),
                Class::AgentPlatform => (
                    Net::Cloud,
                    r.pick(&["enterprise", "card"]),
                    infra::sdk(&mut r),
                ),
                Class::Reseller => (
                    Net::Cloud,
                    r.pick(&["enterprise", "card"]),
                    infra::sdk(&mut r),
                ),
                Class::Student => (
                    Net::Campus,
                    "edu",
                    if r.chance(0.5) {
                        infra::sdk(&mut r)
                    } else {
                        infra::http_library(&mut r)
                    },
                ),
                Class::Startup => (
                    Net::Office,
                    r.pick(&["startup", "card"]),
                    if r.chance(0.5) {
                        infra::coding_harness(&mut r)
                    } else {
                        infra::sdk(&mut r)
                    },
                ),
                Class::SyntheticData => (
                    Net::Cloud,
                    r.pick(&["id", "enterprise"]),
                    infra::sdk(&mut r),
                ),
                Class::Campaign(_) => unreachable!(),
            };
            let home = if ghome.0.is_empty() {
                infra::address(&mut r, net, country)
            } else {
                ghome
            };
            let payment = match class {
                Class::Student => None,
                Class::Startup if r.chance(0.4) => gcard,
                Class::Chat if r.chance(0.5) => None,
                _ => Some(format!("pf-{:016x}", r.next_u64())),
            };
            let email_domain = if !gdomain.is_empty() {
                gdomain
            } else {
                match class {
                    Class::Chat | Class::Developer => r.pick(EMAIL_PUBLIC).to_string(),
                    _ => format!(
                        "{}-{}.example.com",
                        r.pick(crate::vocab::IDENT_A),
                        r.below(100_000)
                    ),
                }
            };
            // Accounts are mostly old; active over most of the window.
            let age_days = match class {
                Class::Student => r.uniform(20.0, 400.0),
                _ => r.lognormal(300.0, 0.9).clamp(2.0, 1500.0),
            };
            let created_at = self.start - (age_days * MICROS_PER_DAY as f64) as i64
                + (r.uniform(0.0, days * 0.3) * MICROS_PER_DAY as f64) as i64
                    * (r.chance(0.08) as i64);
            let active_from = created_at.max(self.start);
            let active_to = self.end;
            self.accounts.push(Account {
                id: opaque_id(self.seed, class, i),
                class,
                index: i,
                group,
                created_at,
                email_domain,
                verification,
                payment,
                billing_country: country,
                signup_ip: home.0.clone(),
                country,
                tz: infra::utc_offset(country),
                exchanges: v,
                active_from,
                active_to,
                home,
                client,
                seed: stream(self.seed, &[class.id(), 1_000_000 + i]),
            });
        }
    }

    fn add_campaign(&mut self, index: usize, spec: Campaign, n: u64, total: u64) {
        let class = Class::Campaign(index);
        let seed = stream(self.seed, &[class.id(), id_of(&spec.id)]);
        let mut rng = Rng::new(seed);
        let start = self.start + (spec.start_day * MICROS_PER_DAY as f64) as i64;
        let end = self.start
            + (spec.end_day.unwrap_or(self.scenario.days) * MICROS_PER_DAY as f64) as i64;
        let adv = spec.adversary.clone();
        let claimed = self.scenario.operator.claimed_countries.clone();
        let op_tz = self.scenario.operator.utc_offset;
        let (shard_size, slot_width, per_slot_target) = match spec.archetype {
            Archetype::Reasoning => (20u64, 20 * MICROS_PER_SEC, 1.6),
            Archetype::Agentic => (12, 10 * 60 * MICROS_PER_SEC, 8.0),
            Archetype::Hydra => (u64::MAX, 3 * 60 * MICROS_PER_SEC, 0.0),
        };
        let shards = if shard_size == u64::MAX {
            1
        } else {
            n.div_ceil(shard_size).max(1)
        };
        // Dispatch windows: operators work in their own time zone unless the adversary
        // shapes traffic to the claimed country's day; hydra dispatches around the clock.
        let per_account = total as f64 / n.max(1) as f64;
        let slots_wanted = match spec.archetype {
            Archetype::Hydra => ((end - start) / (12 * 60 * MICROS_PER_SEC)).max(1) as u64,
            _ => ((shards as f64) * (per_account / per_slot_target).max(4.0) * 1.5) as u64,
        };
        let hours_ok = |t: i64, rng: &mut Rng| -> bool {
            let tz = if adv.diurnal {
                infra::utc_offset(&claimed[0])
            } else {
                op_tz
            };
            let local_h = ((t / MICROS_PER_HOUR) + tz as i64).rem_euclid(24);
            match (spec.archetype, adv.diurnal) {
                (_, true) => (8..23).contains(&local_h) || rng.chance(0.05),
                (Archetype::Hydra, false) => true,
                (Archetype::Agentic, false) => (9..24).contains(&local_h) || rng.chance(0.35),
                (Archetype::Reasoning, false) => (9..24).contains(&local_h),
            }
        };
        let mut slots = Vec::with_capacity(slots_wanted as usize);
        let mut guard = 0;
        while (slots.len() as u64) < slots_wanted && guard < slots_wanted * 50 {
            guard += 1;
            let t = start + rng.below((end - start).max(1) as u64) as i64;
            if hours_ok(t, &mut rng) {
                slots.push((t, slot_width));
            }
        }
        slots.sort_unstable();
        let client = infra::custom_client(seed);
        let pool = match spec.archetype {
            Archetype::Reasoning => 6,
            Archetype::Agentic => 40,
            Archetype::Hydra => (n * 3 / 2).max(50),
        };
        let operator_language = adv.operator_language_share.unwrap_or(match spec.archetype {
            Archetype::Reasoning => 0.35,
            Archetype::Agentic => 0.15,
            Archetype::Hydra => 0.1,
        });
        let cards: Vec<String> = (0..match spec.archetype {
            Archetype::Reasoning => 4,
            Archetype::Agentic => (n / 8).max(3),
            Archetype::Hydra => (n / 3).max(5),
        })
            .map(|_| format!("pf-{:016x}", rng.next_u64()))
            .collect();
        let domains: Vec<String> = (0..match spec.archetype {
            Archetype::Hydra => 6,
            _ => 3,
        })
            .map(|_| {
                format!(
                    "{}{}.example.net",
                    rng.pick(&["mailbox", "inbox", "post", "tempmail", "fastmail"]),
                    rng.below(100)
                )
            })
            .collect();
        let vols = volumes(&mut rng, n, total, spec.size.spread);
        let lifetime = spec
            .account_lifetime_days
            .map(|d| d * MICROS_PER_DAY as f64);
        for (i, &v) in vols.iter().enumerate() {
            let i = i as u64;
            let mut r = Rng::for_stream(seed, &[1000 + i]);
            let country = static_country(r.choose(&claimed).as_str());
            let (active_from, active_to) = match lifetime {
                Some(mean) => {
                    // Staggered births: an account retired is replaced by the next one.
                    let span = (end - start) as f64;
                    let born = start + (span * (i as f64 + r.f64()) / n as f64 * 0.92) as i64;
                    let life = r
                        .exponential(mean)
                        .clamp(0.3 * MICROS_PER_DAY as f64, 4.0 * mean)
                        as i64;
                    (born, (born + life).min(end))
                }
                None => {
                    let from = start + (r.f64() * 0.1 * (end - start) as f64) as i64;
                    (from, end - (r.f64() * 0.1 * (end - start) as f64) as i64)
                }
            };
            let aged = r.chance(adv.aged_accounts);
            let created_at = if aged {
                active_from - (r.uniform(60.0, 500.0) * MICROS_PER_DAY as f64) as i64
            } else {
                active_from - (r.uniform(0.02, 1.5) * MICROS_PER_DAY as f64) as i64
            };
            let (verification, email_domain, payment) = match spec.archetype {
                Archetype::Reasoning => (
                    "card",
                    r.choose(&domains).clone(),
                    Some(r.choose(&cards).clone()),
                ),
                Archetype::Agentic => match r.below(4) {
                    0 => (
                        "edu",
                        format!(
                            "{}.example.edu",
                            r.pick(&["stu-mail", "alumni", "campus-online"])
                        ),
                        None,
                    ),
                    1 => (
                        "research",
                        r.choose(&domains).clone(),
                        Some(r.choose(&cards).clone()),
                    ),
                    2 => (
                        "startup",
                        format!(
                            "{}{}.example.io",
                            r.pick(crate::vocab::IDENT_A),
                            r.below(40)
                        ),
                        Some(r.choose(&cards).clone()),
                    ),
                    _ => (
                        "card",
                        r.pick(EMAIL_PUBLIC).to_string(),
                        Some(r.choose(&cards).clone()),
                    ),
                },
                Archetype::Hydra => (
                    r.pick(&["email", "card", "phone"]),
                    if aged {
                        r.pick(EMAIL_PUBLIC).to_string()
                    } else {
                        r.choose(&domains).clone()
                    },
                    if r.chance(0.7) {
                        Some(r.choose(&cards).clone())
                    } else {
                        None
                    },
                ),
            };
            let home = campaign_address(&mut r, spec.archetype, &adv, seed, pool, country);
            self.accounts.push(Account {
                id: opaque_id(self.seed, class, i),
                class,
                index: i,
                group: i % shards,
                created_at,
                email_domain,
                verification,
                payment,
                billing_country: country,
                signup_ip: home.0.clone(),
                country,
                tz: if adv.diurnal {
                    infra::utc_offset(country)
                } else {
                    op_tz
                },
                exchanges: v,
                active_from,
                active_to,
                home,
                client: client.clone(),
                seed: stream(seed, &[2_000_000 + i]),
            });
        }
        self.campaigns.push(CampaignCtx {
            spec,
            seed,
            start,
            end,
            slots,
            shards,
            client,
            pool,
            operator_language,
        });
    }

    pub fn campaign(&self, class: Class) -> Option<&CampaignCtx> {
        match class {
            Class::Campaign(i) => self.campaigns.get(i),
            _ => None,
        }
    }
}

/// An address of a campaign: its hosting prefixes or proxy exits, or (when rotating) a
/// residential proxy in the claimed country.
pub fn campaign_address(
    r: &mut Rng,
    archetype: Archetype,
    adv: &crate::scenario::Adversary,
    seed: u64,
    pool: u64,
    country: &str,
) -> (String, u32) {
    if r.chance(adv.residential_rotation) || archetype == Archetype::Hydra {
        // A shared residential proxy pool: exit i is always the same address.
        let exit = r.below(pool);
        let mut e = Rng::for_stream(seed, &[7, exit]);
        let c = &infra::COUNTRIES[infra::country(country)];
        let asn = e.pick(c.2);
        return (infra::ipv4(asn, e.below(200_000)), asn);
    }
    let mut e = Rng::for_stream(seed, &[8, r.below(pool)]);
    let asn = e.pick(infra::HOSTING_ASNS);
    (infra::ipv4(asn, e.below(2000)), asn)
}
