//! A process that reads network text for as long as it runs (a search judging
//! LLM answers for days, `corpus`, a fuzzer) must not grow with every text it
//! reads. proc-macro2's lexer keeps each lexed text in a per-thread table;
//! `check_str` and `parse_str` release it (`nas_dsl::parse::release_text`).
//! Its own binary: no other test's allocations move the process's size.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

/// Resident memory of this process in bytes (`/proc/self/statm`).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn reading_300_mib_of_text_does_not_keep_it() {
    // A net after a 1 MiB comment: the lexer sees (and used to keep) all of it.
    let text = format!(
        "// {}\nnet N(input = [3, 8, 8], classes = 2) {{ conv(3 -> 4, k = 3, pad = 1); relu; gap; linear(4 -> 2); }}\n",
        "x".repeat(1 << 20)
    );
    let broken = text.replace("conv(3 -> 4", "conv(5 -> 4");
    // Warm up allocators and lazy tables before the baseline.
    for _ in 0..5 {
        nas_dsl::check_str(&text).unwrap();
    }
    let before = rss();
    for i in 0..100 {
        // Every path that lexes text: a good net, a shape error, parse only.
        assert_eq!(nas_dsl::check_str(&text).unwrap().len(), 1, "round {i}");
        let errors = nas_dsl::check_str(&broken).unwrap_err();
        // Positions still point at the text after earlier texts were released.
        assert_eq!(errors.0[0].span.start.line, 2, "{errors}");
        nas_dsl::parse_str(&text).unwrap();
    }
    let grown = rss().saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "reading 300 MiB of text grew the process by {} MiB",
        grown >> 20
    );
}
