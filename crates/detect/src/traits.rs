//! Per-account traits: what one account's shape of use says, each in [0, 1] with the evidence
//! an analyst can check. Traits never make a verdict on their own; they are averaged over a
//! cluster of linked accounts (see `verdict`).

use crate::config::TraitConfig;
use crate::features::{SCRIPTS, flag};
use crate::profile::Profile;

const DAY: f64 = 86_400e6;
const HOUR: i64 = 3_600_000_000;

/// Facts of the `accounts` table.
#[derive(Clone, Debug, Default)]
pub struct AccountFacts {
    pub created_at: Option<i64>,
    pub email_domain: Option<String>,
    pub verification: Option<String>,
    pub payment: Option<String>,
    pub billing_country: Option<String>,
    pub signup_ip: Option<String>,
}

/// A released model.
#[derive(Clone, Debug)]
pub struct Release {
    pub model: String,
    pub released_at: i64,
}

/// The observed window: first and last exchange of the whole input.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trait {
    Young,
    Churn,
    Timezone,
    Language,
    Elicit,
    ToolTrace,
    Pivot,
}

impl Trait {
    pub const ALL: [Trait; 7] = [
        Trait::Young,
        Trait::Churn,
        Trait::Timezone,
        Trait::Language,
        Trait::Elicit,
        Trait::ToolTrace,
        Trait::Pivot,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Trait::Young => "young",
            Trait::Churn => "churn",
            Trait::Timezone => "timezone",
            Trait::Language => "language",
            Trait::Elicit => "elicit",
            Trait::ToolTrace => "tool_trace",
            Trait::Pivot => "pivot",
        }
    }
    fn weight(self, c: &TraitConfig) -> f64 {
        match self {
            Trait::Young => c.w_young,
            Trait::Churn => c.w_churn,
            Trait::Timezone => c.w_timezone,
            Trait::Language => c.w_language,
            Trait::Elicit => c.w_elicit,
            Trait::ToolTrace => c.w_tool_trace,
            Trait::Pivot => c.w_pivot,
        }
    }
}

/// Trait values and the human-readable evidence behind each non-zero one.
#[derive(Clone, Debug, Default)]
pub struct Traits {
    pub values: [f64; 7],
    pub evidence: Vec<String>,
    /// The time zone (UTC offset, hours) implied by the daily rhythm, when it is clear.
    pub implied_utc_offset: Option<i32>,
    pub claimed_country: Option<String>,
    /// Added to the suspicion when partners reported one of the account's values.
    pub partner: f64,
}

impl Traits {
    pub fn get(&self, t: Trait) -> f64 {
        self.values[t as usize]
    }

    /// Weighted mean of the traits.
    pub fn suspicion(&self, c: &TraitConfig) -> f64 {
        let (mut num, mut den) = (0.0, 0.0);
        for t in Trait::ALL {
            num += t.weight(c) * self.get(t);
            den += t.weight(c);
        }
        let base = if den > 0.0 { num / den } else { 0.0 };
        (base + self.partner).min(1.0)
    }
}

/// Standard UTC offset (hours) of a country, where one offset describes most of its people.
pub fn utc_offset(country: &str) -> Option<i32> {
    let o = match country {
        "US" => -6,
        "CA" => -5,
        "MX" => -6,
        "BR" => -3,
        "AR" => -3,
        "CL" => -4,
        "CO" | "PE" => -5,
        "GB" | "IE" | "PT" | "IS" => 0,
        "DE" | "FR" | "NL" | "BE" | "ES" | "IT" | "CH" | "AT" | "SE" | "NO" | "DK" | "PL"
        | "CZ" | "HU" | "SK" | "SI" | "HR" | "LU" | "RS" | "NG" => 1,
        "FI" | "EE" | "LV" | "LT" | "UA" | "RO" | "BG" | "GR" | "IL" | "EG" | "ZA" => 2,
        "TR" | "SA" | "KE" | "QA" | "KW" => 3,
        "AE" => 4,
        "PK" => 5,
        "IN" | "LK" => 5,
        "BD" => 6,
        "TH" | "VN" | "ID" => 7,
        "CN" | "HK" | "TW" | "SG" | "MY" | "PH" | "MO" => 8,
        "JP" | "KR" => 9,
        "AU" => 10,
        "NZ" => 12,
        _ => return None,
    };
    Some(o)
}

