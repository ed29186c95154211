//! The model-based property test: random sequences of operations, with arbitrary keys, values
//! and metadata within the limits and over them, run against the store and against a reference
//! model (a `BTreeMap`), comparing every result and every error variant.

use std::collections::BTreeMap;
use std::future::Future;

use bytes::Bytes;
use kvkit_core::backend::parse_counter;
use kvkit_core::{Capabilities, CounterOptions, Error, KvStore, PutItem, PutOptions};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

use crate::Namespace;

/// How a key is chosen.
#[derive(Debug, Clone)]
pub enum KeyGen {
    /// One of a few keys (so operations collide), under the test namespace.
    Pool(&'static str),
    /// Any string, under the test namespace.
    Any(String),
    /// Exactly this key, outside the namespace (the invalid ones: empty, `.`, `..`).
    Raw(&'static str),
    /// One byte longer than the backend allows.
    TooLong,
}

/// How a value is chosen.
#[derive(Debug, Clone)]
pub enum ValueGen {
    /// These bytes.
    Bytes(Vec<u8>),
    /// A decimal integer, as counters store them.
    Counter(i64),
    /// One byte larger than the backend allows.
    TooLarge,
}

/// How metadata is chosen.
#[derive(Debug, Clone)]
pub enum MetaGen {
    /// This JSON value.
    Json(Value),
    /// One byte larger than the backend allows.
    TooLarge,
}

/// One operation of a sequence.
#[derive(Debug, Clone)]
pub enum Op {
    /// `put`.
    Put(KeyGen, ValueGen, Option<MetaGen>),
    /// `put_if_absent`.
    PutIfAbsent(KeyGen, ValueGen),
    /// `get`.
    Get(KeyGen),
    /// `get_with_metadata`.
    GetWithMetadata(KeyGen),
    /// `delete`.
    Delete(KeyGen),
    /// `increment`.
    Increment(KeyGen, i64),
    /// `get_many`.
    GetMany(Vec<KeyGen>),
    /// `put_many`.
    PutMany(Vec<(KeyGen, ValueGen)>),
    /// `delete_many`.
    DeleteMany(Vec<KeyGen>),
    /// A full listing (following cursors) under a prefix, with a page size.
    List(&'static str, usize),
}

const POOL: &[&str] = &[
    "a", "b", "ab", "a/b", "a:1", "A", "é", "中", "😀", "a\u{0}", "ctr", "z~",
];
const PREFIXES: &[&str] = &["", "a", "a/", "é", "z", "q"];

fn key_gen() -> impl Strategy<Value = KeyGen> {
    prop_oneof![
        12 => prop::sample::select(POOL).prop_map(KeyGen::Pool),
        3 => any::<String>().prop_map(KeyGen::Any),
        1 => prop::sample::select(&["", ".", ".."][..]).prop_map(KeyGen::Raw),
        1 => Just(KeyGen::TooLong),
    ]
}

fn value_gen() -> impl Strategy<Value = ValueGen> {
    prop_oneof![
        10 => prop::collection::vec(any::<u8>(), 0..64).prop_map(ValueGen::Bytes),
        4 => prop_oneof![-3i64..3, Just(i64::MAX), Just(i64::MIN)].prop_map(ValueGen::Counter),
        1 => Just(ValueGen::TooLarge),
    ]
}

/// Metadata numbers span every `i64` where metadata is exact, and the integers a JavaScript
/// number holds exactly (±2⁵³) where it is not.
fn meta_gen(exact: bool) -> impl Strategy<Value = Option<MetaGen>> {
    const JS_SAFE: i64 = (1 << 53) - 1;
    let number = if exact {
        any::<i64>().boxed()
    } else {
        (-JS_SAFE..=JS_SAFE).boxed()
    };
    prop_oneof![
        3 => Just(None),
        3 => prop_oneof![
            number.prop_map(|n| json!(n)),
            any::<String>().prop_map(|s| json!(s)),
            any::<bool>().prop_map(|b| json!({"flag": b, "list": [1, null]})),
        ].prop_map(|v| Some(MetaGen::Json(v))),
        1 => Just(Some(MetaGen::TooLarge)),
    ]
}

fn delta_gen() -> impl Strategy<Value = i64> {
    prop_oneof![8 => -5i64..=5, 1 => Just(i64::MAX), 1 => Just(i64::MIN)]
}

fn op_gen(exact_metadata: bool) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (key_gen(), value_gen(), meta_gen(exact_metadata)).prop_map(|(k, v, m)| Op::Put(k, v, m)),
        2 => (key_gen(), value_gen()).prop_map(|(k, v)| Op::PutIfAbsent(k, v)),
        4 => key_gen().prop_map(Op::Get),
        2 => key_gen().prop_map(Op::GetWithMetadata),
        2 => key_gen().prop_map(Op::Delete),
        3 => (key_gen(), delta_gen()).prop_map(|(k, d)| Op::Increment(k, d)),
        1 => prop::collection::vec(key_gen(), 0..6).prop_map(Op::GetMany),
        1 => prop::collection::vec((key_gen(), value_gen()), 0..6).prop_map(Op::PutMany),
        1 => prop::collection::vec(key_gen(), 0..6).prop_map(Op::DeleteMany),
        2 => (prop::sample::select(PREFIXES), prop::sample::select(&[1usize, 2, 3, 7, 1000][..]))
            .prop_map(|(p, l)| Op::List(p, l)),
    ]
}

/// The stored state the model expects.
#[derive(Debug, Default)]
struct Model {
    entries: BTreeMap<String, (Bytes, Option<Value>)>,
}

/// An error reduced to its variant name, so store and model errors compare.
type Outcome<T> = std::result::Result<T, &'static str>;

fn variant(err: &Error) -> &'static str {
    match err {
        Error::EmptyKey => "EmptyKey",
        Error::ReservedKey { .. } => "ReservedKey",
        Error::KeyTooLong { .. } => "KeyTooLong",
        Error::ValueTooLarge { .. } => "ValueTooLarge",
        Error::MetadataTooLarge { .. } => "MetadataTooLarge",
        Error::NotACounter { .. } => "NotACounter",
        Error::CounterOverflow { .. } => "CounterOverflow",
        _ => "other error",
    }
}

