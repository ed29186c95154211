//! The Lua scripts, the counter routine run as a Redis function, and how their calls are built
//! and sent.

use std::sync::LazyLock;

use kvkit_core::Expiry;
use kvkit_core::backend::unix_ms;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisError, Script, ServerErrorKind};

use crate::connection::Conn;

pub(crate) static PUT_IF_ABSENT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/put_if_absent.lua")));
pub(crate) static INCR: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/incr.lua")));
pub(crate) static INCR_EXISTING: LazyLock<Routine> =
    LazyLock::new(|| Routine::new(include_str!("lua/incr_existing.lua")));
pub(crate) static SWAP: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/swap.lua")));
pub(crate) static SWEEP: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/sweep.lua")));
pub(crate) static LIST: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/list.lua")));
pub(crate) static PUT_IF_VERSION: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/put_if_version.lua")));
pub(crate) static DELETE_IF_VERSION: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/delete_if_version.lua")));

/// Lua code run as a Redis function (`FCALL`) where the server allows it, else as a script
/// (`EVALSHA`). Redis finds a function by its short name for less server time than it spends
/// finding a script by its SHA1 (measured in `BENCHMARKS.md`), worth it on the hottest path.
pub(crate) struct Routine {
    script: Script,
    /// `kv_` and a hash of the code: the function's name and its library's, so that stores of
    /// different versions sharing a server never replace each other's code.
    name: String,
    /// The library's source, for `FUNCTION LOAD`.
    library: String,
}

impl Routine {
    fn new(body: &str) -> Self {
        let name = format!("kv_{:016x}", kvkit_core::backend::stable_hash(body));
        let library = format!(
            "#!lua name={name}\nredis.register_function('{name}', function(KEYS, ARGV)\n{body}end)\n"
        );
        Self {
            script: Script::new(body),
            name,
            library,
        }
    }

    /// The code as a script.
    pub(crate) fn script(&self) -> &Script {
        &self.script
    }

    /// The `FUNCTION LOAD` of its library.
    pub(crate) fn load(&self) -> Cmd {
        let mut load = redis::cmd("FUNCTION");
        load.arg("LOAD").arg("REPLACE").arg(&self.library);
        load
    }

    /// The `FCALL` (or, without `function`, the `EVALSHA`) with `keys` keys: the keys, then the
    /// arguments, are added to it by the caller.
    pub(crate) fn call(&self, keys: usize, function: bool) -> Cmd {
        if !function {
            return script_call(&self.script, keys);
        }
        let mut call = Cmd::with_capacity(16, 256);
        call.arg("FCALL").arg(&self.name).arg(keys);
        call
    }
}

/// Whether a call failed because the server refuses functions (an ACL without `FCALL` or
/// `FUNCTION`, or a Redis-compatible server without them), so a script must do instead.
pub(crate) fn refuses_functions(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoPerm)
        || e.detail().is_some_and(|d| d.starts_with("unknown command"))
}

/// The `EVALSHA` of `script` with `keys` keys: the keys, then the arguments, are added to it by
/// the caller, written straight into the command's buffer.
pub(crate) fn script_call(script: &Script, keys: usize) -> Cmd {
    // Room for the arguments of a typical call, so building it does not reallocate.
    let mut call = Cmd::with_capacity(16, 256);
    call.arg("EVALSHA");
    call.arg(script.get_hash()).arg(keys);
    call
}

