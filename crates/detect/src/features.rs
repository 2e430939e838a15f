//! Per-exchange features: what one request asks for, measured from its structure rather
//! than its wording, so that the measures hold for languages and phrasings never seen.
//!
//! [`extract`] is the plain function (unit-tested on fixtures); [`ExchangeFeaturesUdf`] wraps
//! it as a DataFusion scalar UDF returning one struct per row, so the feature pass is an
//! ordinary query plan (parallel per partition, and distributable later).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float32Builder, ListArray, StringArray, StringViewArray, StructArray,
    UInt8Builder, UInt32Array, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Fields, UInt32Type};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::hash::{combine, hash_bytes, hash_str, mix};

/// Capability areas, in the order of [`Capability::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Capability {
    Writing = 0,
    Coding = 1,
    Math = 2,
    Agentic = 3,
    Vision = 4,
    Data = 5,
}

impl Capability {
    pub const ALL: [Capability; 6] = [
        Capability::Writing,
        Capability::Coding,
        Capability::Math,
        Capability::Agentic,
        Capability::Vision,
        Capability::Data,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Capability::Writing => "writing",
            Capability::Coding => "coding",
            Capability::Math => "math_reasoning",
            Capability::Agentic => "agentic",
            Capability::Vision => "vision_computer_use",
            Capability::Data => "data_analysis",
        }
    }
    pub fn from_index(i: u8) -> Capability {
        Capability::ALL[(i as usize).min(5)]
    }
}

/// Writing systems told apart in prompts; index 0 (Latin and anything unlisted) is the default.
pub const SCRIPTS: [&str; 10] = [
    "latin",
    "han",
    "kana",
    "hangul",
    "cyrillic",
    "greek",
    "arabic",
    "hebrew",
    "devanagari",
    "thai",
];

/// The script of a non-ASCII letter (index into [`SCRIPTS`]).
fn script_of(cp: u32) -> usize {
    match cp {
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0xF900..=0xFAFF => 1,
        0x3040..=0x30FF | 0x31F0..=0x31FF => 2,
        0xAC00..=0xD7AF | 0x1100..=0x11FF | 0x3130..=0x318F => 3,
        0x0400..=0x052F => 4,
        0x0370..=0x03FF => 5,
        0x0600..=0x06FF | 0x0750..=0x077F | 0x08A0..=0x08FF => 6,
        0x0590..=0x05FF => 7,
        0x0900..=0x097F => 8,
        0x0E00..=0x0E7F => 9,
        _ => 0,
    }
}

/// Elicitation flags: each marks a request shaped to harvest training signal.
pub mod flag {
    /// The response is long and much longer than the request (generation for a corpus).
    pub const LONG_OUTPUT: u8 = 1;
    /// The request embeds a finished text to reconstruct, grade or rewrite (delimited block
    /// making up most of the prompt).
    pub const EMBEDDED_TEXT: u8 = 2;
    /// An enumerated list of criteria with a numeric scale: a rubric (model as grader).
    pub const RUBRIC: u8 = 4;
    /// Hidden reasoning dominates the output (reasoning traces being paid for).
    pub const REASONING: u8 = 8;
    /// A tool-use trajectory: tools offered and tool results fed back.
    pub const TOOL_TRACE: u8 = 16;
    pub const NAMES: [(u8, &str); 5] = [
        (LONG_OUTPUT, "long-output"),
        (EMBEDDED_TEXT, "embedded-text"),
        (RUBRIC, "rubric"),
        (REASONING, "reasoning-heavy"),
        (TOOL_TRACE, "tool-trace"),
    ];
}

/// Features of one exchange.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExchangeFeatures {
    /// Characters in the prompt (the last `user` message).
    pub prompt_chars: u32,
    /// Characters sent in all: system prompt and every message.
    pub context_chars: u32,
    pub turns: u32,
    pub tool_messages: u32,
    pub tools_offered: u32,
    /// Share of the prompt's letters written in a CJK script (Han, kana, Hangul).
    pub cjk: f32,
    /// The prompt's dominant non-Latin script ([`SCRIPTS`] index) when it writes at least 30%
    /// of the letters; 0 otherwise.
    pub script: u8,
    pub capability: u8,
    /// [`flag`] bits.
    pub flags: u8,
    /// Near-duplicate key of the prompt's skeleton (two-row MinHash band over character
    /// 5-grams of its start and end, digits masked): shared by requests built from one template.
    pub template: u64,
    /// Skeleton hash of the system prompt; 0 when there is none.
    pub system: u64,
    /// Hash of user agent and JA4 together; 0 when both are absent.
    pub client: u64,
}

/// The request fields that [`extract`] reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct Request<'a> {
    pub system: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub tls_ja4: Option<&'a str>,
    pub max_tokens: Option<u32>,
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub reasoning_tokens: Option<u32>,
}

/// How many characters of each end of a prompt feed the template key: wrappers live at the
/// ends, the payload in the middle.
const EDGE: usize = 192;

/// Computes the features of one exchange. `messages` are (role, content) pairs, oldest first.
pub fn extract<'a>(
    req: &Request<'a>,
    messages: impl Iterator<Item = (&'a str, &'a str)>,
    tools: u32,
) -> ExchangeFeatures {
    let mut f = extract_content(req, messages, tools);
    f.system = system_fp(req.system);
    f.client = client_fp(req.user_agent, req.tls_ja4);
    f
}

/// The skeleton hash of a non-empty system prompt; 0 without one.
fn system_fp(system: Option<&str>) -> u64 {
    system.filter(|s| !s.is_empty()).map_or(0, skeleton_hash)
}

/// The client fingerprint: user agent and TLS fingerprint combined; 0 without either.
fn client_fp(user_agent: Option<&str>, tls_ja4: Option<&str>) -> u64 {
    match (user_agent, tls_ja4) {
        (None, None) => 0,
        (ua, ja4) => combine(hash_str(ua.unwrap_or("")), hash_str(ja4.unwrap_or(""))),
    }
}

/// [`extract`] without the system and client fingerprints (left 0), which depend on a few
/// distinct values per batch and are computed once per value by [`features_of_batch`].
fn extract_content<'a>(
    req: &Request<'a>,
    messages: impl Iterator<Item = (&'a str, &'a str)>,
    tools: u32,
) -> ExchangeFeatures {
    let mut f = ExchangeFeatures {
        tools_offered: tools,
        ..Default::default()
    };
    let mut prompt = "";
    let mut context = req.system.map_or(0, |s| s.len());
    for (role, content) in messages {
        f.turns += 1;
        context += content.len();
        match role {
            "user" => prompt = content,
            "tool" => f.tool_messages += 1,
            _ => {}
        }
    }
    f.context_chars = context.min(u32::MAX as usize) as u32;
    let shape = Shape::of(prompt);
    f.prompt_chars = shape.chars;
    f.cjk = shape.cjk_share();
    f.script = shape.dominant_script();
    f.capability = capability(&shape, &f) as u8;
    f.flags = flags(req, &shape, &f);
    f.template = template_key(prompt);
    f
}

