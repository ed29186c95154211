//! [`DurableKvStore`]: the `KvStore` contract over the objects of a Durable Object namespace.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::future::try_join_all;
use kvkit_core::backend::{cursor, from_unix_ms, unix_ms};
use kvkit_core::{
    Capabilities, Clock, CounterOptions, Entry, Error, KeyInfo, KvStore, ListOptions, ListPage,
    PutItem, PutOptions, Result, SystemClock, Version, WriteCondition,
};
use worker::{Env, Method, ObjectNamespace, Request, RequestInit, Stub};

use crate::limits::{self, BACKEND};
use crate::plan;
use crate::wire::{Condition, Failure, Listed, PATH, Reply, Request as WireRequest, Row};

/// Picks the part of a key that chooses its object (see [`DurableBuilder::shard_key`]).
///
/// ```ignore
/// fn tenant(key: &str) -> &str {
///     key.split_once('/').map_or(key, |(tenant, _rest)| tenant)
/// }
/// let pick: kvkit_durable::ShardKey = tenant;
/// assert_eq!(pick("acme/users/1"), "acme");
/// ```
pub type ShardKey = fn(&str) -> &str;

/// The whole key chooses its object.
fn whole_key(key: &str) -> &str {
    key
}

/// The `KvStore` contract, exact, over the objects of a Durable Object namespace whose class
/// [`durable_object!`](crate::durable_object) declares.
///
/// Each operation is one request to one object through its stub (a batch: one request per
/// object it touches, sent at once; a listing: one per object, merged in key order). Keys are
/// spread over a fixed number of objects by a stable hash ([`DurableBuilder::shards`]), of the
/// whole key or of the part a [`shard_key`](DurableBuilder::shard_key) picks. Clones share the
/// namespace and the stubs.
///
/// ```ignore
/// # async fn handler(env: worker::Env) -> kvkit_core::Result<()> {
/// use kvkit_core::{CounterOptions, KvStore};
/// let store = kvkit_durable::DurableKvStore::from_env(&env, "KVKIT")?;
/// assert!(store.capabilities().atomic_counter);
/// assert_eq!(store.increment("hits", 1, CounterOptions::new()).await?, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DurableKvStore {
    namespace: ObjectNamespace,
    binding: Arc<str>,
    name: Arc<str>,
    shard_key: ShardKey,
    /// One stub per shard, made on first use.
    stubs: Arc<[OnceLock<Stub>]>,
    caps: Capabilities,
}

impl fmt::Debug for DurableKvStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableKvStore")
            .field("binding", &self.binding)
            .field("name", &self.name)
            .field("shards", &self.stubs.len())
            .finish_non_exhaustive()
    }
}

/// Configures a [`DurableKvStore`]: how many objects hold its keys, what they are named, and
/// which part of a key chooses its object.
///
/// ```ignore
/// # fn handler(env: worker::Env) -> kvkit_core::Result<()> {
/// let store = kvkit_durable::DurableKvStore::builder(&env, "KVKIT")?
///     .name("limits")
///     .shards(32)
///     .build()?;
/// assert_eq!(store.shards(), 32);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DurableBuilder {
    namespace: ObjectNamespace,
    binding: String,
    name: String,
    shards: u32,
    shard_key: ShardKey,
}

