//! The `nas-core` command line: a thin shell over the library.

fn main() -> std::process::ExitCode {
    nas_core::cli::main()
}
