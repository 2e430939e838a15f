//! Per-account state: everything detection needs to know about an account, built by a
//! DataFusion aggregate (`dg_account_profile`) from the exchange feature table.
//!
//! The state is mergeable (partial states from any partitioning, merged in any order, give the
//! same profile: sums, min/max, exact small maps and bottom-k sketches) and serialisable (one
//! binary value per group), so the same aggregate runs on one core, on all cores, or — through
//! DataFusion's partial/final aggregation — across machines. Only account-level state is held;
//! the exchanges stream past.

use std::net::Ipv6Addr;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, LargeBinaryArray, LargeBinaryBuilder, StringArray,
};
use arrow::datatypes::{
    DataType, Field, FieldRef, Float32Type, Int64Type, TimeUnit, UInt8Type, UInt32Type, UInt64Type,
};
use datafusion::common::{Result, exec_err};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};
use datafusion::scalar::ScalarValue;

use crate::features::{Capability, flag};
use crate::hash::hash_str;
use crate::sketch::{BottomK, Codec, CodecError, get_i64, get_u64, put_i64, put_u64};

/// Width of the time buckets used for lockstep comparison (SynchroTrap-style).
pub const BUCKET_MICROS: i64 = 10 * 60 * 1_000_000;
const DAY_MICROS: i64 = 86_400 * 1_000_000;
const HOUR_MICROS: i64 = 3_600 * 1_000_000;
/// A prompt counts as written in a CJK script when at least this share of its letters is.
pub const CJK_PROMPT: f32 = 0.3;
/// Flags that mark a request as eliciting training signal.
pub const ELICIT_MASK: u8 =
    flag::LONG_OUTPUT | flag::EMBEDDED_TEXT | flag::RUBRIC | flag::REASONING;

/// Use of one model by an account.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelUse {
    pub model: String,
    pub exchanges: u64,
    pub first_ts: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub exchanges: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    pub max_tokens_sum: u64,
    pub max_tokens_n: u64,
    pub prompt_chars: u64,
    pub turns: u64,
    pub tool_messages: u64,
    pub tools_offered: u64,
    /// Prompts mostly written in a CJK script.
    pub cjk_prompts: u64,
    /// Prompts per dominant script ([`crate::features::SCRIPTS`]; index 0: Latin or none).
    pub scripts: [u64; 10],
    /// Exchanges with any elicitation flag ([`ELICIT_MASK`]).
    pub elicit: u64,
    /// Exchanges per [`flag`] bit, in [`flag::NAMES`] order.
    pub flags: [u64; 5],
    pub capability: [u64; 6],
    pub first_ts: i64,
    pub last_ts: i64,
    /// Exchanges per UTC hour of day.
    pub hours: [u64; 24],
    /// Distinct active days (days since the epoch), sorted.
    pub days: Vec<u32>,
    pub models: Vec<ModelUse>,
    /// Active 10-minute buckets (lockstep comparison, activity spread).
    pub buckets: BottomK<()>,
    pub ips: BottomK<String>,
    /// /24 (IPv4) and /48 (IPv6) prefixes.
    pub prefixes: BottomK<String>,
    pub asns: BottomK<u32>,
    pub countries: BottomK<String>,
    pub clients: BottomK<u64>,
    pub systems: BottomK<u64>,
    pub templates: BottomK<u64>,
    pub conversations: BottomK<()>,
    /// A few request ids, chosen by hash (stable whatever the partitioning).
    pub examples: BottomK<String>,
    /// API keys used.
    pub api_keys: BottomK<String>,
    /// JA4 TLS fingerprints seen.
    pub ja4s: BottomK<String>,
}

/// How an account's requests are spread in time: evidence for an analyst, not scored.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rhythm {
    /// Coefficient of variation of the gaps between consecutive active 10-minute buckets:
    /// near 0 for clockwork, about 1 for random arrivals, above 1 for sessions separated by
    /// long pauses. `None` under 3 active buckets, or when the account was active in more
    /// buckets than its sketch keeps (256, about 42 hours): the gaps of a sample are not the
    /// account's.
    pub interarrival_cv: Option<f64>,
    /// Share of requests in the busiest tenth (at least one) of its active buckets: 0.1 when
    /// spread evenly, towards 1 when most arrive in bursts. From the bucket sample, which
    /// keeps each kept bucket's exact count. `None` without requests.
    pub burst_share: Option<f64>,
    /// Entropy of requests over the 24 UTC hours, divided by its maximum: 1 around the clock,
    /// 0 in a single hour.
    pub around_the_clock: f64,
}

