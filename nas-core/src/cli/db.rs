//! `nas-core db`: the shared PostgreSQL store's schema.

use crate::store::postgres;
use std::process::ExitCode;

/// Manage the schema of a shared PostgreSQL store.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: DbCommand,
}

/// What to do with the database.
#[derive(Debug, clap::Subcommand)]
pub enum DbCommand {
    /// Create or migrate the schema (idempotent; safe to run on several machines
    /// at once). The password may come from `PGPASSWORD`.
    Init {
        /// The database, `postgres://USER@HOST[:PORT]/DB`.
        url: String,
    },
}

/// Runs `nas-core db`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        DbCommand::Init { url } => {
            let applied = postgres::init(&url)?;
            let latest = postgres::MIGRATIONS.last().map_or(0, |m| m.0);
            if applied.is_empty() {
                eprintln!(
                    "{}: the schema is up to date (version {latest})",
                    postgres::redact(&url)
                );
            } else {
                eprintln!(
                    "{}: applied migration(s) {applied:?}; the schema is at version {latest}",
                    postgres::redact(&url)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
