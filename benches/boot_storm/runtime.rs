//! Tokio runtimes: the load generator's (the phones), and separate ones, on
//! their own threads, for whatever plays the server side in-process
//! (tftproxy, the HTTP clusters), so that the two sides do not share workers.

use std::time::Duration;

use anyhow::Result;

/// The phones' runtime, `threads` workers named `phones`.
pub(crate) fn client_runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("phones")
        .enable_all()
        .build()?)
}

/// A runtime on its own threads, kept alive by the returned guard, for
/// whatever plays the server side in-process; dropping it shuts the runtime
/// down (waiting at most 1 s for its tasks).
pub(crate) struct ServerRuntime {
    runtime: Option<tokio::runtime::Runtime>,
}

impl ServerRuntime {
    pub(crate) fn new(name: &str, threads: usize) -> Result<ServerRuntime> {
        Ok(ServerRuntime {
            runtime: Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads.max(1))
                    .thread_name(name)
                    .enable_all()
                    .build()?,
            ),
        })
    }

    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.as_ref().unwrap().block_on(f)
    }
}

impl Drop for ServerRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}
