//! The Lua scripts, the counter routine run as a Redis function, and how their calls are built
//! and sent.

use std::sync::LazyLock;

use kvkit_core::Expiry;
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
/// (`EVALSHA`). Redis finds a function by its short name for less than it spends finding a script
/// by its SHA1: on Redis 7.0, ~0.5 µs of server time a call, worth it on the hottest path.
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
        let name = format!("kv_{:016x}", kvkit_core::stable_hash(body));
        let library = format!(
            "#!lua name={name}\nredis.register_function('{name}', function(KEYS, ARGV)\n{body}end)\n"
        );
        Self {
            script: Script::new(body),
            name,
            library,
        }
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
        Some(Expiry::At(secs)) => ("2", secs.saturating_mul(1000)),
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
                let mut load = redis::cmd("FUNCTION");
                load.arg("LOAD").arg("REPLACE").arg(&routine.library);
                Box::pin(self.query::<()>(&load)).await?;
                self.query(call).await
            }
            result => result,
        }
    }

    async fn load(&self, script: &Script) -> redis::RedisResult<String> {
        match self {
            Conn::Single(c) => script.load_async(&mut c.clone()).await,
            Conn::Cluster(c) => script.load_async(&mut c.clone()).await,
        }
    }
}
