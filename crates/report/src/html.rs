//! `DIR/report.html`: one self-contained file (inline CSS and SVG, no script, no network) that
//! an analyst can read in any browser and attach to a ticket.

use std::collections::HashMap;
use std::fmt::Write;

use dg_detect::Analysis;
use dg_detect::analyze::Timeline;
use dg_detect::link::GROUPS;
use dg_detect::verdict::{Campaign, rfc3339};

/// Colours of the evidence groups (network, payment, identity, tooling, timing).
const GROUP_COLOURS: [&str; 5] = ["#1f77b4", "#d62728", "#9467bd", "#2ca02c", "#ff7f0e"];

pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

fn num(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A polyline of `values` scaled to its own maximum inside a `w`×`h` box.
fn polyline(values: &[u64], w: f64, h: f64, max: u64) -> String {
    let n = values.len().max(2) as f64 - 1.0;
    let max = max.max(1) as f64;
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| format!("{:.1},{:.1}", i as f64 / n * w, h - v as f64 / max * h))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Exchanges per hour: the campaign (red, the part on newly released models darker) against
/// all other traffic (grey), each scaled to its own peak.
fn timeline_svg(t: &Timeline, campaign: &str) -> String {
    let Some((_, all, new)) = t.campaigns.iter().find(|c| c.0 == campaign) else {
        return String::new();
    };
    let (w, h) = (860.0, 160.0);
    let cmax = all.iter().copied().max().unwrap_or(0);
    let omax = t.others.iter().copied().max().unwrap_or(0);
    let mut s = format!(
        r#"<svg class="chart" viewBox="0 0 {} {}" width="{}" height="{}" role="img" aria-label="timeline">"#,
        w + 20.0,
        h + 40.0,
        w + 20.0,
        h + 40.0
    );
    let _ = write!(
        s,
        r##"<g transform="translate(10,10)"><rect width="{w}" height="{h}" fill="#fafafa" stroke="#ddd"/>"##
    );
    let _ = write!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#999" stroke-width="1"/>"##,
        polyline(&t.others, w, h, omax)
    );
    let area = |v: &[u64], colour: &str| {
        format!(
            r#"<polygon points="0,{h} {} {w},{h}" fill="{colour}" fill-opacity="0.55"/>"#,
            polyline(v, w, h, cmax)
        )
    };
    s.push_str(&area(all, "#d62728"));
    if new.iter().any(|&x| x > 0) {
        s.push_str(&area(new, "#7f0000"));
    }
    let _ = write!(
        s,
        r##"<text x="0" y="{}" font-size="11" fill="#333">{} — {} (UTC, {} hours) · red: campaign (peak {}/h; dark: on newly released models) · grey: all other traffic (peak {}/h)</text></g></svg>"##,
        h + 22.0,
        esc(&rfc3339(t.start)),
        esc(&rfc3339(t.start + t.hours as i64 * 3_600_000_000)),
        t.hours,
        num(cmax),
        num(omax)
    );
    s
}

/// Horizontal bars of shares in [0, 1].
fn bars_svg(items: &[(String, f64)], colour: &str) -> String {
    let row = 22.0;
    let h = row * items.len().max(1) as f64 + 6.0;
    let mut s = format!(
        r#"<svg class="chart" viewBox="0 0 520 {h}" width="520" height="{h}" role="img" aria-label="bars">"#
    );
    for (i, (label, v)) in items.iter().enumerate() {
        let y = i as f64 * row + 4.0;
        let _ = write!(
            s,
            r##"<text x="0" y="{:.1}" font-size="12" fill="#333">{}</text><rect x="170" y="{:.1}" width="{:.1}" height="14" fill="{colour}"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#333">{:.0}%</text>"##,
            y + 12.0,
            esc(label),
            y + 1.0,
            v.clamp(0.0, 1.0) * 300.0,
            175.0 + v.clamp(0.0, 1.0) * 300.0,
            y + 12.0,
            v * 100.0
        );
    }
    s.push_str("</svg>");
    s
}

