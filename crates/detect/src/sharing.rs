//! Indicators shared between providers: keyed fingerprints, and the store of partners'
//! indicators that `distillguard import stix` fills and `analyze` reads as evidence.
//!
//! Addresses, prefixes, ASNs, JA4 and e-mail domains are shared as they are; everything derived
//! from customers' content or payment (template, system-prompt, client and payment
//! fingerprints) only as HMAC-SHA256 under a key the partners agree on, so a partner with the
//! same key can match them and nobody can read them.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::profile::Profile;
use crate::traits::AccountFacts;

/// Key used when none is given: matching still works between parties using the default, but
/// the fingerprints are then only hashes. Set `DISTILLGUARD_SHARING_KEY` to share for real.
pub const DEFAULT_KEY: &str = "distillguard-default-sharing-key";

/// Kinds shared in the clear.
pub const PLAIN_KINDS: [&str; 5] = ["address", "prefix", "asn", "ja4", "email_domain"];
/// Kinds shared only as keyed fingerprints.
pub const KEYED_KINDS: [&str; 4] = [
    "payment_fingerprint",
    "template_fingerprint",
    "client_fingerprint",
    "system_prompt_fingerprint",
];

/// HMAC-SHA256 of `kind` and `value` under `key`, as 64 hex digits.
pub fn keyed(key: &[u8], kind: &str, value: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(kind.as_bytes());
    mac.update(&[0]);
    mac.update(value.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One partner indicator, as stored (one JSON object per line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartnerIndicator {
    pub partner: String,
    pub kind: String,
    /// The value, for plain kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The keyed fingerprint, for keyed kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    pub stix_id: String,
}

pub fn read_store(path: &Path) -> Result<Vec<PartnerIndicator>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?,
        );
    }
    Ok(out)
}

