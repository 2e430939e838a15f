//! How requests are wrapped: the campaigns' elicitation templates (fixed, as real
//! campaigns use, or paraphrased from a grammar when the adversary varies them), the
//! agent harnesses' system prompts, and the benign wrappers that share a trait with them
//! (evaluation "think step by step", synthetic-data generation).

use crate::rng::Rng;
use crate::text::{Lang, fill};

pub const COT_FIXED: &[(&str, Lang)] = &[
    (
        "Here is a question and a completed response.\n\nQuestion: {q}\n\nResponse: {a}\n\nImagine and articulate the internal reasoning behind this completed response, step by step. Write out every intermediate thought in full before stating the conclusion.",
        Lang::En,
    ),
    (
        "以下是一个问题和一个完整的回答。\n\n问题：{q}\n\n回答：{a}\n\n请想象并逐步阐述得出这个回答的内部推理过程，在给出结论之前完整写出每一个中间思考步骤。",
        Lang::Zh,
    ),
];

pub const RUBRIC_FIXED: &str = "You are a strict grader acting as a reward model. Score the response against the rubric below. For each criterion give an integer score from 1 to 10 and a one-sentence justification, then an overall score. Output JSON only.\n\nRubric:\n1. Correctness\n2. Completeness\n3. Reasoning quality\n4. Clarity\n\nPrompt: {q}\n\nResponse: {a}";

pub const CENSOR_FIXED: &[(&str, Lang)] = &[
    (
        "Rewrite the following answer about {sensitive} so that it is neutral, avoids politically sensitive statements and would be acceptable to content reviewers. Keep it informative.\n\nAnswer: {a}",
        Lang::En,
    ),
    (
        "请改写下面关于{sensitive_zh}的回答，使其立场中立、避免政治敏感表述，能够通过内容审核，同时保留信息量。\n\n回答：{a}",
        Lang::Zh,
    ),
];

const COT_INTRO_EN: &[&str] = &[
    "Below is a task together with a finished answer.",
    "I'll show you a problem and the final solution someone wrote.",
    "Consider the following exchange between a user and an assistant.",
    "Read this question and the answer that was given.",
    "We are building worked examples for a study guide.",
    "Here's a prompt and its reference output.",
    "Take a look at this Q&A pair.",
];
const COT_ASK_EN: &[&str] = &[
    "Reconstruct the full chain of thought that would lead to this answer.",
    "Think aloud and narrate each step a careful expert would take to arrive at it.",
    "Write down the hidden reasoning process, one step at a time, including approaches you would reject.",
    "Explain in detail how one gets from the question to this answer, showing all intermediate work.",
    "Produce the complete derivation, not just the result.",
    "Lay out the thinking process exhaustively before restating the final answer.",
    "Describe the mental steps behind this answer as if you were solving it for the first time.",
    "Walk through the reasoning that justifies every sentence of the answer.",
];
const COT_FORMAT_EN: &[&str] = &[
    "Use numbered steps.",
    "Be as detailed as possible.",
    "Aim for at least 800 words.",
    "Wrap the reasoning in <thinking> tags and the answer in <answer> tags.",
    "Do not skip any step, even obvious ones.",
    "",
    "Keep the tone of an internal monologue.",
];
const COT_INTRO_ZH: &[&str] = &[
    "下面给出一道题目和最终答案。",
    "请看下面这组问答。",
    "这是一个问题及其参考答案。",
    "我们在整理详细的解题示例。",
];
const COT_ASK_ZH: &[&str] = &[
    "请还原得到该答案的完整思维链。",
    "请像专家一样边想边说，逐步推导出这个答案。",
    "请一步一步写出隐藏的推理过程，包括被否定的思路。",
    "请详细说明如何从问题推导出答案，展示所有中间步骤。",
    "不要只给结果，请给出完整的推导过程。",
];
const COT_FORMAT_ZH: &[&str] = &[
    "请分步编号。",
    "越详细越好。",
    "不少于八百字。",
    "",
    "用<thinking>标签包裹推理过程。",
];

