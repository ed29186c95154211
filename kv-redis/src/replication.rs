//! Replica acknowledgement: with [`RedisBuilder::wait_for_replicas`](crate::RedisBuilder::wait_for_replicas),
//! every write is followed by `WAIT replicas timeout` in the same round trip, on the same
//! connection, so the count covers that write (a `WAIT` sent after a reconnection would count
//! only the new connection's writes, none, and confirm nothing).

use std::future::Future;
use std::time::Duration;

use kvkit_core::{Error, Result};
use redis::{Cmd, ErrorKind, FromRedisValue, Pipeline, Script, ServerErrorKind, Value};

use crate::connection::Conn;
use crate::errors::bounded;
use crate::scripts::Routine;
use crate::store::{BACKEND, RedisStore};

/// How many replicas must confirm each write, and how long to wait for them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ack {
    pub(crate) replicas: u32,
    pub(crate) timeout: Duration,
}

/// A write's reply and, when acknowledgement was asked for, how many replicas confirmed it.
pub(crate) type Acked<T> = (T, Option<u32>);

impl Ack {
    fn wait(&self) -> Cmd {
        let mut wait = redis::cmd("WAIT");
        // Redis reads 0 as "wait forever": at least 1 ms.
        let ms = u64::try_from(self.timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        wait.arg(self.replicas).arg(ms);
        wait
    }
}

/// Splits the replies of a pipeline that ends with `WAIT`: the others, and the `WAIT`'s count.
fn split_wait(mut replies: Vec<Value>) -> redis::RedisResult<(Vec<Value>, u32)> {
    let count = replies.pop().ok_or_else(|| {
        redis::RedisError::from((ErrorKind::UnexpectedReturnType, "no reply to WAIT"))
    })?;
    Ok((replies, redis::from_redis_value(count)?))
}

/// The first server error's detail, also inside a pipeline's errors.
fn detail(e: &redis::RedisError) -> Option<String> {
    e.detail().map(str::to_owned).or_else(|| {
        e.clone().into_server_errors().and_then(|errors| {
            errors
                .first()
                .and_then(|(_, e)| e.details().map(str::to_owned))
        })
    })
}

impl Conn {
    /// Sends a write pipeline (not a transaction), then `WAIT` with `ack`.
    pub(crate) async fn write_pipeline<T: FromRedisValue>(
        &self,
        pipe: &Pipeline,
        ack: Option<Ack>,
    ) -> redis::RedisResult<Acked<T>> {
        let Some(ack) = ack else {
            return Ok((self.pipeline(pipe).await?, None));
        };
        let mut acked = pipe.clone();
        acked.add_command(ack.wait());
        let (replies, count) = split_wait(self.pipeline(&acked).await?)?;
        Ok((T::from_redis_value(Value::Array(replies))?, Some(count)))
    }

    /// Sends a transaction whose replies are all ignored, then `WAIT` with `ack`: `MULTI`, the
    /// commands and `EXEC` as one pipeline ending with the `WAIT`.
    pub(crate) async fn write_transaction(
        &self,
        pipe: &Pipeline,
        ack: Option<Ack>,
    ) -> redis::RedisResult<Acked<()>> {
        let Some(ack) = ack else {
            return Ok((self.pipeline(pipe).await?, None));
        };
        let mut acked = redis::pipe();
        acked.cmd("MULTI").ignore();
        for cmd in pipe.cmd_iter() {
            acked.add_command(cmd.clone()).ignore();
        }
        acked.cmd("EXEC");
        acked.add_command(ack.wait());
        // A command refused inside the transaction fails the whole pipeline (its error, then
        // EXECABORT), and one failing at EXEC fails it too, as an atomic pipeline would.
        let (_, count) = split_wait(self.pipeline(&acked).await?)?;
        Ok(((), Some(count)))
    }

    /// Sends one write command, then `WAIT` with `ack`.
    pub(crate) async fn write_query<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        ack: Option<Ack>,
    ) -> redis::RedisResult<Acked<T>> {
        if ack.is_none() {
            return Ok((self.query(cmd).await?, None));
        }
        let mut pipe = redis::pipe();
        pipe.add_command(cmd.clone());
        let ((reply,), count) = self.write_pipeline::<(T,)>(&pipe, ack).await?;
        Ok((reply, count))
    }

    /// Runs a writing script call (see [`Conn::eval`]), then `WAIT` with `ack`.
    pub(crate) async fn eval_write<T: FromRedisValue>(
        &self,
        script: &Script,
        call: &Cmd,
        ack: Option<Ack>,
    ) -> redis::RedisResult<Acked<T>> {
        if ack.is_none() {
            return Ok((self.eval(script, call).await?, None));
        }
        match self.write_query(call, ack).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                Box::pin(self.load(script)).await?;
                self.write_query(call, ack).await
            }
            result => result,
        }
    }

    /// Runs a writing routine call (see [`Conn::routine`]), then `WAIT` with `ack`.
    pub(crate) async fn routine_write<T: FromRedisValue>(
        &self,
        routine: &Routine,
        function: bool,
        call: &Cmd,
        ack: Option<Ack>,
    ) -> redis::RedisResult<Acked<T>> {
        if ack.is_none() {
            return Ok((self.routine(routine, function, call).await?, None));
        }
        if !function {
            return self.eval_write(routine.script(), call, ack).await;
        }
        match self.write_query(call, ack).await {
            Err(e) if detail(&e).as_deref() == Some("Function not found") => {
                Box::pin(self.query::<()>(&routine.load())).await?;
                self.write_query(call, ack).await
            }
            result => result,
        }
    }
}

impl RedisStore {
    /// How long a write may take: the store's timeout, plus the `WAIT`'s when acknowledgement is
    /// on.
    pub(crate) fn write_timeout(&self) -> Duration {
        self.inner.timeout + self.inner.ack.map_or(Duration::ZERO, |ack| ack.timeout)
    }

    /// Checks that enough replicas confirmed a write (always, when none were asked for).
    pub(crate) fn confirm(&self, operation: &'static str, replicas: Option<u32>) -> Result<()> {
        match (self.inner.ack, replicas) {
            (Some(ack), Some(acknowledged)) if acknowledged < ack.replicas => {
                Err(Error::NotReplicated {
                    backend: BACKEND,
                    operation,
                    acknowledged,
                    required: ack.replicas,
                    after: ack.timeout,
                })
            }
            _ => Ok(()),
        }
    }

    /// Runs a write under [`RedisStore::write_timeout`], mapping every failure to [`Error`],
    /// and [confirms](RedisStore::confirm) it.
    pub(crate) async fn run_write<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = redis::RedisResult<Acked<T>>>,
    ) -> Result<T> {
        let (reply, replicas) = self.run_acked(operation, call).await?;
        self.confirm(operation, replicas)?;
        Ok(reply)
    }

    /// Runs a write that may have changed nothing under [`RedisStore::write_timeout`], mapping
    /// every failure to [`Error`], for the caller to [confirm](RedisStore::confirm) only if it
    /// wrote: a conditional write whose condition failed answers as such, and a step that found
    /// nothing to change leaves the answer to the next.
    pub(crate) async fn run_acked<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = redis::RedisResult<Acked<T>>>,
    ) -> Result<Acked<T>> {
        bounded(operation, self.write_timeout(), call).await
    }
}