/// Character classes of a prompt, counted in one pass.
#[derive(Debug, Default)]
struct Shape {
    letters: u32,
    cjk: u32,
    /// Letters per [`SCRIPTS`] entry.
    scripts: [u32; 10],
    digits: u32,
    code_symbols: u32,
    math_symbols: u32,
    lines: u32,
    /// Lines that start like a list item (`1.`, `-`, `*`, `(a)`, `一、`).
    enumerated: u32,
    /// Lines with two or more separators (`,` `|` tab): table rows.
    tabular: u32,
    /// Characters inside delimited blocks (fences, quotes, tags, `---` sections).
    delimited: u32,
    chars: u32,
    /// A numeric scale such as `1-10`, `1/5`, `1~5` (see [`has_scale`]).
    scale: bool,
    image: bool,
}

/// Lanes of [`CLASS`]: 16-bit counters packed in one `u128`, so counting a byte is one add.
const LETTER: usize = 0;
const DIGIT: usize = 1;
/// `,` `|` tab: separators of table rows.
const SEP: usize = 2;
const CODE: usize = 3;
const MATH: usize = 4;
/// UTF-8 continuation bytes (`10xxxxxx`): a line's characters are its bytes minus these.
const CONT: usize = 5;
/// UTF-8 lead bytes of multi-byte characters, which are decoded separately.
const LEAD: usize = 6;
/// `"`: the lines where the longest ASCII quotation may start and end.
const QUOTE: usize = 7;
const LANES: usize = 8;

const fn class_table() -> [u128; 256] {
    let mut t = [0u128; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let lane = match c {
            b'a'..=b'z' | b'A'..=b'Z' => Some(LETTER),
            b'0'..=b'9' => Some(DIGIT),
            b',' | b'|' | b'\t' => Some(SEP),
            b'{' | b'}' | b';' | b'(' | b')' | b'[' | b']' | b'_' => Some(CODE),
            b'+' | b'*' | b'^' | b'=' | b'<' | b'>' | b'\\' => Some(MATH),
            0x80..=0xBF => Some(CONT),
            0xC0..=0xFF => Some(LEAD),
            b'"' => Some(QUOTE),
            _ => None,
        };
        if let Some(lane) = lane {
            t[b] = 1u128 << (16 * lane);
        }
        b += 1;
    }
    t
}

/// One lane bit per byte value.
static CLASS: [u128; 256] = class_table();

/// The length of the line at the start of `bytes` (up to its first newline, or all of it)
/// and the bytes of each [`CLASS`] lane in that line, in one pass: 32 bytes at a time on
/// CPUs with AVX2 (detected once per process by the standard library), else byte by byte.
fn line_classes(bytes: &[u8]) -> (usize, [u32; LANES]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("popcnt")
    {
        // SAFETY: the CPU has the features the function is compiled with.
        return unsafe { avx2::line_classes(bytes) };
    }
    line_classes_bytewise(bytes)
}

/// [`line_classes`] with the [`CLASS`] table, one byte at a time.
fn line_classes_bytewise(bytes: &[u8]) -> (usize, [u32; LANES]) {
    fn add(acc: u128, out: &mut [u32; LANES]) {
        for (k, o) in out.iter_mut().enumerate() {
            *o += ((acc >> (16 * k)) & 0xFFFF) as u32;
        }
    }
    let mut out = [0u32; LANES];
    let mut done = 0;
    // A lane holds up to 65,535.
    for chunk in bytes.chunks(usize::from(u16::MAX)) {
        let mut acc = 0u128;
        for (i, &b) in chunk.iter().enumerate() {
            if b == b'\n' {
                add(acc, &mut out);
                return (done + i, out);
            }
            acc += CLASS[usize::from(b)];
        }
        add(acc, &mut out);
        done += chunk.len();
    }
    (bytes.len(), out)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{CODE, CONT, DIGIT, LANES, LEAD, LETTER, MATH, QUOTE, SEP};

    /// Bytes equal to any of the given values: all ones in their lanes.
    macro_rules! any_of {
        ($v:expr, $c:expr) => {
            _mm256_cmpeq_epi8($v, _mm256_set1_epi8($c as i8))
        };
        ($v:expr, $c:expr, $($rest:expr),+) => {
            _mm256_or_si256(any_of!($v, $c), any_of!($v, $($rest),+))
        };
    }

    /// Bytes in `lo..=hi` (unsigned): `v - lo` wraps above `hi - lo` for the others.
    macro_rules! in_range {
        ($v:expr, $lo:expr, $hi:expr) => {{
            let t = _mm256_sub_epi8($v, _mm256_set1_epi8($lo as i8));
            _mm256_cmpeq_epi8(_mm256_min_epu8(t, _mm256_set1_epi8(($hi - $lo) as i8)), t)
        }};
    }

    /// [`super::line_classes`], 32 bytes at a time: each class is a byte mask, counted with
    /// one `popcnt` up to the line's end. The tail shorter than 32 bytes goes byte by byte.
    #[target_feature(enable = "avx2,popcnt")]
    pub(super) fn line_classes(bytes: &[u8]) -> (usize, [u32; LANES]) {
        let mut out = [0u32; LANES];
        let mut i = 0;
        while i + 32 <= bytes.len() {
            // SAFETY: `i + 32 <= bytes.len()`: the 32 bytes read are in the slice.
            let v = unsafe { _mm256_loadu_si256(bytes.as_ptr().add(i).cast()) };
            let newlines = _mm256_movemask_epi8(any_of!(v, b'\n')) as u32;
            // The bytes before the first newline, if the block has one.
            let keep = if newlines == 0 {
                u32::MAX
            } else {
                (1u32 << newlines.trailing_zeros()) - 1
            };
            let lower = _mm256_or_si256(v, _mm256_set1_epi8(0x20));
            let masks = [
                (LETTER, in_range!(lower, b'a', b'z')),
                (DIGIT, in_range!(v, b'0', b'9')),
                (SEP, any_of!(v, b',', b'|', b'\t')),
                (
                    CODE,
                    any_of!(v, b'{', b'}', b';', b'(', b')', b'[', b']', b'_'),
                ),
                (MATH, any_of!(v, b'+', b'*', b'^', b'=', b'<', b'>', b'\\')),
                (CONT, in_range!(v, 0x80u8, 0xBFu8)),
                (LEAD, in_range!(v, 0xC0u8, 0xFFu8)),
                (QUOTE, any_of!(v, b'"')),
            ];
            for (lane, m) in masks {
                out[lane] += (_mm256_movemask_epi8(m) as u32 & keep).count_ones();
            }
            if newlines != 0 {
                return (i + newlines.trailing_zeros() as usize, out);
            }
            i += 32;
        }
        let (len, tail) = super::line_classes_bytewise(&bytes[i..]);
        for (o, t) in out.iter_mut().zip(tail) {
            *o += t;
        }
        (i + len, out)
    }
}

