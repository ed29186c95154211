//! [`Shard`]: what the Durable Object class does with its storage.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;

use kvkit_core::backend::add_to_counter;
use worker::{Env, Method, Request, Response, ScheduledTime, SqlStorage, SqlStorageValue, State};

use crate::plan::upper_bound;
use crate::wire::{
    Condition, Failure, Listed, PATH, Reply, Request as WireRequest, Row, StoredEntry,
};

/// Versions are `epoch << WRITE_BITS | write`: the object's epoch, which it raises (and stores)
/// each time it starts and after every 2^24 writes, and the number of the write in the epoch.
/// So every write gives its entry a version no entry of this object had before, across restarts,
/// with one storage write per epoch rather than one per write.
const WRITE_BITS: u32 = 24;

/// Versions stay below 2^53, the integers JavaScript (and so the storage API) holds exactly.
const MAX_EPOCH: u64 = 1 << (53 - WRITE_BITS);

/// The most expired rows one alarm deletes; when more are due, the next alarm runs at once.
const RECLAIM_BATCH: i64 = 256;

/// The tables, created when the object first runs. Keys are BLOBs: SQLite compares them with
/// `memcmp`, which is the byte order of their UTF-8 encoding that listings promise, and a range
/// bound such as a prefix's successor need not be valid UTF-8.
const SCHEMA: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS kvkit_entries (key BLOB PRIMARY KEY NOT NULL, value BLOB NOT NULL, \
     metadata TEXT, expires_at INTEGER, version INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS kvkit_expiry ON kvkit_entries (expires_at) \
     WHERE expires_at IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS kvkit_meta (name TEXT PRIMARY KEY NOT NULL, \
     value INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT OR IGNORE INTO kvkit_meta (name, value) VALUES ('schema', 1), ('epoch', 0)",
];

/// The condition that selects a live row at the time bound as `?2`.
macro_rules! live {
    () => {
        "(expires_at IS NULL OR expires_at > ?2)"
    };
}

/// One shard of a store: the state behind the Durable Object class that
/// [`durable_object!`](crate::durable_object) declares. Every request is one operation, served
/// from the object's SQLite storage without an `await` between its reads and its writes, so the
/// runtime runs it alone and commits its writes together: counters, put-if-absent and
/// conditional writes are exact.
///
/// ```ignore
/// // What `kvkit_durable::durable_object!(KvShard)` declares, in short:
/// #[worker::durable_object(alarm)]
/// pub struct KvShard(kvkit_durable::Shard);
/// impl worker::DurableObject for KvShard {
///     fn new(state: worker::State, env: worker::Env) -> Self {
///         Self(kvkit_durable::Shard::new(state, env))
///     }
///     async fn fetch(&self, req: worker::Request) -> worker::Result<worker::Response> {
///         self.0.fetch(req).await
///     }
///     async fn alarm(&self) -> worker::Result<worker::Response> {
///         self.0.alarm().await
///     }
/// }
/// # fn shows(shard: &KvShard) {
/// // Its `Debug` shows its epoch and alarm, never a key.
/// assert!(format!("{:?}", shard.0).starts_with("Shard { epoch: "));
/// # }
/// ```
pub struct Shard {
    state: State,
    sql: SqlStorage,
    /// The current epoch (stored in `kvkit_meta`) and the writes made in it.
    epoch: Cell<u64>,
    writes: Cell<u64>,
    /// When the alarm is set for, as far as this instance knows (`None`: no alarm).
    alarm: Rc<Cell<Option<i64>>>,
    /// Why the tables could not be set up, if they could not: every request then fails so.
    broken: Option<String>,
}

impl fmt::Debug for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shard")
            .field("epoch", &self.epoch.get())
            .field("alarm", &self.alarm.get())
            .finish_non_exhaustive()
    }
}

/// The current time in unix milliseconds, as the runtime reports it.
fn now_ms() -> i64 {
    i64::try_from(worker::Date::now().as_millis()).unwrap_or(i64::MAX)
}

fn blob(bytes: &[u8]) -> SqlStorageValue {
    SqlStorageValue::Blob(bytes.to_vec())
}