const MAX_MODELS: usize = 64;
const MAX_DAYS: usize = 4096;

impl Default for Profile {
    fn default() -> Self {
        Profile {
            exchanges: 0,
            input_tokens: 0,
            output_tokens: 0,
            reasoning_tokens: 0,
            max_tokens_sum: 0,
            max_tokens_n: 0,
            prompt_chars: 0,
            turns: 0,
            tool_messages: 0,
            tools_offered: 0,
            cjk_prompts: 0,
            scripts: [0; 10],
            elicit: 0,
            flags: [0; 5],
            capability: [0; 6],
            first_ts: i64::MAX,
            last_ts: i64::MIN,
            hours: [0; 24],
            days: Vec::new(),
            models: Vec::new(),
            buckets: BottomK::new(256),
            ips: BottomK::new(64),
            prefixes: BottomK::new(32),
            asns: BottomK::new(16),
            countries: BottomK::new(8),
            clients: BottomK::new(8),
            systems: BottomK::new(8),
            templates: BottomK::new(32),
            conversations: BottomK::new(64),
            examples: BottomK::new(3),
            api_keys: BottomK::new(32),
            ja4s: BottomK::new(8),
        }
    }
}

/// One exchange as the aggregate sees it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Row<'a> {
    pub ts: i64,
    pub request_id: &'a str,
    pub model: &'a str,
    pub client_ip: &'a str,
    pub asn: Option<u32>,
    pub country: Option<&'a str>,
    pub conversation_id: Option<&'a str>,
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub reasoning_tokens: u32,
    pub max_tokens: Option<u32>,
    pub prompt_chars: u32,
    pub turns: u32,
    pub tool_messages: u32,
    pub tools_offered: u32,
    pub cjk: f32,
    pub script: u8,
    pub capability: u8,
    pub flags: u8,
    pub template: u64,
    pub system: u64,
    pub client: u64,
    pub api_key: Option<&'a str>,
    pub ja4: Option<&'a str>,
}

/// The /24 or /48 network of an address (as text), or the address itself when unparsable.
pub fn prefix_of(ip: &str) -> String {
    with_prefix(ip, str::to_string)
}