/// Whether a script ([`SCRIPTS`] index) is in daily use in a country. Latin counts as used
/// everywhere; an unknown country uses every script (no evidence either way).
pub fn writes_script(country: &str, script: usize) -> bool {
    let countries: &[&str] = match SCRIPTS.get(script).copied() {
        // Japanese prompts are "kana" (see `features`): Han alone is Chinese.
        Some("han") => &["CN", "HK", "MO", "TW", "SG", "MY"],
        Some("kana") => &["JP"],
        Some("hangul") => &["KR", "KP"],
        Some("cyrillic") => &[
            "RU", "UA", "BY", "KZ", "KG", "TJ", "BG", "RS", "MK", "MN", "ME", "BA", "UZ",
        ],
        Some("greek") => &["GR", "CY"],
        Some("arabic") => &[
            "SA", "AE", "EG", "QA", "KW", "BH", "OM", "JO", "LB", "SY", "IQ", "IR", "AF", "PK",
            "MA", "DZ", "TN", "LY", "SD", "YE",
        ],
        Some("hebrew") => &["IL"],
        Some("devanagari") => &["IN", "NP"],
        Some("thai") => &["TH"],
        _ => return true,
    };
    utc_offset(country).is_none() || countries.contains(&country)
}

/// The country an account claims: billing first, else where most of its traffic comes from.
fn claimed_country(p: &Profile, f: &AccountFacts) -> Option<String> {
    f.billing_country.clone().or_else(|| {
        p.countries
            .entries()
            .iter()
            .max_by_key(|e| (e.count, std::cmp::Reverse(e.hash)))
            .map(|e| e.value.clone())
    })
}

/// Share of activity inside a 16-hour waking day at each UTC offset; returns the best offset
/// and its share, and the share at `claimed`.
pub fn rhythm(hours: &[u64; 24]) -> Vec<f64> {
    let total: u64 = hours.iter().sum();
    (-12..=14)
        .map(|off: i32| {
            if total == 0 {
                return 0.0;
            }
            let awake: u64 = (0..24)
                .filter(|utc| {
                    let local = (utc + off).rem_euclid(24);
                    (8..24).contains(&local)
                })
                .map(|utc| hours[utc as usize])
                .sum();
            awake as f64 / total as f64
        })
        .collect()
}