/// UTF-8 continuation bytes in `bytes`: a text's characters are its bytes minus these.
fn continuation_bytes(bytes: &[u8]) -> u32 {
    bytes.iter().filter(|&&b| b & 0xC0 == 0x80).count() as u32
}

/// A numeric scale such as `1-10`, `0/ 5`, `1~5`, `1～5`, `1–5`: a digit, a dash, slash or
/// tilde, spaces, a digit.
fn has_scale(text: &str, non_ascii: bool) -> bool {
    let b = text.as_bytes();
    let after_digit = |i: usize| i > 0 && b[i - 1].is_ascii_digit();
    let digit_follows = |mut j: usize| {
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        j < b.len() && b[j].is_ascii_digit()
    };
    if memchr::memchr3_iter(b'-', b'/', b'~', b).any(|i| after_digit(i) && digit_follows(i + 1)) {
        return true;
    }
    non_ascii
        && ["～", "–"].iter().any(|sep| {
            memchr::memmem::find_iter(b, sep.as_bytes())
                .any(|i| after_digit(i) && digit_follows(i + sep.len()))
        })
}

/// The searcher for "image", built once: `str::contains` sets up a new one for every prompt,
/// which cost more than the search itself on short prompts.
static IMAGE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new("image"));

impl Shape {
    /// Line by line, one table-driven pass over the bytes that also finds the line ends; only
    /// lines with non-ASCII characters are decoded (for their scripts).
    fn of(text: &str) -> Shape {
        let mut s = Shape::default();
        let mut in_block = false;
        let mut non_ascii = false;
        let bytes = text.as_bytes();
        // Continuation bytes before the current line; (start, length, continuation bytes
        // before it) of the first and the last line with a `"`.
        let mut cont_before = 0u32;
        let mut first_quote: Option<(usize, usize, u32)> = None;
        let mut last_quote: Option<(usize, usize, u32)> = None;
        let mut start = 0;
        while start <= bytes.len() {
            let (len, k) = line_classes(&bytes[start..]);
            let line = &text[start..start + len];
            if k[QUOTE] > 0 {
                first_quote.get_or_insert((start, len, cont_before));
                last_quote = Some((start, len, cont_before));
            }
            cont_before += k[CONT];
            start += len + 1;
            s.lines += 1;
            let t = line.trim_start();
            let fence = t.starts_with("```")
                || t.starts_with("\"\"\"")
                || t.starts_with("---")
                || t.starts_with("===")
                || t.starts_with("<<<")
                || t.starts_with(">>>")
                || is_tag_line(t);
            if fence {
                in_block = !in_block;
            }
            if starts_enumerated(t) {
                s.enumerated += 1;
            }
            s.letters += k[LETTER];
            s.digits += k[DIGIT];
            s.code_symbols += k[CODE];
            s.math_symbols += k[MATH];
            if k[LEAD] > 0 {
                non_ascii = true;
                s.add_non_ascii(line);
            }
            let n = (line.len() as u32).saturating_sub(k[CONT]);
            // The newline itself.
            s.chars += n + 1;
            if (in_block && !fence) || t.starts_with('>') {
                s.delimited += n;
            }
            if k[SEP] >= 2 {
                s.tabular += 1;
            }
        }
        s.chars = s.chars.saturating_sub(1);
        s.scale = has_scale(text, non_ascii);
        // Quoted text counts as delimited when it is long: the characters between the first
        // and the last `"` (continuation bytes counted by the line pass), or inside other
        // quotation marks in text with non-ASCII characters.
        let mut quoted = 0;
        if let (Some((fs, fl, fc)), Some((ls, ll, lc))) = (first_quote, last_quote) {
            let a = fs + memchr::memchr(b'"', &bytes[fs..fs + fl]).expect("a quote");
            let b = ls + memchr::memrchr(b'"', &bytes[ls..ls + ll]).expect("a quote");
            if b > a + 1 {
                let cont_to = |line: usize, cont: u32, pos: usize| {
                    cont + continuation_bytes(&bytes[line..pos])
                };
                quoted = (b - a - 1) as u32 - (cont_to(ls, lc, b) - cont_to(fs, fc, a + 1));
            }
        }
        if non_ascii {
            quoted = quoted.max(non_ascii_quoted_chars(text));
        }
        s.delimited = s.delimited.max(quoted);
        s.image = IMAGE.find(bytes).is_some()
            && (text.contains("data:image/") || text.contains("<image") || text.contains("[image"));
        s
    }

    /// Letters and symbols among a line's multi-byte characters.
    fn add_non_ascii(&mut self, line: &str) {
        for c in line.chars().filter(|c| !c.is_ascii()) {
            if c.is_alphabetic() {
                self.letters += 1;
                let script = script_of(c as u32);
                self.scripts[script] += 1;
                if (1..=3).contains(&script) {
                    self.cjk += 1;
                }
            }
            if matches!(c, '∑' | '∫' | '√') {
                self.math_symbols += 1;
            }
        }
    }

    fn dominant_script(&self) -> u8 {
        let (i, n) = (1..SCRIPTS.len())
            .map(|i| (i, self.scripts[i]))
            .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))
            .expect("scripts");
        if n == 0 || n * 10 < self.letters * 3 {
            return 0;
        }
        // Japanese writes its grammar in kana, however many kanji a sentence has; Chinese
        // writes none. Han text with kana in it is Japanese.
        let (han, kana) = (self.scripts[1], self.scripts[2]);
        if i == 1 && kana * 20 >= han + kana {
            2
        } else {
            i as u8
        }
    }

    fn cjk_share(&self) -> f32 {
        if self.letters == 0 {
            0.0
        } else {
            self.cjk as f32 / self.letters as f32
        }
    }

    fn density(&self, n: u32) -> f32 {
        if self.chars == 0 {
            0.0
        } else {
            n as f32 / self.chars as f32
        }
    }
}

fn is_tag_line(t: &str) -> bool {
    let t = t.trim_end();
    t.len() >= 3
        && t.len() <= 40
        && t.starts_with('<')
        && t.ends_with('>')
        && !t[1..t.len() - 1].contains(['<', '>', ' '])
}

fn starts_enumerated(t: &str) -> bool {
    let mut chars = t.chars();
    match chars.next() {
        Some('-' | '*' | '•' | '·') => chars.next() == Some(' '),
        // Up to three more digits, then the mark.
        Some(c) if c.is_ascii_digit() => chars
            .take(3)
            .find(|c| !c.is_ascii_digit())
            .is_some_and(|c| matches!(c, '.' | ')' | '、' | ':')),
        Some('(') => t.chars().nth(2) == Some(')'),
        Some(c) if ('一'..='十').contains(&c) => t.chars().nth(1) == Some('、'),
        _ => false,
    }
}

