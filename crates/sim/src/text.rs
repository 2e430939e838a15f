//! Content generation: questions, answers, code, data and tool output composed from the
//! vocabularies in [`crate::vocab`]. Generators append to a `String` and draw every choice
//! from the caller's [`Rng`], so content is reproducible and cheap.

use crate::rng::Rng;
use crate::vocab::*;

/// Language of a prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    En,
    Zh,
}

/// Capability area a question belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topic {
    Coding,
    Math,
    General,
    Chat,
}

impl Topic {
    pub const ALL: [Topic; 4] = [Topic::Coding, Topic::Math, Topic::General, Topic::Chat];
}

fn slot<'a>(rng: &mut Rng, name: &str) -> Option<&'a str> {
    let list: &'a [&'a str] = match name {
        "thing" => CODE_THINGS,
        "lang" | "lang2" => PROG_LANGS,
        "claim" => MATH_CLAIMS,
        "claim_zh" => MATH_CLAIMS_ZH,
        "concept" => MATH_CONCEPTS,
        "concept_zh" => MATH_CONCEPTS_ZH,
        "subject" | "subject2" => SUBJECTS,
        "subject_zh" | "subject2_zh" => SUBJECTS_ZH,
        "city" => CITIES,
        "city_zh" => CITIES_ZH,
        "food" | "food2" => FOODS,
        "food_zh" | "food2_zh" => FOODS_ZH,
        "issue" => ISSUES,
        "issue_zh" => ISSUES_ZH,
        "phrase" => PHRASES,
        "human_lang" => HUMAN_LANGS,
        "goal" => GOALS,
        "goal_zh" => GOALS_ZH,
        "relation" => RELATIONS,
        "hobby" => HOBBIES,
        "job" => JOBS,
        "job_zh" => JOBS_ZH,
        "month" => MONTHS,
        "month_zh" => MONTHS_ZH,
        "topic_light" => LIGHT_TOPICS,
        "sensitive" => SENSITIVE_EN,
        "sensitive_zh" => SENSITIVE_ZH,
        _ => return None,
    };
    Some(rng.pick(list))
}

/// Fills `{slot}` placeholders of `template` into `out`. `{a}`..`{d}` are small numbers;
/// `{record}` is a customer record; unknown slots are kept as written.
pub fn fill(rng: &mut Rng, template: &str, out: &mut String) {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            out.push_str(&rest[open..]);
            return;
        };
        let name = &rest[open + 1..open + close];
        match name {
            "a" | "b" | "c" | "d" => {
                let n = rng.range(2, 40);
                out.push_str(itoa(n).as_str());
            }
            "record" => record(rng, out),
            _ => match slot(rng, name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&rest[open..=open + close]),
            },
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
}

fn itoa(n: u64) -> String {
    n.to_string()
}

/// A question of the given area, as people and public datasets ask them.
pub fn question(rng: &mut Rng, topic: Topic, lang: Lang, out: &mut String) {
    let templates = match (topic, lang) {
        (Topic::Coding, Lang::En) => CODE_TASKS_EN,
        (Topic::Coding, Lang::Zh) => CODE_TASKS_ZH,
        (Topic::Math, Lang::En) => MATH_TASKS_EN,
        (Topic::Math, Lang::Zh) => MATH_TASKS_ZH,
        (Topic::General, Lang::En) => GENERAL_TASKS_EN,
        (Topic::General, Lang::Zh) => GENERAL_TASKS_ZH,
        (Topic::Chat, Lang::En) => CHAT_TASKS_EN,
        (Topic::Chat, Lang::Zh) => CHAT_TASKS_ZH,
    };
    let t = rng.pick(templates);
    let (pre, post) = match lang {
        Lang::En => (PREFIX_EN, SUFFIX_EN),
        Lang::Zh => (PREFIX_ZH, SUFFIX_ZH),
    };
    if rng.chance(0.35) {
        out.push_str(rng.pick(pre));
    }
    fill(rng, t, out);
    if rng.chance(0.35) {
        out.push_str(rng.pick(post));
    }
}

