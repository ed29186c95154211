//! The wire format between [`DurableKvStore`](crate) and the object: one request body per
//! operation, one reply body per request, both a compact binary encoding behind a version byte.
//!
//! Every body starts with [`WIRE_VERSION`]; the request also goes to the path
//! [`PATH`] (`/kvkit/v1`), so a version mismatch is refused before anything is decoded, and an
//! object of a newer build can keep serving an older store by answering both. After the version
//! byte comes one tag byte (the operation, or the kind of reply) and the fields in order:
//! integers little-endian (`u32` lengths and counts, `i64` counters and unix milliseconds, `u64`
//! versions), byte strings and text as a `u32` length then the bytes (text is checked to be
//! UTF-8 when read), an optional field as `0` (absent) or `1` then the field, a list as a `u32`
//! count then the items. Plain Rust, so that it is unit-tested natively.

/// The version byte every request and reply starts with.
pub(crate) const WIRE_VERSION: u8 = 1;

/// The path requests go to (the host is ignored: the request goes through the object's stub).
pub(crate) const PATH: &str = "/kvkit/v1";

/// An entry to write, validated by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) key: String,
    pub(crate) value: Vec<u8>,
    /// The metadata as JSON text.
    pub(crate) metadata: Option<String>,
    /// Unix milliseconds; `None` for never.
    pub(crate) expires_at: Option<i64>,
}

/// When a put may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Condition {
    Always,
    IfAbsent,
    IfVersion(u64),
}

/// One operation on one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    Get {
        key: String,
    },
    GetEntry {
        key: String,
    },
    GetMany {
        keys: Vec<String>,
    },
    Put {
        row: Row,
        condition: Condition,
    },
    PutMany {
        rows: Vec<Row>,
    },
    Delete {
        key: String,
    },
    DeleteIfVersion {
        key: String,
        version: u64,
    },
    DeleteMany {
        keys: Vec<String>,
    },
    Increment {
        key: String,
        delta: i64,
        expires_at: Option<i64>,
    },
    List {
        prefix: String,
        after: Option<String>,
        limit: u32,
    },
}

/// A stored entry as a read returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredEntry {
    pub(crate) value: Vec<u8>,
    pub(crate) metadata: Option<String>,
    pub(crate) expires_at: Option<i64>,
    pub(crate) version: u64,
}

/// One key of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub(crate) name: String,
    pub(crate) expires_at: Option<i64>,
    pub(crate) metadata: Option<String>,
}

/// Why the object did not do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The increment's key holds something that is not a counter.
    NotACounter,
    /// The increment would overflow an `i64`.
    CounterOverflow,
    /// The request could not be decoded (or has another wire version).
    BadRequest(String),
    /// The object's storage failed.
    Storage(String),
}

/// The object's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    Value(Option<Vec<u8>>),
    Entry(Option<StoredEntry>),
    Values(Vec<Option<Vec<u8>>>),
    Done,
    /// Whether a conditional write or delete took effect.
    Applied(bool),
    Counter(i64),
    Keys {
        keys: Vec<Listed>,
        more: bool,
    },
    Failed(Failure),
}

/// Appends fields to a body.
struct Writer(Vec<u8>);

impl Writer {
    fn new(tag: u8) -> Self {
        Self(vec![WIRE_VERSION, tag])
    }

    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    fn u32(&mut self, v: usize) {
        // Lengths are bounded by the store's limits, far below 4 GiB.
        let v = u32::try_from(v).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len());
        self.0.extend_from_slice(v);
    }

    fn text(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    fn opt<T>(&mut self, v: Option<T>, write: impl FnOnce(&mut Self, T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                write(self, v);
            }
        }
    }

    fn list<T>(&mut self, items: &[T], mut write: impl FnMut(&mut Self, &T)) {
        self.u32(items.len());
        for item in items {
            write(self, item);
        }
    }

    fn row(&mut self, row: &Row) {
        self.text(&row.key);
        self.bytes(&row.value);
        self.opt(row.metadata.as_deref(), Self::text);
        self.opt(row.expires_at, Self::i64);
    }
}

