//! What the cases need of a runtime, on tokio natively and on the JavaScript event loop on
//! `wasm32` (inside a Worker).

use std::future::Future;
use std::time::Duration;

use kvkit_patterns::MaybeSend;

/// Runs `futures` at once and returns their outputs in order: each on a tokio task natively
/// (in parallel on a multi-thread runtime; a panic in one is re-raised here), interleaved on the
/// one thread of `wasm32`.
pub(crate) async fn concurrently<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: Future + MaybeSend + 'static,
    F::Output: MaybeSend + 'static,
{
    #[cfg(not(target_arch = "wasm32"))]
    {
        let tasks = futures.into_iter().map(tokio::spawn);
        futures_util::future::join_all(tasks)
            .await
            .into_iter()
            .map(|joined| match joined {
                Ok(output) => output,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => panic!("a concurrent part of the case was cancelled: {e}"),
            })
            .collect()
    }
    #[cfg(target_arch = "wasm32")]
    {
        futures_util::future::join_all(futures).await
    }
}

/// Waits for `by` to pass.
pub(crate) async fn sleep(by: Duration) {
    #[cfg(not(target_arch = "wasm32"))]
    tokio::time::sleep(by).await;
    #[cfg(target_arch = "wasm32")]
    {
        use wasm_bindgen::{JsCast, JsValue};
        let millis = by.as_secs_f64() * 1000.0;
        let timer = js_sys::Promise::new(&mut |resolve, _reject| {
            let set_timeout = js_sys::Reflect::get(&js_sys::global(), &"setTimeout".into())
                .ok()
                .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
            match set_timeout {
                Some(set_timeout) => {
                    let _ = set_timeout.call2(&JsValue::UNDEFINED, &resolve, &millis.into());
                }
                None => panic!("the host has no setTimeout"),
            }
        });
        let _ = wasm_bindgen_futures::JsFuture::from(timer).await;
    }
}
