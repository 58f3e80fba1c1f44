//! Command-line flags, parsed in one step into a [`Command`] that says what to run.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::auth::password::MAX_BCRYPT_COST;

pub mod access;
pub mod cert;
pub mod check;
pub mod gc;
pub mod user;

pub const DEFAULT_CONFIG: &str = "/etc/regapp/regapp.toml";

/// A self-hosted container registry in one binary.
#[derive(Debug, Parser)]
#[command(name = "regapp", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the registry.
    Serve(ServeArgs),
    /// Check a configuration file; prints every problem with its file, line and key.
    CheckConfig(ConfigArg),
    /// ACME certificates (`tls.mode = "acme"`): status, forced renewal.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Users in the htpasswd file (`[auth] htpasswd`): add, change password, delete, list.
    User(UserArgs),
    /// Access rules (`[[access]]`): which rule decides for a user and a repository.
    #[command(subcommand)]
    Access(AccessCommand),
    /// Collect garbage now (through the running server, or on the store when none runs).
    Gc(GcArgs),
    /// Storage use per repository and in total.
    Du(ConfigArg),
}

#[derive(Debug, Args)]
pub struct GcArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Delete nothing; print what would be removed (tags by retention, blobs and bytes).
    #[arg(long)]
    pub dry_run: bool,
    /// Also remove manifests no tag points to (children of kept indexes and referrers of kept
    /// manifests stay).
    #[arg(long)]
    pub delete_untagged: bool,
}

#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// For each action (pull, push, delete): allowed or denied, by which rule, and why.
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// A user name from htpasswd, or `anonymous` for a client without credentials.
    pub user: String,
    /// A repository name, e.g. `team-a/app`.
    pub repository: String,
    /// Also say whether this tag of the repository is immutable, and by which rule.
    #[arg(long)]
    pub tag: Option<String>,
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(flatten)]
    pub file: HtpasswdArg,
    #[command(subcommand)]
    pub command: UserCommand,
}

/// Which htpasswd file `regapp user` edits.
#[derive(Debug, Args)]
pub struct HtpasswdArg {
    /// The configuration file whose `[auth] htpasswd` is edited.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG, global = true)]
    pub config: PathBuf,
    /// Edit this htpasswd file instead of the configured one.
    #[arg(long, value_name = "PATH", global = true)]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user (the password is asked for twice, without echo).
    Add(NewPassword),
    /// Change a user's password.
    Passwd(NewPassword),
    /// Delete a user.
    Del {
        /// The user name.
        name: String,
    },
    /// List the users and the scheme of each hash.
    List,
}

#[derive(Debug, Args)]
pub struct NewPassword {
    /// The user name (no `:` or control characters).
    pub name: String,
    /// Read the password from the first line of standard input instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,
    /// Hash with argon2id instead of bcrypt (Apache's `htpasswd -v` cannot verify argon2).
    #[arg(long, conflicts_with = "cost")]
    pub argon2: bool,
    /// bcrypt cost (4 to 14, regapp's maximum); each step doubles the time a login takes.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(4..=MAX_BCRYPT_COST as i64))]
    pub cost: u32,
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Names, issuer, expiry and when the next renewal is due.
    Status(ConfigArg),
    /// Renew now, through the running server; prints the new certificate.
    Renew(ConfigArg),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Run with built-in development settings: data in ./regapp-data, engine on 127.0.0.1:5000.
    #[arg(long, conflicts_with = "config")]
    pub dev: bool,
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The configuration file.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}
