//! Exchanges of one account, from its plan: when it sends requests, from where, with what
//! client, to which model, and what it asks. Pure: the same account always yields the same
//! exchanges, whichever thread generates it.

use crate::infra::{self, Client, Net};
use crate::rng::{Rng, mix};
use crate::scenario::Archetype;
use crate::text::{self, Lang, Topic};
use crate::world::{
    Account, CampaignCtx, Class, MICROS_PER_DAY, MICROS_PER_HOUR, MICROS_PER_SEC, World,
};
use crate::wrappers;

/// One generated exchange, in the data contract's terms.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub ts: i64,
    pub request_id: String,
    pub account_id: String,
    pub api_key_id: Option<String>,
    pub model: String,
    pub client_ip: String,
    pub asn: Option<u32>,
    pub country: Option<&'static str>,
    pub user_agent: Option<String>,
    pub tls_ja4: Option<&'static str>,
    pub system: Option<String>,
    pub messages: Vec<(&'static str, String)>,
    pub tools: Option<Vec<&'static str>>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub stream: Option<bool>,
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub reasoning_tokens: Option<u32>,
    pub status: u16,
    pub conversation_id: Option<String>,
}

/// Relative activity by local hour.
const EVENING: [f64; 24] = [
    0.5, 0.3, 0.15, 0.1, 0.08, 0.1, 0.2, 0.4, 0.6, 0.6, 0.6, 0.65, 0.7, 0.65, 0.6, 0.6, 0.65, 0.75,
    0.85, 0.95, 1.0, 1.0, 0.9, 0.7,
];
const WORK: [f64; 24] = [
    0.05, 0.03, 0.02, 0.02, 0.02, 0.03, 0.08, 0.25, 0.6, 0.9, 1.0, 1.0, 0.8, 0.9, 1.0, 1.0, 0.95,
    0.8, 0.5, 0.35, 0.3, 0.25, 0.15, 0.08,
];
const STUDY: [f64; 24] = [
    0.6, 0.4, 0.2, 0.1, 0.05, 0.05, 0.08, 0.2, 0.4, 0.6, 0.7, 0.75, 0.7, 0.75, 0.8, 0.85, 0.85,
    0.8, 0.75, 0.8, 0.9, 1.0, 1.0, 0.85,
];
const FLAT: [f64; 24] = [
    0.85, 0.8, 0.78, 0.76, 0.78, 0.8, 0.85, 0.9, 0.95, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0,
    0.98, 0.96, 0.94, 0.92, 0.9, 0.88,
];

/// A time in [from, to) following a daily profile in local time `tz`, with weekends
/// weighted by `weekend`.
fn human_time(
    rng: &mut Rng,
    from: i64,
    to: i64,
    tz: i32,
    profile: &[f64; 24],
    weekend: f64,
) -> i64 {
    let span = (to - from).max(1) as u64;
    let mut t = from;
    for _ in 0..40 {
        t = from + rng.below(span) as i64;
        let local = t + tz as i64 * MICROS_PER_HOUR;
        let h = (local / MICROS_PER_HOUR).rem_euclid(24) as usize;
        let weekday = ((local / MICROS_PER_DAY) + 3).rem_euclid(7); // 0 = Monday
        let w = profile[h] * if weekday >= 5 { weekend } else { 1.0 };
        if rng.f64() < w {
            return t;
        }
    }
    t
}

fn hex_id(prefix: &str, v: u64) -> String {
    format!("{prefix}{v:016x}")
}

/// Rough token count of a text: ~4 characters per token for Latin script, ~1.5 for CJK.
fn tokens(s: &str) -> u64 {
    if s.is_ascii() {
        return s.len() as u64 / 4 + 1;
    }
    let (mut ascii, mut other) = (0u64, 0u64);
    for &b in s.as_bytes() {
        ascii += (b < 0x80) as u64;
        other += (b >= 0xc0) as u64; // lead byte of a multi-byte character
    }
    ascii / 4 + other * 2 / 3 + 1
}

