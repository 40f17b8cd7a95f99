//! What the live fine-tuning tests share: running the binary and finding the tools.

#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use nas_core::finetune::tools::{Tools, default_base};
use std::path::Path;
use std::process::{Command, Output};

/// Runs `nas-core` with `args` (outside CI's view, so progress is printed as lines).
pub fn nas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas-core"))
        .args(args)
        .env_remove("CI")
        .output()
        .unwrap()
}

/// A process's standard error.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A path as a string argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The tools and the default base, or `None` after a loud SKIPPED line naming
/// `what` did not run (a failure under NAS_REQUIRE_FINETUNE, as `.ci/run` sets it).
pub fn tools_or_skip(what: &str) -> Option<Tools> {
    let required = std::env::var_os("NAS_REQUIRE_FINETUNE").is_some();
    let found = Tools::locate(None, None, None).and_then(|t| {
        if default_base().is_file() {
            Ok(t)
        } else {
            Err(nas_core::finetune::FinetuneError::NoBase(
                default_base(),
                String::new(),
            ))
        }
    });
    match found {
        Ok(t) => Some(t),
        Err(e) if required => panic!("NAS_REQUIRE_FINETUNE is set but {e}"),
        Err(e) => {
            eprintln!("\n*** SKIPPED: {e}; {what} did not run. ***\n");
            None
        }
    }
}