fn key_value(key: &str) -> SqlStorageValue {
    blob(key.as_bytes())
}

fn optional_int(value: Option<i64>) -> SqlStorageValue {
    value.map_or(SqlStorageValue::Null, SqlStorageValue::Integer)
}

fn version_value(version: u64) -> SqlStorageValue {
    SqlStorageValue::Integer(i64::try_from(version).unwrap_or(i64::MAX))
}

/// A failure of the object's storage.
fn storage(e: &worker::Error) -> Failure {
    Failure::Storage(e.to_string())
}

type Served<T> = std::result::Result<T, Failure>;

fn bytes_of(value: &SqlStorageValue) -> Served<Vec<u8>> {
    match value {
        SqlStorageValue::Blob(bytes) => Ok(bytes.clone()),
        other => Err(Failure::Storage(format!(
            "a stored value of type {other:?}"
        ))),
    }
}

fn text_of(value: &SqlStorageValue) -> Served<Option<String>> {
    match value {
        SqlStorageValue::Null => Ok(None),
        SqlStorageValue::String(text) => Ok(Some(text.clone())),
        other => Err(Failure::Storage(format!(
            "stored metadata of type {other:?}"
        ))),
    }
}

fn int_of(value: &SqlStorageValue) -> Served<Option<i64>> {
    match value {
        SqlStorageValue::Null => Ok(None),
        SqlStorageValue::Integer(n) => Ok(Some(*n)),
        other => Err(Failure::Storage(format!(
            "a stored integer of type {other:?}"
        ))),
    }
}

impl Shard {
    /// Sets up the object's tables (when it first runs) and reads when its alarm is set for,
    /// before the runtime delivers it any request.
    ///
    /// ```ignore
    /// # fn new(state: worker::State, env: worker::Env) {
    /// let shard = kvkit_durable::Shard::new(state, env);
    /// assert!(format!("{shard:?}").starts_with("Shard"));
    /// # }
    /// ```
    pub fn new(state: State, _env: Env) -> Self {
        let sql = state.storage().sql();
        let alarm = Rc::new(Cell::new(None));
        let (known, storage) = (Rc::clone(&alarm), state.storage());
        let _init = state.block_concurrency_while(async move {
            known.set(storage.get_alarm().await?);
            Ok(())
        });
        let mut shard = Self {
            state,
            sql,
            epoch: Cell::new(0),
            writes: Cell::new(0),
            alarm,
            broken: None,
        };
        match shard.set_up() {
            Ok(()) => {}
            Err(Failure::Storage(why) | Failure::BadRequest(why)) => shard.broken = Some(why),
            Err(other) => shard.broken = Some(format!("{other:?}")),
        }
        shard
    }

    /// Creates the tables when they are missing and starts a new epoch.
    fn set_up(&self) -> Served<()> {
        for statement in SCHEMA {
            self.rows(statement, vec![])?;
        }
        let rows = self.rows("SELECT value FROM kvkit_meta WHERE name = 'epoch'", vec![])?;
        let epoch = rows
            .first()
            .and_then(|row| row.first())
            .map(int_of)
            .transpose()?
            .flatten()
            .and_then(|epoch| u64::try_from(epoch).ok())
            .ok_or_else(|| Failure::Storage("no epoch in kvkit_meta".to_owned()))?;
        self.epoch.set(epoch);
        self.next_epoch()
    }

    /// Raises and stores the epoch, and starts counting its writes.
    fn next_epoch(&self) -> Served<()> {
        let epoch = self.epoch.get() + 1;
        if epoch >= MAX_EPOCH {
            return Err(Failure::Storage(
                "the object has used up its versions".to_owned(),
            ));
        }
        self.rows(
            "UPDATE kvkit_meta SET value = ?1 WHERE name = 'epoch'",
            vec![version_value(epoch)],
        )?;
        self.epoch.set(epoch);
        self.writes.set(0);
        Ok(())
    }

    /// Runs one statement to completion and returns its rows.
    fn rows(&self, sql: &str, bindings: Vec<SqlStorageValue>) -> Served<Vec<Vec<SqlStorageValue>>> {
        let cursor = self.sql.exec(sql, bindings).map_err(|e| storage(&e))?;
        cursor
            .raw()
            .collect::<worker::Result<Vec<_>>>()
            .map_err(|e| storage(&e))
    }

