//! `export` and `import`: moving many keys as JSON lines, in batches.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kvkit::backend::{from_unix_secs, unix_secs_ceil};
use kvkit::{Clock, Error, Expiry, KvStore, ListOptions, PutItem, PutOptions, SystemClock};

use crate::cli::ImportArgs;
use crate::error::CliError;
use crate::progress::Progress;
use crate::record::Record;

/// An import batch is written early once its values add up to this many bytes.
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Attempts at writing one batch when the store reports a transient failure.
const ATTEMPTS: u32 = 3;
/// Pause after the first transient failure; doubled after each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// `kv export [--prefix P]`: every key under the prefix, with its value, metadata and
/// expiration, as JSON lines on standard output. Values are read with `get_many`, at most
/// [`kvkit::Capabilities::max_batch_get`] keys a call; a key deleted between its listing and its
/// read is left out. The export is not a snapshot: keys written meanwhile may or may not appear.
pub(crate) async fn export(store: &dyn KvStore, prefix: String) -> Result<(), CliError> {
    let batch = store.capabilities().max_batch_get.max(1);
    let mut out = BufWriter::new(io::stdout().lock());
    let mut progress = Progress::new("export", None);
    let mut exported = 0;
    let mut cursor = None;
    loop {
        let page = store
            .list(ListOptions::new().prefix(prefix.clone()).cursor(cursor))
            .await?;
        for keys in page.keys.chunks(batch) {
            let names: Vec<String> = keys.iter().map(|k| k.name.clone()).collect();
            let values = store.get_many(&names).await?;
            for (info, value) in keys.iter().zip(values) {
                let Some(value) = value else { continue };
                let record = Record::new(
                    info.name.clone(),
                    &value,
                    info.metadata.clone(),
                    info.expiration.map(unix_secs_ceil),
                );
                writeln!(out, "{}", record.to_line()).map_err(CliError::Stdout)?;
                exported += 1;
            }
            progress.update(0, exported);
        }
        if page.list_complete {
            break;
        }
        cursor = page.cursor;
    }
    out.flush().map_err(CliError::Stdout)
}

/// The checkpoint of `file` unless `--checkpoint` names another: `FILE.progress`.
fn default_checkpoint(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".progress");
    PathBuf::from(name)
}

/// The number of lines a checkpoint says were committed; 0 when there is none yet.
fn read_checkpoint(path: &Path) -> Result<u64, CliError> {
    let content = match std::fs::read_to_string(path) {
        Ok(content) => content,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(source) => {
            return Err(CliError::Checkpoint {
                path: path.to_owned(),
                source,
            });
        }
    };
    content
        .trim()
        .parse()
        .map_err(|_| CliError::CheckpointContent {
            path: path.to_owned(),
            content: content.chars().take(40).collect(),
        })
}

/// Records that `lines` lines are committed, replacing the checkpoint atomically (write, then
/// rename) so that a crash never leaves half a number behind.
fn write_checkpoint(path: &Path, lines: u64) -> Result<(), CliError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, format!("{lines}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| CliError::Checkpoint {
            path: path.to_owned(),
            source,
        })
}

/// Whether `error` is about one item's input (so the other items of its batch can still be
/// written) rather than about the store.
fn is_input_error(error: &Error) -> bool {
    matches!(
        error,
        Error::EmptyKey
            | Error::ReservedKey { .. }
            | Error::KeyTooLong { .. }
            | Error::ValueTooLarge { .. }
            | Error::MetadataTooLarge { .. }
            | Error::TtlTooShort { .. }
            | Error::ExpirationNotInFuture { .. }
            | Error::ExpiryTooFar { .. }
    )
}

