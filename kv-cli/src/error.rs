//! What can go wrong, each with a message meant for an operator and an exit code.

use std::io;
use std::path::PathBuf;

/// Exit code of `kv get` when the key is absent.
pub(crate) const EXIT_NOT_FOUND: u8 = 1;
/// Exit code of any error that stopped the command (bad input, unreachable store, I/O).
pub(crate) const EXIT_ERROR: u8 = 2;
/// Exit code of `kv import` when it finished but some lines or keys could not be written.
pub(crate) const EXIT_PARTIAL: u8 = 3;

/// An error that stops a command. Store URLs in messages never carry a password.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Neither `--url` nor `KV_URL` was given.
    #[error(
        "no store URL: pass --url URL or set KV_URL (e.g. redis://127.0.0.1:6379/0, \
         redis+cluster://host:7000,host:7001, sqlite:kv.db or memory:)"
    )]
    MissingUrl,
    /// `kv get` found no such key.
    #[error("key {0:?} not found")]
    NotFound(String),
    /// The URL could not be opened; `url` is already redacted.
    #[error("cannot open {url}: {source}")]
    Open {
        /// The redacted URL.
        url: String,
        /// Why.
        source: kvkit::OpenError,
    },
    /// A store operation failed.
    #[error("{0}")]
    Store(#[from] kvkit::Error),
    /// A `--ttl` that is not a positive duration.
    #[error("invalid TTL {0:?}: use whole seconds (90) or one unit: 90s, 5m, 1h, 2d")]
    Ttl(String),
    /// Reading the value of `kv put` from standard input failed.
    #[error("reading the value from standard input: {0}")]
    Stdin(io::Error),
    /// Writing to standard output failed.
    #[error("writing to standard output: {0}")]
    Stdout(io::Error),
    /// Reading the import file failed.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Reading or writing the import checkpoint failed.
    #[error("checkpoint {path}: {source}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The checkpoint does not hold a line count.
    #[error("checkpoint {path} does not hold a line count ({content:?}); delete it to start over")]
    CheckpointContent {
        /// The checkpoint file.
        path: PathBuf,
        /// What it holds.
        content: String,
    },
    /// The checkpoint counts more lines than the file has.
    #[error(
        "checkpoint {path} says {committed} lines were imported, but the file has only {lines}; \
         is it the same file?"
    )]
    CheckpointPastEnd {
        /// The checkpoint file.
        path: PathBuf,
        /// The lines it says were committed.
        committed: u64,
        /// The lines the file has.
        lines: u64,
    },
    /// `--resume` with standard input, which cannot be read twice.
    #[error("--resume needs a file: standard input cannot be resumed")]
    ResumeStdin,
    /// The store failed in the middle of an import; the checkpoint says how far it got.
    #[error(
        "import stopped at line {line} with {committed} lines committed (rerun with --resume to \
         continue after them): {source}"
    )]
    ImportAborted {
        /// The first line of the batch that failed.
        line: u64,
        /// The lines committed before it.
        committed: u64,
        /// The store's error.
        source: kvkit::Error,
    },
    /// An import reported failed lines or keys (already printed); only the exit code remains.
    #[error("{failed} of {total} records failed")]
    Partial {
        /// Lines or keys that failed.
        failed: u64,
        /// Records read.
        total: u64,
    },
}

impl CliError {
    /// The process exit code for this error.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::NotFound(_) => EXIT_NOT_FOUND,
            Self::Partial { .. } => EXIT_PARTIAL,
            _ => EXIT_ERROR,
        }
    }
}