const PREFIX_EN: &[&str] = &[
    "Quick question: ",
    "Hi! ",
    "Please help. ",
    "I'm curious: ",
    "For a project I'm doing, ",
    "Hey, ",
    "Need help — ",
    "Question from a beginner: ",
    "My teacher asked this: ",
    "Urgent: ",
];
const SUFFIX_EN: &[&str] = &[
    " Thanks!",
    " Keep it short.",
    " Be detailed.",
    " Use simple words.",
    " Give examples.",
    " Please answer in bullet points.",
    " No jargon please.",
    " Cite sources if you can.",
];
const PREFIX_ZH: &[&str] = &[
    "请问，",
    "你好！",
    "帮个忙：",
    "老师布置的题：",
    "急：",
    "我想知道，",
];
const SUFFIX_ZH: &[&str] = &[
    "谢谢！",
    "简短一点。",
    "请详细说明。",
    "请举例说明。",
    "用通俗的话讲。",
];

const STARTERS_EN: &[&str] = &[
    "First,",
    "Note that",
    "In practice,",
    "This means that",
    "As a result,",
    "Consider that",
    "Therefore,",
    "For example,",
    "On the other hand,",
    "Importantly,",
    "In short,",
    "Finally,",
];
const LINKS_EN: &[&str] = &[
    "depends on",
    "is driven by",
    "changes",
    "is limited by",
    "explains",
    "reduces",
    "increases",
    "is closely related to",
    "can be computed from",
    "follows from",
];
const STARTERS_ZH: &[&str] = &[
    "首先，",
    "需要注意的是，",
    "实际上，",
    "因此，",
    "例如，",
    "另一方面，",
    "总之，",
    "最后，",
];
const LINKS_ZH: &[&str] = &[
    "取决于",
    "导致了",
    "影响",
    "受限于",
    "解释了",
    "降低了",
    "增加了",
    "与之密切相关的是",
];

/// Prose of about `sentences` sentences, as an answer or an explanation.
pub fn prose(rng: &mut Rng, lang: Lang, sentences: usize, out: &mut String) {
    for i in 0..sentences {
        if i > 0 {
            out.push(if rng.chance(0.15) { '\n' } else { ' ' });
        }
        match lang {
            Lang::En => {
                out.push_str(rng.pick(STARTERS_EN));
                out.push_str(" the ");
                out.push_str(rng.pick(IDENT_A));
                out.push(' ');
                out.push_str(rng.pick(IDENT_B));
                out.push(' ');
                out.push_str(rng.pick(LINKS_EN));
                out.push(' ');
                out.push_str(rng.pick(SUBJECTS));
                if rng.chance(0.4) {
                    out.push_str(" and ");
                    out.push_str(rng.pick(MATH_CONCEPTS));
                }
                out.push('.');
            }
            Lang::Zh => {
                out.push_str(rng.pick(STARTERS_ZH));
                out.push_str(rng.pick(SUBJECTS_ZH));
                out.push_str(rng.pick(LINKS_ZH));
                out.push_str(rng.pick(SUBJECTS_ZH));
                out.push('。');
            }
        }
    }
}

/// Appends a number without a temporary string.
pub fn push_num(out: &mut String, n: impl std::fmt::Display) {
    use std::fmt::Write;
    let _ = write!(out, "{n}");
}

/// Appends formatted text without a temporary string.
pub fn push_fmt(out: &mut String, args: std::fmt::Arguments<'_>) {
    use std::fmt::Write;
    let _ = out.write_fmt(args);
}

fn ident(rng: &mut Rng, out: &mut String) {
    out.push_str(rng.pick(IDENT_A));
    out.push('_');
    out.push_str(rng.pick(IDENT_B));
}