/// The state of one `kv import`.
struct Importer<'a> {
    /// Where the keys go.
    store: &'a dyn KvStore,
    /// Where the committed line count is kept; `None` for standard input.
    checkpoint: Option<PathBuf>,
    /// The progress line.
    progress: Progress,
    /// Keys per batch.
    batch_size: usize,
    /// The pending batch, each item with its line number.
    batch: Vec<(u64, PutItem)>,
    /// Bytes of the pending batch's values.
    batch_bytes: usize,
    /// Lines committed: every line up to this one is written, failed or blank.
    committed: u64,
    /// Keys written.
    written: u64,
    /// Non-blank lines read (resumed lines excluded).
    records: u64,
    /// Lines or keys that failed.
    failed: u64,
}

impl Importer<'_> {
    /// Reports a failed line (with its key, when it had one).
    fn fail(&mut self, line: u64, key: Option<&str>, reason: &str) {
        self.failed += 1;
        let message = match key {
            Some(key) => format!("kv: import: line {line}: key {key:?}: {reason}"),
            None => format!("kv: import: line {line}: {reason}"),
        };
        self.progress.println(&message);
    }

    /// Turns line number `line` into a validated write, or reports why it cannot be one.
    fn parse(&mut self, line: u64, raw: &[u8]) {
        let Ok(text) = std::str::from_utf8(raw) else {
            return self.fail(line, None, "malformed record: not UTF-8");
        };
        let record: Record = match serde_json::from_str(text) {
            Ok(record) => record,
            Err(e) => {
                // serde_json says "at line 1 column N" of the one line it saw; keep the column.
                let message = e.to_string();
                let position = format!(" at line {} column {}", e.line(), e.column());
                let reason = message.strip_suffix(&position).unwrap_or(&message);
                let column = e.column();
                return self.fail(
                    line,
                    None,
                    &format!("malformed record (column {column}): {reason}"),
                );
            }
        };
        let value = match record.value_bytes() {
            Ok(value) => value,
            Err(reason) => return self.fail(line, Some(&record.key), &reason),
        };
        let mut options =
            PutOptions::new().expiry(record.expiration.map(|at| Expiry::At(from_unix_secs(at))));
        if let Some(metadata) = record.metadata {
            options = options.metadata(metadata);
        }
        let checked = self.store.capabilities().check_put(
            &record.key,
            value.len(),
            &options,
            SystemClock.now(),
        );
        if let Err(e) = checked {
            return self.fail(line, Some(&record.key), &e.to_string());
        }
        self.batch_bytes += value.len();
        self.batch
            .push((line, PutItem::new(record.key, value).options(options)));
    }

    /// Whether the pending batch is full.
    fn batch_full(&self) -> bool {
        self.batch.len() >= self.batch_size || self.batch_bytes >= MAX_BATCH_BYTES
    }

    /// Writes the pending batch with `put_many`, trying a transient failure again.
    async fn put_batch(&self, items: Vec<PutItem>) -> Result<(), Error> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            match self.store.put_many(items.clone()).await {
                Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// Writes the pending batch, then records every line up to `through` as committed.
    ///
    /// When the batch is refused for one item's input (e.g. an expiration that passed since it
    /// was checked), the items are written one by one and only the bad ones are reported. A
    /// failure of the store itself stops the import, leaving the checkpoint at the last batch.
    async fn commit(&mut self, through: u64) -> Result<(), CliError> {
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        if let Some(&(first_line, _)) = batch.first() {
            let committed = self.committed;
            let abort = |source| CliError::ImportAborted {
                line: first_line,
                committed,
                source,
            };
            let items: Vec<PutItem> = batch.iter().map(|(_, item)| item.clone()).collect();
            match self.put_batch(items).await {
                Ok(()) => self.written += batch.len() as u64,
                Err(e) if is_input_error(&e) => {
                    for (line, item) in batch {
                        match self.store.put(&item.key, item.value, item.options).await {
                            Ok(()) => self.written += 1,
                            Err(e) if is_input_error(&e) => {
                                self.fail(line, Some(&item.key), &e.to_string());
                            }
                            Err(e) => return Err(abort(e)),
                        }
                    }
                }
                Err(e) => return Err(abort(e)),
            }
        }
        self.committed = through;
        if let Some(path) = &self.checkpoint {
            write_checkpoint(path, through)?;
        }
        Ok(())
    }
}

