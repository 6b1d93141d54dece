//! The judge's side of a request: judge prompts filled from templates, and replies parsed
//! strictly into answers and token counts.

use serde_json::Value;

use crate::annotate::JudgeMode;
use crate::annotate::http::excerpt;
use crate::annotate::judge_cache::Judgment;

/// Parses a score-mode reply: an integer from 1 to 10, alone (surrounding whitespace and a
/// final full stop allowed); anything else is `None`, a failed judgment, never a guess.
pub fn parse_score(reply: &str) -> Option<f64> {
    let text = reply.trim();
    let text = text.strip_suffix('.').unwrap_or(text);
    let score: u32 = text.parse().ok()?;
    (1..=10).contains(&score).then_some(score as f64)
}

/// Parses a pairwise reply: `A` or `B` (either case), alone (surrounding whitespace and a final
/// full stop allowed), as 1 or 2; anything else is `None`.
pub fn parse_choice(reply: &str) -> Option<f64> {
    let text = reply.trim();
    match text.strip_suffix('.').unwrap_or(text) {
        "A" | "a" => Some(1.0),
        "B" | "b" => Some(2.0),
        _ => None,
    }
}

/// `template` with each placeholder replaced by its value in one pass (a value that contains
/// a placeholder's text stays as it is).
pub(crate) fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while !rest.is_empty() {
        match values.iter().find(|(name, _)| rest.starts_with(name)) {
            Some((name, value)) => {
                out.push_str(value);
                rest = &rest[name.len()..];
            }
            None => {
                let c = rest.chars().next().expect("not empty");
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

/// The judgment in a chat-completions reply body.
pub(crate) fn judgment_of(body: &str, mode: JudgeMode) -> Judgment {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let content = parsed
        .as_ref()
        .and_then(|v| v.pointer("/choices/0/message/content"))
        .and_then(Value::as_str);
    let tokens = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.pointer(&format!("/usage/{name}")))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Judgment {
        score: content.and_then(|c| mode.parse(c)),
        reply: content.map_or_else(|| excerpt(body, 2000), str::to_owned),
        prompt_tokens: tokens("prompt_tokens"),
        completion_tokens: tokens("completion_tokens"),
    }
}