/// Characters inside the longest pair of matching non-ASCII quotation marks (“ ”, 「 」, « »):
/// from the first opening mark to the last closing one.
fn non_ascii_quoted_chars(text: &str) -> u32 {
    let mut best = 0u32;
    for (open, close) in [('“', '”'), ('「', '」'), ('«', '»')] {
        if let (Some(a), Some(b)) = (text.find(open), text.rfind(close))
            && b > a + open.len_utf8()
        {
            best = best.max(text[a + open.len_utf8()..b].chars().count() as u32);
        }
    }
    best
}

fn capability(s: &Shape, f: &ExchangeFeatures) -> Capability {
    if s.image {
        return Capability::Vision;
    }
    if f.tools_offered > 0 || f.tool_messages > 0 {
        return Capability::Agentic;
    }
    if s.density(s.code_symbols) > 0.025 || s.density(s.code_symbols) > 0.012 && s.lines > 4 {
        return Capability::Coding;
    }
    if s.lines >= 3 && s.tabular * 2 >= s.lines.min(20) && s.tabular >= 3 {
        return Capability::Data;
    }
    if s.density(s.digits + s.math_symbols) > 0.06 {
        return Capability::Math;
    }
    Capability::Writing
}

fn flags(req: &Request, s: &Shape, f: &ExchangeFeatures) -> u8 {
    let mut bits = 0;
    let (inp, out) = (req.input_tokens.max(1), req.output_tokens);
    if out >= 600 && out >= 2 * inp {
        bits |= flag::LONG_OUTPUT;
    }
    if s.chars >= 200 && s.delimited * 5 >= s.chars * 2 {
        bits |= flag::EMBEDDED_TEXT;
    }
    if s.enumerated >= 3 && s.scale {
        bits |= flag::RUBRIC;
    }
    if let Some(r) = req.reasoning_tokens
        && r >= 256
        && r * 2 >= out
    {
        bits |= flag::REASONING;
    }
    if f.tools_offered > 0 && f.tool_messages > 0 {
        bits |= flag::TOOL_TRACE;
    }
    bits
}

/// The skeleton of one byte: ASCII lowercased, digits `0`, whitespace one space, other bytes
/// (UTF-8 of other scripts) unchanged. Only `0` and space fold runs of themselves into one.
const SKELETON: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if c.is_ascii_digit() {
            b'0'
        } else if c.is_ascii_whitespace() {
            b' '
        } else {
            c.to_ascii_lowercase()
        };
        b += 1;
    }
    t
};

#[inline]
fn folds(out: u8) -> bool {
    out == b'0' || out == b' '
}

/// Calls `emit` with the skeleton of a text, byte by byte: ASCII lowercased, every digit run
/// folded to `0`, every whitespace run to one space, other bytes (UTF-8 of other scripts)
/// unchanged — what stays the same across requests filled from one template. Stops when
/// `emit` returns false.
#[inline]
fn skeleton_bytes(text: &[u8], mut emit: impl FnMut(u8) -> bool) {
    let mut last = 0u8;
    for &b in text {
        let out = SKELETON[b as usize];
        if (out != last || !folds(out)) && !emit(out) {
            return;
        }
        last = out;
    }
}

/// The last `out.len()` bytes of the skeleton of `text` (fewer if it is shorter), found from
/// the end: a run folds to the same byte whichever way it is read. They fill the end of
/// `out`; returns how many there are.
fn skeleton_tail(text: &[u8], out: &mut [u8]) -> usize {
    let mut n = 0;
    let mut last = 0u8;
    for &b in text.iter().rev() {
        if n == out.len() {
            break;
        }
        let o = SKELETON[b as usize];
        if o != last || !folds(o) {
            n += 1;
            out[out.len() - n] = o;
        }
        last = o;
    }
    n
}

/// Hash of a text's skeleton, streamed (no copy).
pub fn skeleton_hash(text: &str) -> u64 {
    let (mut h, mut word, mut k, mut len) = (0x5EED_u64, 0u64, 0u32, 0u64);
    skeleton_bytes(text.as_bytes(), |b| {
        word |= u64::from(b) << (8 * k);
        k += 1;
        len += 1;
        if k == 8 {
            h = mix(h ^ word).wrapping_add(0x9E37_79B9_7F4A_7C15);
            word = 0;
            k = 0;
        }
        true
    });
    mix(h ^ word ^ len.rotate_left(56))
}

/// Two minima over the 5-byte shingles of the skeleton's two ends, combined: two requests share
/// the key with probability ≈ J² of their shingle sets (one LSH band of two rows). The second
/// permutation is the first multiplied by an odd constant (a bijection), which is cheap.
pub fn template_key(prompt: &str) -> u64 {
    if prompt.is_empty() {
        return 0;
    }
    let bytes = prompt.as_bytes();
    let head = &bytes[..bytes.len().min(EDGE * 2)];
    let tail = &bytes[bytes
        .len()
        .saturating_sub(EDGE * 2)
        .max(head.len().min(bytes.len()))..];
    let (mut m1, mut m2) = (u64::MAX, u64::MAX);
    let (mut window, mut seen) = (0u64, 0usize);
    let mut shingle = |b: u8| {
        window = ((window << 8) | u64::from(b)) & 0xFF_FFFF_FFFF;
        seen += 1;
        if seen >= 5 {
            let h = mix(window);
            m1 = m1.min(h);
            m2 = m2.min(h.wrapping_mul(0xA24B_AED4_963E_E407));
        }
    };
    // The head's skeleton, first EDGE bytes of it.
    let mut n = 0;
    skeleton_bytes(head, |b| {
        shingle(b);
        n += 1;
        n < EDGE
    });
    shingle(0);
    // The tail's skeleton, last EDGE bytes of it.
    let mut tail_sk = [0u8; EDGE];
    let len = skeleton_tail(tail, &mut tail_sk);
    for &b in &tail_sk[EDGE - len..] {
        shingle(b);
    }
    if seen < 5 {
        return hash_bytes(2, bytes) | 1;
    }
    combine(m1, m2) | 1
}

/// The struct fields of the UDF's result, in order. Column names of the exchange feature table.
pub const FIELDS: [(&str, DataType); 12] = [
    ("prompt_chars", DataType::UInt32),
    ("context_chars", DataType::UInt32),
    ("turns", DataType::UInt32),
    ("tool_messages", DataType::UInt32),
    ("tools_offered", DataType::UInt32),
    ("cjk", DataType::Float32),
    ("script", DataType::UInt8),
    ("capability", DataType::UInt8),
    ("flags", DataType::UInt8),
    ("template", DataType::UInt64),
    ("system_fp", DataType::UInt64),
    ("client_fp", DataType::UInt64),
];