fn outcome<T>(result: kvkit_core::Result<T>) -> Result<Outcome<T>, TestCaseError> {
    match result {
        Ok(v) => Ok(Ok(v)),
        Err(e) => match variant(&e) {
            "other error" => Err(TestCaseError::fail(format!("unexpected error: {e}"))),
            name => Ok(Err(name)),
        },
    }
}

struct Ctx<'a> {
    caps: &'a Capabilities,
    ns: &'a Namespace,
}

impl Ctx<'_> {
    fn key(&self, gen_: &KeyGen) -> String {
        match gen_ {
            KeyGen::Pool(name) => self.ns.key(name),
            KeyGen::Any(name) => self.ns.key(name),
            KeyGen::Raw(raw) => (*raw).to_owned(),
            KeyGen::TooLong => {
                let fill = (self.caps.max_key_bytes + 1).saturating_sub(self.ns.prefix().len());
                self.ns.key(&"k".repeat(fill))
            }
        }
    }

    fn value(&self, gen_: &ValueGen) -> Bytes {
        match gen_ {
            ValueGen::Bytes(bytes) => Bytes::from(bytes.clone()),
            ValueGen::Counter(n) => Bytes::from(n.to_string()),
            // Zeroed allocations are lazy: this costs no real memory even for large limits.
            ValueGen::TooLarge => Bytes::from(vec![0u8; self.caps.max_value_bytes + 1]),
        }
    }

    fn metadata(&self, gen_: &Option<MetaGen>) -> Option<Value> {
        match gen_ {
            None => None,
            Some(MetaGen::Json(v)) => Some(v.clone()),
            Some(MetaGen::TooLarge) => Some(json!("m".repeat(self.caps.max_metadata_bytes))),
        }
    }

    fn check_key(&self, key: &str) -> Outcome<()> {
        if key.is_empty() {
            Err("EmptyKey")
        } else if key == "." || key == ".." {
            Err("ReservedKey")
        } else if key.len() > self.caps.max_key_bytes {
            Err("KeyTooLong")
        } else {
            Ok(())
        }
    }

    fn check_put(&self, key: &str, value: &Bytes, metadata: Option<&Value>) -> Outcome<()> {
        self.check_key(key)?;
        if value.len() > self.caps.max_value_bytes {
            return Err("ValueTooLarge");
        }
        if metadata.is_some_and(|m| m.to_string().len() > self.caps.max_metadata_bytes) {
            return Err("MetadataTooLarge");
        }
        Ok(())
    }
}

macro_rules! same {
    ($store:expr, $model:expr, $op:expr) => {
        prop_assert_eq!(outcome($store)?, $model, "operation {:?}", $op)
    };
}