impl fmt::Debug for DurableBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableBuilder")
            .field("binding", &self.binding)
            .field("name", &self.name)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl DurableBuilder {
    /// How many objects hold the keys (default 1). Each object serves about a thousand
    /// requests a second; a listing asks every object. The count is part of where keys live:
    /// keep it once data is written (a key is looked for in the object its hash picks now).
    /// Zero is refused by [`build`](Self::build).
    ///
    /// ```ignore
    /// # fn handler(env: worker::Env) -> kvkit_core::Result<()> {
    /// let builder = kvkit_durable::DurableKvStore::builder(&env, "KVKIT")?;
    /// assert!(builder.clone().shards(0).build().is_err());
    /// assert_eq!(builder.shards(4).build()?.shards(), 4);
    /// # Ok(()) }
    /// ```
    pub fn shards(mut self, shards: u32) -> Self {
        self.shards = shards;
        self
    }

    /// The name the objects' names start with (default `kvkit`): shard `i` is the object named
    /// `{name}/{i}`. Stores with different names share no object, and so no key.
    ///
    /// ```ignore
    /// # fn handler(env: worker::Env) -> kvkit_core::Result<()> {
    /// let store = kvkit_durable::DurableKvStore::builder(&env, "KVKIT")?.name("sessions").build()?;
    /// assert!(format!("{store:?}").contains(r#"name: "sessions""#));
    /// # Ok(()) }
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Chooses each key's object by the part of the key `shard_key` returns instead of the whole
    /// key, so that keys sharing that part share an object: for instance one rate-limit
    /// identifier's counters (`ratelimit:{identifier}:{window}`), as Cloudflare recommends for
    /// limiters, while many identifiers spread over the shards.
    ///
    /// ```ignore
    /// # fn handler(env: worker::Env) -> kvkit_core::Result<()> {
    /// fn identifier(key: &str) -> &str {
    ///     key.rsplit_once(':').map_or(key, |(head, _window)| head)
    /// }
    /// let store = kvkit_durable::DurableKvStore::builder(&env, "KVKIT")?
    ///     .shards(64)
    ///     .shard_key(identifier)
    ///     .build()?;
    /// assert_eq!(store.shard_of("ratelimit:10.0.0.1:1700000040"), store.shard_of("ratelimit:10.0.0.1:1700000100"));
    /// # Ok(()) }
    /// ```
    pub fn shard_key(mut self, shard_key: ShardKey) -> Self {
        self.shard_key = shard_key;
        self
    }

    /// The store; a shard count of zero is [`Error::Configuration`].
    ///
    /// ```ignore
    /// # fn handler(env: worker::Env) -> kvkit_core::Result<()> {
    /// let store = kvkit_durable::DurableKvStore::builder(&env, "KVKIT")?.build()?;
    /// assert_eq!(store.shards(), 1);
    /// # Ok(()) }
    /// ```
    pub fn build(self) -> Result<DurableKvStore> {
        if self.shards == 0 {
            return Err(Error::configuration(
                BACKEND,
                "a store needs at least one shard",
            ));
        }
        Ok(DurableKvStore {
            namespace: self.namespace,
            binding: self.binding.into(),
            name: self.name.into(),
            shard_key: self.shard_key,
            stubs: (0..self.shards).map(|_| OnceLock::new()).collect(),
            caps: limits::capabilities(),
        })
    }
}

/// A failure to reach the object: the request may or may not have been applied.
fn unreachable_object(operation: &'static str, e: &worker::Error) -> Error {
    Error::Backend {
        backend: BACKEND,
        message: format!("{operation}: calling the Durable Object failed: {e}"),
        retryable: true,
        source: None,
    }
}

fn unexpected(operation: &'static str, reply: &Reply) -> Error {
    let what = match reply {
        Reply::Failed(Failure::BadRequest(why)) => format!("the object refused the request: {why}"),
        Reply::Failed(Failure::Storage(why)) => format!("the object's storage failed: {why}"),
        other => format!("an unexpected reply {}", reply_kind(other)),
    };
    Error::Backend {
        backend: BACKEND,
        message: format!("{operation}: {what}"),
        retryable: matches!(reply, Reply::Failed(Failure::Storage(_))),
        source: None,
    }
}

/// The kind of a reply, without its contents (which may hold values).
fn reply_kind(reply: &Reply) -> &'static str {
    match reply {
        Reply::Value(_) => "Value",
        Reply::Entry(_) => "Entry",
        Reply::Values(_) => "Values",
        Reply::Done => "Done",
        Reply::Applied(_) => "Applied",
        Reply::Counter(_) => "Counter",
        Reply::Keys { .. } => "Keys",
        Reply::Failed(_) => "Failed",
    }
}

fn expiration(expires_at: Option<i64>) -> Option<SystemTime> {
    expires_at.map(|ms| from_unix_ms(u64::try_from(ms).unwrap_or(0)))
}

fn metadata(key: &str, json: Option<String>) -> Result<Option<serde_json::Value>> {
    json.map(|json| serde_json::from_str(&json))
        .transpose()
        .map_err(|e| Error::decode(key, e))
}