pub fn struct_fields() -> Fields {
    FIELDS
        .iter()
        .map(|(n, t)| Field::new(*n, t.clone(), false))
        .collect()
}

/// `dg_exchange_features(system, messages, tools, user_agent, tls_ja4, max_tokens,
/// input_tokens, output_tokens, reasoning_tokens)` → struct of [`FIELDS`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ExchangeFeaturesUdf {
    signature: Signature,
}

impl Default for ExchangeFeaturesUdf {
    fn default() -> Self {
        Self {
            signature: Signature::any(9, Volatility::Immutable),
        }
    }
}

pub const UDF_NAME: &str = "dg_exchange_features";

impl ScalarUDFImpl for ExchangeFeaturesUdf {
    fn name(&self) -> &str {
        UDF_NAME
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(struct_fields()))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let out = features_of_batch(&arrays, n)?;
        Ok(ColumnarValue::Array(out))
    }
}

fn utf8(a: &ArrayRef, what: &str) -> Result<StringArray> {
    match a.data_type() {
        DataType::Utf8 => Ok(a.as_string::<i32>().clone()),
        DataType::Null => Ok(StringArray::new_null(a.len())),
        _ => {
            let c = arrow::compute::cast(a, &DataType::Utf8)
                .map_err(|e| datafusion::error::DataFusionError::ArrowError(Box::new(e), None))?;
            if c.data_type() != &DataType::Utf8 {
                return exec_err!("{what}: expected text");
            }
            Ok(c.as_string::<i32>().clone())
        }
    }
}

/// A text column read in place: string views (the contract's message content) are not
/// converted; other string types are cast to `Utf8`.
pub(crate) enum Texts {
    Utf8(StringArray),
    View(StringViewArray),
}

impl Texts {
    pub(crate) fn of(a: &ArrayRef, what: &str) -> Result<Texts> {
        Ok(match a.data_type() {
            DataType::Utf8View => Texts::View(a.as_string_view().clone()),
            _ => Texts::Utf8(utf8(a, what)?),
        })
    }

    pub(crate) fn is_null(&self, i: usize) -> bool {
        match self {
            Texts::Utf8(a) => a.is_null(i),
            Texts::View(a) => a.is_null(i),
        }
    }

    /// The value of row `i` (meaningless when [`Texts::is_null`]).
    pub(crate) fn value(&self, i: usize) -> &str {
        match self {
            Texts::Utf8(a) => a.value(i),
            Texts::View(a) => a.value(i),
        }
    }
}

fn u32s(a: &ArrayRef) -> Result<UInt32Array> {
    let c = arrow::compute::cast(a, &DataType::UInt32)
        .map_err(|e| datafusion::error::DataFusionError::ArrowError(Box::new(e), None))?;
    Ok(c.as_primitive::<UInt32Type>().clone())
}

pub(crate) fn features_of_batch(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    if a.len() != 9 {
        return exec_err!("{UDF_NAME} takes 9 arguments, got {}", a.len());
    }
    let system = utf8(&a[0], "system")?;
    let Some(messages) = a[1].as_list_opt::<i32>() else {
        return exec_err!("{UDF_NAME}: messages must be list<struct<role, content>>");
    };
    let tools: Option<&ListArray> = a[2].as_list_opt::<i32>();
    let ua = utf8(&a[3], "user_agent")?;
    let ja4 = utf8(&a[4], "tls_ja4")?;
    let max_tokens = u32s(&a[5])?;
    let input = u32s(&a[6])?;
    let output = u32s(&a[7])?;
    let reasoning = u32s(&a[8])?;
    let values = messages.values().as_struct_opt();
    let (roles, contents) = match values {
        Some(s) if s.num_columns() >= 2 => {
            let r = s.column_by_name("role").unwrap_or(s.column(0));
            let c = s.column_by_name("content").unwrap_or(s.column(1));
            (utf8(r, "role")?, Texts::of(c, "content")?)
        }
        _ => return exec_err!("{UDF_NAME}: messages must be list<struct<role, content>>"),
    };
    let mut b = Builders::new(n);
    // A batch holds a few dozen distinct system prompts and clients among thousands of rows:
    // each is fingerprinted once (a fast hash and a comparison instead of a skeleton pass).
    let mut systems: HashMap<Option<&str>, u64, foldhash::fast::RandomState> = HashMap::default();
    let mut clients: HashMap<(Option<&str>, Option<&str>), u64, foldhash::fast::RandomState> =
        HashMap::default();
    let offsets = messages.value_offsets();
    for i in 0..n {
        fn opt(arr: &StringArray, i: usize) -> Option<&str> {
            (!arr.is_null(i)).then(|| arr.value(i))
        }
        let num = |arr: &UInt32Array| (!arr.is_null(i)).then(|| arr.value(i));
        let req = Request {
            system: opt(&system, i),
            user_agent: opt(&ua, i),
            tls_ja4: opt(&ja4, i),
            max_tokens: num(&max_tokens),
            input_tokens: num(&input).unwrap_or(0),
            output_tokens: num(&output).unwrap_or(0),
            reasoning_tokens: num(&reasoning),
        };
        let (lo, hi) = if messages.is_null(i) {
            (0, 0)
        } else {
            (offsets[i] as usize, offsets[i + 1] as usize)
        };
        let msgs = (lo..hi).map(|j| {
            let role = if roles.is_null(j) { "" } else { roles.value(j) };
            let content = if contents.is_null(j) {
                ""
            } else {
                contents.value(j)
            };
            (role, content)
        });
        let n_tools = tools
            .filter(|t| !t.is_null(i))
            .map_or(0, |t| t.value_length(i) as u32);
        let mut f = extract_content(&req, msgs, n_tools);
        f.system = *systems
            .entry(req.system)
            .or_insert_with(|| system_fp(req.system));
        f.client = *clients
            .entry((req.user_agent, req.tls_ja4))
            .or_insert_with(|| client_fp(req.user_agent, req.tls_ja4));
        b.push(&f);
    }
    Ok(Arc::new(b.finish()))
}

struct Builders {
    u32s: [UInt32Builder; 5],
    cjk: Float32Builder,
    u8s: [UInt8Builder; 3],
    u64s: [UInt64Builder; 3],
}