/// Calls `f` with [`prefix_of`]`(ip)` written on the stack: profiles take the prefix of every
/// exchange and keep only a few, so the common case allocates nothing.
pub fn with_prefix<R>(ip: &str, f: impl FnOnce(&str) -> R) -> R {
    use std::fmt::Write;
    // Long enough for `ffff:ffff:ffff::/48`.
    let mut buf = dg_contract::values::StackText::<24>::default();
    let written = if dg_contract::values::is_dotted_quad(ip.as_bytes()) {
        // A canonical dotted quad (no leading zeros; what `dg_contract::values::canonical_ip`
        // keeps, the same strings `Ipv4Addr` parses): the /24 is the text up to its last dot,
        // no formatting.
        ip.rfind('.').map_or(Err(std::fmt::Error), |dot| {
            buf.write_str(&ip[..dot])
                .and_then(|()| buf.write_str(".0/24"))
        })
    } else {
        match ip.parse::<Ipv6Addr>() {
            Ok(v6) => {
                let s = v6.segments();
                write!(buf, "{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
            }
            Err(_) => return f(ip),
        }
    };
    // Neither fails (a prefix is at most 19 ASCII bytes); the address itself is the fallback.
    match written {
        Ok(()) => f(buf.as_str()),
        Err(_) => f(ip),
    }
}

impl Profile {
    /// Mean requested `max_tokens` over the requests that sent one.
    pub fn mean_max_tokens(&self) -> Option<f64> {
        (self.max_tokens_n > 0).then(|| self.max_tokens_sum as f64 / self.max_tokens_n as f64)
    }

    pub fn rhythm(&self) -> Rhythm {
        let entries = self.buckets.entries();
        let interarrival_cv = (self.buckets.is_complete() && entries.len() >= 3).then(|| {
            // Buckets are kept as their mix; read them back and order them in time.
            let mut at: Vec<i64> = entries
                .iter()
                .map(|e| crate::hash::unmix(e.hash) as i64)
                .collect();
            at.sort_unstable();
            let gaps: Vec<f64> = at.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
            let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
            let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
            if mean > 0.0 { var.sqrt() / mean } else { 0.0 }
        });
        let mut counts: Vec<u64> = entries.iter().map(|e| e.count).collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let total: u64 = counts.iter().sum();
        let burst_share = (total > 0).then(|| {
            let top: u64 = counts[..counts.len().div_ceil(10)].iter().sum();
            top as f64 / total as f64
        });
        let all: u64 = self.hours.iter().sum();
        let around_the_clock = if all == 0 {
            0.0
        } else {
            let h: f64 = self
                .hours
                .iter()
                .filter(|&&n| n > 0)
                .map(|&n| {
                    let p = n as f64 / all as f64;
                    -p * p.ln()
                })
                .sum();
            (h / 24f64.ln()).clamp(0.0, 1.0)
        };
        Rhythm {
            interarrival_cv,
            burst_share,
            around_the_clock,
        }
    }

    pub fn add(&mut self, r: &Row) {
        self.exchanges += 1;
        self.input_tokens += u64::from(r.input_tokens);
        self.output_tokens += u64::from(r.output_tokens);
        self.reasoning_tokens += u64::from(r.reasoning_tokens);
        if let Some(m) = r.max_tokens {
            self.max_tokens_sum += u64::from(m);
            self.max_tokens_n += 1;
        }
        self.prompt_chars += u64::from(r.prompt_chars);
        self.turns += u64::from(r.turns);
        self.tool_messages += u64::from(r.tool_messages);
        self.tools_offered += u64::from(r.tools_offered);
        if r.cjk >= CJK_PROMPT {
            self.cjk_prompts += 1;
        }
        self.scripts[(r.script as usize).min(9)] += 1;
        if r.flags & ELICIT_MASK != 0 {
            self.elicit += 1;
        }
        for (i, (bit, _)) in flag::NAMES.iter().enumerate() {
            if r.flags & bit != 0 {
                self.flags[i] += 1;
            }
        }
        self.capability[Capability::from_index(r.capability) as usize] += 1;
        self.first_ts = self.first_ts.min(r.ts);
        self.last_ts = self.last_ts.max(r.ts);
        self.hours[(r.ts.div_euclid(HOUR_MICROS).rem_euclid(24)) as usize] += 1;
        let day = r.ts.div_euclid(DAY_MICROS).clamp(0, u32::MAX as i64) as u32;
        if let Err(i) = self.days.binary_search(&day)
            && self.days.len() < MAX_DAYS
        {
            self.days.insert(i, day);
        }
        if let Some(m) = self.models.iter_mut().find(|m| m.model == r.model) {
            m.exchanges += 1;
            m.first_ts = m.first_ts.min(r.ts);
        } else if self.models.len() < MAX_MODELS {
            self.models.push(ModelUse {
                model: r.model.to_string(),
                exchanges: 1,
                first_ts: r.ts,
            });
        }
        let bucket = r.ts.div_euclid(BUCKET_MICROS) as u64;
        self.buckets.add(crate::hash::mix(bucket), || ());
        let ip_hash = hash_str(r.client_ip);
        self.ips.add(ip_hash, || r.client_ip.to_string());
        with_prefix(r.client_ip, |p| {
            self.prefixes.add(hash_str(p), || p.to_string())
        });
        if let Some(a) = r.asn {
            self.asns.add(crate::hash::mix(u64::from(a)), || a);
        }
        if let Some(c) = r.country {
            self.countries.add_str(c);
        }
        if r.client != 0 {
            self.clients.add(crate::hash::mix(r.client), || r.client);
        }
        if r.system != 0 {
            self.systems.add(crate::hash::mix(r.system), || r.system);
        }
        if r.template != 0 {
            self.templates
                .add(crate::hash::mix(r.template), || r.template);
        }
        if let Some(c) = r.conversation_id {
            self.conversations.add(hash_str(c), || ());
        }
        self.examples.add_str(r.request_id);
        if let Some(k) = r.api_key {
            self.api_keys.add_str(k);
        }
        if let Some(j) = r.ja4 {
            self.ja4s.add_str(j);
        }
    }

    pub fn merge(&mut self, o: &Profile) {
        self.exchanges += o.exchanges;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.reasoning_tokens += o.reasoning_tokens;
        self.max_tokens_sum += o.max_tokens_sum;
        self.max_tokens_n += o.max_tokens_n;
        self.prompt_chars += o.prompt_chars;
        self.turns += o.turns;
        self.tool_messages += o.tool_messages;
        self.tools_offered += o.tools_offered;
        self.cjk_prompts += o.cjk_prompts;
        for (a, b) in self.scripts.iter_mut().zip(o.scripts) {
            *a += b;
        }
        self.elicit += o.elicit;
        for (a, b) in self.flags.iter_mut().zip(o.flags) {
            *a += b;
        }
        for (a, b) in self.capability.iter_mut().zip(o.capability) {
            *a += b;
        }
        self.first_ts = self.first_ts.min(o.first_ts);
        self.last_ts = self.last_ts.max(o.last_ts);
        for (a, b) in self.hours.iter_mut().zip(o.hours) {
            *a += b;
        }
        let mut days: Vec<u32> = self.days.iter().chain(&o.days).copied().collect();
        days.sort_unstable();
        days.dedup();
        days.truncate(MAX_DAYS);
        self.days = days;
        for m in &o.models {
            match self.models.iter_mut().find(|x| x.model == m.model) {
                Some(x) => {
                    x.exchanges += m.exchanges;
                    x.first_ts = x.first_ts.min(m.first_ts);
                }
                None => self.models.push(m.clone()),
            }
        }
        // Keep the outcome independent of merge order: canonical order, deterministic cap.
        self.models.sort_by(|a, b| a.model.cmp(&b.model));
        self.models.truncate(MAX_MODELS);
        self.buckets.merge(&o.buckets);
        self.ips.merge(&o.ips);
        self.prefixes.merge(&o.prefixes);
        self.asns.merge(&o.asns);
        self.countries.merge(&o.countries);
        self.clients.merge(&o.clients);
        self.systems.merge(&o.systems);
        self.templates.merge(&o.templates);
        self.conversations.merge(&o.conversations);
        self.examples.merge(&o.examples);
        self.api_keys.merge(&o.api_keys);
        self.ja4s.merge(&o.ja4s);
    }

    /// Models in canonical order (by name).
    pub fn normalise(&mut self) {
        self.models.sort_by(|a, b| a.model.cmp(&b.model));
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(1); // format version
        for v in [
            self.exchanges,
            self.input_tokens,
            self.output_tokens,
            self.reasoning_tokens,
            self.max_tokens_sum,
            self.max_tokens_n,
            self.prompt_chars,
            self.turns,
            self.tool_messages,
            self.tools_offered,
            self.cjk_prompts,
            self.elicit,
        ] {
            put_u64(out, v);
        }
        for v in self
            .flags
            .iter()
            .chain(&self.capability)
            .chain(&self.hours)
            .chain(&self.scripts)
        {
            put_u64(out, *v);
        }
        put_i64(out, self.first_ts);
        put_i64(out, self.last_ts);
        put_u64(out, self.days.len() as u64);
        for d in &self.days {
            put_u64(out, u64::from(*d));
        }
        put_u64(out, self.models.len() as u64);
        for m in &self.models {
            m.model.put(out);
            put_u64(out, m.exchanges);
            put_i64(out, m.first_ts);
        }
        self.buckets.put(out);
        self.ips.put(out);
        self.prefixes.put(out);
        self.asns.put(out);
        self.countries.put(out);
        self.clients.put(out);
        self.systems.put(out);
        self.templates.put(out);
        self.conversations.put(out);
        self.examples.put(out);
        self.api_keys.put(out);
        self.ja4s.put(out);
    }

    pub fn decode(mut input: &[u8]) -> Result<Profile, CodecError> {
        let r = &mut input;
        let (&version, rest) = r.split_first().ok_or(CodecError("empty state"))?;
        *r = rest;
        if version != 1 {
            return Err(CodecError("unknown state version"));
        }
        let mut p = Profile::default();
        for v in [
            &mut p.exchanges,
            &mut p.input_tokens,
            &mut p.output_tokens,
            &mut p.reasoning_tokens,
            &mut p.max_tokens_sum,
            &mut p.max_tokens_n,
            &mut p.prompt_chars,
            &mut p.turns,
            &mut p.tool_messages,
            &mut p.tools_offered,
            &mut p.cjk_prompts,
            &mut p.elicit,
        ] {
            *v = get_u64(r)?;
        }
        for v in p
            .flags
            .iter_mut()
            .chain(p.capability.iter_mut())
            .chain(p.hours.iter_mut())
            .chain(p.scripts.iter_mut())
        {
            *v = get_u64(r)?;
        }
        p.first_ts = get_i64(r)?;
        p.last_ts = get_i64(r)?;
        let n = get_u64(r)? as usize;
        if n > MAX_DAYS {
            return Err(CodecError("too many days"));
        }
        p.days = (0..n)
            .map(|_| get_u64(r).map(|d| d as u32))
            .collect::<Result<_, _>>()?;
        let n = get_u64(r)? as usize;
        if n > MAX_MODELS {
            return Err(CodecError("too many models"));
        }
        for _ in 0..n {
            let model = String::get(r)?;
            let exchanges = get_u64(r)?;
            let first_ts = get_i64(r)?;
            p.models.push(ModelUse {
                model,
                exchanges,
                first_ts,
            });
        }
        p.buckets = BottomK::get(r)?;
        p.ips = BottomK::get(r)?;
        p.prefixes = BottomK::get(r)?;
        p.asns = BottomK::get(r)?;
        p.countries = BottomK::get(r)?;
        p.clients = BottomK::get(r)?;
        p.systems = BottomK::get(r)?;
        p.templates = BottomK::get(r)?;
        p.conversations = BottomK::get(r)?;
        p.examples = BottomK::get(r)?;
        p.api_keys = BottomK::get(r)?;
        p.ja4s = BottomK::get(r)?;
        if !r.is_empty() {
            return Err(CodecError("trailing bytes"));
        }
        Ok(p)
    }
}

/// The aggregate's arguments, in order (columns of the exchange feature table).
pub const ARGS: [&str; 24] = [
    "ts",
    "request_id",
    "model",
    "client_ip",
    "asn",
    "country",
    "conversation_id",
    "input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "max_tokens",
    "prompt_chars",
    "turns",
    "tool_messages",
    "tools_offered",
    "cjk",
    "capability",
    "flags",
    "template",
    "system_fp",
    "client_fp",
    "script",
    "api_key_id",
    "tls_ja4",
];

pub const UDAF_NAME: &str = "dg_account_profile";

/// `dg_account_profile(<ARGS>)` → the encoded [`Profile`] of each group.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AccountProfileUdaf {
    signature: Signature,
}