/// Reads fields from a body.
struct Reader<'a>(&'a [u8]);

/// Why a body could not be read.
type Malformed = String;

impl<'a> Reader<'a> {
    /// Checks the version byte and returns the tag.
    fn open(body: &'a [u8]) -> Result<(Self, u8), Malformed> {
        match body {
            [WIRE_VERSION, tag, rest @ ..] => Ok((Self(rest), *tag)),
            [version, ..] => Err(format!(
                "wire version {version}, but this build speaks version {WIRE_VERSION}"
            )),
            [] => Err("an empty body".to_owned()),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < n {
            return Err("a truncated body".to_owned());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<usize, Malformed> {
        Ok(u32::from_le_bytes(self.array()?) as usize)
    }

    fn u64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, Malformed> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, Malformed> {
        let len = self.u32()?;
        Ok(self.take(len)?.to_vec())
    }

    fn text(&mut self) -> Result<String, Malformed> {
        String::from_utf8(self.bytes()?).map_err(|_| "text that is not UTF-8".to_owned())
    }

    fn opt<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, Malformed>,
    ) -> Result<Option<T>, Malformed> {
        match self.u8()? {
            0 => Ok(None),
            1 => read(self).map(Some),
            other => Err(format!("an option tag {other}")),
        }
    }

    fn list<T>(
        &mut self,
        mut read: impl FnMut(&mut Self) -> Result<T, Malformed>,
    ) -> Result<Vec<T>, Malformed> {
        let count = self.u32()?;
        // Every item takes at least one byte: a count beyond the body is malformed, and never
        // makes this allocate more than the body's size.
        if count > self.0.len() {
            return Err("a list longer than its body".to_owned());
        }
        (0..count).map(|_| read(self)).collect()
    }

    fn row(&mut self) -> Result<Row, Malformed> {
        Ok(Row {
            key: self.text()?,
            value: self.bytes()?,
            metadata: self.opt(Self::text)?,
            expires_at: self.opt(Self::i64)?,
        })
    }

    fn end<T>(self, value: T) -> Result<T, Malformed> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err("trailing bytes".to_owned())
        }
    }
}

impl Request {
    /// The request's body.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w;
        match self {
            Request::Get { key } => {
                w = Writer::new(1);
                w.text(key);
            }
            Request::GetEntry { key } => {
                w = Writer::new(2);
                w.text(key);
            }
            Request::GetMany { keys } => {
                w = Writer::new(3);
                w.list(keys, |w, k| w.text(k));
            }
            Request::Put { row, condition } => {
                w = Writer::new(4);
                w.row(row);
                match condition {
                    Condition::Always => w.u8(0),
                    Condition::IfAbsent => w.u8(1),
                    Condition::IfVersion(version) => {
                        w.u8(2);
                        w.u64(*version);
                    }
                }
            }
            Request::PutMany { rows } => {
                w = Writer::new(5);
                w.list(rows, Writer::row);
            }
            Request::Delete { key } => {
                w = Writer::new(6);
                w.text(key);
            }
            Request::DeleteIfVersion { key, version } => {
                w = Writer::new(7);
                w.text(key);
                w.u64(*version);
            }
            Request::DeleteMany { keys } => {
                w = Writer::new(8);
                w.list(keys, |w, k| w.text(k));
            }
            Request::Increment {
                key,
                delta,
                expires_at,
            } => {
                w = Writer::new(9);
                w.text(key);
                w.i64(*delta);
                w.opt(*expires_at, Writer::i64);
            }
            Request::List {
                prefix,
                after,
                limit,
            } => {
                w = Writer::new(10);
                w.text(prefix);
                w.opt(after.as_deref(), Writer::text);
                w.u32(*limit as usize);
            }
        }
        w.0
    }

    /// Reads a request's body.
    pub(crate) fn decode(body: &[u8]) -> Result<Self, Malformed> {
        let (mut r, tag) = Reader::open(body)?;
        let request = match tag {
            1 => Request::Get { key: r.text()? },
            2 => Request::GetEntry { key: r.text()? },
            3 => Request::GetMany {
                keys: r.list(Reader::text)?,
            },
            4 => {
                let row = r.row()?;
                let condition = match r.u8()? {
                    0 => Condition::Always,
                    1 => Condition::IfAbsent,
                    2 => Condition::IfVersion(r.u64()?),
                    other => return Err(format!("a condition tag {other}")),
                };
                Request::Put { row, condition }
            }
            5 => Request::PutMany {
                rows: r.list(Reader::row)?,
            },
            6 => Request::Delete { key: r.text()? },
            7 => Request::DeleteIfVersion {
                key: r.text()?,
                version: r.u64()?,
            },
            8 => Request::DeleteMany {
                keys: r.list(Reader::text)?,
            },
            9 => Request::Increment {
                key: r.text()?,
                delta: r.i64()?,
                expires_at: r.opt(Reader::i64)?,
            },
            10 => Request::List {
                prefix: r.text()?,
                after: r.opt(Reader::text)?,
                limit: u32::try_from(r.u32()?).unwrap_or(u32::MAX),
            },
            other => return Err(format!("an operation tag {other}")),
        };
        r.end(request)
    }
}

