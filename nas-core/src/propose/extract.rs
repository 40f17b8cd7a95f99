//! Finding the network in a model's answer: fenced blocks (any language tag, the
//! last one possibly unclosed), bare `net` items found by brace matching (also
//! inside prose or a `network! { … }` wrapper), and, when nothing looks like
//! either, the whole answer, so the parser can say what is wrong with it.
//!
//! [`candidates`] lists every plausible block in order of preference;
//! [`best`] judges them and keeps the first accepted one, or else the one that
//! got furthest through the checks.

use super::{Context, Outcome, Rejection, Verdict};

/// The candidate network texts in `raw`, most plausible first, without repeats.
pub fn candidates(raw: &str) -> Vec<String> {
    fn push(out: &mut Vec<String>, text: &str) {
        let text = text.trim();
        if !text.is_empty() && !out.iter().any(|c| c == text) {
            out.push(text.to_string());
        }
    }
    let mut out: Vec<String> = Vec::new();
    let fenced = fenced_blocks(raw);
    // Blocks tagged `nas` first, then other fenced blocks holding a `net`, then bare
    // items anywhere, then other fenced blocks.
    for b in fenced.iter().filter(|b| b.tag == "nas") {
        push(&mut out, &b.body);
    }
    for b in fenced.iter().filter(|b| b.tag != "nas") {
        for item in net_items(&b.body) {
            push(&mut out, &item);
        }
    }
    for item in net_items(raw) {
        push(&mut out, &item);
    }
    for b in fenced.iter().filter(|b| b.tag != "nas") {
        push(&mut out, &b.body);
    }
    if out.is_empty() {
        push(&mut out, raw);
    }
    out
}

/// Judges every candidate of `raw` and keeps the first accepted one; when none is,
/// the rejection that got furthest (duplicate, then over budget, then shape, then
/// parse errors), the earliest among equals.
pub fn best(ctx: &Context, raw: &str) -> Verdict {
    let mut rejected: Option<Rejection> = None;
    for text in candidates(raw) {
        match ctx.judge(&text) {
            accepted @ Verdict::Accepted { .. } => return accepted,
            Verdict::Rejected(r) => {
                if rejected
                    .as_ref()
                    .is_none_or(|prev| progress(r.outcome) > progress(prev.outcome))
                {
                    rejected = Some(r);
                }
            }
        }
    }
    Verdict::Rejected(rejected.unwrap_or_else(|| Rejection {
        outcome: Outcome::ParseError,
        source: None,
        diagnostics: "error: the answer is empty".to_string(),
    }))
}

/// How far through the checks a rejected candidate got.
fn progress(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::ParseError => 0,
        Outcome::ShapeError => 1,
        Outcome::OverBudget => 2,
        Outcome::Duplicate => 3,
        _ => 4,
    }
}

/// One fenced block: its language tag (lowercase, may be empty) and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fenced {
    /// The tag after the opening fence.
    pub tag: String,
    /// The text between the fences (to the end when the closing fence is missing).
    pub body: String,
    /// Whether the closing fence was missing (truncated output).
    pub unclosed: bool,
}

/// Every fenced block (three or more backticks or tildes) in `raw`.
pub fn fenced_blocks(raw: &str) -> Vec<Fenced> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String, Vec<&str>)> = None;
    for line in raw.lines() {
        let trimmed = line.trim_start();
        match &mut open {
            None => {
                if let Some((fence, tag)) = opening_fence(trimmed) {
                    open = Some((fence, tag, Vec::new()));
                }
            }
            Some((fence, tag, body)) => {
                let t = trimmed.trim_end();
                if t.starts_with(fence.as_str()) && t.chars().all(|c| c == '`' || c == '~') {
                    blocks.push(Fenced {
                        tag: std::mem::take(tag),
                        body: body.join("\n"),
                        unclosed: false,
                    });
                    open = None;
                } else {
                    body.push(line);
                }
            }
        }
    }
    if let Some((_, tag, body)) = open {
        blocks.push(Fenced {
            tag,
            body: body.join("\n"),
            unclosed: true,
        });
    }
    blocks
}

/// `(fence, tag)` when `line` opens a fenced block.
fn opening_fence(line: &str) -> Option<(String, String)> {
    let ch = line.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let fence: String = line.chars().take_while(|c| *c == ch).collect();
    if fence.len() < 3 {
        return None;
    }
    let tag = line[fence.len()..].trim();
    // A tag holds no backtick (that would be inline code).
    if tag.contains('`') {
        return None;
    }
    let tag = tag
        .split(|c: char| c.is_whitespace() || c == ',' || c == '{')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    Some((fence, tag))
}