/// Source code of about `lines` lines in a Python-like or brace style.
pub fn code(rng: &mut Rng, lines: usize, out: &mut String) {
    // About 30 bytes a line: one allocation instead of a dozen doublings.
    out.reserve(lines * 36);
    let braces = rng.chance(0.6);
    let mut depth = 0usize;
    for _ in 0..lines {
        let indent = if braces { "    " } else { "  " };
        for _ in 0..depth {
            out.push_str(indent);
        }
        match rng.below(9) {
            0 if depth < 3 => {
                if braces {
                    out.push_str("fn ");
                } else {
                    out.push_str("def ");
                }
                out.push_str(rng.pick(VERBS));
                out.push('_');
                out.push_str(rng.pick(IDENT_A));
                out.push('(');
                ident(rng, out);
                out.push_str(", ");
                out.push_str(rng.pick(IDENT_B));
                out.push_str(if braces { ") {" } else { "):" });
                depth += 1;
            }
            1 if depth < 3 => {
                out.push_str("if ");
                ident(rng, out);
                out.push_str(if rng.chance(0.5) { " > " } else { " == " });
                push_num(out, rng.below(100));
                out.push_str(if braces { " {" } else { ":" });
                depth += 1;
            }
            2 if depth < 3 => {
                out.push_str("for ");
                out.push_str(rng.pick(IDENT_A));
                out.push_str(" in ");
                ident(rng, out);
                out.push_str(if braces { " {" } else { ":" });
                depth += 1;
            }
            3 | 4 => {
                ident(rng, out);
                out.push_str(" = ");
                out.push_str(rng.pick(VERBS));
                out.push('(');
                out.push_str(rng.pick(IDENT_A));
                out.push_str(", ");
                push_num(out, rng.below(1000));
                out.push(')');
                if braces {
                    out.push(';');
                }
            }
            5 => {
                out.push_str(rng.pick(IDENT_A));
                out.push('.');
                out.push_str(rng.pick(VERBS));
                out.push('(');
                ident(rng, out);
                out.push(')');
                if braces {
                    out.push(';');
                }
            }
            6 => {
                out.push_str(if braces { "// " } else { "# " });
                out.push_str(rng.pick(VERBS));
                out.push_str(" the ");
                out.push_str(rng.pick(IDENT_A));
                out.push(' ');
                out.push_str(rng.pick(IDENT_B));
                out.push_str(" before ");
                out.push_str(rng.pick(VERBS));
                out.push_str("ing");
            }
            _ if depth > 0 => {
                out.push_str("return ");
                ident(rng, out);
                if braces {
                    out.push(';');
                    out.push('\n');
                    depth -= 1;
                    for _ in 0..depth {
                        out.push_str(indent);
                    }
                    out.push('}');
                } else {
                    depth -= 1;
                }
            }
            _ => {
                out.push_str(if braces { "let " } else { "" });
                ident(rng, out);
                out.push_str(" = ");
                push_num(out, rng.below(10_000));
                if braces {
                    out.push(';');
                }
            }
        }
        out.push('\n');
    }
    while braces && depth > 0 {
        depth -= 1;
        for _ in 0..depth {
            out.push_str("    ");
        }
        out.push_str("}\n");
    }
}

/// A path inside a repository.
pub fn file_path(rng: &mut Rng, out: &mut String) {
    out.push_str(rng.pick(DIRS));
    out.push('/');
    if rng.chance(0.4) {
        out.push_str(rng.pick(DIRS));
        out.push('/');
    }
    out.push_str(rng.pick(IDENT_A));
    out.push('_');
    out.push_str(rng.pick(VERBS));
    out.push('.');
    out.push_str(rng.pick(FILE_EXTS));
}

/// Output of a test run.
pub fn test_output(rng: &mut Rng, out: &mut String) {
    let n = rng.range(3, 40);
    let failed = rng.below(4);
    for i in 0..n.min(12) {
        out.push_str("test ");
        out.push_str(rng.pick(IDENT_A));
        out.push_str("::");
        out.push_str(rng.pick(VERBS));
        out.push('_');
        out.push_str(rng.pick(IDENT_B));
        out.push_str(if i < failed {
            " ... FAILED\n"
        } else {
            " ... ok\n"
        });
    }
    push_fmt(
        out,
        format_args!("\n{} passed; {} failed\n", n - failed, failed),
    );
}

