//! The project's language reference (`docs/DSL.md`) stays in step with the parser:
//! every fenced `nas` block in it must parse, check and survive a print round trip.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use nas_dsl::{check_str, diag, parse_str, print_file};

#[test]
fn every_nas_block_in_the_reference_checks() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/DSL.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```nas") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), text) => {
                block.push_str(text);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(!blocks.is_empty(), "no ```nas blocks found in {path}");
    for src in &blocks {
        if let Err(e) = check_str(src) {
            panic!(
                "a nas block in DSL.md fails:\n{}",
                diag::render("DSL.md", src, &e)
            );
        }
        let file = parse_str(src).unwrap();
        assert_eq!(parse_str(&print_file(&file)).unwrap(), file);
    }
}