    /// Serves one request of the store: `POST /kvkit/v1` with one operation in its body.
    ///
    /// ```ignore
    /// # async fn fetch(shard: &kvkit_durable::Shard, req: worker::Request) -> worker::Result<()> {
    /// let response = shard.fetch(req).await?;
    /// assert_eq!(response.status_code(), 200);
    /// # Ok(()) }
    /// ```
    pub async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let reply = if req.method() != Method::Post || req.path() != PATH {
            Reply::Failed(Failure::BadRequest(format!(
                "this object serves POST {PATH}, not {} {}",
                req.method(),
                req.path()
            )))
        } else {
            let body = req.bytes().await?;
            match WireRequest::decode(&body) {
                Ok(request) => self.serve(request).await,
                Err(why) => Reply::Failed(Failure::BadRequest(why)),
            }
        };
        Response::from_bytes(reply.encode())
    }

    /// Does `request`: its reads and writes run with no `await` between them, so no other
    /// request of this object interleaves; then it moves the alarm earlier if a write needs it.
    async fn serve(&self, request: WireRequest) -> Reply {
        if let Some(why) = &self.broken {
            return Reply::Failed(Failure::Storage(format!("setting up the tables: {why}")));
        }
        let now = now_ms();
        let expiring = match &request {
            WireRequest::Put { row, .. } => row.expires_at,
            WireRequest::PutMany { rows } => rows.iter().filter_map(|r| r.expires_at).min(),
            WireRequest::Increment { expires_at, .. } => *expires_at,
            _ => None,
        };
        let reply = match self.apply(request, now) {
            Ok(reply) => reply,
            Err(failure) => return Reply::Failed(failure),
        };
        if let Some(at) = expiring
            && let Err(e) = self.alarm_by(at).await
        {
            return Reply::Failed(storage(&e));
        }
        reply
    }

    /// Makes sure the alarm runs by `at`.
    async fn alarm_by(&self, at: i64) -> worker::Result<()> {
        if self.alarm.get().is_some_and(|set| set <= at) {
            return Ok(());
        }
        // Noted before the await, so that a request served meanwhile sees it.
        self.alarm.set(Some(at));
        let set = self.set_alarm(at).await;
        if set.is_err() {
            // Not known to be set: the next write that expires sets it again.
            self.alarm.set(None);
        }
        set
    }

    async fn set_alarm(&self, at: i64) -> worker::Result<()> {
        #[allow(clippy::cast_precision_loss)] // unix milliseconds are far below 2^53
        let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(at as f64));
        self.state
            .storage()
            .set_alarm(ScheduledTime::new(date))
            .await
    }

    /// A version no entry of this object had before.
    fn take_version(&self) -> Served<u64> {
        if self.writes.get() == 1 << WRITE_BITS {
            self.next_epoch()?;
        }
        let write = self.writes.get();
        self.writes.set(write + 1);
        Ok(self.epoch.get() << WRITE_BITS | write)
    }

    fn apply(&self, request: WireRequest, now: i64) -> Served<Reply> {
        let now_value = || SqlStorageValue::Integer(now);
        match request {
            WireRequest::Get { key } => Ok(Reply::Value(self.value(&key, now)?)),
            WireRequest::GetEntry { key } => {
                let sql = concat!(
                    "SELECT value, metadata, expires_at, version FROM kvkit_entries ",
                    "WHERE key = ?1 AND ",
                    live!()
                );
                let rows = self.rows(sql, vec![key_value(&key), now_value()])?;
                let entry = rows
                    .first()
                    .map(|row| -> Served<StoredEntry> {
                        Ok(StoredEntry {
                            value: bytes_of(&row[0])?,
                            metadata: text_of(&row[1])?,
                            expires_at: int_of(&row[2])?,
                            version: int_of(&row[3])?
                                .and_then(|v| u64::try_from(v).ok())
                                .unwrap_or(0),
                        })
                    })
                    .transpose()?;
                Ok(Reply::Entry(entry))
            }
            WireRequest::GetMany { keys } => {
                let values = keys
                    .iter()
                    .map(|key| self.value(key, now))
                    .collect::<Served<Vec<_>>>()?;
                Ok(Reply::Values(values))
            }
            WireRequest::Put { row, condition } => {
                let applied = match condition {
                    Condition::Always => {
                        self.upsert(&row)?;
                        true
                    }
                    Condition::IfAbsent => self.insert_if_absent(&row, now)?,
                    Condition::IfVersion(expected) => {
                        self.update_if_version(&row, expected, now)?
                    }
                };
                Ok(Reply::Applied(applied))
            }
            WireRequest::PutMany { rows } => {
                for row in &rows {
                    self.upsert(row)?;
                }
                Ok(Reply::Done)
            }
            WireRequest::Delete { key } => {
                self.delete(&key)?;
                Ok(Reply::Done)
            }
            WireRequest::DeleteIfVersion { key, version } => {
                let sql = concat!(
                    "DELETE FROM kvkit_entries WHERE key = ?1 AND ",
                    live!(),
                    " AND version = ?3 RETURNING 1"
                );
                let deleted = self.rows(
                    sql,
                    vec![key_value(&key), now_value(), version_value(version)],
                )?;
                Ok(Reply::Applied(!deleted.is_empty()))
            }
            WireRequest::DeleteMany { keys } => {
                for key in &keys {
                    self.delete(key)?;
                }
                Ok(Reply::Done)
            }
            WireRequest::Increment {
                key,
                delta,
                expires_at,
            } => {
                let next = match self.value(&key, now)? {
                    None => {
                        self.upsert(&Row {
                            key,
                            value: delta.to_string().into_bytes(),
                            metadata: None,
                            expires_at,
                        })?;
                        delta
                    }
                    Some(current) => {
                        let next = add_to_counter("", &current, delta).map_err(|e| match e {
                            kvkit_core::Error::CounterOverflow { .. } => Failure::CounterOverflow,
                            _ => Failure::NotACounter,
                        })?;
                        let version = self.take_version()?;
                        self.rows(
                            "UPDATE kvkit_entries SET value = ?2, version = ?3 WHERE key = ?1",
                            vec![
                                key_value(&key),
                                blob(next.to_string().as_bytes()),
                                version_value(version),
                            ],
                        )?;
                        next
                    }
                };
                Ok(Reply::Counter(next))
            }
            WireRequest::List {
                prefix,
                after,
                limit,
            } => self.list(&prefix, after.as_deref(), limit, now),
        }
    }

    fn value(&self, key: &str, now: i64) -> Served<Option<Vec<u8>>> {
        let sql = concat!(
            "SELECT value FROM kvkit_entries WHERE key = ?1 AND ",
            live!()
        );
        let rows = self.rows(sql, vec![key_value(key), SqlStorageValue::Integer(now)])?;
        rows.first().map(|row| bytes_of(&row[0])).transpose()
    }

    fn row_values(&self, row: &Row) -> Served<Vec<SqlStorageValue>> {
        Ok(vec![
            key_value(&row.key),
            blob(&row.value),
            row.metadata.clone().into(),
            optional_int(row.expires_at),
            version_value(self.take_version()?),
        ])
    }

    fn upsert(&self, row: &Row) -> Served<()> {
        self.rows(
            "INSERT INTO kvkit_entries (key, value, metadata, expires_at, version) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
             metadata = excluded.metadata, expires_at = excluded.expires_at, \
             version = excluded.version",
            self.row_values(row)?,
        )
        .map(drop)
    }

    /// Inserts, or replaces only a row that has expired by `now`; returns whether it wrote.
    fn insert_if_absent(&self, row: &Row, now: i64) -> Served<bool> {
        let mut values = self.row_values(row)?;
        values.push(SqlStorageValue::Integer(now));
        let written = self.rows(
            "INSERT INTO kvkit_entries (key, value, metadata, expires_at, version) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
             metadata = excluded.metadata, expires_at = excluded.expires_at, \
             version = excluded.version \
             WHERE kvkit_entries.expires_at IS NOT NULL AND kvkit_entries.expires_at <= ?6 \
             RETURNING 1",
            values,
        )?;
        Ok(!written.is_empty())
    }

    /// Replaces the row only if it is live at `now` with version `expected`.
    fn update_if_version(&self, row: &Row, expected: u64, now: i64) -> Served<bool> {
        let mut values = self.row_values(row)?;
        values.push(version_value(expected));
        values.push(SqlStorageValue::Integer(now));
        let written = self.rows(
            "UPDATE kvkit_entries SET value = ?2, metadata = ?3, expires_at = ?4, version = ?5 \
             WHERE key = ?1 AND version = ?6 AND (expires_at IS NULL OR expires_at > ?7) \
             RETURNING 1",
            values,
        )?;
        Ok(!written.is_empty())
    }

    fn delete(&self, key: &str) -> Served<()> {
        self.rows(
            "DELETE FROM kvkit_entries WHERE key = ?1",
            vec![key_value(key)],
        )
        .map(drop)
    }

    /// One page of at most `limit` live keys under `prefix`, after `after` when it continues a
    /// listing: a range of the primary key, O(log n + limit) however many rows the table holds.
    fn list(&self, prefix: &str, after: Option<&str>, limit: u32, now: i64) -> Served<Reply> {
        let from = if after.is_some() { ">" } else { ">=" };
        let start = after.unwrap_or(prefix);
        let mut values = vec![key_value(start), SqlStorageValue::Integer(now)];
        let upper = match upper_bound(prefix) {
            Some(bound) => {
                values.push(SqlStorageValue::Blob(bound));
                "AND key < ?4"
            }
            None => "",
        };
        values.insert(2, SqlStorageValue::Integer(i64::from(limit) + 1));
        let sql = format!(
            "SELECT key, metadata, expires_at FROM kvkit_entries WHERE key {from} ?1 {upper} \
             AND (expires_at IS NULL OR expires_at > ?2) ORDER BY key LIMIT ?3"
        );
        let rows = self.rows(&sql, values)?;
        let more = rows.len() > limit as usize;
        let keys = rows
            .iter()
            .take(limit as usize)
            .map(|row| {
                let name = String::from_utf8(bytes_of(&row[0])?)
                    .map_err(|_| Failure::Storage("a stored key that is not UTF-8".to_owned()))?;
                Ok(Listed {
                    name,
                    metadata: text_of(&row[1])?,
                    expires_at: int_of(&row[2])?,
                })
            })
            .collect::<Served<Vec<_>>>()?;
        Ok(Reply::Keys { keys, more })
    }

    /// Deletes up to 256 expired rows, then sets the alarm for the next row to expire (at once,
    /// when more are already due). Alarms may run more than once and late: each run deletes
    /// only what has expired by then, and reads never return an expired row anyway.
    ///
    /// ```ignore
    /// # async fn alarm(shard: &kvkit_durable::Shard) -> worker::Result<()> {
    /// assert_eq!(shard.alarm().await?.status_code(), 200);
    /// # Ok(()) }
    /// ```
    pub async fn alarm(&self) -> worker::Result<Response> {
        let now = now_ms();
        let next = self.reclaim(now).map_err(|f| match f {
            Failure::Storage(why) | Failure::BadRequest(why) => worker::Error::RustError(why),
            other => worker::Error::RustError(format!("{other:?}")),
        })?;
        self.alarm.set(next);
        if let Some(at) = next {
            self.set_alarm(at.max(now)).await?;
        }
        Response::ok("")
    }

    /// Deletes one batch of rows expired by `now`; returns when the next row expires.
    fn reclaim(&self, now: i64) -> Served<Option<i64>> {
        self.rows(
            "DELETE FROM kvkit_entries WHERE key IN (SELECT key FROM kvkit_entries \
             WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)",
            vec![
                SqlStorageValue::Integer(now),
                SqlStorageValue::Integer(RECLAIM_BATCH),
            ],
        )?;
        let rows = self.rows(
            "SELECT min(expires_at) FROM kvkit_entries WHERE expires_at IS NOT NULL",
            vec![],
        )?;
        Ok(rows
            .first()
            .and_then(|row| row.first())
            .map(int_of)
            .transpose()?
            .flatten())
    }
}