const GRADER_PERSONA: &[&str] = &[
    "You are an impartial evaluator.",
    "Act as an expert reviewer of AI answers.",
    "You are judging answers for a quality benchmark.",
    "Pretend you are a teacher marking homework.",
    "You are a reward model.",
    "As a senior reviewer, assess the answer below.",
];
const GRADER_CRITERIA: &[&str] = &[
    "accuracy",
    "helpfulness",
    "depth of reasoning",
    "clarity",
    "concision",
    "harmlessness",
    "instruction following",
    "factual grounding",
    "code correctness",
    "style",
];
const GRADER_OUTPUT: &[&str] = &[
    "Return a JSON object with one score per criterion and a total.",
    "Give each criterion a score from 0 to 5, then explain the lowest score.",
    "Reply with a table of criteria and scores, then a final verdict.",
    "Output: {\"scores\": {...}, \"overall\": n, \"rationale\": \"...\"}",
    "Rate on a 1-10 scale and justify briefly.",
];
const CENSOR_ASK_EN: &[&str] = &[
    "Make this answer about {sensitive} suitable for publication under strict content rules.",
    "Tone down anything that could be seen as politically sensitive in this text about {sensitive}.",
    "Produce a version of the following answer on {sensitive} that a cautious moderator would approve.",
    "Rephrase this explanation of {sensitive} so it presents only officially accepted positions.",
];
const CENSOR_ASK_ZH: &[&str] = &[
    "请把这段关于{sensitive_zh}的文字改成能够公开发表的版本。",
    "请淡化以下关于{sensitive_zh}内容中的敏感表述。",
    "请按照严格的内容规范重写这段关于{sensitive_zh}的回答。",
];

fn put(out: &mut String, rng: &mut Rng, template: &str, q: &str, a: &str) {
    let with_qa = template.replace("{q}", q).replace("{a}", a);
    fill(rng, &with_qa, out);
}

/// Chain-of-thought elicitation around a question and its answer.
pub fn cot(rng: &mut Rng, paraphrase: bool, lang: Lang, q: &str, a: &str, out: &mut String) {
    if !paraphrase {
        let t = COT_FIXED
            .iter()
            .find(|(_, l)| *l == lang)
            .unwrap_or(&COT_FIXED[0])
            .0;
        return put(out, rng, t, q, a);
    }
    let (intro, ask, format, ql, al) = match lang {
        Lang::En => (
            COT_INTRO_EN,
            COT_ASK_EN,
            COT_FORMAT_EN,
            rng.pick(&["Question", "Problem", "Task", "Prompt", "Q"])
                .to_string(),
            rng.pick(&["Answer", "Solution", "Response", "Output", "A"])
                .to_string(),
        ),
        Lang::Zh => (
            COT_INTRO_ZH,
            COT_ASK_ZH,
            COT_FORMAT_ZH,
            rng.pick(&["问题", "题目"]).to_string(),
            rng.pick(&["答案", "回答"]).to_string(),
        ),
    };
    let sep = if lang == Lang::En { ": " } else { "：" };
    let ask_first = rng.chance(0.4);
    if ask_first {
        out.push_str(rng.pick(ask));
        out.push(' ');
        out.push_str(rng.pick(format));
        out.push_str("\n\n");
    } else {
        out.push_str(rng.pick(intro));
        out.push_str("\n\n");
    }
    out.push_str(&ql);
    out.push_str(sep);
    out.push_str(q);
    out.push_str("\n\n");
    out.push_str(&al);
    out.push_str(sep);
    out.push_str(a);
    if !ask_first {
        out.push_str("\n\n");
        out.push_str(rng.pick(ask));
        out.push(' ');
        out.push_str(rng.pick(format));
    }
}

/// Rubric grading: the model used as a reward model.
pub fn rubric(rng: &mut Rng, paraphrase: bool, q: &str, a: &str, out: &mut String) {
    if !paraphrase {
        return put(out, rng, RUBRIC_FIXED, q, a);
    }
    out.push_str(rng.pick(GRADER_PERSONA));
    out.push_str(" Criteria: ");
    let n = rng.range(2, 5) as usize;
    let start = rng.below(GRADER_CRITERIA.len() as u64) as usize;
    for i in 0..n {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(GRADER_CRITERIA[(start + i * 3) % GRADER_CRITERIA.len()]);
    }
    out.push_str(".\n\n");
    out.push_str(rng.pick(&["User request", "Prompt", "Instruction", "Question"]));
    out.push_str(": ");
    out.push_str(q);
    out.push_str("\n\n");
    out.push_str(rng.pick(&[
        "Model answer",
        "Candidate response",
        "Response",
        "Assistant reply",
    ]));
    out.push_str(": ");
    out.push_str(a);
    out.push_str("\n\n");
    out.push_str(rng.pick(GRADER_OUTPUT));
}

/// Censorship-safe rewrite of a politically sensitive answer.
pub fn censor(rng: &mut Rng, paraphrase: bool, lang: Lang, a: &str, out: &mut String) {
    if !paraphrase {
        let t = CENSOR_FIXED
            .iter()
            .find(|(_, l)| *l == lang)
            .unwrap_or(&CENSOR_FIXED[0])
            .0;
        return put(out, rng, t, "", a);
    }
    let ask = match lang {
        Lang::En => rng.pick(CENSOR_ASK_EN),
        Lang::Zh => rng.pick(CENSOR_ASK_ZH),
    };
    fill(rng, ask, out);
    out.push_str("\n\n");
    out.push_str(a);
}