impl Default for AccountProfileUdaf {
    fn default() -> Self {
        AccountProfileUdaf {
            signature: Signature::any(ARGS.len(), Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for AccountProfileUdaf {
    fn name(&self) -> &str {
        UDAF_NAME
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::LargeBinary)
    }
    fn accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(ProfileAccumulator {
            groups: ProfileGroups::default(),
        }))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[profile]", args.name),
            DataType::LargeBinary,
            true,
        ))])
    }
    fn groups_accumulator_supported(&self, _: AccumulatorArgs) -> bool {
        true
    }
    fn create_groups_accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(ProfileGroups::default()))
    }
}

/// Typed views of one batch of the aggregate's arguments.
struct Columns {
    arrays: Vec<ArrayRef>,
}

fn cast(a: &ArrayRef, t: &DataType) -> Result<ArrayRef> {
    if a.data_type() == t {
        return Ok(a.clone());
    }
    arrow::compute::cast(a, t).map_err(|e| DataFusionError::ArrowError(Box::new(e), None))
}

impl Columns {
    fn new(values: &[ArrayRef]) -> Result<Columns> {
        if values.len() != ARGS.len() {
            return exec_err!(
                "{UDAF_NAME} takes {} arguments, got {}",
                ARGS.len(),
                values.len()
            );
        }
        let types = [
            DataType::Int64,
            DataType::Utf8,
            DataType::Utf8,
            DataType::Utf8,
            DataType::UInt32,
            DataType::Utf8,
            DataType::Utf8,
            DataType::UInt32,
            DataType::UInt32,
            DataType::UInt32,
            DataType::UInt32,
            DataType::UInt32,
            DataType::UInt32,
            DataType::UInt32,
            DataType::UInt32,
            DataType::Float32,
            DataType::UInt8,
            DataType::UInt8,
            DataType::UInt64,
            DataType::UInt64,
            DataType::UInt64,
            DataType::UInt8,
            DataType::Utf8,
            DataType::Utf8,
        ];
        let mut arrays = Vec::with_capacity(types.len());
        for (i, (a, t)) in values.iter().zip(&types).enumerate() {
            let a = if i == 0 {
                match a.data_type() {
                    DataType::Timestamp(TimeUnit::Microsecond, _) => cast(
                        &cast(a, &DataType::Timestamp(TimeUnit::Microsecond, None))?,
                        t,
                    )?,
                    DataType::Timestamp(_, _) => cast(
                        &cast(a, &DataType::Timestamp(TimeUnit::Microsecond, None))?,
                        t,
                    )?,
                    _ => return exec_err!("{UDAF_NAME}: ts must be a timestamp"),
                }
            } else {
                cast(a, t)?
            };
            arrays.push(a);
        }
        Ok(Columns { arrays })
    }

