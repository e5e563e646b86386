//! The command line: `statusd` serves; subcommands are tools around it.
//!
//! `statusd` with no subcommand takes the server's flags ([`Config`]) exactly
//! as before subcommands existed; `statusd token` and `statusd dev-keys` make
//! the key pair and tokens for trying auth without an identity provider;
//! `statusd copy` copies a sled data directory into PostgreSQL; `export`
//! and `import` move Graph JSON through a running server; `backup` takes a
//! consistent backup of a running server, `restore` fills an empty store
//! from one.

mod api;
pub mod backup;
pub mod copy;
pub mod dev_keys;
pub mod export;
pub mod import;
mod progress;
pub mod restore;
pub mod token;

use crate::config::Config;
use clap::{Parser, Subcommand};

/// statusd: a durable, Graph-faithful store for Intune status reports,
/// served over gRPC and Microsoft Graph REST on one port.
#[derive(Debug, Parser)]
#[command(name = "statusd", version, about)]
pub struct Cli {
    /// The server's flags (used when no subcommand is given).
    #[command(flatten)]
    pub config: Config,
    /// A tool to run instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a signed JWT for trying auth (development only).
    Token(token::TokenArgs),
    /// Write a fresh key pair and its JWKS into a directory (development only).
    DevKeys(dev_keys::DevKeysArgs),
    /// Copy a sled data directory into a PostgreSQL database (stop the server first).
    Copy(copy::CopyArgs),
    /// Write every record of a running server as JSON lines of Graph entities.
    Export(export::ExportArgs),
    /// Create the records of JSON lines of Graph entities in a running server.
    Import(import::ImportArgs),
    /// Take a consistent backup of a running server into a file.
    Backup(backup::BackupArgs),
    /// Fill an empty store (a new sled directory or an empty database) from a backup file.
    Restore(restore::RestoreArgs),
}

impl Command {
    /// Runs the subcommand; the error is the message to print.
    pub async fn run(self) -> Result<(), String> {
        match self {
            Command::Token(args) => token::run(&args),
            Command::DevKeys(args) => dev_keys::run(&args),
            Command::Copy(args) => copy::run(&args).await,
            Command::Export(args) => export::run(&args).await,
            Command::Import(args) => import::run(&args).await,
            Command::Backup(args) => backup::run(&args).await,
            Command::Restore(args) => restore::run(&args).await,
        }
    }
}