fn millis(at: Option<SystemTime>) -> Option<i64> {
    at.map(|at| i64::try_from(unix_ms(at)).unwrap_or(i64::MAX))
}

impl DurableKvStore {
    /// The store over the namespace bound to the Worker as `binding`, in one object.
    ///
    /// A binding the Worker does not have is [`Error::Configuration`], not a panic.
    ///
    /// ```ignore
    /// # fn handler(env: worker::Env) -> kvkit_core::Result<()> {
    /// let store = kvkit_durable::DurableKvStore::from_env(&env, "KVKIT")?;
    /// assert_eq!(store.shards(), 1);
    /// assert!(kvkit_durable::DurableKvStore::from_env(&env, "NO_SUCH_BINDING").is_err());
    /// # Ok(()) }
    /// ```
    pub fn from_env(env: &Env, binding: &str) -> Result<Self> {
        Self::builder(env, binding)?.build()
    }

    /// Configures a store over the namespace bound to the Worker as `binding`.
    ///
    /// ```ignore
    /// # fn handler(env: worker::Env) -> kvkit_core::Result<()> {
    /// let store = kvkit_durable::DurableKvStore::builder(&env, "KVKIT")?.shards(8).build()?;
    /// assert_eq!(store.shards(), 8);
    /// # Ok(()) }
    /// ```
    pub fn builder(env: &Env, binding: &str) -> Result<DurableBuilder> {
        let namespace = env.durable_object(binding).map_err(|e| {
            Error::configuration(
                BACKEND,
                format!("the Worker has no Durable Object binding {binding:?}: {e}"),
            )
        })?;
        Ok(DurableBuilder {
            namespace,
            binding: binding.to_owned(),
            name: "kvkit".to_owned(),
            shards: 1,
            shard_key: whole_key,
        })
    }

    /// How many objects hold the keys.
    ///
    /// ```ignore
    /// # fn handler(store: kvkit_durable::DurableKvStore) {
    /// assert!(store.shards() >= 1);
    /// # }
    /// ```
    pub fn shards(&self) -> u32 {
        // Built from a u32 count.
        u32::try_from(self.stubs.len()).unwrap_or(u32::MAX)
    }

    /// The shard (`0..shards()`) whose object holds `key`.
    ///
    /// ```ignore
    /// # fn handler(store: kvkit_durable::DurableKvStore) {
    /// assert!(store.shard_of("user:1") < store.shards() as usize);
    /// assert_eq!(store.shard_of("user:1"), store.shard_of("user:1"));
    /// # }
    /// ```
    pub fn shard_of(&self, key: &str) -> usize {
        plan::shard_of((self.shard_key)(key), self.shards())
    }

    fn stub(&self, shard: usize) -> Result<&Stub> {
        if let Some(stub) = self.stubs[shard].get() {
            return Ok(stub);
        }
        let stub = self
            .namespace
            .get_by_name(&format!("{}/{shard}", self.name))
            .map_err(|e| unreachable_object("get the object's stub", &e))?;
        Ok(self.stubs[shard].get_or_init(|| stub))
    }

    /// Sends `request` to the object of `shard`: one round trip.
    async fn call(
        &self,
        operation: &'static str,
        shard: usize,
        request: &WireRequest,
    ) -> Result<Reply> {
        let body = js_sys::Uint8Array::from(&request.encode()[..]);
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_body(Some(body.into()));
        let fail = |e: worker::Error| unreachable_object(operation, &e);
        // The host is never resolved: the request goes to the object through its stub.
        let request =
            Request::new_with_init(&format!("http://kvkit{PATH}"), &init).map_err(fail)?;
        let mut response = self
            .stub(shard)?
            .fetch_with_request(request)
            .await
            .map_err(fail)?;
        let body = response.bytes().await.map_err(fail)?;
        Reply::decode(&body).map_err(|why| Error::Backend {
            backend: BACKEND,
            message: format!("{operation}: the object's reply is malformed: {why}"),
            retryable: false,
            source: None,
        })
    }

    async fn call_for_key(
        &self,
        operation: &'static str,
        key: &str,
        request: WireRequest,
    ) -> Result<Reply> {
        self.call(operation, self.shard_of(key), &request).await
    }