impl Builders {
    fn new(n: usize) -> Self {
        Builders {
            u32s: std::array::from_fn(|_| UInt32Builder::with_capacity(n)),
            cjk: Float32Builder::with_capacity(n),
            u8s: std::array::from_fn(|_| UInt8Builder::with_capacity(n)),
            u64s: std::array::from_fn(|_| UInt64Builder::with_capacity(n)),
        }
    }
    fn push(&mut self, f: &ExchangeFeatures) {
        for (b, v) in self.u32s.iter_mut().zip([
            f.prompt_chars,
            f.context_chars,
            f.turns,
            f.tool_messages,
            f.tools_offered,
        ]) {
            b.append_value(v);
        }
        self.cjk.append_value(f.cjk);
        self.u8s[0].append_value(f.script);
        self.u8s[1].append_value(f.capability);
        self.u8s[2].append_value(f.flags);
        for (b, v) in self.u64s.iter_mut().zip([f.template, f.system, f.client]) {
            b.append_value(v);
        }
    }
    fn finish(mut self) -> StructArray {
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(FIELDS.len());
        for b in &mut self.u32s {
            cols.push(Arc::new(b.finish()));
        }
        cols.push(Arc::new(self.cjk.finish()));
        for b in &mut self.u8s {
            cols.push(Arc::new(b.finish()));
        }
        for b in &mut self.u64s {
            cols.push(Arc::new(b.finish()));
        }
        StructArray::new(struct_fields(), cols, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feat(prompt: &str, tools: u32, out: u32) -> ExchangeFeatures {
        let req = Request {
            input_tokens: 100,
            output_tokens: out,
            ..Default::default()
        };
        extract(&req, [("user", prompt)].into_iter(), tools)
    }

    #[test]
    fn shape_counts_classes_per_line_and_finds_scales() {
        let s = Shape::of("Rate 1-10:\n- a, b, c\n「引用」 ok");
        assert_eq!(s.lines, 3);
        assert_eq!(s.chars, 28, "characters, newlines included");
        assert_eq!(s.letters, 11, "ASCII letters and Han characters");
        assert_eq!((s.cjk, s.scripts[1]), (2, 2));
        assert_eq!(s.digits, 3);
        assert_eq!(s.enumerated, 1);
        assert_eq!(s.tabular, 1, "one line with two separators");
        assert_eq!(s.delimited, 2, "the quoted 引用");
        assert!(s.scale);
        for (text, scale) in [
            ("1/ 5", true),
            ("1 / 5", false),
            ("1～5", true),
            ("from 1 -5", false),
            ("1-\n5", false),
            ("é-5", false),
            ("v2-beta", false),
        ] {
            assert_eq!(Shape::of(text).scale, scale, "{text:?}");
        }
        // Lanes are 16 bits wide: a line longer than that still counts every byte.
        let long = "a1,".repeat(30_000);
        let s = Shape::of(&long);
        assert_eq!((s.letters, s.digits, s.chars), (30_000, 30_000, 90_000));
        assert_eq!(s.tabular, 1);
        // Empty lines count, the last one included.
        assert_eq!((Shape::of("").lines, Shape::of("a\n").lines), (1, 2));
        assert_eq!(Shape::of("a\n\nb").lines, 3);
    }

    #[test]
    fn images_are_attachments_not_the_word() {
        for (text, image) in [
            ("describe [image: chart.png] briefly", true),
            ("<image>\nwhat is shown?", true),
            ("data:image/png;base64,iVBORw0KGgo=", true),
            ("draw an image of a cat", false),
            ("[IMAGE: caps are not an attachment marker]", false),
            ("images [ image", false),
            ("", false),
        ] {
            assert_eq!(Shape::of(text).image, image, "{text:?}");
        }
    }

    #[test]
    fn vectorised_line_classes_match_the_bytewise_ones() {
        // Random bytes (every value, newlines frequent or rare), at every length around the
        // 32-byte blocks, and lines longer than a 16-bit lane.
        let mut state = 0x1234_5678_9abc_def0_u64;
        let mut next = move || {
            state = mix(state);
            state
        };
        let mut texts: Vec<Vec<u8>> = Vec::new();
        for len in (0..200).chain([1000, 4096, 70_000]) {
            for newline_every in [3, 40, 0] {
                let text = (0..len)
                    .map(|_| {
                        let r = next();
                        if newline_every > 0 && r % newline_every == 0 {
                            b'\n'
                        } else {
                            (r >> 8) as u8
                        }
                    })
                    .collect();
                texts.push(text);
            }
        }
        texts.push(
            b"Rate 1-10: {x}; \"q\" a,b|c\t[1]_ +*^=<>\\ \xc3\xa9\xe5\xbc\x95 end\nnext".to_vec(),
        );
        for text in &texts {
            let mut start = 0;
            while start <= text.len() {
                let want = line_classes_bytewise(&text[start..]);
                assert_eq!(line_classes(&text[start..]), want, "{:?}", &text[start..]);
                start += want.0 + 1;
            }
        }
    }

    #[test]
    fn the_batch_udf_agrees_with_extract_row_by_row() {
        // Repeated and distinct system prompts and clients (fingerprinted once per distinct
        // value in a batch), empty and missing ones, several turns.
        use arrow::array::{StructArray, UInt32Array, new_null_array};
        use arrow::buffer::OffsetBuffer;
        let grader = "You are a strict grader. Score the answer 1-10 and explain.";
        let systems = [
            Some(grader),
            None,
            Some(""),
            Some(grader),
            Some("Другой ассистент 42"),
        ];
        let uas = [
            Some("openai-python/1.40"),
            None,
            Some("curl/8"),
            Some("openai-python/1.40"),
            None,
        ];
        let ja4s = [
            Some("t13d1516h2_8daaf6152771"),
            None,
            None,
            Some("t13d1516h2_8daaf6152771"),
            Some("x"),
        ];
        let turns: [&[(&str, &str)]; 5] = [
            &[("user", "Rate this essay 1-10:\n\"Cats are great.\"")],
            &[
                ("user", "hi"),
                ("assistant", "hello"),
                ("user", "写一首关于秋天的诗"),
            ],
            &[("user", "fn main() { let x = 1; }\nwhy?"), ("tool", "ok")],
            &[("user", "Rate this essay 1-10:\n\"Dogs are loyal.\"")],
            &[],
        ];
        let n = systems.len();
        let (mut roles, mut contents, mut offsets) = (vec![], vec![], vec![0i32]);
        for t in &turns {
            for (r, c) in t.iter() {
                roles.push(*r);
                contents.push(*c);
            }
            offsets.push(roles.len() as i32);
        }
        let items = StructArray::new(
            Fields::from(vec![
                Field::new("role", DataType::Utf8, false),
                Field::new("content", DataType::Utf8, false),
            ]),
            vec![
                Arc::new(StringArray::from(roles)),
                Arc::new(StringArray::from(contents)),
            ],
            None,
        );
        let item = Arc::new(Field::new("item", items.data_type().clone(), true));
        let messages = ListArray::new(
            item,
            OffsetBuffer::new(offsets.into()),
            Arc::new(items),
            None,
        );
        let tokens = || -> ArrayRef { Arc::new(UInt32Array::from(vec![Some(7); n])) };
        let args: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(systems.to_vec())),
            Arc::new(messages),
            new_null_array(&DataType::Null, n),
            Arc::new(StringArray::from(uas.to_vec())),
            Arc::new(StringArray::from(ja4s.to_vec())),
            tokens(),
            tokens(),
            tokens(),
            tokens(),
        ];
        let out = features_of_batch(&args, n).unwrap();
        let out = out.as_struct();
        let u64s = |name: &str| {
            out.column_by_name(name)
                .unwrap()
                .as_primitive::<arrow::datatypes::UInt64Type>()
                .clone()
        };
        let (template, system, client) = (u64s("template"), u64s("system_fp"), u64s("client_fp"));
        for i in 0..n {
            let req = Request {
                system: systems[i],
                user_agent: uas[i],
                tls_ja4: ja4s[i],
                max_tokens: Some(7),
                input_tokens: 7,
                output_tokens: 7,
                reasoning_tokens: Some(7),
            };
            let want = extract(&req, turns[i].iter().copied(), 0);
            assert_eq!(
                (template.value(i), system.value(i), client.value(i)),
                (want.template, want.system, want.client),
                "row {i}"
            );
        }
        assert_eq!(
            system.value(0),
            system.value(3),
            "one system prompt, one fingerprint"
        );
        assert_eq!((system.value(1), system.value(2)), (0, 0));
        assert_ne!(system.value(0), system.value(4));
    }

