//! End-to-end runs of the `nas-core` binary's `check`, `fmt` and `summary`
//! subcommands on the small `.nas` inputs in `tests/data/`.
// clippy.toml allows unwrap inside `#[test]` functions only; the helpers below
// are test code too and fail the test the same way.
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A test input's path.
fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Runs the binary with these arguments.
fn nas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas-core"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// The process's exit code (these runs are never killed by a signal).
fn code(out: &Output) -> i32 {
    out.status.code().unwrap()
}

/// A fresh, empty directory under the system temp dir, unique to this test run.
fn temp_dir(tag: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("nas-core-cli-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The 1-based line of the first line of `src` containing `needle`.
fn line_of(src: &str, needle: &str) -> usize {
    src.lines().position(|l| l.contains(needle)).unwrap() + 1
}

const TINY: &str = "tiny_resnet.nas";
const TWO_ERRORS: &str = "two_errors.nas";
const MESSY: &str = "messy.nas";
/// `messy.nas` in canonical form, written out by hand.
const CANONICAL: &str = "messy.canonical.nas";

#[test]
fn check_valid_file_prints_one_line_per_net() {
    let path = data(TINY);
    let out = nas(&["check", path.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let net = nas_dsl::check_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap()
        .remove(0);
    let line = text.lines().next().unwrap();
    assert!(line.starts_with("ok  TinyResNet  "), "{text}");
    let params = nas_dsl::summary::thousands(net.params());
    let flops = nas_dsl::summary::thousands(net.flops());
    assert!(
        line.contains(&format!("params {params}  flops {flops}")),
        "{line}"
    );
    assert!(line.ends_with("output [100]"), "{line}");
    assert!(stderr(&out).is_empty());
}

/// The two mistakes in `two_errors.nas`: the line they are on (found by its
/// name) and the token each error points at.
const TWO_ERROR_SITES: [(&str, &str); 2] = [("second:", "32 ->"), ("head:", "linear")];

#[test]
fn check_reports_both_errors_with_location_source_line_and_caret() {
    let path = data(TWO_ERRORS);
    let shown = path.to_str().unwrap();
    let src = std::fs::read_to_string(&path).unwrap();
    let out = nas(&["check", shown]);
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    let err = stderr(&out);

    assert!(
        err.contains("error: `second` expects 32 input channels, but `stem` produces 16"),
        "{err}"
    );
    assert!(
        err.contains("error: `head` needs a flat input but receives [16, 16, 16]"),
        "{err}"
    );
    // The channel error points back at the layer that made the 16 channels.
    assert!(err.contains("`stem` produces 16 channels here"), "{err}");

    // Each error points at its token as `file:line:col`, shows the source line and
    // puts a caret under the token's first character.
    for (needle, token) in TWO_ERROR_SITES {
        let line = line_of(&src, needle);
        let text = src.lines().nth(line - 1).unwrap();
        let col = text.find(token).unwrap() + 1;
        assert!(
            err.contains(&format!("--> {shown}:{line}:{col}")),
            "no `{shown}:{line}:{col}`: {err}"
        );
        let rendered: Vec<&str> = err.lines().collect();
        let at = rendered
            .iter()
            .position(|l| l.ends_with(text) && l.starts_with(&line.to_string()))
            .unwrap_or_else(|| panic!("source line {line} not shown: {err}"));
        let indent = rendered[at].len() - text.len();
        let carets = rendered[at + 1];
        assert_eq!(
            carets
                .char_indices()
                .find(|&(_, c)| c == '^')
                .map(|(i, _)| i),
            Some(indent + col - 1),
            "caret not under `{token}`:\n{}\n{carets}",
            rendered[at]
        );
    }
    assert!(
        err.trim_end()
            .ends_with(&format!("error: could not check `{shown}` due to 2 errors")),
        "{err}"
    );
}

#[test]
fn check_json_reports_nets_and_errors_with_one_based_positions() {
    let good = data(TINY);
    let bad = data(TWO_ERRORS);
    let out = nas(&[
        "check",
        "--json",
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 1);
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let files = doc["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);

    let ok = &files[0];
    assert_eq!(ok["path"], good.to_str().unwrap());
    assert_eq!(ok["ok"], true);
    assert!(ok["errors"].as_array().unwrap().is_empty());
    let net = nas_dsl::check_str(&std::fs::read_to_string(&good).unwrap())
        .unwrap()
        .remove(0);
    let n = &ok["nets"][0];
    assert_eq!(n["name"], "TinyResNet");
    assert_eq!(n["params"], net.params());
    assert_eq!(n["flops"], net.flops());
    assert_eq!(n["input"], serde_json::json!([3, 32, 32]));
    assert_eq!(n["output"], serde_json::json!([100]));

    let src = std::fs::read_to_string(&bad).unwrap();
    let failed = &files[1];
    assert_eq!(failed["ok"], false);
    assert!(failed["nets"].as_array().unwrap().is_empty());
    let errors = failed["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    for (e, (needle, token)) in errors.iter().zip(TWO_ERROR_SITES) {
        let line = line_of(&src, needle);
        let col = src.lines().nth(line - 1).unwrap().find(token).unwrap() + 1;
        assert_eq!(e["line"], line, "{e}");
        assert_eq!(e["column"], col, "{e}");
        assert_eq!(e["end_line"], line, "{e}");
        assert_eq!(
            e["end_column"],
            col + token.split(' ').next().unwrap().len(),
            "{e}"
        );
        assert!(e["message"].is_string(), "{e}");
        assert!(e["notes"].is_array(), "{e}");
    }
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("`second` expects 32 input channels")
    );
    // The channel error notes where the 16 channels come from: `stem`'s name.
    let note = &errors[0]["notes"][0];
    assert_eq!(note["message"], "`stem` produces 16 channels here");
    assert_eq!(note["line"], line_of(&src, "stem:"));
    assert_eq!(note["column"], 5);
    assert!(errors[1]["notes"].as_array().unwrap().is_empty());
}

#[test]
fn check_missing_file_exits_2_naming_the_path() {
    let dir = temp_dir("missing");
    let path = dir.join("no_such_net.nas");
    let out = nas(&["check", path.to_str().unwrap()]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(err.contains(path.to_str().unwrap()), "{err}");
    assert!(stdout(&out).is_empty());
}

#[test]
fn fmt_prints_canonical_text_that_passes_fmt_check() {
    let messy = data(MESSY);
    let out = nas(&["fmt", messy.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let src = std::fs::read_to_string(&messy).unwrap();
    assert_ne!(text, src);
    assert_eq!(text, std::fs::read_to_string(data(CANONICAL)).unwrap());
    assert_eq!(
        text,
        nas_dsl::print_file(&nas_dsl::parse_str(&src).unwrap())
    );

    let dir = temp_dir("fmt-print");
    let formatted = dir.join("formatted.nas");
    std::fs::write(&formatted, &text).unwrap();
    let again = nas(&["fmt", "--check", formatted.to_str().unwrap()]);
    assert_eq!(code(&again), 0, "{}", stdout(&again));
    assert!(stdout(&again).is_empty());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn fmt_check_exit_codes() {
    let canonical = data(CANONICAL);
    let messy = data(MESSY);
    // The DSL reference writes several statements on a line: not canonical.
    let tiny = data(TINY);
    let ok = nas(&["fmt", "--check", canonical.to_str().unwrap()]);
    assert_eq!(code(&ok), 0, "{}", stdout(&ok));
    assert!(stdout(&ok).is_empty());
    assert!(stderr(&ok).is_empty());

    let mixed = nas(&[
        "fmt",
        "--check",
        tiny.to_str().unwrap(),
        canonical.to_str().unwrap(),
        messy.to_str().unwrap(),
    ]);
    assert_eq!(code(&mixed), 1);
    assert_eq!(
        stdout(&mixed),
        format!(
            "Diff in {}\nDiff in {}\n",
            tiny.to_str().unwrap(),
            messy.to_str().unwrap()
        )
    );

    let broken = data(TWO_ERRORS);
    let bad = nas(&["fmt", "--check", broken.to_str().unwrap()]);
    assert_eq!(code(&bad), 1);
    assert!(stderr(&bad).contains("`second` expects 32 input channels"));
}

#[test]
fn fmt_write_rewrites_in_place_and_never_writes_broken_files() {
    let dir = temp_dir("fmt-write");
    let copy = dir.join("messy.nas");
    std::fs::copy(data(MESSY), &copy).unwrap();
    let out = nas(&["fmt", "--write", copy.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    let written = std::fs::read_to_string(&copy).unwrap();
    assert_eq!(written, std::fs::read_to_string(data(CANONICAL)).unwrap());
    let check = nas(&["fmt", "--check", copy.to_str().unwrap()]);
    assert_eq!(code(&check), 0);

    let broken = dir.join("two_errors.nas");
    let bad_src = std::fs::read_to_string(data(TWO_ERRORS)).unwrap();
    std::fs::write(&broken, &bad_src).unwrap();
    let bad = nas(&["fmt", "--write", broken.to_str().unwrap()]);
    assert_eq!(code(&bad), 1);
    assert_eq!(std::fs::read_to_string(&broken).unwrap(), bad_src);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn summary_table_lists_every_layer_and_the_totals() {
    let path = data(TINY);
    let out = nas(&["summary", path.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let net = nas_dsl::check_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap()
        .remove(0);
    assert!(text.starts_with("TinyResNet\n"), "{text}");
    for layer in net.layers() {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().next() == Some(layer.name.as_str())),
            "no row for `{}`:\n{text}",
            layer.name
        );
    }
    for name in ["stem", "down", "head"] {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{text}"
        );
    }
    let total = text.lines().find(|l| l.starts_with("total")).unwrap();
    let params = nas_dsl::summary::thousands(net.params());
    let flops = nas_dsl::summary::thousands(net.flops());
    assert!(total.contains(&params), "{total}");
    assert!(total.trim_end().ends_with(&flops), "{total}");
}

#[test]
fn summary_json_totals_equal_the_sum_of_rows() {
    let out = nas(&["summary", "--json", data(TINY).to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let nets = doc.as_array().unwrap();
    assert_eq!(nets.len(), 1);
    let s = &nets[0];
    assert_eq!(s["net"], "TinyResNet");
    assert_eq!(s["input"], serde_json::json!([3, 32, 32]));
    let rows = s["layers"].as_array().unwrap();
    assert!(rows.iter().any(|r| r["name"] == "stem"));
    let params: u64 = rows.iter().map(|r| r["params"].as_u64().unwrap()).sum();
    let flops: u64 = rows.iter().map(|r| r["flops"].as_u64().unwrap()).sum();
    assert!(params > 0);
    assert_eq!(s["params"], params);
    assert_eq!(s["flops"], flops);
}

#[test]
fn summary_of_a_broken_file_reports_errors_like_check() {
    let path = data(TWO_ERRORS);
    let out = nas(&["summary", path.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).is_empty());
    let err = stderr(&out);
    assert!(err.contains("`head` needs a flat input"), "{err}");
    assert!(err.contains("could not check"), "{err}");
}
