//! Per-operation timeouts, and the classification of redis-rs errors into [`Error`]s.

use std::future::Future;
use std::time::Duration;

use kvkit_core::{Error, Result};
use redis::{ErrorKind, RedisError, RetryMethod, ServerErrorKind};

use crate::store::BACKEND;

/// Runs a Redis call under `timeout`, mapping every failure to [`Error`].
pub(crate) async fn bounded<T>(
    operation: &'static str,
    timeout: Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T> {
    within(operation, timeout, call)
        .await?
        .map_err(|e| redis_error(operation, e))
}

/// Runs a Redis call under `timeout`, mapping only the timeout to [`Error::Timeout`].
pub(crate) async fn within<T>(
    operation: &'static str,
    timeout: Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<redis::RedisResult<T>> {
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| Error::Timeout {
            backend: BACKEND,
            operation,
            after: timeout,
        })
}

/// Classifies a redis-rs error by its kind and the server's error code, never its text.
pub(crate) fn redis_error(operation: &'static str, e: RedisError) -> Error {
    if e.is_timeout() {
        return Error::Backend {
            backend: BACKEND,
            message: format!("{operation} timed out"),
            retryable: true,
            source: Some(Box::new(e)),
        };
    }
    // A transaction the server aborted (EXECABORT) carries the errors of its commands: an ACL
    // refusal of any of them is the user's permission, not an internal error.
    let refused_inside = matches!(e.kind(), ErrorKind::Server(ServerErrorKind::ExecAbort))
        && e.clone().into_server_errors().is_some_and(|errors| {
            errors
                .iter()
                .any(|(_, error)| error.kind() == Some(ServerErrorKind::NoPerm))
        });
    if refused_inside {
        return Error::PermissionDenied {
            backend: BACKEND,
            message: format!("{operation}: the server refused this user (NOPERM)"),
        };
    }
    match e.kind() {
        ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::NoPerm) => {
            return Error::PermissionDenied {
                backend: BACKEND,
                message: format!(
                    "{operation}: the server refused this user ({})",
                    e.code().unwrap_or("authentication failed")
                ),
            };
        }
        ErrorKind::InvalidClientConfig => {
            return Error::Configuration {
                backend: BACKEND,
                message: format!("{operation}: the Redis client refused its settings"),
                source: Some(Box::new(e)),
            };
        }
        _ => {}
    }
    // Failovers, resharding and loading (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, MASTERDOWN,
    // READONLY, LOADING) and lost connections are transient; redis-rs says which by kind. In a
    // transaction or pipeline, such an answer to any command (a key's slot moving between
    // `MULTI` and `EXEC`, say) makes the whole call transient.
    let failover_answer = |kind: Option<ServerErrorKind>| {
        matches!(
            kind,
            Some(
                ServerErrorKind::Moved
                    | ServerErrorKind::Ask
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::BusyLoading
            )
        )
    };
    let server_kind = match e.kind() {
        ErrorKind::Server(kind) => Some(kind),
        _ => None,
    };
    let transient = matches!(
        e.kind(),
        ErrorKind::Io | ErrorKind::ClusterConnectionNotFound
    ) || failover_answer(server_kind)
        || e.clone().into_server_errors().is_some_and(|errors| {
            errors
                .iter()
                .any(|(_, error)| failover_answer(error.kind()))
        })
        || !matches!(e.retry_method(), RetryMethod::NoRetry);
    Error::backend(BACKEND, format!("{operation} failed"), transient, e)
}
