//! STIX 2.1 export of a result's campaigns, and import of partners' bundles.
//!
//! Export: one `identity` (the provider), one `campaign` per campaign, one `indicator` per
//! shared value and a `relationship` (indicates) from each indicator to its campaign.
//! Addresses, prefixes and ASNs use STIX cyber-observable patterns; everything else uses the
//! custom observable `x-distillguard-fingerprint` (properties `kind` and `value`), with
//! content- and payment-derived values as keyed HMAC-SHA256 (see `docs/stix.md`). Identifiers
//! are deterministic (UUIDv5-style from the content), so exporting twice gives the same bundle.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use dg_detect::sharing::{KEYED_KINDS, PartnerIndicator, keyed};

/// Deterministic STIX identifier: `type--` + a version-5-shaped UUID of `name`.
pub fn stix_id(kind: &str, name: &str) -> String {
    let d = Sha256::digest(format!("distillguard/{kind}/{name}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0F) | 0x50;
    b[8] = (b[8] & 0x3F) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{kind}--{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

/// The STIX pattern of one shared value, and how it is shown in the indicator's name.
fn pattern(kind: &str, value: &str, key: &[u8]) -> Option<(String, String)> {
    let v4 = !value.contains(':');
    Some(match kind {
        "address" | "signup_address" => {
            let t = if v4 { "ipv4-addr" } else { "ipv6-addr" };
            (
                format!("[{t}:value = '{}']", quote(value)),
                value.to_string(),
            )
        }
        "prefix" => {
            let t = if v4 { "ipv4-addr" } else { "ipv6-addr" };
            (
                format!("[{t}:value ISSUBSET '{}']", quote(value)),
                value.to_string(),
            )
        }
        "asn" => (
            format!(
                "[autonomous-system:number = {}]",
                value.parse::<u64>().ok()?
            ),
            format!("AS{value}"),
        ),
        "ja4" | "email_domain" => (
            format!(
                "[x-distillguard-fingerprint:kind = '{kind}' AND x-distillguard-fingerprint:value = '{}']",
                quote(value)
            ),
            value.to_string(),
        ),
        k if KEYED_KINDS.contains(&k) => {
            let h = keyed(key, k, value);
            (
                format!(
                    "[x-distillguard-fingerprint:kind = '{k}' AND x-distillguard-fingerprint:value = '{h}']"
                ),
                format!("keyed {}", &h[..12]),
            )
        }
        _ => return None,
    })
}

/// Builds the bundle from a result's `campaigns.json`.
pub fn export(campaigns: &Value, identity_name: &str, key: &[u8]) -> Result<Value, String> {
    let list = campaigns
        .as_array()
        .ok_or("campaigns.json: expected an array of campaigns")?;
    let created = list
        .iter()
        .filter_map(|c| c["last_seen"].as_str())
        .max()
        .unwrap_or("2026-01-01T00:00:00.000Z")
        .to_string();
    let identity = stix_id("identity", identity_name);
    let mut objects = vec![json!({
        "type": "identity", "spec_version": "2.1", "id": identity,
        "created": created, "modified": created,
        "name": identity_name, "identity_class": "organization",
    })];
    for c in list {
        let cid = c["id"].as_str().ok_or("campaign without id")?;
        let first = c["first_seen"].as_str().unwrap_or(&created);
        let last = c["last_seen"].as_str().unwrap_or(&created);
        let campaign = stix_id("campaign", &format!("{identity_name}/{cid}/{first}"));
        let focus: Vec<String> = c["capability_focus"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| {
                        Some(format!("{} {:.0}%", x[0].as_str()?, x[1].as_f64()? * 100.0))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let confidence = (c["confidence"].as_f64().unwrap_or(0.5) * 100.0).round() as u64;
        objects.push(json!({
            "type": "campaign", "spec_version": "2.1", "id": campaign,
            "created": last, "modified": last, "created_by_ref": identity,
            "name": format!("distillation {cid}"),
            "description": format!(
                "Distillation campaign: {} accounts, {} exchanges, capability focus {}.",
                c["accounts"], c["exchanges"], focus.join(", ")
            ),
            "first_seen": first, "last_seen": last,
            "objective": "extract model capabilities through API outputs (distillation)",
            "confidence": confidence.min(100),
            "x_distillguard_accounts": c["accounts"],
            "x_distillguard_exchanges": c["exchanges"],
        }));
        let mut values: Vec<(String, String, u64)> = Vec::new();
        if let Some(inds) = c["shared_indicators"].as_array() {
            for i in inds {
                if let (Some(k), Some(v)) = (i["kind"].as_str(), i["value"].as_str()) {
                    values.push((
                        k.to_string(),
                        v.to_string(),
                        i["accounts"].as_u64().unwrap_or(0),
                    ));
                }
            }
        }
        for (asn, n) in c["top_asns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| Some((x[0].as_u64()?, x[1].as_u64()?)))
        {
            values.push(("asn".into(), asn.to_string(), n));
        }
        for (ja4, n) in c["top_ja4"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| Some((x[0].as_str()?.to_string(), x[1].as_u64()?)))
        {
            values.push(("ja4".into(), ja4, n));
        }
        for (kind, value, accounts) in values {
            let Some((pat, shown)) = pattern(&kind, &value, key) else {
                continue;
            };
            let ind = stix_id("indicator", &format!("{campaign}/{pat}"));
            objects.push(json!({
                "type": "indicator", "spec_version": "2.1", "id": ind,
                "created": last, "modified": last, "created_by_ref": identity,
                "name": format!("{kind} {shown} ({cid})"),
                "description": format!("{kind} shared by {accounts} accounts of {cid}"),
                "indicator_types": ["malicious-activity"],
                "pattern": pat, "pattern_type": "stix", "valid_from": first,
                "x_distillguard_kind": kind,
            }));
            objects.push(json!({
                "type": "relationship", "spec_version": "2.1",
                "id": stix_id("relationship", &format!("{ind}/indicates/{campaign}")),
                "created": last, "modified": last, "created_by_ref": identity,
                "relationship_type": "indicates", "source_ref": ind, "target_ref": campaign,
            }));
        }
    }
    Ok(json!({
        "type": "bundle",
        "id": stix_id("bundle", &format!("{identity_name}/{created}/{}", objects.len())),
        "objects": objects,
    }))
}

/// Reads one of our own pattern shapes back into (kind, value).
fn parse_pattern(p: &str) -> Option<(String, String)> {
    let inner = p.trim().strip_prefix('[')?.strip_suffix(']')?.trim();
    let lit = |s: &str| -> Option<String> {
        let s = s.trim();
        let s = s.strip_prefix('\'')?.strip_suffix('\'')?;
        Some(s.replace("\\'", "'").replace("\\\\", "\\"))
    };
    if let Some(rest) = inner.strip_prefix("x-distillguard-fingerprint:kind = ") {
        let (kind, value) = rest.split_once(" AND x-distillguard-fingerprint:value = ")?;
        return Some((lit(kind)?, lit(value)?));
    }
    for t in ["ipv4-addr", "ipv6-addr"] {
        if let Some(v) = inner.strip_prefix(&format!("{t}:value = ")) {
            return Some(("address".into(), lit(v)?));
        }
        if let Some(v) = inner.strip_prefix(&format!("{t}:value ISSUBSET ")) {
            return Some(("prefix".into(), lit(v)?));
        }
    }
    if let Some(v) = inner.strip_prefix("autonomous-system:number = ") {
        return Some(("asn".into(), v.trim().parse::<u64>().ok()?.to_string()));
    }
    None
}

/// Partner indicators of a bundle. `partner` overrides the name taken from the identity
/// that created them. Returns the indicators and how many indicators were not understood.
pub fn import(
    bundle: &Value,
    partner: Option<&str>,
) -> Result<(Vec<PartnerIndicator>, usize), String> {
    if bundle["type"] != "bundle" {
        return Err("not a STIX bundle (type is not \"bundle\")".into());
    }
    let objects = bundle["objects"]
        .as_array()
        .ok_or("bundle without objects")?;
    let names: std::collections::HashMap<&str, &str> = objects
        .iter()
        .filter(|o| o["type"] == "identity")
        .filter_map(|o| Some((o["id"].as_str()?, o["name"].as_str()?)))
        .collect();
    let campaigns: std::collections::HashMap<&str, &str> = objects
        .iter()
        .filter(|o| o["type"] == "campaign")
        .filter_map(|o| Some((o["id"].as_str()?, o["name"].as_str()?)))
        .collect();
    let indicates: std::collections::HashMap<&str, &str> = objects
        .iter()
        .filter(|o| o["type"] == "relationship" && o["relationship_type"] == "indicates")
        .filter_map(|o| Some((o["source_ref"].as_str()?, o["target_ref"].as_str()?)))
        .collect();
    let (mut out, mut skipped) = (Vec::new(), 0);
    for o in objects.iter().filter(|o| o["type"] == "indicator") {
        let id = o["id"].as_str().unwrap_or_default();
        let Some((kind, value)) = o["pattern"].as_str().and_then(parse_pattern) else {
            skipped += 1;
            continue;
        };
        let who = partner
            .map(str::to_string)
            .or_else(|| {
                o["created_by_ref"]
                    .as_str()
                    .and_then(|r| names.get(r))
                    .map(|s| s.to_string())
            })
            .unwrap_or_else(|| "unnamed partner".into());
        let keyed_kind = KEYED_KINDS.contains(&kind.as_str());
        out.push(PartnerIndicator {
            partner: who,
            campaign: indicates
                .get(id)
                .and_then(|c| campaigns.get(c))
                .map(|s| s.to_string()),
            value: (!keyed_kind).then(|| value.clone()),
            keyed: keyed_kind.then_some(value),
            kind,
            stix_id: id.to_string(),
        });
    }
    Ok((out, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaigns() -> Value {
        json!([{
            "id": "campaign-01", "accounts": 3, "exchanges": 100,
            "first_seen": "2026-02-01T00:00:00.000Z", "last_seen": "2026-02-10T00:00:00.000Z",
            "confidence": 0.9, "capability_focus": [["coding", 0.7]],
            "shared_indicators": [
                {"kind": "address", "value": "203.0.113.7", "accounts": 3},
                {"kind": "prefix", "value": "2001:db8:1::/48", "accounts": 2},
                {"kind": "payment_fingerprint", "value": "pf-secret", "accounts": 2},
                {"kind": "signup_burst", "value": "12345", "accounts": 2}
            ],
            "top_asns": [[64500, 3]], "top_ja4": [["t13d1516h2_8daaf6152771_02713d6af862", 3]]
        }])
    }

    #[test]
    fn export_is_deterministic_private_and_reimportable() {
        let b = export(&campaigns(), "Provider A", b"k").unwrap();
        assert_eq!(b, export(&campaigns(), "Provider A", b"k").unwrap());
        let text = b.to_string();
        assert!(
            !text.contains("pf-secret"),
            "payment fingerprints leave only keyed"
        );
        let objs = b["objects"].as_array().unwrap();
        // identity, campaign, 5 indicators (signup_burst is not shared), 5 relationships.
        assert_eq!(objs.len(), 12, "{b:#}");
        assert!(objs.iter().all(|o| {
            o["id"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{}--", o["type"].as_str().unwrap()))
        }));
        let (back, skipped) = import(&b, None).unwrap();
        assert_eq!(skipped, 0);
        assert_eq!(back.len(), 5);
        assert!(back.iter().all(|i| i.partner == "Provider A"));
        assert!(
            back.iter()
                .all(|i| i.campaign.as_deref() == Some("distillation campaign-01"))
        );
        let pay = back
            .iter()
            .find(|i| i.kind == "payment_fingerprint")
            .unwrap();
        assert_eq!(
            pay.keyed.as_deref(),
            Some(keyed(b"k", "payment_fingerprint", "pf-secret").as_str())
        );
        assert!(
            back.iter()
                .any(|i| i.kind == "prefix" && i.value.as_deref() == Some("2001:db8:1::/48"))
        );
        assert!(
            back.iter()
                .any(|i| i.kind == "asn" && i.value.as_deref() == Some("64500"))
        );
    }

    #[test]
    fn import_rejects_what_is_not_a_bundle_and_counts_unknown_patterns() {
        assert!(import(&json!({"type": "campaign"}), None).is_err());
        let b = json!({"type": "bundle", "id": "bundle--x", "objects": [
            {"type": "indicator", "id": "indicator--1", "pattern": "[file:hashes.'SHA-256' = 'aa']"},
            {"type": "indicator", "id": "indicator--2", "pattern": "[ipv4-addr:value = '198.51.100.1']"}
        ]});
        let (inds, skipped) = import(&b, Some("P")).unwrap();
        assert_eq!((inds.len(), skipped), (1, 1));
        assert_eq!(inds[0].partner, "P");
    }
}