    /// Groups `items` by the shard of their key, keeping their order within each shard.
    fn by_shard<T>(&self, items: Vec<T>, key: impl Fn(&T) -> &str) -> Vec<(usize, Vec<T>)> {
        let mut groups: Vec<Vec<T>> = (0..self.stubs.len()).map(|_| Vec::new()).collect();
        for item in items {
            let shard = self.shard_of(key(&item));
            groups[shard].push(item);
        }
        groups
            .into_iter()
            .enumerate()
            .filter(|(_, group)| !group.is_empty())
            .collect()
    }

    fn row(&self, key: &str, value: &Bytes, options: &PutOptions) -> Result<Row> {
        let now = SystemClock.now();
        let checked = self.caps.check_put(key, value.len(), options, now)?;
        Ok(Row {
            key: key.to_owned(),
            value: value.to_vec(),
            metadata: checked.metadata_json.clone(),
            expires_at: millis(checked.expires_at(now)),
        })
    }

    /// Writes `row` under `condition`; returns whether the condition held.
    async fn write(&self, operation: &'static str, row: Row, condition: Condition) -> Result<bool> {
        let key = row.key.clone();
        match self
            .call_for_key(operation, &key, WireRequest::Put { row, condition })
            .await?
        {
            Reply::Applied(applied) => Ok(applied),
            other => Err(unexpected(operation, &other)),
        }
    }
}