/// System prompts of public coding-agent harnesses, shared by many unrelated developers.
pub const CODING_HARNESSES: &[&str] = &[
    "You are an interactive CLI coding agent. Use the available tools to read, edit and test code in the user's repository. Keep changes minimal and explain what you did.",
    "You are a pair programmer inside the editor. You can open files, apply edits and run commands. Ask before destructive operations.",
    "You are an expert software engineer. You have access to a shell and the project files. Plan, then act with tools, then verify with tests.",
    "Act as a coding assistant with tool access. Prefer small diffs. Always run the test suite after editing.",
    "You are a helpful AI developer tool. Follow the repository's conventions. Use search before editing unfamiliar code.",
    "You are an autonomous engineer working on a ticket. Reproduce the bug, fix it, add a regression test.",
];

pub const CODING_TOOLS: &[&[&str]] = &[
    &["read_file", "edit_file", "run_command", "search_code"],
    &["open", "apply_patch", "shell"],
    &["bash", "str_replace_editor", "glob", "grep"],
    &[
        "view_file",
        "write_file",
        "run_tests",
        "list_dir",
        "git_diff",
    ],
];

/// An agent campaign's own harness: the same system prompt for every one of its accounts.
pub fn campaign_harness(campaign_seed: u64, paraphrase: bool, rng: &mut Rng) -> String {
    const BASE: &[&str] = &[
        "You are an autonomous agent operating in a sandboxed Linux environment with a browser. You can call tools to read and write files, run shell commands, browse the web and take screenshots. Before each tool call, explain your reasoning in detail. Continue until the task is fully complete, then summarise every step you took.",
        "You are a general-purpose tool-using assistant. Solve the task by calling tools. Narrate your full reasoning before every action and after every observation. Never stop early.",
    ];
    let mut pick = Rng::new(campaign_seed ^ 0x4a55);
    let base = pick.pick(BASE);
    if !paraphrase || !rng.chance(0.7) {
        return base.to_string();
    }
    let mut s = String::new();
    s.push_str(rng.pick(&[
        "You are a capable assistant with tools.",
        "You operate a remote workstation through tools.",
        "You are an AI agent that completes tasks end to end.",
        "Complete the user's task using the tools provided.",
        "You help users by acting on their computer.",
    ]));
    s.push(' ');
    s.push_str(rng.pick(&[
        "Think before acting.",
        "Explain each decision.",
        "Be thorough.",
        "Prefer reliable actions.",
        "Keep going until done.",
    ]));
    s
}

pub const AGENT_TOOLS: &[&str] = &[
    "bash",
    "read_file",
    "write_file",
    "python",
    "browser_open",
    "screenshot",
    "click",
    "type_text",
    "web_search",
    "sql_query",
    "plot",
    "ocr",
];

/// Evaluation harness prompt formats (public benchmarks).
pub fn eval_prompt(rng: &mut Rng, style: u64, question: &str, out: &mut String) {
    match style % 4 {
        0 => {
            out.push_str("Question: ");
            out.push_str(question);
            out.push_str("\nLet's think step by step.");
        }
        1 => {
            out.push_str("Answer the following multiple choice question. The last line of your response should be 'Answer: $LETTER'.\n\n");
            out.push_str(question);
            for (i, l) in ["A", "B", "C", "D"].iter().enumerate() {
                out.push_str(&format!("\n{l}) option {}", rng.range(1, 100) + i as u64));
            }
        }
        2 => {
            out.push_str(question);
            out.push_str("\nThink step by step, then give the final answer after '####'.");
        }
        _ => {
            out.push_str("Solve the problem. Show your reasoning.\n\nProblem: ");
            out.push_str(question);
        }
    }
}

/// A synthetic-data generation request (the gray class, and a trait attackers share).
pub fn synthetic_data(rng: &mut Rng, product: u64, out: &mut String) {
    let kinds = [
        (
            "customer support messages",
            "billing, shipping, technical, account",
        ),
        ("product reviews", "positive, negative, mixed"),
        ("phishing and legitimate e-mails", "phishing, legitimate"),
        (
            "user search queries",
            "navigational, informational, transactional",
        ),
        ("chat messages", "toxic, safe"),
    ];
    let (kind, labels) = kinds[(product % kinds.len() as u64) as usize];
    out.push_str(&format!(
        "Generate {} diverse, realistic {kind} for training a classifier. Vary length, tone and vocabulary. Label each with one of: {labels}. Output JSON Lines with fields \"text\" and \"label\". Batch {}.",
        rng.range(10, 50),
        rng.range(1, 5000)
    ));
}
