//! Data-driven tests: every `tests/data/**/*.nas` file goes through one helper and
//! is snapshotted. Valid files snapshot their canonical text and summary tables;
//! `err_*.nas` files must fail and snapshot their rendered diagnostics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use nas_dsl::{check_str, diag, parse_str, print, print_file, summary};
use std::path::Path;

fn name_of(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn valid_files_print_check_and_summarise() {
    insta::glob!("data/*.nas", |path| {
        let src = std::fs::read_to_string(path).unwrap();
        let nets = match check_str(&src) {
            Ok(nets) => nets,
            Err(e) => panic!(
                "{}:\n{}",
                path.display(),
                diag::render(&name_of(path), &src, &e)
            ),
        };
        let file = parse_str(&src).unwrap();
        let printed = print_file(&file);
        // The printed text is canonical: it parses back to the same tree and prints identically.
        let reparsed = parse_str(&printed).unwrap();
        assert_eq!(
            reparsed,
            file,
            "parse(print(n)) != n for {}",
            path.display()
        );
        assert_eq!(print_file(&reparsed), printed);
        let mut snapshot = printed.clone();
        for net in &nets {
            assert_eq!(
                print(net.net()),
                print(&file.nets[nets.iter().position(|n| n.name() == net.name()).unwrap()])
            );
            snapshot.push('\n');
            snapshot.push_str(&summary::summarize(net).table());
        }
        insta::assert_snapshot!(snapshot);
    });
}

#[test]
fn error_files_fail_with_rendered_diagnostics() {
    insta::glob!("data/errors/err_*.nas", |path| {
        let src = std::fs::read_to_string(path).unwrap();
        let Err(errors) = check_str(&src) else {
            panic!("{} should fail to check", path.display());
        };
        assert!(!errors.is_empty());
        for d in errors.iter() {
            let message = d.kind.to_string();
            assert!(
                !message.ends_with('.'),
                "message ends with a period: {message}"
            );
            assert!(
                !message.starts_with(char::is_uppercase),
                "message starts uppercase: {message}"
            );
        }
        insta::assert_snapshot!(diag::render(&name_of(path), &src, &errors));
    });
}

#[test]
fn several_independent_errors_are_all_reported() {
    let src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/errors/err_several.nas"),
    )
    .unwrap();
    let errors = check_str(&src).unwrap_err();
    let messages: Vec<String> = errors.iter().map(|d| d.kind.to_string()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("`conv1` expects 64 input channels, but `stem` produces 32")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("`groups = 5`")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("residual body produces")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("`conv1` needs a feature map")),
        "{messages:?}"
    );
    assert!(errors.len() >= 4);
}