    #[test]
    fn quotations_are_counted_in_characters_across_lines() {
        // From the first `"` to the last, over lines, multi-byte characters counted once.
        let inner = "héllo wörld, ünïcode\nsécond line \"nested\" ok é";
        let text = format!("Ünïcode here. \"{inner}\" done é");
        let want = inner.chars().count() as u32;
        assert_eq!(Shape::of(&text).delimited, want);
        // One quote, or two adjacent ones, quote nothing.
        assert_eq!(Shape::of("say \" once").delimited, 0);
        assert_eq!(Shape::of("empty \"\" here").delimited, 0);
        // Other quotation marks still count, the longest pair wins.
        assert_eq!(Shape::of("a \"bc\" «défghij»").delimited, 7);
        assert_eq!(Shape::of("a \"bcdefghij\" «dé»").delimited, 9);
    }

    #[test]
    fn language_share_any_cjk_script() {
        assert!(feat("请解释这个问题的原因", 0, 10).cjk > 0.9);
        assert!(feat("この問題を説明してください", 0, 10).cjk > 0.9);
        assert!(feat("이 문제를 설명해 주세요", 0, 10).cjk > 0.8);
        assert_eq!(feat("Explain why the sky is blue", 0, 10).cjk, 0.0);
        let script = |t: &str| SCRIPTS[feat(t, 0, 10).script as usize];
        assert_eq!(script("Объясните, почему небо голубое"), "cyrillic");
        assert_eq!(script("اشرح لماذا السماء زرقاء"), "arabic");
        assert_eq!(script("Εξήγησε γιατί ο ουρανός είναι μπλε"), "greek");
        assert_eq!(script("请解释这个问题的原因"), "han");
        // Japanese: kana, even where kanji outnumber it; Chinese has none.
        assert_eq!(script("この問題を説明してください"), "kana");
        assert_eq!(script("機械学習の最適化問題について説明せよ"), "kana");
        assert_eq!(script("请详细说明机器学习中的最优化问题"), "han");
        // A few foreign words in an English prompt do not change its script.
        assert_eq!(
            script("Translate 'спасибо' into English, please, and explain it"),
            "latin"
        );
    }

    #[test]
    fn capability_from_structure() {
        let code = "fn main() {\n    let x = vec![1, 2];\n    println!(\"{:?}\", x);\n}\nwhy does this fail?";
        assert_eq!(feat(code, 0, 10).capability, Capability::Coding as u8);
        assert_eq!(
            feat("Solve 3x^2 + 5x = 12 and 4y + 7 = 3*2", 0, 10).capability,
            Capability::Math as u8
        );
        assert_eq!(
            feat("book a flight", 3, 10).capability,
            Capability::Agentic as u8
        );
        let table = "summarise:\nname,age,city\nann,31,oslo\nbo,25,rome\ncy,40,lima";
        assert_eq!(feat(table, 0, 10).capability, Capability::Data as u8);
        assert_eq!(
            feat("write a poem about the sea", 0, 10).capability,
            Capability::Writing as u8
        );
    }

    #[test]
    fn elicitation_flags_are_structural() {
        // Long output for a short request.
        assert_ne!(
            feat("tell me a story", 0, 3000).flags & flag::LONG_OUTPUT,
            0
        );
        assert_eq!(feat("tell me a story", 0, 150).flags & flag::LONG_OUTPUT, 0);
        // A rubric in any wording: enumerated criteria and a numeric scale.
        let rubric = "Beoordeel het antwoord.\n1. juistheid\n2. volledigheid\n3. stijl\nScore 1-10 per punt.";
        assert_ne!(feat(rubric, 0, 10).flags & flag::RUBRIC, 0);
        let zh = "请评分：\n1、准确性\n2、完整性\n3、清晰度\n每项0～5分。";
        assert_ne!(feat(zh, 0, 10).flags & flag::RUBRIC, 0);
        assert_eq!(
            feat("list:\n1. eggs\n2. milk\n3. tea", 0, 10).flags & flag::RUBRIC,
            0
        );
        // A finished text embedded between delimiters.
        let body = "word ".repeat(80);
        let embedded = format!("Do this with the text below.\n---\n{body}\n---\n");
        assert_ne!(feat(&embedded, 0, 10).flags & flag::EMBEDDED_TEXT, 0);
        assert_eq!(feat(&body, 0, 10).flags & flag::EMBEDDED_TEXT, 0);
    }