/// The account-link graph of one cluster: a sample of its accounts on a circle, edges coloured
/// by their strongest evidence group.
fn graph_svg(a: &Analysis, cluster: usize) -> String {
    let edges = &a.links.edge_sample[cluster];
    let mut nodes: Vec<u32> = Vec::new();
    for &(x, y, _) in edges {
        for v in [x, y] {
            if nodes.len() < 120 && !nodes.contains(&v) {
                nodes.push(v);
            }
        }
    }
    for &m in &a.links.clusters[cluster] {
        if nodes.len() >= 120 {
            break;
        }
        if !nodes.contains(&m) {
            nodes.push(m);
        }
    }
    let pos: HashMap<u32, (f64, f64)> = nodes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let t = i as f64 / nodes.len().max(1) as f64 * std::f64::consts::TAU;
            (n, (200.0 + 170.0 * t.cos(), 200.0 + 170.0 * t.sin()))
        })
        .collect();
    let mut s = String::from(
        r#"<svg class="chart" viewBox="0 0 560 400" width="560" height="400" role="img" aria-label="account graph">"#,
    );
    for &(x, y, g) in edges {
        if let (Some(p), Some(q)) = (pos.get(&x), pos.get(&y)) {
            let _ = write!(
                s,
                r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-opacity="0.5" stroke-width="1"/>"#,
                p.0,
                p.1,
                q.0,
                q.1,
                GROUP_COLOURS[g as usize % 5]
            );
        }
    }
    // In the nodes' order, not the map's: the same result gives the same report, byte for byte.
    for (n, p) in nodes.iter().filter_map(|n| Some((n, pos.get(n)?))) {
        let _ = write!(
            s,
            r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="#444"><title>{}</title></circle>"##,
            p.0,
            p.1,
            esc(&a.names[*n as usize])
        );
    }
    for (i, g) in GROUPS.iter().enumerate() {
        let y = 20.0 + i as f64 * 18.0;
        let _ = write!(
            s,
            r##"<line x1="410" y1="{y}" x2="435" y2="{y}" stroke="{}" stroke-width="3"/><text x="440" y="{:.1}" font-size="12" fill="#333">{g}</text>"##,
            GROUP_COLOURS[i],
            y + 4.0
        );
    }
    let _ = write!(
        s,
        r##"<text x="410" y="130" font-size="11" fill="#555">{} of {} accounts,</text><text x="410" y="145" font-size="11" fill="#555">{} sampled links</text></svg>"##,
        pos.len(),
        num(a.links.clusters[cluster].len() as u64),
        edges.len()
    );
    s
}

/// Node colours of the overview graph's clusters: campaigns first, then look-alikes.
const CLUSTER_COLOURS: [&str; 8] = [
    "#d62728", "#ff7f0e", "#8c564b", "#e377c2", "#bcbd22", "#7f7f7f", "#17becf", "#1f77b4",
];

/// All campaigns and the largest cleared clusters side by side: each cluster a ring of sampled
/// accounts in its own colour, links coloured by evidence group.
fn overview_graph_svg(a: &Analysis) -> String {
    let mut picked: Vec<(String, usize, bool)> = Vec::new();
    for (ci, c) in a.outcome.campaigns.iter().enumerate() {
        if let Some(cl) = a
            .outcome
            .accounts
            .iter()
            .position(|v| v.campaign == Some(ci))
            .and_then(|m| a.links.cluster_of[m])
        {
            picked.push((c.id.clone(), cl as usize, true));
        }
    }
    let mut cleared: Vec<usize> = (0..a.links.clusters.len())
        .filter(|cl| !picked.iter().any(|p| p.1 == *cl))
        .collect();
    cleared.sort_by_key(|&cl| std::cmp::Reverse(a.links.clusters[cl].len()));
    for cl in cleared
        .into_iter()
        .take(8usize.saturating_sub(picked.len()).max(3))
    {
        picked.push((
            format!("cleared ({} accounts)", a.links.clusters[cl].len()),
            cl,
            false,
        ));
    }
    if picked.is_empty() {
        return "<p>No linked accounts.</p>".into();
    }
    let cols = 4usize;
    let rows = picked.len().div_ceil(cols);
    let (cw, ch) = (230.0, 230.0);
    let (w, h) = (cw * cols as f64, ch * rows as f64 + 20.0);
    let mut s = format!(
        r#"<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="cluster graph">"#
    );
    for (k, (label, cl, is_campaign)) in picked.iter().enumerate() {
        let (cx, cy) = (
            (k % cols) as f64 * cw + cw / 2.0,
            (k / cols) as f64 * ch + ch / 2.0 - 5.0,
        );
        let colour = CLUSTER_COLOURS[k % CLUSTER_COLOURS.len()];
        let colour = if *is_campaign { colour } else { "#9e9e9e" };
        let members: Vec<u32> = a.links.clusters[*cl].iter().copied().take(40).collect();
        let pos: HashMap<u32, (f64, f64)> = members
            .iter()
            .enumerate()
            .map(|(i, &m)| {
                let t = i as f64 / members.len() as f64 * std::f64::consts::TAU;
                (m, (cx + 80.0 * t.cos(), cy + 80.0 * t.sin()))
            })
            .collect();
        for &(x, y, g) in &a.links.edge_sample[*cl] {
            if let (Some(p), Some(q)) = (pos.get(&x), pos.get(&y)) {
                let _ = write!(
                    s,
                    r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-opacity="0.6"/>"#,
                    p.0,
                    p.1,
                    q.0,
                    q.1,
                    GROUP_COLOURS[g as usize % 5]
                );
            }
        }
        for p in members.iter().filter_map(|m| pos.get(m)) {
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{colour}"/>"#,
                p.0, p.1
            );
        }
        let _ = write!(
            s,
            r##"<text x="{cx:.1}" y="{:.1}" font-size="12" text-anchor="middle" fill="#222">{}</text>"##,
            cy + 102.0,
            esc(label)
        );
    }
    s.push_str("</svg>");
    s
}

