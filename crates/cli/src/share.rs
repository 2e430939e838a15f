//! `distillguard export stix` and `distillguard import stix`.

use std::process::ExitCode;

use anyhow::Context;

use crate::analyze::sharing_key;
use crate::args::{StixExportArgs, StixImportArgs};

pub fn export_stix(a: StixExportArgs) -> anyhow::Result<ExitCode> {
    let path = a.result.join("campaigns.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: not an analysis result", a.result.display()))?;
    let campaigns: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))?;
    let bundle = dg_report::stix::export(&campaigns, &a.identity, &sharing_key())
        .map_err(anyhow::Error::msg)?;
    let n = bundle["objects"].as_array().map_or(0, |o| o.len());
    std::fs::write(&a.out, serde_json::to_string_pretty(&bundle)? + "\n")
        .with_context(|| format!("writing {}", a.out.display()))?;
    crate::say!("wrote {} STIX objects to {}", n, a.out.display());
    Ok(ExitCode::SUCCESS)
}

pub fn import_stix(a: StixImportArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&a.bundle)
        .with_context(|| format!("reading {}", a.bundle.display()))?;
    let bundle: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid JSON", a.bundle.display()))?;
    let (inds, skipped) = dg_report::stix::import(&bundle, a.partner.as_deref())
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.bundle.display()))?;
    let added = dg_detect::sharing::append_store(&a.store, &inds).map_err(anyhow::Error::msg)?;
    crate::say!(
        "imported {} indicators ({} new) into {}{}",
        inds.len(),
        added,
        a.store.display(),
        if skipped > 0 {
            format!("; {skipped} indicators with patterns distillguard cannot match were skipped")
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}
