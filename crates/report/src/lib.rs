//! Analyst outputs of a batch analysis: the block list ([`blocklist`]), STIX 2.1 export and
//! import ([`stix`]) and the self-contained HTML report ([`html`]).
//!
//! **Architecture invariant:** outputs carry fingerprints, never prompt text, unless the user
//! asks for text explicitly (`--include-text`).

pub mod blocklist;
pub mod html;
pub mod stix;