    /// The template key as first written (the whole skeleton of both ends, then the first
    /// and the last EDGE bytes of it): the key is persisted, so a faster way to compute it
    /// must give the same value.
    fn template_key_reference(prompt: &str) -> u64 {
        fn skeleton(text: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            let mut last = 0u8;
            for &b in text {
                let o = if b.is_ascii_digit() {
                    b'0'
                } else if b.is_ascii_whitespace() {
                    b' '
                } else {
                    last = 0;
                    out.push(b.to_ascii_lowercase());
                    continue;
                };
                if o != last {
                    out.push(o);
                }
                last = o;
            }
            out
        }
        if prompt.is_empty() {
            return 0;
        }
        let bytes = prompt.as_bytes();
        let head = &bytes[..bytes.len().min(EDGE * 2)];
        let tail = &bytes[bytes.len().saturating_sub(EDGE * 2).max(head.len())..];
        let head = skeleton(head);
        let tail = skeleton(tail);
        let mut stream: Vec<u8> = head[..head.len().min(EDGE)].to_vec();
        stream.push(0);
        stream.extend_from_slice(&tail[tail.len().saturating_sub(EDGE)..]);
        if stream.len() < 5 {
            return crate::hash::hash_bytes(2, bytes) | 1;
        }
        let (mut m1, mut m2) = (u64::MAX, u64::MAX);
        for w in stream.windows(5) {
            let v = w.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b));
            let h = mix(v);
            m1 = m1.min(h);
            m2 = m2.min(h.wrapping_mul(0xA24B_AED4_963E_E407));
        }
        crate::hash::combine(m1, m2) | 1
    }

    #[test]
    fn template_key_matches_its_reference() {
        let alphabet = [
            "a", "B", "7", "42", " ", "  ", "\t", "\n", "é", "数", "—", "{", "\"", "0",
        ];
        let mut x = 0x2545_F491_4F6C_DD1D_u64;
        for len in (0..120).chain([200, 383, 384, 385, 500, 767, 768, 769, 1000, 3000]) {
            for _ in 0..20 {
                let mut p = String::new();
                while p.len() < len {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    p.push_str(alphabet[(x % alphabet.len() as u64) as usize]);
                }
                assert_eq!(template_key(&p), template_key_reference(&p), "{p:?}");
            }
        }
    }

    #[test]
    fn enumerated_lines() {
        for yes in [
            "1. a", "12) b", "3、c", "100: d", "- item", "* item", "• x", "(a) y", "三、z",
        ] {
            assert!(starts_enumerated(yes), "{yes}");
        }
        for no in [
            "1000. a", "1a. b", "12", "-item", "2024 was", "(ab) c", "", "x. y",
        ] {
            assert!(!starts_enumerated(no), "{no}");
        }
    }

    #[test]
    fn template_key_survives_filled_slots_not_new_wrappers() {
        let a = template_key(
            "Ticket 1234: classify the sentiment of the review below as positive or negative. Review: the soup was cold",
        );
        let b = template_key(
            "Ticket 98: classify the sentiment of the review below as positive or negative. Review: the soup was cold",
        );
        assert_eq!(a, b, "digits are masked");
        let c = template_key("Write a haiku about autumn leaves falling in a quiet garden at dusk");
        assert_ne!(a, c);
        assert_eq!(template_key(""), 0);
        // Multi-byte text at the cut points must not panic.
        let long = "数据".repeat(500);
        assert_ne!(template_key(&long), 0);
    }

    #[test]
    fn client_and_system_fingerprints() {
        let req = Request {
            system: Some("You are agent 7."),
            user_agent: Some("sdk/1.0"),
            ..Default::default()
        };
        let f = extract(&req, std::iter::empty(), 0);
        assert_ne!(f.client, 0);
        let req2 = Request {
            system: Some("You are agent 12."),
            ..req
        };
        assert_eq!(f.system, extract(&req2, std::iter::empty(), 0).system);
        assert_eq!(
            extract(&Request::default(), std::iter::empty(), 0).client,
            0
        );
    }
}

/// A redacted view of the start of a prompt for reports: the first `max` characters with
/// every word cut to its first letter followed by dots, every digit turned into `0`, and CJK
/// characters shown as `□`, so structure (lines, punctuation, lists) stays visible and
/// content does not.
pub fn redact(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(max * 2);
    let mut in_word = false;
    for c in text.chars().take(max) {
        if c.is_ascii_digit() {
            out.push('0');
            in_word = false;
        } else if c.is_alphabetic() {
            let cp = c as u32;
            if (0x2E80..=0x9FFF).contains(&cp) || (0xAC00..=0xD7AF).contains(&cp) {
                out.push('□');
                in_word = false;
            } else if in_word {
                if !out.ends_with('·') {
                    out.push('·');
                }
            } else {
                out.push(c);
                in_word = true;
            }
        } else {
            out.push(c);
            in_word = false;
        }
    }
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// `dg_prompt_snippet(request_id, messages)` → the redacted start of the last user message,
/// for the requests whose id hashes into the lowest 1/[`SNIPPET_SAMPLE`] of the hash range
/// (null for the others). Example requests are chosen by smallest id hash, so every example a
/// report shows has its snippet, at a fraction of the cost of one per request.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PromptSnippetUdf {
    signature: Signature,
}

impl Default for PromptSnippetUdf {
    fn default() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

/// One request in this many keeps a snippet.
pub const SNIPPET_SAMPLE: u64 = 64;

/// Characters of the prompt kept (redacted) in `exchange_features.snippet`.
pub const SNIPPET_CHARS: usize = 160;

impl ScalarUDFImpl for PromptSnippetUdf {
    fn name(&self) -> &str {
        "dg_prompt_snippet"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut b =
            arrow::array::StringBuilder::with_capacity(args.number_rows, args.number_rows * 64);
        let ids = utf8(&arrays[0], "request_id")?;
        let mut i = 0;
        for_each_last_user(&arrays[1], |p| {
            let sampled = !ids.is_null(i) && hash_str(ids.value(i)) < u64::MAX / SNIPPET_SAMPLE;
            i += 1;
            match p {
                Some(p) if sampled => b.append_value(redact(p, SNIPPET_CHARS)),
                _ => b.append_null(),
            }
        })?;
        Ok(ColumnarValue::Array(Arc::new(b.finish())))
    }
}

/// Calls `f` with the last `user` message of every row of a messages column, in one pass
/// over the batch (no per-row slicing or copying).
pub fn for_each_last_user(messages: &ArrayRef, mut f: impl FnMut(Option<&str>)) -> Result<()> {
    let Some(list) = messages.as_list_opt::<i32>() else {
        return exec_err!("messages must be list<struct<role, content>>");
    };
    let Some(s) = list.values().as_struct_opt() else {
        return exec_err!("messages must be list<struct<role, content>>");
    };
    let roles = utf8(s.column_by_name("role").unwrap_or(s.column(0)), "role")?;
    let contents = Texts::of(
        s.column_by_name("content").unwrap_or(s.column(1)),
        "content",
    )?;
    let offsets = list.value_offsets();
    for i in 0..list.len() {
        if list.is_null(i) {
            f(None);
            continue;
        }
        let j = (offsets[i] as usize..offsets[i + 1] as usize)
            .rev()
            .find(|&j| !roles.is_null(j) && roles.value(j) == "user");
        f(j.map(|j| contents.value(j)));
    }
    Ok(())
}

#[cfg(test)]
mod redact_tests {
    use super::redact;

    #[test]
    fn redaction_keeps_shape_not_content() {
        assert_eq!(redact("Rate answer 42 (1-10):", 100), "R· a· 00 (0-00):");
        assert_eq!(redact("请评分", 100), "□□□");
        assert_eq!(redact("abc def", 3), "a·…");
    }
}
