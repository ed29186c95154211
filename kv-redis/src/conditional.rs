//! Entry versions and the conditional writes that compare and write in one script.

use kvkit_core::{Result, Version};
use redis::{Cmd, Script};

use crate::layout::ShardKeys;
use crate::replication::Acked;
use crate::scripts::{DELETE_IF_VERSION, PUT_IF_ABSENT, PUT_IF_VERSION, expiry_args, script_call};
use crate::store::RedisStore;
use crate::writes::Write;

/// The version of a stored entry: the SHA-1 of its stored (framed) bytes and its `PEXPIRETIME`,
/// as the conditional-write scripts compute them on the server.
pub(crate) fn version_of(stored: &[u8], pexpiretime: i64) -> Version {
    let digest = sha1_smol::Sha1::from(stored).digest();
    Version::from_token(format!("{digest}:{pexpiretime}"))
}

/// The call of a conditional-write script (`put_if_absent.lua`, `put_if_version.lua`): the index
/// keys and the value key, then the name, the value, the expiry and, for the second, the version.
pub(crate) fn conditional_write_call(
    script: &Script,
    keys: &ShardKeys,
    key: &str,
    w: &Write,
    version: Option<&str>,
) -> Cmd {
    let (mode, when) = expiry_args(w.expiry);
    let mut call = script_call(script, 3);
    call.arg(&keys.index)
        .arg(&keys.expiry)
        .arg(keys.value_arg(key))
        .arg(key)
        .arg(&w.stored[..])
        .arg(mode)
        .arg(when);
    if let Some(version) = version {
        call.arg(version);
    }
    call
}

/// The call of `delete_if_version.lua`: the index keys and the value key, then the name and the
/// version.
pub(crate) fn delete_if_version_call(keys: &ShardKeys, key: &str, version: &str) -> Cmd {
    let mut call = script_call(&DELETE_IF_VERSION, 3);
    call.arg(&keys.index)
        .arg(&keys.expiry)
        .arg(keys.value_arg(key))
        .arg(key)
        .arg(version);
    call
}

impl RedisStore {
    /// Writes `w` only if `key` is absent or expired, indexing it, atomically; returns whether
    /// it wrote.
    pub(crate) async fn write_if_absent(&self, key: &str, w: &Write) -> Result<bool> {
        self.write_by_script(&PUT_IF_ABSENT, "put_if_absent", key, w, None)
            .await
    }

    /// Writes `w` only if `key` still holds the entry of `version`, atomically; returns whether
    /// it wrote.
    pub(crate) async fn write_if_version(
        &self,
        key: &str,
        w: &Write,
        version: &Version,
    ) -> Result<bool> {
        match version.as_token() {
            Some(token) => {
                self.write_by_script(&PUT_IF_VERSION, "put", key, w, Some(token))
                    .await
            }
            None => Ok(false),
        }
    }

    /// Runs a conditional-write script (see [`conditional_write_call`]); returns whether it
    /// wrote.
    async fn write_by_script(
        &self,
        script: &Script,
        operation: &'static str,
        key: &str,
        w: &Write,
        version: Option<&str>,
    ) -> Result<bool> {
        let call = conditional_write_call(script, self.keys_of(key), key, w, version);
        let ack = self.inner.ack;
        let (written, replicas): Acked<i64> = self
            .run_acked(operation, self.conn().eval_write(script, &call, ack))
            .await?;
        if written == 1 {
            self.confirm(operation, replicas)?;
        }
        if written == 1 && w.expiry.is_some() {
            self.maybe_sweep(self.inner.layout.shard_of(key)).await;
        }
        Ok(written == 1)
    }
}