/// The script mode and time argument of an expiry: `0` none, `1` relative ms, `2` absolute ms.
pub(crate) fn expiry_args(expiry: Option<Expiry>) -> (&'static str, u64) {
    match expiry {
        None => ("0", 0),
        Some(Expiry::Ttl(ttl)) => ("1", u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
        Some(Expiry::At(at)) => ("2", unix_ms(at)),
    }
}

impl Conn {
    /// Runs a script call built by [`script_call`]; a server that does not know the script
    /// (restarted, flushed, or a new cluster node) gets it loaded and the call is retried once.
    pub(crate) async fn eval<T: FromRedisValue>(
        &self,
        script: &Script,
        call: &Cmd,
    ) -> redis::RedisResult<T> {
        match self.query(call).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                Box::pin(self.load(script)).await?;
                self.query(call).await
            }
            result => result,
        }
    }

    /// Runs a call built by [`Routine::call`]; a server that has neither the function's library
    /// nor the script (restarted, flushed, or a new cluster node) gets it loaded (the library on
    /// every primary of a cluster) and the call is retried once.
    pub(crate) async fn routine<T: FromRedisValue>(
        &self,
        routine: &Routine,
        function: bool,
        call: &Cmd,
    ) -> redis::RedisResult<T> {
        if !function {
            return self.eval(&routine.script, call).await;
        }
        match self.query(call).await {
            Err(e) if e.detail() == Some("Function not found") => {
                Box::pin(self.query::<()>(&routine.load())).await?;
                self.query(call).await
            }
            result => result,
        }
    }

    pub(crate) async fn load(&self, script: &Script) -> redis::RedisResult<String> {
        match self {
            Conn::Single(c) => script.load_async(&mut c.clone()).await,
            Conn::Cluster(c) => script.load_async(&mut c.clone()).await,
            Conn::Sentinel(f) => {
                f.run(|mut c| async move { script.load_async(&mut c).await })
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Every script touches only the keys it is given in KEYS, as Redis requires of scripts (a
    //! cluster routes a call by its declared keys, and servers may refuse any other).
    //!
    //! Redis 7.0 itself cannot be made to refuse these keys: in cluster mode it refuses an
    //! undeclared key only when it lives in another slot (or on another node), and every key of
    //! a shard shares the declared keys' hash tag. So each script runs here under a prelude that
    //! shadows `redis` with a checking proxy: before every `redis.call` and `redis.pcall`, Redis
    //! itself names the command's key arguments (`COMMAND GETKEYS`), and a key not in KEYS fails
    //! the script. The calls are the ones the store builds, on data the store wrote, covering
    //! every branch of every script that touches a key.
    use std::time::Duration;

    use kvkit_core::{Clock, Expiry, KvStore, PutOptions, SystemClock};
    use kvkit_test_servers as servers;
    use kvkit_testsuite::Namespace;
    use redis::aio::ConnectionManager;
    use redis::{Arg, Cmd, FromRedisValue, RedisResult};
    use serde_json::json;

    use crate::RedisStore;
    use crate::conditional::{conditional_write_call, delete_if_version_call};
    use crate::counters::{create_counter_call, existing_counter_call, swap_call};
    use crate::listing::list_call;
    use crate::sweep::sweep_call;

    use super::{PUT_IF_ABSENT, PUT_IF_VERSION};

    /// Every script's source, found by the SHA1 a call names.
    const SOURCES: [&str; 8] = [
        include_str!("lua/delete_if_version.lua"),
        include_str!("lua/incr.lua"),
        include_str!("lua/incr_existing.lua"),
        include_str!("lua/list.lua"),
        include_str!("lua/put_if_absent.lua"),
        include_str!("lua/put_if_version.lua"),
        include_str!("lua/swap.lua"),
        include_str!("lua/sweep.lua"),
    ];

    /// Shadows `redis` with a proxy that fails any command touching a key not in KEYS.
    const PRELUDE: &str = r"
local real = redis
local given = {}
for _, key in ipairs(KEYS) do
  given[key] = true
end
local function checked(run)
  return function(command, ...)
    local keys = real.pcall('COMMAND', 'GETKEYS', command, ...)
    if keys.err then
      -- Only a command without key specifications (such as TIME) has no keys to check.
      local info = real.call('COMMAND', 'INFO', command)[1]
      if not info or #info[9] > 0 then
        error('cannot tell which arguments of ' .. command .. ' are keys: ' .. keys.err)
      end
      keys = {}
    end
    for _, key in ipairs(keys) do
      if not given[key] then
        error(command .. ' touched a key not given in KEYS')
      end
    end
    return run(command, ...)
  end
end
local redis = setmetatable({ call = checked(real.call), pcall = checked(real.pcall) },
  { __index = real })
";

    /// Sends a script call the store built (`EVALSHA sha numkeys …`) as an `EVAL` of that
    /// script's source under the checking prelude, with the same keys and arguments.
    async fn checked<T: FromRedisValue>(raw: &mut ConnectionManager, call: &Cmd) -> RedisResult<T> {
        let args: Vec<&[u8]> = call
            .args_iter()
            .map(|arg| match arg {
                Arg::Simple(bytes) => bytes,
                _ => panic!("a script call has only plain arguments"),
            })
            .collect();
        assert_eq!(args[0], b"EVALSHA", "not a script call");
        let source = SOURCES
            .iter()
            .find(|source| {
                sha1_smol::Sha1::from(source)
                    .digest()
                    .to_string()
                    .as_bytes()
                    == args[1]
            })
            .expect("the call names one of the crate's scripts");
        let mut eval = redis::cmd("EVAL");
        eval.arg(format!("{PRELUDE}{source}"));
        for arg in &args[2..] {
            eval.arg(*arg);
        }
        eval.query_async(raw).await
    }

    async fn store() -> Option<(RedisStore, ConnectionManager, Namespace)> {
        let url = servers::shared_redis_url()?;
        let ns = Namespace::new();
        let store = RedisStore::builder(url.as_str())
            .namespace(ns.prefix())
            .connect()
            .await
            .expect("connecting");
        let raw = redis::Client::open(url.as_str())
            .expect("url")
            .get_connection_manager()
            .await
            .expect("raw connection");
        Some((store, raw, ns))
    }

    async fn score(raw: &mut ConnectionManager, index: &str, name: &str) -> Option<f64> {
        redis::cmd("ZSCORE")
            .arg(index)
            .arg(name)
            .query_async(raw)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_checking_prelude_refuses_a_key_not_given() {
        let Some((_store, mut raw, ns)) = store().await else {
            return;
        };
        let key = format!("{}probe", ns.prefix());
        let mut probe = async |body: &str| {
            let mut call = redis::cmd("EVAL");
            call.arg(format!("{PRELUDE}{body}")).arg(1).arg(&key);
            call.query_async::<redis::Value>(&mut raw).await
        };
        for undeclared in [
            "return redis.call('GET', KEYS[1] .. ':other')",
            "return redis.pcall('SET', 'other', 'v')",
        ] {
            let err = probe(undeclared).await.expect_err(undeclared);
            assert!(
                err.to_string().contains("touched a key not given in KEYS"),
                "{err}"
            );
        }
        for allowed in [
            "return redis.call('GET', KEYS[1])",
            "return redis.call('TIME')",
        ] {
            probe(allowed).await.expect(allowed);
        }
    }

    #[tokio::test]
    async fn the_listing_and_sweep_scripts_touch_only_their_keys() {
        let Some((store, mut raw, _ns)) = store().await else {
            return;
        };
        let keys = store.shard(0);
        let hour = Duration::from_secs(3600);
        let framed = PutOptions::new().metadata(json!({"m": 1})).ttl(hour);
        store.put("a", "1".into(), framed).await.unwrap();
        store.put("b", "2".into(), PutOptions::new()).await.unwrap();
        store.put("c", "3".into(), PutOptions::new()).await.unwrap();
        let _: () = redis::cmd("DEL")
            .arg(keys.value("c"))
            .query_async(&mut raw)
            .await
            .unwrap();
        let names = [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()];
        let (exps, metas): (Vec<i64>, Vec<Vec<u8>>) =
            checked(&mut raw, &list_call(keys, &names)).await.unwrap();
        assert!(exps[0] > 0 && exps[1] == -1 && exps[2] == -2, "{exps:?}");
        assert_eq!(metas, [br#"{"m":1}"#.to_vec(), Vec::new(), Vec::new()]);
        assert_eq!(score(&mut raw, &keys.index, "c").await, None);

        // Due in the expiry index: one key gone, one made permanent, one that expires later.
        let ttl = PutOptions::new().ttl(hour);
        for name in ["d", "e", "f"] {
            store.put(name, "v".into(), ttl.clone()).await.unwrap();
        }
        let mut setup = redis::pipe();
        setup
            .cmd("DEL")
            .arg(keys.value("d"))
            .cmd("PERSIST")
            .arg(keys.value("e"))
            .cmd("ZADD")
            .arg(&keys.expiry)
            .arg(1)
            .arg("d")
            .arg(1)
            .arg("e")
            .arg(1)
            .arg("f");
        let _: () = setup.query_async(&mut raw).await.unwrap();
        let names = [b"d".to_vec(), b"e".to_vec(), b"f".to_vec()];
        let _: () = checked(&mut raw, &sweep_call(keys, &names)).await.unwrap();
        assert_eq!(score(&mut raw, &keys.index, "d").await, None);
        assert_eq!(score(&mut raw, &keys.expiry, "d").await, None);
        assert_eq!(score(&mut raw, &keys.index, "e").await, Some(0.0));
        assert_eq!(score(&mut raw, &keys.expiry, "e").await, None);
        assert!(score(&mut raw, &keys.expiry, "f").await > Some(1.0));
    }

    #[tokio::test]
    async fn the_conditional_and_counter_scripts_touch_only_their_keys() {
        let Some((store, mut raw, _ns)) = store().await else {
            return;
        };
        let keys = store.shard(0);
        let hour = Duration::from_secs(3600);
        let in_an_hour = SystemClock.now() + hour;
        let options = [
            PutOptions::new(),
            PutOptions::new().ttl(hour),
            PutOptions::new().expire_at(in_an_hour),
        ];
        for options in options {
            let w = store.check_write("p", "v".into(), &options).unwrap();
            let call = conditional_write_call(&PUT_IF_ABSENT, keys, "p", &w, None);
            assert_eq!(checked::<i64>(&mut raw, &call).await.unwrap(), 1);
            assert_eq!(checked::<i64>(&mut raw, &call).await.unwrap(), 0);
            let version = store
                .get_with_metadata("p")
                .await
                .unwrap()
                .unwrap()
                .version
                .unwrap();
            let token = version.as_token().unwrap();
            let w = store.check_write("p", "w".into(), &options).unwrap();
            let call = conditional_write_call(&PUT_IF_VERSION, keys, "p", &w, Some(token));
            assert_eq!(checked::<i64>(&mut raw, &call).await.unwrap(), 1);
            assert_eq!(checked::<i64>(&mut raw, &call).await.unwrap(), 0);
            let version = store
                .get_with_metadata("p")
                .await
                .unwrap()
                .unwrap()
                .version
                .unwrap();
            let call = delete_if_version_call(keys, "p", version.as_token().unwrap());
            assert_eq!(checked::<i64>(&mut raw, &call).await.unwrap(), 1);
            assert_eq!(checked::<i64>(&mut raw, &call).await.unwrap(), 0);
        }

        let call = create_counter_call(keys, "n", 5, Some(Expiry::Ttl(hour)));
        assert_eq!(checked::<i64>(&mut raw, &call).await.unwrap(), 5);
        assert_eq!(checked::<i64>(&mut raw, &call).await.unwrap(), 10);
        let call = create_counter_call(keys, "m", 5, Some(Expiry::At(in_an_hour)));
        assert_eq!(checked::<i64>(&mut raw, &call).await.unwrap(), 5);
        let huge = 1 << 60;
        let call = create_counter_call(keys, "huge", huge, None);
        assert_eq!(checked::<i64>(&mut raw, &call).await.unwrap(), huge);
        for (delta, expected) in [(1, Some(11)), (3, Some(14))] {
            let call = existing_counter_call(keys, "n", delta, false);
            assert_eq!(
                checked::<Option<i64>>(&mut raw, &call).await.unwrap(),
                expected
            );
        }
        let call = existing_counter_call(keys, "huge", 1, false);
        assert_eq!(
            checked::<Option<i64>>(&mut raw, &call).await.unwrap(),
            Some(huge + 1)
        );
        let call = existing_counter_call(keys, "absent", 1, false);
        assert_eq!(checked::<Option<i64>>(&mut raw, &call).await.unwrap(), None);

        let value_key = keys.value("n");
        let call = swap_call(&value_key, b"14", b"15");
        assert_eq!(checked::<i64>(&mut raw, &call).await.unwrap(), 1);
        assert_eq!(checked::<i64>(&mut raw, &call).await.unwrap(), 0);
    }
}