    fn s(&self, i: usize) -> &StringArray {
        self.arrays[i].as_string::<i32>()
    }

    fn for_each(&self, mut f: impl FnMut(usize, &Row)) {
        let ts = self.arrays[0].as_primitive::<Int64Type>();
        let (rid, model, ip, country, conv) =
            (self.s(1), self.s(2), self.s(3), self.s(5), self.s(6));
        let asn = self.arrays[4].as_primitive::<UInt32Type>();
        let u = |i: usize| self.arrays[i].as_primitive::<UInt32Type>();
        let (inp, out, reas, maxt, pc, turns, toolm, toolo) =
            (u(7), u(8), u(9), u(10), u(11), u(12), u(13), u(14));
        let cjk = self.arrays[15].as_primitive::<Float32Type>();
        let cap = self.arrays[16].as_primitive::<UInt8Type>();
        let flags = self.arrays[17].as_primitive::<UInt8Type>();
        let q = |i: usize| self.arrays[i].as_primitive::<UInt64Type>();
        let (tmpl, sys, cli) = (q(18), q(19), q(20));
        let script = self.arrays[21].as_primitive::<UInt8Type>();
        let api_key = self.s(22);
        let ja4 = self.s(23);
        fn str_opt(a: &StringArray, i: usize) -> Option<&str> {
            (!a.is_null(i)).then(|| a.value(i))
        }
        let num_opt = |a: &arrow::array::UInt32Array, i: usize| (!a.is_null(i)).then(|| a.value(i));
        for i in 0..ts.len() {
            let row = Row {
                ts: ts.value(i),
                request_id: str_opt(rid, i).unwrap_or(""),
                model: str_opt(model, i).unwrap_or(""),
                client_ip: str_opt(ip, i).unwrap_or(""),
                asn: num_opt(asn, i),
                country: str_opt(country, i),
                conversation_id: str_opt(conv, i),
                input_tokens: num_opt(inp, i).unwrap_or(0),
                output_tokens: num_opt(out, i).unwrap_or(0),
                reasoning_tokens: num_opt(reas, i).unwrap_or(0),
                max_tokens: num_opt(maxt, i),
                prompt_chars: pc.value(i),
                turns: turns.value(i),
                tool_messages: toolm.value(i),
                tools_offered: toolo.value(i),
                cjk: cjk.value(i),
                script: script.value(i),
                api_key: str_opt(api_key, i),
                ja4: str_opt(ja4, i),
                capability: cap.value(i),
                flags: flags.value(i),
                template: tmpl.value(i),
                system: sys.value(i),
                client: cli.value(i),
            };
            f(i, &row);
        }
    }
}

