//! Network and client infrastructure: ASNs by kind and country, address ranges, user
//! agents and TLS (JA4) fingerprints. Addresses are derived deterministically from the ASN,
//! so the same ASN always yields addresses from the same prefixes.

use crate::rng::{Rng, mix};

/// What kind of network an address belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Net {
    Residential,
    Mobile,
    Cloud,
    Hosting,
    Campus,
    Office,
}

/// (country, UTC offset in hours, residential ASNs, mobile ASNs).
pub const COUNTRIES: &[(&str, i32, &[u32], &[u32])] = &[
    (
        "US",
        -6,
        &[7922, 701, 7018, 20115, 22773],
        &[21928, 22394, 20057],
    ),
    ("GB", 0, &[2856, 5089, 5607], &[12576, 25135]),
    ("DE", 1, &[3320, 3209, 6830], &[6805, 3209]),
    ("FR", 1, &[3215, 12322, 15557], &[51207, 5410]),
    ("NL", 1, &[1136, 33915], &[31615]),
    ("JP", 9, &[4713, 2516, 17676], &[2516, 9605]),
    ("SG", 8, &[9506, 4773], &[10091]),
    ("CA", -5, &[812, 577, 5769], &[22652]),
    ("IN", 5, &[24560, 45609], &[55836]),
    ("BR", -3, &[28573, 18881], &[26599]),
    ("AU", 10, &[1221, 4804], &[4804]),
    ("KR", 9, &[4766, 9318], &[4766]),
];

pub const CLOUD_ASNS: &[u32] = &[16509, 14618, 15169, 396982, 8075];
pub const HOSTING_ASNS: &[u32] = &[20473, 14061, 16276, 24940, 63949, 9009, 51167, 212238];
pub const CAMPUS_ASNS: &[(u32, &str, &str)] = &[
    (3, "US", "mit.example.edu"),
    (32, "US", "stanford.example.edu"),
    (786, "GB", "ucl.example.ac.uk"),
    (680, "DE", "tum.example.de"),
    (2907, "JP", "u-tokyo.example.ac.jp"),
    (7575, "AU", "unimelb.example.edu.au"),
];

/// Country index by code.
pub fn country(code: &str) -> usize {
    COUNTRIES.iter().position(|c| c.0 == code).unwrap_or(0)
}

pub fn utc_offset(code: &str) -> i32 {
    COUNTRIES[country(code)].1
}

/// An IPv4 address inside the ASN's ranges; `slot` picks the /24 and host.
pub fn ipv4(asn: u32, slot: u64) -> String {
    let h = mix(asn as u64 * 0x1000_0001);
    // First octet in 23..=223, avoiding private, loopback and multicast blocks.
    let mut a = 23 + h % 200;
    if a == 127 || a == 100 || a == 169 || a == 172 || a == 192 || a == 198 || a == 203 {
        a += 1;
    }
    let b = (h >> 8) % 256;
    let prefixes = 1 + (h >> 16) % 64;
    let p = (slot / 254) % prefixes;
    let c = ((h >> 24) + p * 7) % 256;
    let d = 1 + slot % 254;
    format!("{a}.{b}.{c}.{d}")
}

/// An IPv6 address inside the ASN's /32; `slot` picks the /48 and interface id.
pub fn ipv6(asn: u32, slot: u64) -> String {
    let h = mix(asn as u64 ^ 0x6666);
    let site = (slot / 1000) % 4096;
    let host = mix(slot) & 0xffff_ffff;
    format!(
        "2a0{:x}:{:x}:{:x}::{:x}:{:x}",
        1 + h % 14,
        (h >> 8) & 0xffff,
        site,
        host >> 16,
        host & 0xffff
    )
}

/// An address for a network of `kind`, with its ASN: a fresh draw each call.
pub fn address(rng: &mut Rng, kind: Net, country_code: &str) -> (String, u32) {
    let c = &COUNTRIES[country(country_code)];
    let asn = match kind {
        Net::Residential | Net::Office => rng.pick(c.2),
        Net::Mobile => rng.pick(c.3),
        Net::Cloud => rng.pick(CLOUD_ASNS),
        Net::Hosting => rng.pick(HOSTING_ASNS),
        Net::Campus => rng.pick(CAMPUS_ASNS).0,
    };
    let slot = rng.below(200_000);
    let v6 = matches!(kind, Net::Residential | Net::Mobile) && rng.chance(0.25);
    (if v6 { ipv6(asn, slot) } else { ipv4(asn, slot) }, asn)
}

/// A client: user agent and the TLS fingerprint its library produces.
#[derive(Clone, Debug)]
pub struct Client {
    pub user_agent: String,
    pub ja4: &'static str,
}