async fn apply(
    store: &dyn KvStore,
    ctx: &Ctx<'_>,
    model: &mut Model,
    op: &Op,
) -> Result<(), TestCaseError> {
    match op {
        Op::Put(k, v, m) => {
            let (key, value, metadata) = (ctx.key(k), ctx.value(v), ctx.metadata(m));
            let expected = ctx.check_put(&key, &value, metadata.as_ref());
            let mut options = PutOptions::new();
            options.metadata = metadata.clone();
            same!(store.put(&key, value.clone(), options).await, expected, op);
            if expected.is_ok() {
                model.entries.insert(key, (value, metadata));
            }
        }
        Op::PutIfAbsent(k, v) => {
            let (key, value) = (ctx.key(k), ctx.value(v));
            let expected = ctx
                .check_put(&key, &value, None)
                .map(|()| !model.entries.contains_key(&key));
            same!(
                store
                    .put_if_absent(&key, value.clone(), PutOptions::new())
                    .await,
                expected,
                op
            );
            if expected == Ok(true) {
                model.entries.insert(key, (value, None));
            }
        }
        Op::Get(k) => {
            let key = ctx.key(k);
            let expected = ctx
                .check_key(&key)
                .map(|()| model.entries.get(&key).map(|(v, _)| v.clone()));
            same!(store.get(&key).await, expected, op);
        }
        Op::GetWithMetadata(k) => {
            let key = ctx.key(k);
            let expected = ctx
                .check_key(&key)
                .map(|()| model.entries.get(&key).cloned());
            let got = outcome(store.get_with_metadata(&key).await)?.map(|e| {
                e.map(|e| {
                    assert_eq!(e.expiration, None, "no expiry was set");
                    (e.value, e.metadata)
                })
            });
            prop_assert_eq!(got, expected, "operation {:?}", op);
        }
        Op::Delete(k) => {
            let key = ctx.key(k);
            let expected = ctx.check_key(&key);
            same!(store.delete(&key).await, expected, op);
            if expected.is_ok() {
                model.entries.remove(&key);
            }
        }
        Op::Increment(k, delta) => {
            let key = ctx.key(k);
            let expected = ctx.check_key(&key).and_then(|()| {
                let current = match model.entries.get(&key) {
                    None => 0,
                    Some((v, _)) => parse_counter(v).ok_or("NotACounter")?,
                };
                current.checked_add(*delta).ok_or("CounterOverflow")
            });
            same!(
                store.increment(&key, *delta, CounterOptions::new()).await,
                expected,
                op
            );
            if let Ok(n) = expected {
                let metadata = model.entries.get(&key).and_then(|(_, m)| m.clone());
                model
                    .entries
                    .insert(key, (Bytes::from(n.to_string()), metadata));
            }
        }
        Op::GetMany(ks) => {
            let keys: Vec<String> = ks.iter().map(|k| ctx.key(k)).collect();
            let expected = keys.iter().try_for_each(|k| ctx.check_key(k)).map(|()| {
                keys.iter()
                    .map(|k| model.entries.get(k).map(|(v, _)| v.clone()))
                    .collect::<Vec<_>>()
            });
            same!(store.get_many(&keys).await, expected, op);
        }
        Op::PutMany(items) => {
            let items: Vec<(String, Bytes)> = items
                .iter()
                .map(|(k, v)| (ctx.key(k), ctx.value(v)))
                .collect();
            let expected = items
                .iter()
                .try_for_each(|(k, v)| ctx.check_put(k, v, None));
            let batch = items
                .iter()
                .map(|(k, v)| PutItem::new(k.clone(), v.clone()))
                .collect();
            same!(store.put_many(batch).await, expected, op);
            if expected.is_ok() {
                for (k, v) in items {
                    model.entries.insert(k, (v, None));
                }
            }
        }
        Op::DeleteMany(ks) => {
            let keys: Vec<String> = ks.iter().map(|k| ctx.key(k)).collect();
            let expected = keys.iter().try_for_each(|k| ctx.check_key(k));
            same!(store.delete_many(&keys).await, expected, op);
            if expected.is_ok() {
                for k in &keys {
                    model.entries.remove(k);
                }
            }
        }
        Op::List(prefix, limit) => {
            let prefix = ctx.ns.key(prefix);
            let listed: Vec<(String, Option<Value>)> =
                crate::cases::list_all(store, &prefix, Some(*limit))
                    .await
                    .into_iter()
                    .map(|k| (k.name, k.metadata))
                    .collect();
            let expected: Vec<(String, Option<Value>)> = model
                .entries
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, (_, m))| (k.clone(), m.clone()))
                .collect();
            prop_assert_eq!(listed, expected, "operation {:?}", op);
        }
    }
    Ok(())
}

/// Runs 128 random operation sequences against the store made by `make` and the model.
///
/// ```
/// kvkit_testsuite::model::run(|| async {
///     kvkit_testsuite::Harness::real_time(kvkit_memory::MemoryStore::new())
/// });
/// ```
pub fn run<F, Fut, H>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = H>,
    H: crate::IntoHarness,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let Some(harness) = runtime.block_on(make()).into_harness() else {
        crate::skip(
            "model_based_random_operations",
            "the backend is unavailable and was opted out",
        );
        return;
    };
    let store = &**harness.store();
    let caps = store.capabilities().clone();
    let mut runner = TestRunner::new(Config {
        cases: 128,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(
        &prop::collection::vec(op_gen(caps.exact_metadata), 1..40),
        |ops| {
            runtime.block_on(async {
                let ns = Namespace::new();
                let ctx = Ctx {
                    caps: &caps,
                    ns: &ns,
                };
                let mut model = Model::default();
                let mut result = Ok(());
                for op in &ops {
                    result = apply(store, &ctx, &mut model, op).await;
                    if result.is_err() {
                        break;
                    }
                }
                ns.clean(store).await;
                result
            })
        },
    );
    if let Err(failure) = result {
        panic!("model-based test failed: {failure}");
    }
}