fn campaign_section(
    a: &Analysis,
    c: &Campaign,
    t: &Timeline,
    examples: &HashMap<String, String>,
    include_text: bool,
) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<section class=\"campaign\" id=\"{id}\"><h2>{id}</h2><p class=\"figures\"><b>{}</b> accounts · <b>{}</b> exchanges · {} input / {} output tokens · first seen {} · last seen {} · confidence <b>{:.2}</b> · cluster score {:.2} · claims {} countries · lockstep {:.2}</p>",
        num(c.accounts as u64),
        num(c.exchanges),
        num(c.input_tokens),
        num(c.output_tokens),
        esc(&c.first_seen),
        esc(&c.last_seen),
        c.confidence,
        c.suspicion,
        c.claimed_countries,
        c.lockstep,
        id = esc(&c.id)
    );
    s.push_str("<h3>Timeline</h3>");
    s.push_str(&timeline_svg(t, &c.id));
    s.push_str("<div class=\"row\"><div><h3>Capability mix</h3>");
    s.push_str(&bars_svg(&c.capability_focus, "#2ca02c"));
    s.push_str("</div><div><h3>Traits (mean over accounts)</h3>");
    s.push_str(&bars_svg(&c.traits, "#d62728"));
    s.push_str("</div></div>");
    if !c.shape.is_empty() {
        let figures: Vec<String> = c
            .shape
            .iter()
            .map(|(name, x)| format!("{} <b>{x:.2}</b>", esc(&name.replace('_', " "))))
            .collect();
        let _ = write!(
            s,
            "<p class=\"figures\">Shape of use (mean over accounts): {}</p>",
            figures.join(" · ")
        );
    }
    s.push_str("<h3>Model pivot</h3>");
    if c.model_pivot.is_empty() {
        s.push_str("<p>No model was released while this campaign ran.</p>");
    } else {
        s.push_str("<table><tr><th>model</th><th>released</th><th>hours to first use</th><th>share of traffic after release</th><th>accounts on it within 24 h</th></tr>");
        for p in &c.model_pivot {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.0}%</td><td>{:.0}%</td></tr>",
                esc(&p.model),
                esc(&p.released_at),
                p.hours_to_first_use
                    .map_or("never".into(), |h| format!("{h:.1}")),
                p.share_after_release * 100.0,
                p.accounts_within_24h * 100.0
            );
        }
        s.push_str("</table>");
    }
    if let Some(cluster) = a
        .outcome
        .accounts
        .iter()
        .position(|v| {
            v.campaign
                .is_some_and(|i| a.outcome.campaigns[i].id == c.id)
        })
        .and_then(|m| a.links.cluster_of[m])
    {
        s.push_str("<h3>Account links</h3>");
        s.push_str(&graph_svg(a, cluster as usize));
    }
    s.push_str("<h3>Shared indicators</h3><table><tr><th>kind</th><th>value</th><th>campaign accounts sharing it</th><th>accounts overall</th><th>rarity</th></tr>");
    for i in &c.shared_indicators {
        let _ = write!(
            s,
            "<tr><td>{}{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{:.2}</td></tr>",
            esc(i.kind),
            match i.billing_countries {
                Some(k) if k >= 2 => format!(" (billed in {k} countries)"),
                _ => String::new(),
            },
            esc(&i.value),
            num(i.accounts as u64),
            num(i.accounts_overall as u64),
            i.rarity
        );
    }
    s.push_str("</table><h3>Link evidence</h3><p>");
    let ev: Vec<String> = c
        .link_evidence
        .iter()
        .map(|(g, n)| format!("{} {} links", esc(g), num(*n)))
        .collect();
    s.push_str(&ev.join(" · "));
    let _ = write!(
        s,
        "</p><h3>Example requests ({})</h3><table><tr><th>request id</th><th>prompt</th></tr>",
        if include_text {
            "prompt text, --include-text"
        } else {
            "redacted"
        }
    );
    for r in &c.example_request_ids {
        let _ = write!(
            s,
            "<tr><td><code>{}</code></td><td class=\"snippet\">{}</td></tr>",
            esc(r),
            esc(examples.get(r).map_or("", String::as_str))
        );
    }
    s.push_str("</table></section>");
    s
}