pub fn compute(
    p: &Profile,
    f: &AccountFacts,
    releases: &[Release],
    window: Window,
    c: &TraitConfig,
) -> Traits {
    let mut t = Traits::default();
    let n = p.exchanges.max(1) as f64;
    let set = |t: &mut Traits, which: Trait, v: f64, why: String| {
        let v = v.clamp(0.0, 1.0);
        t.values[which as usize] = v;
        if v > 0.0 {
            t.evidence.push(why);
        }
    };

    // Age at first use.
    match f.created_at {
        Some(created) => {
            let age = (p.first_ts - created) as f64 / DAY;
            let v = if age <= c.young_days {
                1.0
            } else if age <= c.young_days * 7.0 {
                0.5
            } else {
                0.0
            };
            set(
                &mut t,
                Trait::Young,
                v,
                format!("first use {age:.1} days after sign-up"),
            );
        }
        None => set(&mut t, Trait::Young, 0.25, "no account record".into()),
    }

    // Churn: born and gone inside the window.
    let life = (p.last_ts - p.first_ts) as f64 / DAY;
    let born_inside = f
        .created_at
        .is_none_or(|cr| cr >= window.start - DAY as i64);
    let gone_early = (window.end - p.last_ts) as f64 > 2.0 * DAY;
    let span = (window.end - window.start) as f64 / DAY;
    if born_inside && gone_early && life <= c.churn_max_days && span >= 2.0 * c.churn_max_days {
        set(
            &mut t,
            Trait::Churn,
            1.0,
            format!("active {life:.1} days then silent (account churn)"),
        );
    }

    // Daily rhythm against the claimed country.
    t.claimed_country = claimed_country(p, f);
    if p.exchanges >= c.min_exchanges_for_rhythm {
        let shares = rhythm(&p.hours);
        let best = shares.iter().copied().fold(0.0, f64::max);
        // Several offsets may fit a short working day equally well: take the middle one.
        let fits: Vec<usize> = (0..shares.len())
            .filter(|&i| shares[i] >= best - 1e-9)
            .collect();
        let best_i = fits[fits.len() / 2];
        // A clear human rhythm: nearly everything inside one waking day.
        if best >= 0.9 {
            let implied = best_i as i32 - 12;
            t.implied_utc_offset = Some(implied);
            let country = t.claimed_country.clone().unwrap_or_default();
            if let Some(claimed) = utc_offset(&country) {
                let diff = (implied - claimed).rem_euclid(24);
                let diff = diff.min(24 - diff);
                let at_claimed = shares[(claimed + 12) as usize];
                if diff >= c.timezone_min_hours && at_claimed < best - 0.2 {
                    set(
                        &mut t,
                        Trait::Timezone,
                        1.0,
                        format!(
                            "daily rhythm implies UTC{implied:+}, claims {} (UTC{claimed:+}); {:.0}% of activity in its local night",
                            country,
                            (1.0 - at_claimed) * 100.0
                        ),
                    );
                }
            }
        }
    }

    // Language against the claimed country: prompts in a script the country does not write.
    if let Some(country) = t.claimed_country.clone()
        && p.exchanges >= 3
    {
        let foreign = (1..SCRIPTS.len())
            .filter(|&s| !writes_script(&country, s))
            .map(|s| (s, p.scripts[s]))
            .max_by_key(|&(s, k)| (k, std::cmp::Reverse(s)));
        let share = foreign.map_or(0.0, |(_, k)| k as f64 / n);
        if let Some((script, _)) = foreign
            && share >= c.language_min_share
        {
            set(
                &mut t,
                Trait::Language,
                (share / (2.0 * c.language_min_share)).max(0.5),
                format!(
                    "{:.0}% of prompts in {} script, claims {country}",
                    share * 100.0,
                    SCRIPTS[script]
                ),
            );
        }
    }

    // What is elicited.
    let elicit = p.elicit as f64 / n;
    if elicit > 0.0 {
        let kinds: Vec<String> = flag::NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| p.flags[*i] * 10 >= p.exchanges && *i < 4)
            .map(|(i, (_, name))| format!("{name} {:.0}%", p.flags[i] as f64 / n * 100.0))
            .collect();
        set(
            &mut t,
            Trait::Elicit,
            (elicit / 0.5).min(1.0),
            format!(
                "{:.0}% of requests elicit training signal ({})",
                elicit * 100.0,
                kinds.join(", ")
            ),
        );
    }
    let tool = p.flags[4] as f64 / n;
    if tool > 0.0 {
        set(
            &mut t,
            Trait::ToolTrace,
            (tool / 0.5).min(1.0),
            format!("{:.0}% tool-use trajectories", tool * 100.0),
        );
    }

    // Pivot onto a new model.
    for r in releases {
        if let Some(m) = p.models.iter().find(|m| m.model == r.model) {
            let hours = (m.first_ts - r.released_at) as f64 / HOUR as f64;
            let share = m.exchanges as f64 / n;
            if hours >= -1.0 && hours <= c.pivot_hours && share >= c.pivot_min_share {
                set(
                    &mut t,
                    Trait::Pivot,
                    1.0,
                    format!(
                        "moved {:.0}% of its traffic to {} within {hours:.0} h of its release",
                        share * 100.0,
                        r.model
                    ),
                );
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Row;

    fn profile(hours_utc: &[i64], days: i64, cjk_every: usize) -> Profile {
        let mut p = Profile::default();
        let mut k = 0;
        for d in 0..days {
            for &h in hours_utc {
                let row = Row {
                    ts: (d * 24 + h) * HOUR + (d % 3) * 60_000_000,
                    request_id: "r",
                    model: "m",
                    client_ip: "10.0.0.1",
                    script: if cjk_every > 0 && k % cjk_every == 0 {
                        1
                    } else {
                        0
                    },
                    cjk: if cjk_every > 0 && k % cjk_every == 0 {
                        0.9
                    } else {
                        0.0
                    },
                    ..Default::default()
                };
                k += 1;
                p.add(&row);
            }
        }
        p
    }

    fn facts(country: &str, created: i64) -> AccountFacts {
        AccountFacts {
            created_at: Some(created),
            billing_country: Some(country.into()),
            ..Default::default()
        }
    }

    fn window() -> Window {
        Window {
            start: 0,
            end: 30 * 24 * HOUR,
        }
    }

    #[test]
    fn rhythm_reveals_the_operators_time_zone() {
        // Working 01:00–14:00 UTC = 09:00–22:00 in UTC+8, claiming the US (UTC-6).
        let p = profile(&(1..14).collect::<Vec<_>>(), 20, 0);
        let t = compute(
            &p,
            &facts("US", -400 * 24 * HOUR),
            &[],
            window(),
            &TraitConfig::default(),
        );
        assert_eq!(t.get(Trait::Timezone), 1.0, "{:?}", t.evidence);
        assert!(
            matches!(t.implied_utc_offset, Some(7..=10)),
            "{:?}",
            t.implied_utc_offset
        );
        // The same hours claiming Singapore are consistent.
        let t = compute(
            &p,
            &facts("SG", -400 * 24 * HOUR),
            &[],
            window(),
            &TraitConfig::default(),
        );
        assert_eq!(t.get(Trait::Timezone), 0.0);
        // A 24/7 pipeline implies no time zone at all.
        let p = profile(&(0..24).collect::<Vec<_>>(), 20, 0);
        let t = compute(
            &p,
            &facts("US", -400 * 24 * HOUR),
            &[],
            window(),
            &TraitConfig::default(),
        );
        assert_eq!(t.get(Trait::Timezone), 0.0);
        assert_eq!(t.implied_utc_offset, None);
    }

    #[test]
    fn language_against_claimed_country() {
        let p = profile(&[15, 16, 17, 18], 10, 8);
        let c = TraitConfig::default();
        assert!(compute(&p, &facts("DE", 0), &[], window(), &c).get(Trait::Language) > 0.0);
        assert_eq!(
            compute(&p, &facts("TW", 0), &[], window(), &c).get(Trait::Language),
            0.0
        );
        // Han without kana is Chinese: not what a Japanese customer writes.
        assert!(compute(&p, &facts("JP", 0), &[], window(), &c).get(Trait::Language) > 0.0);
        let mut japanese = p.clone();
        japanese.scripts.swap(1, 2);
        assert_eq!(
            compute(&japanese, &facts("JP", 0), &[], window(), &c).get(Trait::Language),
            0.0
        );
        let p = profile(&[15, 16, 17, 18], 10, 0);
        assert_eq!(
            compute(&p, &facts("DE", 0), &[], window(), &c).get(Trait::Language),
            0.0
        );
    }

    #[test]
    fn young_and_churned() {
        // Created an hour before first use, active 3 days, then gone for weeks.
        let p = profile(&[15, 16], 3, 0);
        let t = compute(
            &p,
            &facts("US", -HOUR),
            &[],
            window(),
            &TraitConfig::default(),
        );
        assert_eq!(t.get(Trait::Young), 1.0);
        assert_eq!(t.get(Trait::Churn), 1.0);
        // An old account active all month is neither.
        let p = profile(&[15, 16], 29, 0);
        let t = compute(
            &p,
            &facts("US", -900 * 24 * HOUR),
            &[],
            window(),
            &TraitConfig::default(),
        );
        assert_eq!(t.get(Trait::Young), 0.0);
        assert_eq!(t.get(Trait::Churn), 0.0);
    }
}