/// Every `[///docs] [pub] net Name(...) { ... }` item in `text`, found by matching
/// braces (a truncated item runs to the end of the text).
pub fn net_items(text: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut from = 0;
    while let Some(keyword) = find_net_keyword(text, from) {
        let start = include_prefix(text, keyword);
        // Braces count from the keyword on: the prefix is `pub` and comments.
        let (end, _) = item_end(text, keyword);
        items.push(text[start..end].to_string());
        // Always past this keyword, so every keyword is visited once.
        from = end.max(keyword + 3);
        if from >= text.len() {
            break;
        }
    }
    items
}

/// The byte offset of the next `net` keyword followed by a name and `(`.
fn find_net_keyword(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = from;
    while let Some(pos) = text.get(i..)?.find("net") {
        let at = i + pos;
        let before_ok = at == 0 || !is_ident_byte(bytes[at - 1]);
        let after = &text[at + 3..];
        let after_ok = after.starts_with(|c: char| c.is_whitespace());
        if before_ok && after_ok {
            let rest = after.trim_start();
            let name_len = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if name_len > 0 && rest[name_len..].trim_start().starts_with('(') {
                return Some(at);
            }
        }
        i = at + 3;
    }
    None
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Moves `start` back over a `pub ` and `///` doc lines directly before it.
fn include_prefix(text: &str, mut start: usize) -> usize {
    let before = &text[..start];
    let trimmed = before.trim_end_matches([' ', '\t']);
    if let Some(stripped) = trimmed.strip_suffix("pub")
        && stripped
            .as_bytes()
            .last()
            .is_none_or(|b| !is_ident_byte(*b))
    {
        start = stripped.len();
    }
    // Doc comment lines directly above, when the item starts its line.
    loop {
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        if line_start == 0 || !text[line_start..start].trim().is_empty() {
            break;
        }
        let prev_end = line_start - 1;
        let prev_start = text[..prev_end].rfind('\n').map_or(0, |i| i + 1);
        if text[prev_start..prev_end].trim_start().starts_with("///") {
            start = prev_start;
        } else {
            break;
        }
    }
    start
}

/// The end of the item starting at `start`: just after the brace that closes its
/// body, or the end of the text when it never closes. The flag says whether it closed.
fn item_end(text: &str, start: usize) -> (usize, bool) {
    let mut depth = 0usize;
    let mut opened = false;
    let mut in_comment = false;
    let mut prev = '\0';
    for (i, c) in text[start..].char_indices() {
        let at = start + i;
        if in_comment {
            if c == '\n' {
                in_comment = false;
            }
            prev = c;
            continue;
        }
        match c {
            '/' if prev == '/' => in_comment = true,
            '{' => {
                depth += 1;
                opened = true;
            }
            '}' if opened => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return (at + 1, true);
                }
            }
            '`' if opened && depth > 0 && text[at..].starts_with("```") => {
                // A closing fence inside an unclosed body: the item was truncated.
                return (at, false);
            }
            _ => {}
        }
        prev = c;
    }
    (text.len(), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_fenced_blocks_with_tags_and_unclosed_tail() {
        let raw = "text\n```nas\nnet A(input = [4], classes = 2) { linear(4 -> 2); }\n```\nmore\n~~~python\nprint(1)\n";
        let blocks = fenced_blocks(raw);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].tag, "nas");
        assert!(!blocks[0].unclosed);
        assert_eq!(blocks[1].tag, "python");
        assert!(blocks[1].unclosed);
        assert_eq!(blocks[1].body, "print(1)");
    }

    /// Found by the `llm_answer` fuzz target: braces between a doc comment and
    /// a keyword later on the same line closed the "item" before its keyword,
    /// and the search for the next item found the same keyword forever (the
    /// proposer hung, growing by the copy of the item each round).
    #[test]
    fn text_before_a_keyword_on_its_line_neither_joins_the_item_nor_loops() {
        let raw = "/// doc\nx { } net A(input = [4], classes = 2) { linear(4 -> 2); }\ntail";
        assert_eq!(
            net_items(raw),
            vec!["net A(input = [4], classes = 2) { linear(4 -> 2); }".to_string()]
        );
        let raw = "/// doc {\n/// more }\n- concat { b { } } pub net B(input = [4], classes = 2) { gap; }";
        assert_eq!(
            net_items(raw),
            vec!["pub net B(input = [4], classes = 2) { gap; }".to_string()]
        );
    }

    #[test]
    fn bare_items_include_pub_and_docs_and_stop_at_the_closing_brace() {
        let raw = "Here:\n/// doc\npub net A(input = [4], classes = 2) {\n    linear(4 -> 2);\n}\nDone, the network is done.";
        let items = net_items(raw);
        assert_eq!(items.len(), 1);
        assert!(items[0].starts_with("/// doc\npub net A"));
        assert!(items[0].ends_with('}'));
    }

    #[test]
    fn a_word_like_network_is_not_an_item() {
        assert!(net_items("the network net is a net (sort of)").is_empty());
        assert_eq!(net_items("net X(input = [4], classes = 2) {").len(), 1);
    }
}