/// Profiles of all groups of one partition.
#[derive(Default, Debug)]
pub struct ProfileGroups {
    profiles: Vec<Profile>,
}

fn encode_all(profiles: Vec<Profile>) -> ArrayRef {
    let mut b = LargeBinaryBuilder::with_capacity(profiles.len(), profiles.len() * 512);
    let mut buf = Vec::with_capacity(4096);
    for mut p in profiles {
        p.normalise();
        buf.clear();
        p.encode(&mut buf);
        b.append_value(&buf);
    }
    Arc::new(b.finish())
}

fn binary(a: &ArrayRef) -> Result<LargeBinaryArray> {
    Ok(cast(a, &DataType::LargeBinary)?.as_binary::<i64>().clone())
}

fn decode(bytes: &[u8]) -> Result<Profile> {
    Profile::decode(bytes).map_err(|e| DataFusionError::External(Box::new(e)))
}

impl GroupsAccumulator for ProfileGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.profiles
            .resize_with(total_num_groups, Profile::default);
        let cols = Columns::new(values)?;
        cols.for_each(|i, row| {
            if opt_filter.is_none_or(|f| f.is_valid(i) && f.value(i)) {
                self.profiles[group_indices[i]].add(row);
            }
        });
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(encode_all(emit_to.take_needed(&mut self.profiles)))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(emit_to)?])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.profiles
            .resize_with(total_num_groups, Profile::default);
        let states = binary(&values[0])?;
        for (i, &g) in group_indices.iter().enumerate() {
            if states.is_valid(i) {
                let p = decode(states.value(i))?;
                self.profiles[g].merge(&p);
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        // One state per input row (used when DataFusion skips partial aggregation).
        let n = values.first().map_or(0, |a| a.len());
        let mut g = ProfileGroups::default();
        let idx: Vec<usize> = (0..n).collect();
        g.update_batch(values, &idx, opt_filter, n)?;
        Ok(vec![encode_all(g.profiles)])
    }

    fn size(&self) -> usize {
        // Sketches dominate: roughly 3 KiB per account once they fill.
        self.profiles.capacity() * std::mem::size_of::<Profile>() + self.profiles.len() * 3072
    }
}

