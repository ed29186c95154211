//! The command line: global options and one subcommand per operation.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::error::CliError;

/// Read and write the keys of any kv store: memory, Redis, Redis Cluster.
#[derive(Debug, Parser)]
#[command(
    name = "kv",
    version,
    about,
    long_about = None,
    after_help = "Exit codes: 0 done; 1 `get` found no such key; 2 error; \
                  3 `import` finished but some records failed (each reported on stderr)."
)]
pub(crate) struct Cli {
    /// The store to open, e.g. redis://127.0.0.1:6379/0, rediss://:PASSWORD@host:6380,
    /// redis+unix:///run/redis.sock, redis+cluster://h1:7000,h2:7001, sqlite:path/to/kv.db or
    /// memory:
    #[arg(long, env = "KV_URL", global = true, hide_env_values = true)]
    pub(crate) url: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Print the value of KEY (raw bytes, or a JSON object with --json); exit code 1 when absent.
    Get {
        /// The key to read.
        key: String,
        /// Print {"key","value","metadata","expiration"} (value base64 with "base64":true when
        /// it is not UTF-8).
        #[arg(long)]
        json: bool,
    },
    /// Write VALUE (or standard input when VALUE is omitted) to KEY.
    Put {
        /// The key to write.
        key: String,
        /// The value; read from standard input when omitted.
        value: Option<String>,
        /// Expire after this long: 90, 90s, 5m, 1h or 2d.
        #[arg(long, value_parser = parse_ttl, conflicts_with = "expire_at")]
        ttl: Option<Duration>,
        /// Expire at this time, in seconds since the unix epoch.
        #[arg(long, value_name = "UNIX_SECS")]
        expire_at: Option<u64>,
        /// JSON metadata stored beside the value, e.g. '{"etag":"abc"}'.
        #[arg(long, value_name = "JSON", value_parser = parse_json)]
        metadata: Option<serde_json::Value>,
    },
    /// Delete one or more keys; deleting a missing key succeeds.
    Delete {
        /// The keys to delete.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Print the keys (in byte order), one per line, following cursors to the end.
    List(ListArgs),
    /// Write every key under a prefix to standard output as JSON lines.
    Export {
        /// Only keys starting with this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Write the keys of a JSON lines file made by `kv export` (or by hand) into the store.
    Import(ImportArgs),
}

/// Options of `kv list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only keys starting with this prefix.
    #[arg(long, default_value = "")]
    pub(crate) prefix: String,
    /// Print at most this many keys in all.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) limit: Option<u64>,
    /// Print one JSON object per key: {"name","expiration","metadata"}.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Options of `kv import`.
#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The JSON lines file to read (`-` for standard input, which cannot be resumed).
    pub(crate) file: PathBuf,
    /// Continue an interrupted import from its checkpoint instead of from the first line.
    #[arg(long)]
    pub(crate) resume: bool,
    /// Where to keep the checkpoint (the number of lines committed); FILE.progress by default.
    #[arg(long, value_name = "PATH")]
    pub(crate) checkpoint: Option<PathBuf>,
    /// Keys written per batch.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub(crate) batch_size: u64,
}

/// Parses a TTL: whole seconds (`90`) or a number with one unit, `s`, `m`, `h` or `d`.
pub(crate) fn parse_ttl(text: &str) -> Result<Duration, CliError> {
    let invalid = || CliError::Ttl(text.to_owned());
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let amount: u64 = digits.parse().map_err(|_| invalid())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        _ => return Err(invalid()),
    };
    let secs = amount.checked_mul(scale).ok_or_else(invalid)?;
    if secs == 0 {
        return Err(invalid());
    }
    Ok(Duration::from_secs(secs))
}

/// Parses a JSON document given on the command line.
fn parse_json(text: &str) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ttls_take_one_unit() {
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_ttl("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ttl("2d").unwrap(), Duration::from_secs(172_800));
        for bad in [
            "",
            "0",
            "0s",
            "s",
            "5x",
            "1h30m",
            "-5",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