impl Reply {
    /// The reply's body.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w;
        match self {
            Reply::Value(value) => {
                w = Writer::new(1);
                w.opt(value.as_deref(), Writer::bytes);
            }
            Reply::Entry(entry) => {
                w = Writer::new(2);
                w.opt(entry.as_ref(), |w, e| {
                    w.bytes(&e.value);
                    w.opt(e.metadata.as_deref(), Writer::text);
                    w.opt(e.expires_at, Writer::i64);
                    w.u64(e.version);
                });
            }
            Reply::Values(values) => {
                w = Writer::new(3);
                w.list(values, |w, v| w.opt(v.as_deref(), Writer::bytes));
            }
            Reply::Done => w = Writer::new(4),
            Reply::Applied(applied) => {
                w = Writer::new(5);
                w.u8(u8::from(*applied));
            }
            Reply::Counter(n) => {
                w = Writer::new(6);
                w.i64(*n);
            }
            Reply::Keys { keys, more } => {
                w = Writer::new(7);
                w.list(keys, |w, k| {
                    w.text(&k.name);
                    w.opt(k.expires_at, Writer::i64);
                    w.opt(k.metadata.as_deref(), Writer::text);
                });
                w.u8(u8::from(*more));
            }
            Reply::Failed(failure) => {
                w = Writer::new(8);
                match failure {
                    Failure::NotACounter => w.u8(1),
                    Failure::CounterOverflow => w.u8(2),
                    Failure::BadRequest(why) => {
                        w.u8(3);
                        w.text(why);
                    }
                    Failure::Storage(why) => {
                        w.u8(4);
                        w.text(why);
                    }
                }
            }
        }
        w.0
    }

    /// Reads a reply's body.
    pub(crate) fn decode(body: &[u8]) -> Result<Self, Malformed> {
        let (mut r, tag) = Reader::open(body)?;
        let flag = |r: &mut Reader<'_>| -> Result<bool, Malformed> {
            match r.u8()? {
                0 => Ok(false),
                1 => Ok(true),
                other => Err(format!("a flag {other}")),
            }
        };
        let reply = match tag {
            1 => Reply::Value(r.opt(Reader::bytes)?),
            2 => Reply::Entry(r.opt(|r| {
                Ok(StoredEntry {
                    value: r.bytes()?,
                    metadata: r.opt(Reader::text)?,
                    expires_at: r.opt(Reader::i64)?,
                    version: r.u64()?,
                })
            })?),
            3 => Reply::Values(r.list(|r| r.opt(Reader::bytes))?),
            4 => Reply::Done,
            5 => Reply::Applied(flag(&mut r)?),
            6 => Reply::Counter(r.i64()?),
            7 => {
                let keys = r.list(|r| {
                    Ok(Listed {
                        name: r.text()?,
                        expires_at: r.opt(Reader::i64)?,
                        metadata: r.opt(Reader::text)?,
                    })
                })?;
                Reply::Keys {
                    keys,
                    more: flag(&mut r)?,
                }
            }
            8 => Reply::Failed(match r.u8()? {
                1 => Failure::NotACounter,
                2 => Failure::CounterOverflow,
                3 => Failure::BadRequest(r.text()?),
                4 => Failure::Storage(r.text()?),
                other => return Err(format!("a failure tag {other}")),
            }),
            other => return Err(format!("a reply tag {other}")),
        };
        r.end(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, expires_at: Option<i64>) -> Row {
        Row {
            key: key.to_owned(),
            value: vec![0xff, 0x00, b'v'],
            metadata: Some(r#"{"a":[1,2]}"#.to_owned()),
            expires_at,
        }
    }

    #[test]
    fn every_request_round_trips() {
        let requests = [
            Request::Get { key: "k".into() },
            Request::GetEntry {
                key: "ü/€".into()
            },
            Request::GetMany {
                keys: vec!["a".into(), "b".into()],
            },
            Request::Put {
                row: row("k", Some(1_700_000_000_123)),
                condition: Condition::Always,
            },
            Request::Put {
                row: row("k", None),
                condition: Condition::IfAbsent,
            },
            Request::Put {
                row: Row {
                    metadata: None,
                    ..row("k", None)
                },
                condition: Condition::IfVersion(u64::MAX),
            },
            Request::PutMany {
                rows: vec![row("a", None), row("b", Some(7))],
            },
            Request::Delete { key: "k".into() },
            Request::DeleteIfVersion {
                key: "k".into(),
                version: 3,
            },
            Request::DeleteMany { keys: vec![] },
            Request::Increment {
                key: "n".into(),
                delta: i64::MIN,
                expires_at: Some(9),
            },
            Request::List {
                prefix: "user:".into(),
                after: Some("user:7".into()),
                limit: 1000,
            },
            Request::List {
                prefix: String::new(),
                after: None,
                limit: 1,
            },
        ];
        for request in requests {
            let body = request.encode();
            assert_eq!(body[0], WIRE_VERSION);
            assert_eq!(Request::decode(&body).unwrap(), request);
        }
    }

    #[test]
    fn every_reply_round_trips() {
        let replies = [
            Reply::Value(None),
            Reply::Value(Some(vec![])),
            Reply::Entry(Some(StoredEntry {
                value: b"v".to_vec(),
                metadata: Some("null".into()),
                expires_at: Some(1),
                version: 42,
            })),
            Reply::Entry(None),
            Reply::Values(vec![None, Some(b"x".to_vec())]),
            Reply::Done,
            Reply::Applied(true),
            Reply::Applied(false),
            Reply::Counter(-5),
            Reply::Keys {
                keys: vec![Listed {
                    name: "a".into(),
                    expires_at: None,
                    metadata: Some("1".into()),
                }],
                more: true,
            },
            Reply::Failed(Failure::NotACounter),
            Reply::Failed(Failure::CounterOverflow),
            Reply::Failed(Failure::BadRequest("why".into())),
            Reply::Failed(Failure::Storage("disk".into())),
        ];
        for reply in replies {
            assert_eq!(Reply::decode(&reply.encode()).unwrap(), reply);
        }
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let good = Request::Get { key: "k".into() }.encode();
        let mut other_version = good.clone();
        other_version[0] = 2;
        let err = Request::decode(&other_version).unwrap_err();
        assert!(err.contains("wire version 2"), "{err}");
        assert!(Request::decode(&[]).is_err());
        assert!(Request::decode(&good[..good.len() - 1]).is_err());
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(Request::decode(&trailing).is_err());
        assert!(Request::decode(&[WIRE_VERSION, 99]).is_err());
        // A list whose count is larger than the body never allocates for it.
        let mut huge = vec![WIRE_VERSION, 3];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(Request::decode(&huge).is_err());
        // Text must be UTF-8.
        let mut bad_text = vec![WIRE_VERSION, 1];
        bad_text.extend_from_slice(&1u32.to_le_bytes());
        bad_text.push(0xff);
        assert!(Request::decode(&bad_text).is_err());
        assert!(Reply::decode(&[WIRE_VERSION, 5, 2]).is_err());
    }
}