/// Adds indicators to the store, skipping ones it already holds (same STIX id and partner).
pub fn append_store(path: &Path, new: &[PartnerIndicator]) -> Result<usize, String> {
    let have = if path.exists() {
        read_store(path)?
    } else {
        Vec::new()
    };
    let seen: std::collections::HashSet<(&str, &str)> = have
        .iter()
        .map(|i| (i.partner.as_str(), i.stix_id.as_str()))
        .collect();
    let fresh: Vec<&PartnerIndicator> = new
        .iter()
        .filter(|i| !seen.contains(&(i.partner.as_str(), i.stix_id.as_str())))
        .collect();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    for i in &fresh {
        let line = serde_json::to_string(i).expect("serialisable");
        writeln!(f, "{line}").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(fresh.len())
}

/// Partner indicators ready for matching against accounts.
#[derive(Debug, Default)]
pub struct PartnerIndex {
    key: Vec<u8>,
    /// (kind, value or keyed fingerprint) → partners.
    by_value: HashMap<(String, String), Vec<String>>,
}

impl PartnerIndex {
    pub fn new(key: &[u8], indicators: &[PartnerIndicator]) -> PartnerIndex {
        let mut by_value: HashMap<(String, String), Vec<String>> = HashMap::new();
        for i in indicators {
            if let Some(v) = i.value.as_ref().or(i.keyed.as_ref()) {
                let partners = by_value.entry((i.kind.clone(), v.clone())).or_default();
                if !partners.contains(&i.partner) {
                    partners.push(i.partner.clone());
                }
            }
        }
        PartnerIndex {
            key: key.to_vec(),
            by_value,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_value.is_empty()
    }

    fn hit(&self, kind: &str, value: &str, out: &mut Vec<String>) {
        let keyed_kind = KEYED_KINDS.contains(&kind);
        let probe = if keyed_kind {
            keyed(&self.key, kind, value)
        } else {
            value.to_string()
        };
        if let Some(partners) = self.by_value.get(&(kind.to_string(), probe)) {
            let shown = if keyed_kind { "(keyed)" } else { value };
            out.push(format!(
                "indicator shared by partner {}: {kind} {shown}",
                partners.join(", ")
            ));
        }
    }

    /// Whether a match of this kind is specific enough to raise suspicion: ASNs, prefixes and
    /// JA4 are shared by whole ISPs and client libraries, so they are reported but weigh nothing.
    pub fn is_specific(kind: &str) -> bool {
        !matches!(kind, "asn" | "prefix" | "ja4")
    }

    /// Evidence lines for an account's values that partners reported, and whether any of them
    /// is specific (see [`PartnerIndex::is_specific`]).
    pub fn matches(&self, p: &Profile, f: &AccountFacts) -> (Vec<String>, bool) {
        let mut out = Vec::new();
        let mut specific = false;
        if self.is_empty() {
            return (out, false);
        }
        for (kind, v) in self.values(p, f) {
            let before = out.len();
            self.hit(kind, &v, &mut out);
            specific |= out.len() > before && Self::is_specific(kind);
        }
        out.sort();
        out.dedup();
        (out, specific)
    }

    fn values(&self, p: &Profile, f: &AccountFacts) -> Vec<(&'static str, String)> {
        let mut v: Vec<(&'static str, String)> = Vec::new();
        v.extend(p.ips.entries().iter().map(|e| ("address", e.value.clone())));
        v.extend(
            p.prefixes
                .entries()
                .iter()
                .map(|e| ("prefix", e.value.clone())),
        );
        v.extend(
            p.asns
                .entries()
                .iter()
                .map(|e| ("asn", e.value.to_string())),
        );
        v.extend(p.ja4s.entries().iter().map(|e| ("ja4", e.value.clone())));
        v.extend(
            p.clients
                .entries()
                .iter()
                .map(|e| ("client_fingerprint", format!("{:016x}", e.value))),
        );
        v.extend(
            p.systems
                .entries()
                .iter()
                .map(|e| ("system_prompt_fingerprint", format!("{:016x}", e.value))),
        );
        v.extend(
            p.templates
                .entries()
                .iter()
                .map(|e| ("template_fingerprint", format!("{:016x}", e.value))),
        );
        if let Some(pay) = &f.payment {
            v.push(("payment_fingerprint", pay.clone()));
        }
        if let Some(d) = &f.email_domain {
            v.push(("email_domain", d.to_ascii_lowercase()));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Row;

    #[test]
    fn keyed_fingerprints_depend_on_key_kind_and_value() {
        let a = keyed(b"k1", "payment_fingerprint", "pf-1");
        assert_eq!(a.len(), 64);
        assert_eq!(a, keyed(b"k1", "payment_fingerprint", "pf-1"));
        assert_ne!(a, keyed(b"k2", "payment_fingerprint", "pf-1"));
        assert_ne!(a, keyed(b"k1", "template_fingerprint", "pf-1"));
        // RFC 4231 test case 2 shape: HMAC-SHA256("Jefe", "what do ya want for nothing?").
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn store_round_trip_and_matching() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("partners.jsonl");
        let key = b"shared";
        let inds = vec![
            PartnerIndicator {
                partner: "P1".into(),
                kind: "address".into(),
                value: Some("203.0.113.7".into()),
                keyed: None,
                campaign: Some("c".into()),
                stix_id: "indicator--1".into(),
            },
            PartnerIndicator {
                partner: "P1".into(),
                kind: "payment_fingerprint".into(),
                value: None,
                keyed: Some(keyed(key, "payment_fingerprint", "pf-9")),
                campaign: None,
                stix_id: "indicator--2".into(),
            },
        ];
        assert_eq!(append_store(&store, &inds).unwrap(), 2);
        assert_eq!(append_store(&store, &inds).unwrap(), 0, "idempotent");
        let back = read_store(&store).unwrap();
        assert_eq!(back, inds);
        let index = PartnerIndex::new(key, &back);
        let mut p = Profile::default();
        p.add(&Row {
            client_ip: "203.0.113.7",
            request_id: "r",
            model: "m",
            ..Default::default()
        });
        let f = AccountFacts {
            payment: Some("pf-9".into()),
            ..Default::default()
        };
        let (m, specific) = index.matches(&p, &f);
        assert!(specific);
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(
            m.iter()
                .any(|s| s.contains("partner P1: address 203.0.113.7"))
        );
        assert!(m.iter().any(|s| s.contains("payment_fingerprint (keyed)")));
        // Another key matches nothing keyed.
        let other = PartnerIndex::new(b"other", &back);
        assert_eq!(other.matches(&p, &f).0.len(), 1);
    }
}
