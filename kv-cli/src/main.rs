//! `kv`, the operator's command line for any kv store.
//!
//! ```text
//! kv --url redis://127.0.0.1:6379/0 put greeting hello --ttl 5m --metadata '{"by":"ops"}'
//! kv --url redis://127.0.0.1:6379/0 get greeting --json
//! KV_URL=redis://127.0.0.1:6379/0 kv list --prefix user: --json
//! kv export --prefix user: > users.jsonl
//! kv --url redis://127.0.0.1:6379/3 import users.jsonl --resume
//! ```
//!
//! See the crate's README for the record format, resuming imports and the exit codes.

mod cli;
mod commands;
mod error;
mod progress;
mod record;
mod transfer;

use std::io;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use kvkit::KvStore;

use crate::cli::{Cli, Command};
use crate::error::{CliError, EXIT_ERROR};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let url = cli.url.clone().unwrap_or_default();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("kv: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (e.g. `kv list | head`): nothing left to say.
        Err(CliError::Stdout(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kv: {}", report(&e, &url));
            ExitCode::from(e.exit_code())
        }
    }
}

/// `error` with its chain of causes, each once, and never a password of `url`: messages name
/// URLs redacted already, and the causes (which come from client libraries) are scrubbed too.
fn report(error: &CliError, url: &str) -> String {
    let mut message = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        let part = e.to_string();
        if !message.contains(&part) {
            message = format!("{message}: {part}");
        }
        cause = e.source();
    }
    for secret in secrets(url) {
        message = message.replace(secret, "***");
    }
    message
}

/// The secrets of a store URL: the password of its user info, and the value of any `pass` or
/// `password` query parameter (how `redis+unix://` URLs carry it).
fn secrets(url: &str) -> Vec<&str> {
    let Some((_, rest)) = url.split_once("://") else {
        return Vec::new();
    };
    let (address, query) = rest.split_at(rest.find(['?', '#']).unwrap_or(rest.len()));
    let mut secrets = Vec::new();
    if let Some((user_info, _)) = address.rsplit_once('@') {
        secrets.push(
            user_info
                .split_once(':')
                .map_or(user_info, |(_, pass)| pass),
        );
    }
    for param in query.trim_start_matches('?').split(['&', '#']) {
        if let Some(("pass" | "password", value)) = param.split_once('=') {
            secrets.push(value);
        }
    }
    secrets.retain(|s| !s.is_empty());
    secrets
}

/// Opens the store named by `--url` or `KV_URL`; the URL is redacted in any error.
async fn open(url: Option<String>) -> Result<Arc<dyn KvStore>, CliError> {
    let url = url.filter(|u| !u.is_empty()).ok_or(CliError::MissingUrl)?;
    kvkit::open(&url).await.map_err(|source| CliError::Open {
        url: kvkit::redis::redact_url(&url),
        source,
    })
}

/// Runs one command.
async fn run(cli: Cli) -> Result<(), CliError> {
    let store = open(cli.url).await?;
    let store = store.as_ref();
    match cli.command {
        Command::Get { key, json } => commands::get(store, key, json).await,
        Command::Put {
            key,
            value,
            ttl,
            expire_at,
            metadata,
        } => commands::put(store, key, value, ttl, expire_at, metadata).await,
        Command::Delete { keys } => commands::delete(store, keys).await,
        Command::List(args) => commands::list(store, args).await,
        Command::Export { prefix } => transfer::export(store, prefix).await,
        Command::Import(args) => transfer::import(store, args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_found_wherever_a_url_carries_them() {
        assert_eq!(secrets("redis://:pw@h:1/0"), ["pw"]);
        assert_eq!(secrets("rediss://user:p@ss@h"), ["p@ss"]);
        assert_eq!(secrets("redis://token@h"), ["token"]);
        assert_eq!(secrets("redis+unix:///s.sock?db=1&pass=x1"), ["x1"]);
        assert!(secrets("redis://h:6379/0").is_empty());
        assert!(secrets("memory:").is_empty());
    }

    #[test]
    fn reports_never_repeat_a_password() {
        let error = CliError::Store(kvkit::Error::Backend {
            backend: "redis",
            message: "AUTH hunter2 refused".into(),
            retryable: false,
            source: None,
        });
        let message = report(&error, "redis://:hunter2@127.0.0.1:6379");
        assert_eq!(message, "redis: AUTH *** refused");
    }
}