struct Gen<'w> {
    world: &'w World,
    acct: &'w Account,
    camp: Option<&'w CampaignCtx>,
    rng: Rng,
    keys: u64,
    /// Language of this account's own prompts.
    zh_share: f64,
    template: u64,
}

impl Gen<'_> {
    fn lang(&mut self) -> Lang {
        if self.rng.chance(self.zh_share) {
            Lang::Zh
        } else {
            Lang::En
        }
    }

    fn model(&mut self, t: i64) -> String {
        let w = self.world;
        let models = &w.scenario.models;
        if t >= w.release {
            let since = (t - w.release) as f64;
            let p = match self.camp {
                Some(c) => c.spec.model_pivot * (since / MICROS_PER_DAY as f64).min(1.0),
                None => {
                    let speed = match self.acct.class {
                        Class::Developer | Class::Startup | Class::EvalHarness => 0.45,
                        Class::Enterprise => 0.05,
                        _ => 0.25,
                    };
                    speed * (1.0 - (-since / (4.0 * MICROS_PER_DAY as f64)).exp())
                }
            };
            if self.rng.chance(p) {
                return w.scenario.release.model.clone();
            }
        }
        if models.len() > 1 && self.rng.chance(0.2) {
            models[1 + self.rng.below(models.len() as u64 - 1) as usize].clone()
        } else {
            models[0].clone()
        }
    }

    fn status(&mut self) -> u16 {
        let x = self.rng.f64();
        let throttled = if matches!(self.acct.class, Class::Campaign(_) | Class::Reseller) {
            0.03
        } else {
            0.008
        };
        if x < throttled {
            429
        } else if x < throttled + 0.002 {
            500
        } else {
            200
        }
    }

    fn base(&mut self, t: i64, conversation: Option<String>) -> Exchange {
        let key = self.rng.below(self.keys);
        let model = self.model(t);
        let status = self.status();
        Exchange {
            ts: t,
            request_id: hex_id("req_", self.rng.next_u64()),
            account_id: self.acct.id.clone(),
            api_key_id: Some(format!(
                "key_{:012x}",
                mix(self.acct.seed ^ key) & 0xffff_ffff_ffff
            )),
            model,
            client_ip: String::new(),
            asn: None,
            country: None,
            user_agent: None,
            tls_ja4: None,
            system: None,
            messages: Vec::new(),
            tools: None,
            max_tokens: None,
            temperature: None,
            stream: None,
            input_tokens: 0,
            output_tokens: 0,
            reasoning_tokens: None,
            status,
            conversation_id: conversation,
        }
    }

    fn place(
        &mut self,
        e: &mut Exchange,
        addr: (String, u32),
        country: &'static str,
        client: &Client,
    ) {
        e.client_ip = addr.0;
        e.asn = Some(addr.1);
        e.country = Some(country);
        e.user_agent = Some(client.user_agent.clone());
        e.tls_ja4 = Some(client.ja4);
    }

    fn finish(&mut self, e: &mut Exchange, out_median: f64, out_sigma: f64) {
        let mut input = e.system.as_deref().map(tokens).unwrap_or(0);
        for (_, c) in &e.messages {
            input += tokens(c) + 4;
        }
        if let Some(tools) = &e.tools {
            input += 60 * tools.len() as u64;
        }
        e.input_tokens = input.min(u32::MAX as u64) as u32;
        let mut out = self.rng.lognormal(out_median, out_sigma).max(1.0);
        if let Some(m) = e.max_tokens {
            out = out.min(m as f64);
        }
        e.output_tokens = if e.status == 200 { out as u32 } else { 0 };
    }

    // ---- content ------------------------------------------------------------------

    fn chat_turns(&mut self, depth: usize, topic_bias: &[f64; 4]) -> Vec<(&'static str, String)> {
        let mut msgs = Vec::new();
        let lang = self.lang();
        for d in 0..depth {
            let mut q = String::new();
            if d > 0 && self.rng.chance(0.5) {
                q.push_str(self.rng.pick(&[
                    "Thanks! And ",
                    "Can you make it shorter? Also, ",
                    "Follow-up: ",
                    "OK. ",
                    "Hmm, not quite. ",
                ]));
            }
            let topic = Topic::ALL[self.rng.weighted(topic_bias)];
            text::question(&mut self.rng, topic, lang, &mut q);
            msgs.push(("user", q));
            if d + 1 < depth {
                let mut a = String::new();
                let n = self.rng.range(2, 6) as usize;
                text::prose(&mut self.rng, lang, n, &mut a);
                msgs.push(("assistant", a));
            }
        }
        msgs
    }

    fn coding_trajectory(
        &mut self,
        steps: usize,
        code_lines: (u64, u64),
    ) -> Vec<(&'static str, String)> {
        let lang = self.lang();
        let mut task = String::new();
        text::question(&mut self.rng, Topic::Coding, lang, &mut task);
        if self.rng.chance(0.5) {
            task.push_str(" The relevant file is ");
            text::file_path(&mut self.rng, &mut task);
            task.push('.');
        }
        let mut msgs = vec![("user", task)];
        for s in 0..steps {
            let mut a = String::new();
            a.push_str(self.rng.pick(&[
                "Let me look at the file.",
                "I'll run the tests first.",
                "Searching for the definition.",
                "Applying the fix now.",
                "Let me check how this is used elsewhere.",
            ]));
            msgs.push(("assistant", a));
            let mut t = String::new();
            if s % 2 == 0 {
                let lines = self.rng.range(code_lines.0, code_lines.1) as usize;
                text::code(&mut self.rng, lines, &mut t);
            } else {
                text::test_output(&mut self.rng, &mut t);
            }
            msgs.push(("tool", t));
        }
        msgs
    }

    fn agentic_task(&mut self) -> Vec<(&'static str, String)> {
        let lang = self.lang();
        let kind = self.rng.weighted(&[0.35, 0.2, 0.2, 0.1, 0.15]);
        let mut user = String::new();
        let mut msgs = Vec::new();
        match kind {
            0 => {
                let steps = self.rng.range(1, 4) as usize;
                return self.coding_trajectory(steps, (30, 120));
            }
            1 => {
                user.push_str(match lang {
                    Lang::En => "Analyse this dataset: find trends, outliers and the main drivers of the last column. Explain every step of your analysis.\n\n",
                    Lang::Zh => "分析这个数据集：找出趋势、异常值以及最后一列的主要影响因素，并解释每一步分析。\n\n",
                });
                let rows = self.rng.range(20, 80) as usize;
                text::csv(&mut self.rng, rows, &mut user);
                msgs.push(("user", user));
                let mut tool = String::new();
                text::prose(&mut self.rng, Lang::En, 3, &mut tool);
                msgs.push(("assistant", "Running a summary with python.".to_string()));
                msgs.push(("tool", tool));
            }
            2 => {
                user.push_str(self.rng.pick(&[
                    "Book the cheapest flight shown and fill in the passenger form.",
                    "Export last month's report as CSV from the dashboard.",
                    "Change the notification settings so only mentions are e-mailed.",
                    "Find the order with the largest refund and open its details.",
                ]));
                msgs.push(("user", user));
                for _ in 0..self.rng.range(1, 4) {
                    let mut s = String::new();
                    text::screen(&mut self.rng, &mut s);
                    msgs.push(("tool", s));
                    msgs.push((
                        "assistant",
                        format!("click({})", self.rng.pick(crate::vocab::UI_ELEMENTS)),
                    ));
                }
            }
            3 => {
                user.push_str("[image: chart.png] ");
                text::question(&mut self.rng, Topic::General, lang, &mut user);
                user.push_str(" Describe the figure in detail first.");
                msgs.push(("user", user));
            }
            _ => {
                text::question(&mut self.rng, Topic::General, lang, &mut user);
                user.push_str(" Use web search and cite sources.");
                msgs.push(("user", user));
                let mut res = String::new();
                for i in 0..self.rng.range(2, 5) {
                    res.push_str(&format!("[{}] ", i + 1));
                    text::prose(&mut self.rng, Lang::En, 2, &mut res);
                    res.push('\n');
                }
                msgs.push(("tool", res));
            }
        }
        msgs
    }

    fn question_and_answer(&mut self, lang: Lang) -> (String, String) {
        let mut q = String::new();
        let topic = Topic::ALL[self.rng.weighted(&[0.3, 0.35, 0.35, 0.0])];
        text::question(&mut self.rng, topic, lang, &mut q);
        let mut a = String::new();
        let n = self.rng.range(5, 14) as usize;
        text::prose(&mut self.rng, lang, n, &mut a);
        (q, a)
    }

    // ---- classes ------------------------------------------------------------------

    fn benign(&mut self, out: &mut Vec<Exchange>) {
        let a = self.acct;
        let n = a.exchanges;
        let client = a.client.clone();
        let mut made = 0u64;
        // Eval labs run sweeps: a few bursts shared by the lab's accounts.
        let runs: Vec<i64> = if a.class == Class::EvalHarness {
            let mut g = Rng::for_stream(self.world.seed, &[77, a.group]);
            (0..g.range(3, 7))
                .map(|_| {
                    human_time(
                        &mut g,
                        self.world.start,
                        self.world.end - 4 * MICROS_PER_HOUR,
                        a.tz,
                        &WORK,
                        0.3,
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        let deadlines: Vec<i64> = if a.class == Class::Student {
            let mut g = Rng::for_stream(self.world.seed, &[78, a.group]);
            let first = self.world.start + g.below(7) as i64 * MICROS_PER_DAY;
            (0..6)
                .map(|k| {
                    first + k * 7 * MICROS_PER_DAY + 23 * MICROS_PER_HOUR
                        - a.tz as i64 * MICROS_PER_HOUR
                })
                .collect()
        } else {
            Vec::new()
        };
        while made < n {
            let (from, to) = (a.active_from, a.active_to);
            let t0 = match a.class {
                Class::Chat => human_time(&mut self.rng, from, to, a.tz, &EVENING, 1.3),
                Class::Developer | Class::Startup => {
                    human_time(&mut self.rng, from, to, a.tz, &WORK, 0.25)
                }
                Class::SyntheticData => human_time(&mut self.rng, from, to, a.tz, &WORK, 0.5),
                Class::Student => {
                    let d = self.rng.pick(&deadlines);
                    let back = self.rng.exponential(20.0 * MICROS_PER_HOUR as f64) as i64;
                    let t = d - back;
                    if t < from || t >= to {
                        human_time(&mut self.rng, from, to, a.tz, &STUDY, 1.0)
                    } else {
                        t
                    }
                }
                Class::EvalHarness => {
                    self.rng.pick(&runs) + self.rng.below(3 * MICROS_PER_HOUR as u64) as i64
                }
                _ => human_time(&mut self.rng, from, to, 0, &FLAT, 0.9),
            };
            let depth = match a.class {
                Class::Chat | Class::Student => 1 + self.rng.below(5) as usize,
                Class::Developer | Class::Startup => 1 + self.rng.below(8) as usize,
                Class::AgentPlatform => 1 + self.rng.below(3) as usize,
                _ => 1,
            }
            .min((n - made) as usize);
            let conv = matches!(
                a.class,
                Class::Chat
                    | Class::Developer
                    | Class::Startup
                    | Class::Student
                    | Class::AgentPlatform
            )
            .then(|| hex_id("conv_", self.rng.next_u64()));
            let mut t = t0;
            for turn in 0..depth {
                let mut e = self.base(t, conv.clone());
                self.benign_content(&mut e, turn);
                let (addr, country, client) = self.benign_place(&client);
                self.place(&mut e, addr, country, &client);
                out.push(e);
                made += 1;
                t += (self.rng.exponential(45.0) as i64 + 5) * MICROS_PER_SEC;
            }
        }
    }

    fn benign_place(&mut self, client: &Client) -> ((String, u32), &'static str, Client) {
        let a = self.acct;
        match a.class {
            Class::Reseller => {
                // Thousands of client addresses all over the world, many client stacks.
                let cc = infra::COUNTRIES[self.rng.below(infra::COUNTRIES.len() as u64) as usize].0;
                let kind = if self.rng.chance(0.3) {
                    Net::Cloud
                } else {
                    Net::Residential
                };
                let c = if self.rng.chance(0.5) {
                    infra::sdk(&mut self.rng)
                } else {
                    infra::http_library(&mut self.rng)
                };
                (infra::address(&mut self.rng, kind, cc), cc, c)
            }
            Class::Chat if self.rng.chance(0.3) => (
                infra::address(&mut self.rng, Net::Mobile, a.country),
                a.country,
                client.clone(),
            ),
            Class::Developer if self.rng.chance(0.25) => (
                infra::address(&mut self.rng, Net::Residential, a.country),
                a.country,
                client.clone(),
            ),
            Class::Enterprise | Class::AgentPlatform | Class::EvalHarness => {
                // A few NAT gateways in the same cloud.
                let slot = mix(a.seed) % 50_000 + self.rng.below(4);
                (
                    (infra::ipv4(a.home.1, slot), a.home.1),
                    a.country,
                    client.clone(),
                )
            }
            _ => (a.home.clone(), a.country, client.clone()),
        }
    }

    fn coding_content(&mut self, e: &mut Exchange, turn: usize) {
        e.system = Some(
            wrappers::CODING_HARNESSES
                [(self.template % wrappers::CODING_HARNESSES.len() as u64) as usize]
                .to_string(),
        );
        e.tools = Some(
            wrappers::CODING_TOOLS[(self.template % wrappers::CODING_TOOLS.len() as u64) as usize]
                .to_vec(),
        );
        e.messages = self.coding_trajectory(turn.min(5), (20, 90));
        e.max_tokens = Some(self.rng.pick(&[4096, 8192, 8192, 16384]));
        e.stream = Some(true);
        self.finish(e, 500.0, 0.8);
    }

    fn benign_content(&mut self, e: &mut Exchange, turn: usize) {
        let class = self.acct.class;
        match class {
            Class::Chat | Class::Student => {
                let bias = if class == Class::Chat {
                    [0.05, 0.05, 0.3, 0.6]
                } else {
                    [0.35, 0.35, 0.3, 0.0]
                };
                e.messages = self.chat_turns(turn + 1, &bias);
                e.stream = Some(self.rng.chance(0.8));
                e.max_tokens = self
                    .rng
                    .chance(0.5)
                    .then_some(self.rng.pick(&[1024, 2048, 4096]));
                e.temperature = self.rng.chance(0.4).then_some(self.rng.pick(&[0.7, 1.0]));
                self.finish(e, 350.0, 0.6);
            }
            Class::Developer => self.coding_content(e, turn),
            Class::Startup if self.template % 5 < 3 => self.coding_content(e, turn),
            Class::Enterprise | Class::Startup => {
                let t = crate::vocab::ENTERPRISE_TEMPLATES
                    [(self.template % crate::vocab::ENTERPRISE_TEMPLATES.len() as u64) as usize];
                let mut p = String::new();
                text::fill(&mut self.rng, t, &mut p);
                e.messages = vec![("user", p)];
                e.max_tokens = Some(self.rng.pick(&[5, 16, 64, 256]));
                e.temperature = Some(0.0);
                e.stream = Some(false);
                self.finish(e, 25.0, 0.8);
            }
            Class::EvalHarness => {
                let q = self.rng.below(3000);
                let mut b = Rng::new(0xbe_c4 ^ mix(q));
                let mut question = String::new();
                let topic = Topic::ALL[b.weighted(&[0.2, 0.5, 0.3, 0.0])];
                text::question(&mut b, topic, Lang::En, &mut question);
                let mut p = String::new();
                wrappers::eval_prompt(&mut self.rng, self.acct.group, &question, &mut p);
                e.messages = vec![("user", p)];
                e.max_tokens = Some(self.rng.pick(&[1024, 2048, 4096]));
                e.temperature = Some(0.0);
                self.finish(e, 380.0, 0.5);
            }
            Class::AgentPlatform => {
                e.system = Some(format!(
                    "You are {}, the assistant of a {} app. You can search the web, read the user's calendar and send e-mails on their behalf. Be concise.",
                    self.rng.pick(&["Nova", "Sage", "Pilot", "Juno", "Orbit"]),
                    self.rng
                        .pick(&["travel", "productivity", "shopping", "banking", "fitness"])
                ));
                e.tools = Some(vec!["web_search", "calendar_read", "send_email", "weather"]);
                e.messages = self.chat_turns(turn + 1, &[0.05, 0.05, 0.4, 0.5]);
                if self.rng.chance(0.5) {
                    let mut r = String::new();
                    text::prose(&mut self.rng, Lang::En, 4, &mut r);
                    e.messages.push(("tool", r));
                }
                e.stream = Some(true);
                e.max_tokens = Some(2048);
                self.finish(e, 250.0, 0.6);
            }
            Class::Reseller => {
                // Everything: chat, coding agents, templated back ends.
                match self.rng.below(3) {
                    0 => {
                        let depth = 1 + self.rng.below(3) as usize;
                        e.messages = self.chat_turns(depth, &[0.2, 0.15, 0.3, 0.35]);
                    }
                    1 => {
                        e.system = Some(self.rng.pick(wrappers::CODING_HARNESSES).to_string());
                        e.tools = Some(self.rng.pick(wrappers::CODING_TOOLS).to_vec());
                        let steps = self.rng.below(3) as usize;
                        e.messages = self.coding_trajectory(steps, (20, 80));
                    }
                    _ => {
                        let mut p = String::new();
                        let t = self.rng.pick(crate::vocab::ENTERPRISE_TEMPLATES);
                        text::fill(&mut self.rng, t, &mut p);
                        e.messages = vec![("user", p)];
                    }
                }
                e.max_tokens = Some(self.rng.pick(&[256, 1024, 4096, 8192]));
                self.finish(e, 300.0, 1.0);
            }
            Class::SyntheticData => {
                let mut p = String::new();
                wrappers::synthetic_data(&mut self.rng, self.template, &mut p);
                e.messages = vec![("user", p)];
                e.system = Some(
                    "You generate labelled training data. Follow the requested format exactly."
                        .into(),
                );
                e.max_tokens = Some(8192);
                e.temperature = Some(1.0);
                self.finish(e, 2500.0, 0.3);
            }
            Class::Campaign(_) => unreachable!(),
        }
    }

    fn campaign(&mut self, camp: &CampaignCtx, out: &mut Vec<Exchange>) {
        let a = self.acct;
        let adv = &camp.spec.adversary;
        let arch = camp.spec.archetype;
        let benign_mix = if adv.benign_mix > 0.0 {
            adv.benign_mix
        } else if arch == Archetype::Hydra {
            0.25
        } else {
            0.0
        };
        // Slots this account serves: its shard's, or (hydra) all within its lifetime.
        let eligible: Vec<(i64, i64)> = camp
            .slots
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                (camp.shards == 1 || *i as u64 % camp.shards == a.group)
                    && s.0 >= a.active_from
                    && s.0 < a.active_to
            })
            .map(|(_, s)| *s)
            .collect();
        let mut per_day: std::collections::HashMap<i64, u64> = std::collections::HashMap::new();
        let natural_jitter = match arch {
            Archetype::Reasoning => 3.0,
            Archetype::Agentic => 20.0,
            Archetype::Hydra => 30.0,
        };
        let mut made = 0u64;
        let mut attempts = 0u64;
        let phase2 = camp.start + ((camp.end - camp.start) as f64 * 0.65) as i64;
        while made < a.exchanges && attempts < a.exchanges * 20 + 100 {
            attempts += 1;
            let slot = if eligible.is_empty() {
                (
                    a.active_from
                        + self.rng.below((a.active_to - a.active_from).max(1) as u64) as i64,
                    60 * MICROS_PER_SEC,
                )
            } else {
                self.rng.pick(&eligible)
            };
            let mut t = slot.0
                + self.rng.below(slot.1.max(1) as u64) as i64
                + (self.rng.normal().abs() * natural_jitter * MICROS_PER_SEC as f64) as i64;
            if adv.timing_jitter_s > 0.0 {
                t += (self.rng.f64() * adv.timing_jitter_s * MICROS_PER_SEC as f64) as i64;
            }
            if adv.ramp_days > 0.0 {
                let ramp = (t - camp.start) as f64 / (adv.ramp_days * MICROS_PER_DAY as f64);
                if !self.rng.chance(ramp.clamp(0.02, 1.0)) {
                    continue;
                }
            }
            let steps = match arch {
                Archetype::Agentic => self.rng.range(2, 8),
                Archetype::Hydra if !self.rng.chance(benign_mix) => self.rng.range(1, 5),
                _ => 1,
            }
            .min(a.exchanges - made);
            let conv = (steps > 1).then(|| hex_id("conv_", self.rng.next_u64()));
            for step in 0..steps {
                if t >= self.world.end {
                    break;
                }
                if adv.daily_cap > 0 {
                    let used = per_day.entry(t.div_euclid(MICROS_PER_DAY)).or_insert(0);
                    if *used >= adv.daily_cap {
                        break;
                    }
                    *used += 1;
                }
                let mut e = self.base(t, conv.clone());
                if self.rng.chance(benign_mix) {
                    let depth = 1 + self.rng.below(2) as usize;
                    e.messages = self.chat_turns(depth, &[0.25, 0.15, 0.3, 0.3]);
                    e.max_tokens = Some(self.rng.pick(&[1024, 4096]));
                    self.finish(&mut e, 350.0, 0.7);
                } else {
                    self.campaign_content(camp, &mut e, step as usize, t >= phase2);
                }
                let addr = if arch == Archetype::Reasoning
                    && !self.rng.chance(adv.residential_rotation)
                    && self.rng.chance(0.8)
                {
                    a.home.clone()
                } else {
                    crate::world::campaign_address(
                        &mut self.rng,
                        arch,
                        adv,
                        camp.seed,
                        camp.pool,
                        a.country,
                    )
                };
                let client = if self.rng.chance(adv.sdk_mimicry) {
                    infra::sdk(&mut self.rng)
                } else {
                    camp.client.clone()
                };
                self.place(&mut e, addr, a.country, &client);
                out.push(e);
                made += 1;
                t += (self.rng.exponential(12.0) as i64 + 2) * MICROS_PER_SEC;
            }
        }
    }

    fn campaign_content(
        &mut self,
        camp: &CampaignCtx,
        e: &mut Exchange,
        step: usize,
        phase2: bool,
    ) {
        let adv = &camp.spec.adversary;
        let paraphrase = self.rng.chance(adv.paraphrase);
        let lang = if self.rng.chance(camp.operator_language) {
            Lang::Zh
        } else {
            Lang::En
        };
        match camp.spec.archetype {
            Archetype::Reasoning => {
                let (q, a) = self.question_and_answer(lang);
                let mut p = String::new();
                match self.rng.weighted(&[0.6, 0.25, 0.15]) {
                    0 => wrappers::cot(&mut self.rng, paraphrase, lang, &q, &a, &mut p),
                    1 => wrappers::rubric(&mut self.rng, paraphrase, &q, &a, &mut p),
                    _ => wrappers::censor(&mut self.rng, paraphrase, lang, &a, &mut p),
                }
                e.messages = vec![("user", p)];
                e.max_tokens = Some(self.rng.pick(&[16000, 32000, 32000]));
                e.temperature = self.rng.chance(0.5).then_some(1.0);
                self.finish(e, 2800.0, 0.45);
                e.reasoning_tokens = (e.status == 200 && self.rng.chance(0.7))
                    .then(|| self.rng.range(800, 6000) as u32);
            }
            Archetype::Agentic => {
                e.system = Some(wrappers::campaign_harness(
                    camp.seed,
                    paraphrase,
                    &mut self.rng,
                ));
                let n = self.rng.range(5, 10) as usize;
                let start = self.rng.below(wrappers::AGENT_TOOLS.len() as u64) as usize;
                e.tools = Some(
                    (0..n)
                        .map(|i| wrappers::AGENT_TOOLS[(start + i) % wrappers::AGENT_TOOLS.len()])
                        .collect(),
                );
                if phase2 && self.rng.chance(0.6) {
                    // Later phase: reconstructing reasoning traces of agent work.
                    let task = self.agentic_task();
                    let transcript: String =
                        task.iter().map(|(r, c)| format!("[{r}] {c}\n")).collect();
                    let mut a = String::new();
                    text::prose(&mut self.rng, lang, 4, &mut a);
                    let mut p = String::new();
                    wrappers::cot(&mut self.rng, paraphrase, lang, &transcript, &a, &mut p);
                    e.messages = vec![("user", p)];
                } else {
                    e.messages = self.agentic_task();
                    if step > 0 {
                        let mut s = String::new();
                        text::prose(&mut self.rng, lang, 2, &mut s);
                        e.messages.push(("assistant", s));
                        let mut o = String::new();
                        text::code(&mut self.rng, 15 + step * 5, &mut o);
                        e.messages.push(("tool", o));
                    }
                }
                e.max_tokens = Some(self.rng.pick(&[8192, 16000, 32000]));
                self.finish(e, 1800.0, 0.5);
                e.reasoning_tokens = (e.status == 200 && self.rng.chance(0.5))
                    .then(|| self.rng.range(500, 4000) as u32);
            }
            Archetype::Hydra => {
                let role =
                    self.rng
                        .pick(&["planner", "coder", "reviewer", "tester", "tool-router"]);
                e.system = Some(if paraphrase {
                    format!(
                        "{} Role: {role}. {}",
                        self.rng.pick(&[
                            "You are one worker in a team of agents.",
                            "Sub-agent instructions follow.",
                            "You are part of an automated pipeline."
                        ]),
                        self.rng.pick(&[
                            "Use the tools.",
                            "Report back in detail.",
                            "Explain your reasoning fully."
                        ])
                    )
                } else {
                    format!(
                        "You are a sub-agent in a multi-agent orchestration system. Your role: {role}. Use the tools provided, reason step by step, and return a complete, detailed report to the orchestrator."
                    )
                });
                let mut tools = self.rng.pick(wrappers::CODING_TOOLS).to_vec();
                tools.extend_from_slice(&["web_search", "python"]);
                e.tools = Some(tools);
                e.messages = self.coding_trajectory(1 + step.min(4), (40, 140));
                e.max_tokens = Some(self.rng.pick(&[8192, 16000, 32000]));
                e.stream = Some(true);
                self.finish(e, 1500.0, 0.5);
            }
        }
    }
}

/// Generates every exchange of one account, appending to `out`.
pub fn account_exchanges(world: &World, acct: &Account, out: &mut Vec<Exchange>) {
    let camp = world.campaign(acct.class);
    let mut rng = Rng::new(acct.seed);
    let keys = match acct.class {
        Class::Enterprise | Class::Reseller | Class::AgentPlatform => rng.range(2, 10),
        _ => rng.range(1, 3),
    };
    let zh_share = match (acct.class, acct.country) {
        (Class::Campaign(_), _) => 0.0,
        (_, "SG") => 0.35,
        (Class::Reseller, _) => 0.15,
        (Class::Student, _) => 0.1,
        _ => 0.03,
    };
    let template = rng.next_u64();
    let mut g = Gen {
        world,
        acct,
        camp,
        rng,
        keys,
        zh_share,
        template,
    };
    match camp {
        Some(c) => g.campaign(c, out),
        None => g.benign(out),
    }
}