const JA4_PYTHON: &str = "t13d1516h2_8daaf6152771_02713d6af862";
const JA4_NODE: &str = "t13d1517h2_8daaf6152771_b0da82dd1658";
const JA4_GO: &str = "t13d1311h2_f57a46bbacb6_e7c285222651";
const JA4_CURL: &str = "t13d3112h2_e8f1e7e78f70_6bebaf5329ac";
const JA4_BROWSER: &str = "t13d1517h2_8daaf6152771_b1ff8ab2d16f";
const JA4_JAVA: &str = "t13d1812h2_1d37bd780c83_882d495ac381";
const JA4_IOS: &str = "t13d2014h2_a09f3c656075_14788d8d241b";

/// The provider's official SDKs: (name, JA4).
const SDKS: &[(&str, &str)] = &[
    ("atlas-python", JA4_PYTHON),
    ("atlas-node", JA4_NODE),
    ("atlas-go", JA4_GO),
    ("atlas-java", JA4_JAVA),
];

/// An official SDK at a plausible version.
pub fn sdk(rng: &mut Rng) -> Client {
    let (name, ja4) = rng.pick(SDKS);
    Client {
        user_agent: format!(
            "{name}/{}.{}.{}",
            rng.range(0, 3),
            rng.range(0, 60),
            rng.range(0, 9)
        ),
        ja4,
    }
}

/// A generic HTTP library, as scripts and back ends use.
pub fn http_library(rng: &mut Rng) -> Client {
    let (ua, ja4) = rng.pick(&[
        ("python-requests/2.31.0", JA4_PYTHON),
        ("python-requests/2.32.3", JA4_PYTHON),
        ("python-httpx/0.27.0", JA4_PYTHON),
        ("aiohttp/3.9.5", JA4_PYTHON),
        ("axios/1.7.2", JA4_NODE),
        ("node-fetch/3.3.2", JA4_NODE),
        ("Go-http-client/2.0", JA4_GO),
        ("curl/8.5.0", JA4_CURL),
        ("okhttp/4.12.0", JA4_JAVA),
    ]);
    Client {
        user_agent: ua.to_string(),
        ja4,
    }
}

/// A coding-agent harness used by developers.
pub fn coding_harness(rng: &mut Rng) -> Client {
    let (ua, ja4) = rng.pick(&[
        ("codepilot-cli/1.4", JA4_NODE),
        ("devagent/0.52 (vscode)", JA4_NODE),
        ("aider/0.61.0", JA4_PYTHON),
        ("openhands/0.14", JA4_PYTHON),
        ("continue/0.9.212", JA4_NODE),
        ("goose/1.0.3", JA4_GO),
    ]);
    Client {
        user_agent: format!("{ua}.{}", rng.range(0, 20)),
        ja4,
    }
}

/// A consumer app (mobile or web) that chat users go through.
pub fn consumer_app(rng: &mut Rng) -> Client {
    if rng.chance(0.5) {
        Client {
            user_agent: format!(
                "ChatPal/{}.{} (iPhone; iOS 17.{})",
                rng.range(2, 5),
                rng.range(0, 9),
                rng.range(0, 6)
            ),
            ja4: JA4_IOS,
        }
    } else {
        Client {
            user_agent: format!(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/1{}.0.0.0 Safari/537.36",
                rng.range(20, 31)
            ),
            ja4: JA4_BROWSER,
        }
    }
}

/// A campaign's own client: a custom stack with its own fingerprint.
pub fn custom_client(campaign_seed: u64) -> Client {
    let mut rng = Rng::new(campaign_seed ^ 0xc11e);
    let names = [
        "batch-runner",
        "svc-gateway",
        "orchestrator",
        "llm-pool",
        "relay",
    ];
    Client {
        user_agent: format!(
            "{}/{}.{}",
            rng.pick(&names),
            rng.range(0, 4),
            rng.range(0, 30)
        ),
        ja4: rng.pick(&[
            "t13d0912h2_a09f3c656075_1d0c1b4e2a5b",
            "t13d1011h2_5b57614c22b0_3d5424432f57",
            "t12d1209h1_c866b44c5a26_7af1ed941c26",
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_stay_in_their_asn() {
        let mut rng = Rng::new(5);
        for kind in [
            Net::Residential,
            Net::Mobile,
            Net::Cloud,
            Net::Hosting,
            Net::Campus,
        ] {
            for _ in 0..200 {
                let (ip, _) = address(&mut rng, kind, "DE");
                assert!(ip.parse::<std::net::IpAddr>().is_ok(), "{ip}");
            }
        }
        assert_eq!(ipv4(16509, 3), ipv4(16509, 3));
        assert_ne!(
            ipv4(16509, 3).rsplit_once('.').unwrap().0,
            ipv4(20473, 3).rsplit_once('.').unwrap().0
        );
    }
}