/// The single-group form DataFusion asks for in some plans (no GROUP BY).
#[derive(Debug)]
struct ProfileAccumulator {
    groups: ProfileGroups,
}

impl Accumulator for ProfileAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let n = values.first().map_or(0, |a| a.len());
        self.groups.update_batch(values, &vec![0; n], None, 1)
    }
    fn evaluate(&mut self) -> Result<ScalarValue> {
        let mut p = self.groups.profiles.first().cloned().unwrap_or_default();
        p.normalise();
        let mut buf = Vec::new();
        p.encode(&mut buf);
        Ok(ScalarValue::LargeBinary(Some(buf)))
    }
    fn size(&self) -> usize {
        self.groups.size()
    }
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let n = states.first().map_or(0, |a| a.len());
        self.groups.merge_batch(states, &vec![0; n], 1)
    }
}

/// The arguments of `dg_exchange_features`, in order (columns of `exchanges`).
pub const FEATURE_ARGS: [&str; 9] = [
    "system",
    "messages",
    "tools",
    "user_agent",
    "tls_ja4",
    "max_tokens",
    "input_tokens",
    "output_tokens",
    "reasoning_tokens",
];

/// Calls `f(account_id, row)` for every exchange of a batch of the contract's `exchanges`
/// schema: features computed by the code of the batch UDF (`dg_exchange_features`), rows read
/// by the code of the batch UDAF (`dg_account_profile`). The online service folds rows into profiles with
/// [`Profile::add`], exactly as the aggregate does, so batch and online agree.
pub fn for_each_exchange(
    batch: &arrow::record_batch::RecordBatch,
    mut f: impl FnMut(&str, &Row),
) -> Result<()> {
    let col = |name: &str| -> Result<ArrayRef> {
        match batch.column_by_name(name) {
            Some(c) => Ok(c.clone()),
            None => exec_err!("exchanges batch has no column {name}"),
        }
    };
    let feature_args: Vec<ArrayRef> = FEATURE_ARGS.iter().map(|n| col(n)).collect::<Result<_>>()?;
    let features = crate::features::features_of_batch(&feature_args, batch.num_rows())?;
    let features = features.as_struct();
    let args: Vec<ArrayRef> = ARGS
        .iter()
        .map(|n| match features.column_by_name(n) {
            Some(c) => Ok(c.clone()),
            None => col(n),
        })
        .collect::<Result<_>>()?;
    let account = cast(&col("account_id")?, &DataType::Utf8)?;
    let account = account.as_string::<i32>();
    Columns::new(&args)?.for_each(|i, row| f(account.value(i), row));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ts_s: i64, ip: &'static str, id: &'static str) -> Row<'static> {
        Row {
            ts: ts_s * 1_000_000,
            request_id: id,
            model: if ts_s % 2 == 0 { "m1" } else { "m2" },
            client_ip: ip,
            asn: Some(64500),
            country: Some("US"),
            input_tokens: 10,
            output_tokens: 20,
            template: 7,
            flags: flag::RUBRIC,
            cjk: 0.9,
            ..Default::default()
        }
    }

    fn at(times_s: impl IntoIterator<Item = i64>) -> Profile {
        let mut p = Profile::default();
        for t in times_s {
            p.add(&row(t, "10.0.0.1", "r"));
        }
        p
    }

    #[test]
    fn rhythm_tells_clockwork_from_bursts_and_office_hours_from_around_the_clock() {
        let hour = 3_600;
        // One request an hour, on the hour, for four days (before the epoch too).
        let clock = at((0..96).map(|k| -48 * hour + k * hour)).rhythm();
        assert!(clock.interarrival_cv.unwrap() < 0.01, "{clock:?}");
        assert!((clock.burst_share.unwrap() - 0.1).abs() < 0.02, "{clock:?}");
        assert!(clock.around_the_clock > 0.99, "{clock:?}");
        // Sessions: on days 0, 1, 5 and 6, 25 requests in the ten minutes from 09:00, then
        // one every ten minutes until 10:00; one lone request at 15:00 on the other days.
        let mut t = Vec::new();
        for day in 0..7 {
            let nine = day * 24 * hour + 9 * hour;
            if [0, 1, 5, 6].contains(&day) {
                t.extend((0..25).map(|k| nine + 20 * k));
                t.extend((1..6).map(|k| nine + 600 * k));
            } else {
                t.push(nine + 6 * hour);
            }
        }
        let bursty = at(t).rhythm();
        assert!(bursty.interarrival_cv.unwrap() > 1.5, "{bursty:?}");
        // The busiest tenth of 27 active buckets is three: 75 of 123 requests.
        assert!(
            (bursty.burst_share.unwrap() - 75.0 / 123.0).abs() < 1e-9,
            "{bursty:?}"
        );
        assert!(bursty.around_the_clock < 0.3, "{bursty:?}");
        // More active buckets than the sketch keeps: no inter-arrival figure from a sample.
        let busy = at((0..600).map(|k| k * 600)).rhythm();
        assert_eq!(busy.interarrival_cv, None);
        assert!(busy.burst_share.is_some());
        assert_eq!(Profile::default().rhythm(), Rhythm::default());
    }

    #[test]
    fn partial_states_merge_to_the_whole() {
        let ips = ["10.0.0.1", "10.0.0.2", "2001:db8::1", "10.0.1.9"];
        let rows: Vec<Row> = (0..200)
            .map(|i| {
                row(
                    i * 700,
                    ips[i as usize % 4],
                    Box::leak(format!("r{i}").into_boxed_str()),
                )
            })
            .collect();
        let mut whole = Profile::default();
        rows.iter().for_each(|r| whole.add(r));
        whole.normalise();
        // Three partitions, merged in two different orders.
        let mut parts = [Profile::default(), Profile::default(), Profile::default()];
        for (i, r) in rows.iter().enumerate() {
            parts[(i * 7) % 3].add(r);
        }
        let mut a = parts[2].clone();
        a.merge(&parts[0]);
        a.merge(&parts[1]);
        let mut b = parts[1].clone();
        b.merge(&parts[2]);
        b.merge(&parts[0]);
        assert_eq!(a, whole);
        assert_eq!(b, whole);
        assert_eq!(whole.exchanges, 200);
        assert_eq!(whole.cjk_prompts, 200);
        assert_eq!(whole.elicit, 200);
        assert_eq!(whole.prefixes.entries().len(), 3);
        // Serialised and read back unchanged.
        let mut buf = Vec::new();
        whole.encode(&mut buf);
        assert_eq!(Profile::decode(&buf).unwrap(), whole);
        assert!(Profile::decode(&buf[..buf.len() - 3]).is_err());
    }

    #[test]
    fn prefixes() {
        assert_eq!(prefix_of("203.0.113.77"), "203.0.113.0/24");
        assert_eq!(prefix_of("2001:db8:abcd:12::1"), "2001:db8:abcd::/48");
        assert_eq!(prefix_of("junk"), "junk");
        // Canonical IPv4 is cut at its last dot; the parser judges what is canonical.
        assert_eq!(prefix_of("0.0.0.0"), "0.0.0.0/24");
        assert_eq!(prefix_of("10.1.20.3"), "10.1.20.0/24");
        for odd in [
            "1.2.3",
            "1.2.3.4.5",
            "1.2.3.",
            ".1.2.3",
            "1.2.3.256",
            "1..2.3",
            "1.2.3.1000",
        ] {
            assert_eq!(prefix_of(odd), odd, "{odd}");
        }
        // Leading zeros are not canonical (and the parser refuses them).
        assert_eq!(prefix_of("01.2.3.4"), "01.2.3.4");
        assert_eq!(prefix_of("1.2.3.04"), "1.2.3.04");
        assert_eq!(prefix_of("192.168.1.10"), "192.168.1.0/24");
        for ip in ["8.8.8.8", "255.255.255.255", "100.64.0.1", "1.0.0.0"] {
            let parsed: std::net::Ipv4Addr = ip.parse().unwrap();
            let o = parsed.octets();
            assert_eq!(prefix_of(ip), format!("{}.{}.{}.0/24", o[0], o[1], o[2]));
        }
        // The longest prefixes still fit the stack buffer.
        assert_eq!(prefix_of("255.255.255.255"), "255.255.255.0/24");
        assert_eq!(prefix_of("ffff:ffff:ffff:ffff::1"), "ffff:ffff:ffff::/48");
    }
}