#[async_trait::async_trait(?Send)]
impl KvStore for DurableKvStore {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.caps.check_key(key)?;
        let request = WireRequest::Get {
            key: key.to_owned(),
        };
        match self.call_for_key("get", key, request).await? {
            Reply::Value(value) => Ok(value.map(Bytes::from)),
            other => Err(unexpected("get", &other)),
        }
    }

    async fn get_with_metadata(&self, key: &str) -> Result<Option<Entry>> {
        self.caps.check_key(key)?;
        let request = WireRequest::GetEntry {
            key: key.to_owned(),
        };
        match self.call_for_key("get_with_metadata", key, request).await? {
            Reply::Entry(None) => Ok(None),
            Reply::Entry(Some(stored)) => Ok(Some(
                Entry::new(
                    Bytes::from(stored.value),
                    metadata(key, stored.metadata)?,
                    expiration(stored.expires_at),
                )
                .with_version(Version::from_u64(stored.version)),
            )),
            other => Err(unexpected("get_with_metadata", &other)),
        }
    }

    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<()> {
        let row = self.row(key, &value, &options)?;
        let condition = match &options.condition {
            WriteCondition::Always => Condition::Always,
            WriteCondition::IfAbsent => Condition::IfAbsent,
            WriteCondition::IfVersion(version) => match version.as_u64() {
                Some(version) => Condition::IfVersion(version),
                // Not a version this store issued: no entry has it.
                None => return Err(Error::condition_failed(key)),
            },
            _ => {
                return Err(Error::Unsupported {
                    backend: BACKEND,
                    operation: "this write condition",
                });
            }
        };
        if self.write("put", row, condition).await? {
            Ok(())
        } else {
            Err(Error::condition_failed(key))
        }
    }

    async fn put_if_absent(&self, key: &str, value: Bytes, options: PutOptions) -> Result<bool> {
        self.caps
            .check_condition(&options.condition, "conditions in put_if_absent", false)?;
        let row = self.row(key, &value, &options)?;
        self.write("put_if_absent", row, Condition::IfAbsent).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.caps.check_key(key)?;
        let request = WireRequest::Delete {
            key: key.to_owned(),
        };
        match self.call_for_key("delete", key, request).await? {
            Reply::Done => Ok(()),
            other => Err(unexpected("delete", &other)),
        }
    }

    async fn delete_if_version(&self, key: &str, version: &Version) -> Result<()> {
        self.caps.check_key(key)?;
        let Some(version) = version.as_u64() else {
            return Err(Error::condition_failed(key));
        };
        let request = WireRequest::DeleteIfVersion {
            key: key.to_owned(),
            version,
        };
        match self.call_for_key("delete_if_version", key, request).await? {
            Reply::Applied(true) => Ok(()),
            Reply::Applied(false) => Err(Error::condition_failed(key)),
            other => Err(unexpected("delete_if_version", &other)),
        }
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage> {
        let limit = self.caps.check_list(&options)?;
        let prefix = options.prefix;
        let after = options
            .cursor
            .as_deref()
            .map(|raw| cursor::decode(raw, &prefix))
            .transpose()?;
        let request = WireRequest::List {
            prefix: prefix.clone(),
            after,
            // At most max_list_limit (1000).
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
        };
        let pages = try_join_all((0..self.stubs.len()).map(|shard| {
            let request = &request;
            async move {
                match self.call("list", shard, request).await? {
                    Reply::Keys { keys, more } => Ok((keys, more)),
                    other => Err(unexpected("list", &other)),
                }
            }
        }))
        .await?;
        let (keys, more) = plan::merge(pages, limit);
        let keys = keys
            .into_iter()
            .map(
                |Listed {
                     name,
                     expires_at,
                     metadata: json,
                 }| {
                    let meta = metadata(&name, json)?;
                    Ok(KeyInfo::new(name, expiration(expires_at), meta))
                },
            )
            .collect::<Result<Vec<_>>>()?;
        let next = match keys.last() {
            Some(last) if more => Some(cursor::encode(&prefix, &last.name)),
            _ => None,
        };
        Ok(ListPage::new(keys, next))
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        self.caps.check_batch_get(keys.len())?;
        keys.iter().try_for_each(|key| self.caps.check_key(key))?;
        let indexed: Vec<(usize, &String)> = keys.iter().enumerate().collect();
        let groups = self.by_shard(indexed, |(_, key)| key.as_str());
        let answers = try_join_all(groups.into_iter().map(|(shard, group)| async move {
            let request = WireRequest::GetMany {
                keys: group.iter().map(|(_, key)| (*key).clone()).collect(),
            };
            match self.call("get_many", shard, &request).await? {
                Reply::Values(values) if values.len() == group.len() => Ok((group, values)),
                other => Err(unexpected("get_many", &other)),
            }
        }))
        .await?;
        let mut out = vec![None; keys.len()];
        for (group, values) in answers {
            for ((index, _), value) in group.into_iter().zip(values) {
                out[index] = value.map(Bytes::from);
            }
        }
        Ok(out)
    }

    async fn put_many(&self, items: Vec<PutItem>) -> Result<()> {
        let rows = items
            .into_iter()
            .map(|item| {
                self.caps.check_condition(
                    &item.options.condition,
                    "conditions in put_many",
                    false,
                )?;
                self.row(&item.key, &item.value, &item.options)
            })
            .collect::<Result<Vec<_>>>()?;
        let groups = self.by_shard(rows, |row| row.key.as_str());
        try_join_all(groups.into_iter().map(|(shard, rows)| async move {
            match self
                .call("put_many", shard, &WireRequest::PutMany { rows })
                .await?
            {
                Reply::Done => Ok(()),
                other => Err(unexpected("put_many", &other)),
            }
        }))
        .await?;
        Ok(())
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        keys.iter().try_for_each(|key| self.caps.check_key(key))?;
        let groups = self.by_shard(keys.to_vec(), String::as_str);
        try_join_all(groups.into_iter().map(|(shard, keys)| async move {
            match self
                .call("delete_many", shard, &WireRequest::DeleteMany { keys })
                .await?
            {
                Reply::Done => Ok(()),
                other => Err(unexpected("delete_many", &other)),
            }
        }))
        .await?;
        Ok(())
    }

    async fn increment(&self, key: &str, delta: i64, options: CounterOptions) -> Result<i64> {
        self.caps.check_key(key)?;
        let now = SystemClock.now();
        let expiry = self.caps.check_expiry(options.expiry_on_create, now)?;
        let request = WireRequest::Increment {
            key: key.to_owned(),
            delta,
            expires_at: millis(self.caps.expires_at(expiry, now)),
        };
        match self.call_for_key("increment", key, request).await? {
            Reply::Counter(value) => Ok(value),
            Reply::Failed(Failure::NotACounter) => Err(Error::NotACounter {
                key: kvkit_core::RedactedKey::new(key),
            }),
            Reply::Failed(Failure::CounterOverflow) => Err(Error::CounterOverflow {
                key: kvkit_core::RedactedKey::new(key),
                delta,
            }),
            other => Err(unexpected("increment", &other)),
        }
    }
}