/// The whole report.
pub fn render(
    a: &Analysis,
    t: &Timeline,
    examples: &HashMap<String, String>,
    include_text: bool,
) -> String {
    let st = &a.stats;
    let mut s = String::from(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>distillguard report</title><style>\
         body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}\
         h1{margin-bottom:4px}h2{border-top:2px solid #d62728;padding-top:12px}\
         table{border-collapse:collapse;margin:8px 0;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}\
         th{background:#f3f3f3}code{font-size:12px}.figures{font-size:14px}.row{display:flex;gap:32px;flex-wrap:wrap}\
         .snippet{font-family:monospace;font-size:12px;white-space:pre-wrap;max-width:700px}\
         .tiles{display:flex;gap:16px;flex-wrap:wrap}.tile{border:1px solid #ddd;padding:10px 16px;border-radius:6px}\
         .tile b{display:block;font-size:22px}</style></head><body>",
    );
    let _ = write!(
        s,
        "<h1>distillguard report</h1><p>{} — {} (UTC)</p><div class=\"tiles\">\
         <div class=\"tile\"><b>{}</b>exchanges</div><div class=\"tile\"><b>{}</b>accounts</div>\
         <div class=\"tile\"><b>{}</b>campaigns</div><div class=\"tile\"><b>{}</b>accounts attack</div>\
         <div class=\"tile\"><b>{}</b>suspicious</div><div class=\"tile\"><b>{}</b>look-alike clusters cleared</div></div>",
        esc(&rfc3339(a.window.start)),
        esc(&rfc3339(a.window.end)),
        num(st.exchanges),
        num(st.accounts as u64),
        st.campaigns,
        num(st.attack_accounts as u64),
        num(st.suspicious_accounts as u64),
        num(a.outcome.cleared_clusters as u64)
    );
    s.push_str("<h2>Campaigns</h2><table><tr><th>campaign</th><th>accounts</th><th>exchanges</th><th>confidence</th><th>focus</th><th>first seen</th><th>last seen</th></tr>");
    for c in &a.outcome.campaigns {
        let _ = write!(
            s,
            "<tr><td><a href=\"#{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            num(c.accounts as u64),
            num(c.exchanges),
            c.confidence,
            esc(&c
                .capability_focus
                .first()
                .map(|(k, v)| format!("{k} {:.0}%", v * 100.0))
                .unwrap_or_default()),
            esc(&c.first_seen),
            esc(&c.last_seen),
            id = esc(&c.id)
        );
    }
    s.push_str("</table>");
    if a.outcome.campaigns.is_empty() {
        s.push_str("<p>No campaign found.</p>");
    }
    s.push_str("<h2>Account-link graph</h2><p>Campaigns (coloured) and the largest cleared clusters (grey); up to 40 accounts each. Link colours: ");
    let legend: Vec<String> = GROUPS
        .iter()
        .zip(GROUP_COLOURS)
        .map(|(g, c)| format!("<span style=\"color:{c}\">■ {g}</span>"))
        .collect();
    s.push_str(&legend.join(" "));
    s.push_str("</p>");
    s.push_str(&overview_graph_svg(a));
    for c in &a.outcome.campaigns {
        s.push_str(&campaign_section(a, c, t, examples, include_text));
    }
    s.push_str("<h2>Benign look-alikes</h2><p>Linked clusters that share infrastructure or identity but whose accounts look ordinary, and why they were cleared (largest first).</p><table><tr><th>accounts</th><th>exchanges</th><th>cluster score</th><th>why cleared</th><th>what they share</th></tr>");
    for l in a.outcome.look_alikes.iter().take(25) {
        let shared: Vec<String> = l
            .shared_indicators
            .iter()
            .take(3)
            .map(|i| format!("{} ({} accounts)", i.kind, i.accounts))
            .collect();
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td></tr>",
            l.accounts,
            num(l.exchanges),
            l.suspicion,
            esc(&l.why_cleared),
            esc(&shared.join(", "))
        );
    }
    s.push_str("</table><p style=\"font-size:12px;color:#666\">Generated by distillguard. Prompt text is shown only when the report is built with --include-text; otherwise fingerprints and redacted snippets.</p></body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_charts() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        let svg = bars_svg(&[("coding".into(), 0.5), ("<x>".into(), 1.5)], "#000");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("&lt;x&gt;") && svg.contains("width=\"300.0\""));
        assert_eq!(polyline(&[0, 10], 100.0, 10.0, 10), "0.0,10.0 100.0,0.0");
    }
}