/// `kv import FILE [--resume] [--checkpoint PATH] [--batch-size N]`.
///
/// Reads JSON lines ([`Record`]s), checks each against the store's limits, and writes them with
/// `put_many` in batches. After each batch the number of lines committed goes to the checkpoint
/// file, so `--resume` after a crash skips them. Failed lines (malformed JSON, bad base64, an
/// expiration already past, a value over the store's limit) are reported on standard error with
/// their line number and do not stop the import; they make the exit code 3. The checkpoint is
/// removed once the whole file is processed.
pub(crate) async fn import(store: &dyn KvStore, args: ImportArgs) -> Result<(), CliError> {
    let from_stdin = args.file.as_os_str() == "-";
    if from_stdin && args.resume {
        return Err(CliError::ResumeStdin);
    }
    let read_error = |source| CliError::Read {
        path: args.file.clone(),
        source,
    };
    let (mut input, size): (Box<dyn BufRead>, Option<u64>) = if from_stdin {
        (Box::new(io::stdin().lock()), None)
    } else {
        let file = File::open(&args.file).map_err(read_error)?;
        let size = file.metadata().map(|m| m.len()).ok();
        (Box::new(BufReader::new(file)), size)
    };
    let checkpoint = (!from_stdin).then(|| {
        args.checkpoint
            .clone()
            .unwrap_or_else(|| default_checkpoint(&args.file))
    });
    let skip = match &checkpoint {
        Some(path) if args.resume => read_checkpoint(path)?,
        Some(path) => {
            if path.exists() {
                eprintln!(
                    "kv: import: note: ignoring the checkpoint {} of an earlier import and \
                     starting from line 1 (pass --resume to continue from it)",
                    path.display()
                );
            }
            0
        }
        None => 0,
    };
    let mut importer = Importer {
        store,
        checkpoint,
        progress: Progress::new("import", size),
        batch_size: usize::try_from(args.batch_size).unwrap_or(usize::MAX),
        batch: Vec::new(),
        batch_bytes: 0,
        committed: skip,
        written: 0,
        records: 0,
        failed: 0,
    };
    let mut line = 0;
    let mut bytes_read = 0;
    let mut raw = Vec::new();
    loop {
        raw.clear();
        let n = input.read_until(b'\n', &mut raw).map_err(read_error)?;
        if n == 0 {
            break;
        }
        line += 1;
        bytes_read += n as u64;
        if line <= skip {
            continue;
        }
        if !raw.trim_ascii().is_empty() {
            importer.records += 1;
            importer.parse(line, raw.trim_ascii());
            if importer.batch_full() {
                importer.commit(line).await?;
            }
        }
        importer.progress.update(bytes_read, importer.written);
    }
    if line < skip {
        return Err(CliError::CheckpointPastEnd {
            path: importer.checkpoint.unwrap_or_default(),
            committed: skip,
            lines: line,
        });
    }
    importer.commit(line).await?;
    if let Some(path) = &importer.checkpoint {
        std::fs::remove_file(path).map_err(|source| CliError::Checkpoint {
            path: path.clone(),
            source,
        })?;
    }
    if importer.failed > 0 {
        return Err(CliError::Partial {
            failed: importer.failed,
            total: importer.records,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_sits_beside_the_file() {
        assert_eq!(
            default_checkpoint(Path::new("dump/keys.jsonl")),
            Path::new("dump/keys.jsonl.progress")
        );
    }

    #[test]
    fn checkpoints_round_trip_and_refuse_garbage() {
        let dir = std::env::temp_dir().join(format!("kv-cli-checkpoint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.progress");
        assert_eq!(read_checkpoint(&path).unwrap(), 0);
        write_checkpoint(&path, 42).unwrap();
        assert_eq!(read_checkpoint(&path).unwrap(), 42);
        std::fs::write(&path, "forty-two").unwrap();
        assert!(matches!(
            read_checkpoint(&path),
            Err(CliError::CheckpointContent { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