/// A CSV excerpt of `rows` rows.
pub fn csv(rng: &mut Rng, rows: usize, out: &mut String) {
    let cols = rng.range(3, 7) as usize;
    let start = rng.below(CSV_COLUMNS.len() as u64) as usize;
    let names: Vec<&str> = (0..cols)
        .map(|i| CSV_COLUMNS[(start + i * 3) % CSV_COLUMNS.len()])
        .collect();
    out.push_str(&names.join(","));
    out.push('\n');
    for _ in 0..rows {
        for (j, _) in names.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            if rng.chance(0.3) {
                out.push_str(rng.pick(CITIES));
            } else {
                push_fmt(out, format_args!("{:.2}", rng.lognormal(50.0, 1.0)));
            }
        }
        out.push('\n');
    }
}

/// What a computer-use agent sees on screen.
pub fn screen(rng: &mut Rng, out: &mut String) {
    out.push_str("[screenshot ");
    push_num(out, rng.range(800, 2560));
    out.push('x');
    push_num(out, rng.range(600, 1440));
    out.push_str("] Visible: ");
    for i in 0..rng.range(2, 5) {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(rng.pick(UI_ELEMENTS));
    }
    out.push_str(". Focused: ");
    out.push_str(rng.pick(UI_ELEMENTS));
    out.push('.');
}

/// A customer record for enterprise templates.
pub fn record(rng: &mut Rng, out: &mut String) {
    match rng.below(4) {
        0 => {
            out.push_str("My ");
            out.push_str(rng.pick(RECORD_NOUNS));
            out.push_str(" #");
            push_num(out, rng.range(10_000, 999_999));
            out.push_str(" was ");
            out.push_str(rng.pick(RECORD_ADJ));
            out.push_str(" and the ");
            out.push_str(rng.pick(RECORD_NOUNS));
            out.push_str(" is still ");
            out.push_str(rng.pick(RECORD_ADJ));
            out.push_str(". Please help.");
        }
        1 => {
            out.push_str("INVOICE INV-");
            push_num(out, rng.range(1000, 99_999));
            out.push_str(" dated 2026-0");
            push_num(out, rng.range(1, 9));
            out.push('-');
            push_num(out, rng.range(10, 28));
            out.push_str(" for ");
            out.push_str(rng.pick(PERSON_NAMES));
            out.push_str(", total ");
            push_fmt(out, format_args!("{:.2}", rng.lognormal(300.0, 1.0)));
            out.push_str(if rng.chance(0.5) { " EUR" } else { " USD" });
        }
        2 => {
            out.push_str(rng.pick(PERSON_NAMES));
            out.push_str(", ");
            push_num(out, rng.range(1, 300));
            out.push(' ');
            out.push_str(rng.pick(STREETS));
            out.push_str(", ");
            out.push_str(rng.pick(CITIES));
        }
        _ => {
            out.push_str("Agent: Thanks for calling about your ");
            out.push_str(rng.pick(RECORD_NOUNS));
            out.push_str(". Customer: It arrived ");
            out.push_str(rng.pick(RECORD_ADJ));
            out.push_str(" and I want a ");
            out.push_str(rng.pick(RECORD_NOUNS));
            out.push_str(". Agent: I have logged case ");
            push_num(out, rng.range(100, 99_999));
            out.push('.');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_filled_and_varied() {
        let mut rng = Rng::new(3);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let mut s = String::new();
            let topic = Topic::ALL[rng.below(4) as usize];
            let lang = if rng.chance(0.5) { Lang::En } else { Lang::Zh };
            question(&mut rng, topic, lang, &mut s);
            assert!(!s.contains('{'), "unfilled slot in {s}");
            seen.insert(s);
        }
        assert!(
            seen.len() > 1800,
            "only {} distinct questions of 2000",
            seen.len()
        );
        let mut c = String::new();
        code(&mut rng, 40, &mut c);
        assert!(c.lines().count() >= 40);
    }
}
