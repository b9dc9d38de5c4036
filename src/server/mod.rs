//! `lade serve`: an OpenAI-compatible HTTP server with Lookahead Decoding on every request.
//!
//! * `POST /v1/chat/completions`, `POST /v1/completions` (JSON or server-sent events),
//!   `GET /v1/models`, `GET /health` (503 while the model loads), `GET /metrics`
//!   (Prometheus).
//! * The listener is up at once; the model loads on a background thread.
//! * At most `max_concurrent` generations run, each on its own blocking thread with its own
//!   KV cache; up to `queue` more wait, and beyond that requests get 429 with `Retry-After`.
//! * A generation stops within one step when its client goes away (the response body is
//!   dropped) and on shutdown after the grace period.
//! * Every error is an OpenAI error object; bad input is a 4xx, never a 500.
//! * With several devices ([`serve_with`] and a [`DeviceSet`], `lade serve --devices`),
//!   every lookahead request runs Lookahead Parallelism on a device group of its own.

pub mod auth;
pub mod engine;
pub mod error;
mod handlers;
pub mod metrics;
pub mod request;
pub mod session_pool;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

pub use engine::{DeviceSet, GroupDevice, Ready};
pub use error::ApiError;

use crate::decode::{DecoderKind, DecoderSpec};
use crate::loader::LoadedModel;
use crate::tune::{resolve, AutoDecision, AutoSource};
use metrics::{Gauges, Metrics};

/// Loads the model (on a blocking thread) and says how many positions a request may use.
pub type ModelLoader = Box<dyn FnOnce() -> anyhow::Result<(LoadedModel, usize)> + Send>;

/// What a [`ServedModelLoader`] hands the server.
pub struct ServedModel {
    /// The model; with `devices`, it lives on the first device.
    pub loaded: LoadedModel,
    /// Positions a request may use.
    pub context: usize,
    /// Lookahead Parallelism over these devices (`None`: single-device serving).
    pub devices: Option<DeviceSet>,
    /// Drafts for lookahead steps whose text has none (see [`crate::decode::DraftCorpus`]).
    pub corpus: Option<Arc<crate::decode::DraftCorpus>>,
}

/// Loads the model and, for Lookahead Parallelism, its devices (on a blocking thread).
pub type ServedModelLoader = Box<dyn FnOnce() -> anyhow::Result<ServedModel> + Send>;

/// Settings of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The name clients pass as `model` (and `GET /v1/models` lists).
    pub model_id: String,
    /// Bearer key required on every endpoint but `/health`.
    pub api_key: Option<String>,
    /// Generations running at once.
    pub max_concurrent: usize,
    /// Requests that may wait for a slot; more get 429.
    pub queue: usize,
    /// Decoding of requests that do not choose (`lookahead` field absent): `auto`, plain or
    /// lookahead with W, N, G.
    pub lookahead: DecoderKind,
    /// The acceptance prior of `auto` (`None`: the model's own file, else the shipped ones).
    pub lookahead_prior: Option<std::path::PathBuf>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// After a shutdown signal, how long in-flight generations may run before they are ended.
    pub shutdown_grace: Duration,
    /// Log lines on stderr.
    pub log: bool,
    /// Keep finished requests' sessions (up to `max_concurrent`) for later requests that fit
    /// in them ([`session_pool`]); false: a fresh session per request.
    pub reuse_sessions: bool,
}

impl ServerConfig {
    /// Defaults for `model_id`: 4 slots, a queue of 64, `--lookahead auto`, 4 MiB bodies.
    pub fn new(model_id: impl Into<String>) -> Self {
        Self {
            model_id: model_id.into(),
            api_key: None,
            max_concurrent: 4,
            queue: 64,
            lookahead: DecoderKind::Auto,
            lookahead_prior: None,
            max_body_bytes: 4 << 20,
            shutdown_grace: Duration::from_secs(30),
            log: true,
            reuse_sessions: true,
        }
    }
}

/// Shared state of the handlers.
pub(crate) struct AppState {
    config: ServerConfig,
    ready: OnceLock<Arc<Ready>>,
    metrics: Metrics,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    running: AtomicUsize,
    /// Cancel flags of admitted requests, set all at once when the grace period ends.
    active: Mutex<(bool, HashMap<u64, Arc<AtomicBool>>)>,
    shutting_down: AtomicBool,
    next_id: AtomicU64,
    /// Mixed into response ids so that they differ between server runs.
    id_salt: u64,
}

/// A generation slot; frees itself on drop.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    state: Arc<AppState>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.state.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A request's cancel flag: set when this guard is dropped (the client went away, or the
/// request is over) or when the server ends in-flight work at shutdown.
pub(crate) struct CancelGuard {
    id: u64,
    flag: Arc<AtomicBool>,
    state: Arc<AppState>,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.flag.store(true, Ordering::Relaxed);
        self.state.lock_active().1.remove(&self.id);
    }
}

struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AppState {
    fn new(config: ServerConfig) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self {
            slots: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
            config,
            ready: OnceLock::new(),
            metrics: Metrics::default(),
            waiting: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            active: Mutex::new((false, HashMap::new())),
            shutting_down: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            id_salt: crate::sampling::random_u64(nanos, std::process::id() as u64),
        }
    }

    fn ready(&self) -> Option<Arc<Ready>> {
        self.ready.get().cloned()
    }

    fn lock_active(&self) -> std::sync::MutexGuard<'_, (bool, HashMap<u64, Arc<AtomicBool>>)> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh request number (ids, seeds of requests without one).
    fn next_request(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn request_id(&self, n: u64) -> String {
        format!("{:016x}", crate::sampling::random_u64(self.id_salt, n))
    }

    /// A generation slot, after waiting in the queue if need be; 429 when the queue is full.
    async fn admit(self: &Arc<Self>) -> Result<Slot, ApiError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(ApiError::shutting_down());
        }
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.config.queue {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    self.metrics.queue_full();
                    return Err(ApiError::queue_full(self.retry_after()));
                }
                // Leaves the queue however this ends (slot, or client gone).
                let _waiting = Waiting(&self.waiting);
                self.slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| ApiError::shutting_down())?
            }
        };
        self.running.fetch_add(1, Ordering::SeqCst);
        Ok(Slot {
            _permit: permit,
            state: self.clone(),
        })
    }

    /// Seconds a rejected client should wait: about one mean request, at least 1.
    fn retry_after(&self) -> u64 {
        self.metrics
            .mean_latency()
            .map_or(1, |s| s.ceil().clamp(1.0, 60.0) as u64)
    }

    fn register_cancel(self: &Arc<Self>, id: u64) -> CancelGuard {
        let mut active = self.lock_active();
        // After the grace period, anything admitted late is ended at once.
        let flag = Arc::new(AtomicBool::new(active.0));
        active.1.insert(id, flag.clone());
        CancelGuard {
            id,
            flag,
            state: self.clone(),
        }
    }

    /// Ends every in-flight generation (at its next step).
    fn cancel_all(&self) -> usize {
        let mut active = self.lock_active();
        active.0 = true;
        for f in active.1.values() {
            f.store(true, Ordering::Relaxed);
        }
        active.1.len()
    }

    fn gauges(&self) -> Gauges {
        Gauges {
            queue_depth: self.waiting.load(Ordering::SeqCst),
            running: self.running.load(Ordering::SeqCst),
            max_concurrent: self.config.max_concurrent.max(1),
            queue_capacity: self.config.queue,
            model_loaded: self.ready.get().is_some(),
        }
    }

    fn log(&self, line: &str) {
        if self.config.log {
            eprintln!("{line}");
        }
    }
}

/// Serves on `listener` until `shutdown` completes, loading the model with `loader` in the
/// background.
///
/// After `shutdown`: no new connections; in-flight requests may finish for
/// `config.shutdown_grace`, then their generations are ended (streams close with
/// `finish_reason: "cancelled"` and `data: [DONE]`). Returns an error if the model fails to
/// load.
pub async fn serve(
    listener: TcpListener,
    config: ServerConfig,
    loader: ModelLoader,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let loader: ServedModelLoader = Box::new(move || {
        let (loaded, context) = loader()?;
        Ok(ServedModel {
            loaded,
            context,
            devices: None,
            corpus: None,
        })
    });
    serve_with(listener, config, loader, shutdown).await
}

/// What the server's default decoding means on `loaded`: a W,N,G or `off` as it is; `auto`
/// ([`resolve`]) measured on a throwaway sequence of at most `context` positions (plain
/// decoding on the CPU, and when measuring fails), or with several devices the default
/// lookahead config. Loads the acceptance prior first and logs how `auto` was decided; the
/// flag says whether it was measured, so that later requests may pick again from what the
/// server has learned ([`Ready::with_learning`]).
fn resolve_default(
    state: &AppState,
    loaded: &LoadedModel,
    context: usize,
    devices: Option<&DeviceSet>,
) -> (DecoderKind, bool) {
    if state.config.lookahead != DecoderKind::Auto {
        return (state.config.lookahead, false);
    }
    let prior = crate::tune::load_prior(
        state.config.lookahead_prior.as_deref(),
        &loaded.path,
        &mut |l| state.log(l),
    );
    if let Err(e) = prior {
        state.log(&format!("--lookahead-prior: {e}; using the shipped priors"));
    }
    let spec = DecoderSpec::new(DecoderKind::Auto)
        .with_devices(devices.map(DeviceSet::gpus).unwrap_or_default());
    match resolve(&spec, Some(&AutoSource::model(loaded, context))) {
        Ok((spec, Some(AutoDecision::ParallelDefault))) => {
            state.log(&format!(
                "--lookahead auto: {} (the measured cost model is single-device; with \
                 --devices, auto means the default config)",
                spec.kind.label()
            ));
            (spec.kind, false)
        }
        Ok((spec, Some(AutoDecision::Measured(choice)))) => {
            state.log(&format!("--lookahead auto: {}", choice.describe()));
            (spec.kind, true)
        }
        Ok((spec, None)) => (spec.kind, false),
        Err(e) => {
            state.log(&format!(
                "--lookahead auto: measuring failed ({e}); plain decoding"
            ));
            (DecoderKind::Plain, false)
        }
    }
}

/// [`serve`] with a loader that may also give devices for Lookahead Parallelism: then every
/// request that decodes with lookahead runs [`crate::decode::SpeculativeDecoder::lookahead_parallel`] on a
/// device group of its own, `--lookahead auto` means [`DecoderKind::DEFAULT_LOOKAHEAD`] (the
/// measured cost model is single-device), and plain requests run on the first device.
pub async fn serve_with(
    listener: TcpListener,
    config: ServerConfig,
    loader: ServedModelLoader,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = Arc::new(AppState::new(config));
    let app = handlers::router(state.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let load_error: Arc<Mutex<Option<anyhow::Error>>> = Arc::default();

    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
    }
    {
        let state = state.clone();
        let stop_tx = stop_tx.clone();
        let load_error = load_error.clone();
        tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            match loader() {
                Ok(ServedModel {
                    loaded,
                    context,
                    devices,
                    corpus,
                }) => {
                    let (auto, measured) =
                        resolve_default(&state, &loaded, context, devices.as_ref());
                    let pooled = if state.config.reuse_sessions {
                        state.config.max_concurrent.max(1)
                    } else {
                        0
                    };
                    let ready = Ready::new(loaded, context, auto)
                        .with_learning(measured)
                        .with_devices(devices)
                        .with_session_pool(pooled)
                        .with_corpus(corpus);
                    if let Err(e) = &ready.template {
                        state.log(&format!(
                            "warning: the chat template does not compile ({e}); \
                             /v1/chat/completions will fail"
                        ));
                    }
                    let parallel = match &ready.devices {
                        Some(set) => format!(
                            "; lookahead requests run Lookahead Parallelism on {} \
                             (a device group per request, host-channel exchange), \
                             plain ones on the first device",
                            set.labels().join(",")
                        ),
                        None => String::new(),
                    };
                    state.log(&format!(
                        "model ready in {:.1} s: `{}` on {}, context {} positions, default decoding {}{parallel}",
                        t.elapsed().as_secs_f64(),
                        state.config.model_id,
                        ready.loaded.device_label(),
                        ready.context,
                        ready.kind(state.config.lookahead).label()
                    ));
                    let _ = state.ready.set(Arc::new(ready));
                }
                Err(e) => {
                    *load_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    let _ = stop_tx.send(true);
                }
            }
        });
    }

    let graceful = {
        let mut rx = stop_rx.clone();
        let state = state.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
            state.shutting_down.store(true, Ordering::SeqCst);
            state.log("shutting down: no new connections");
        }
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(graceful);
    let deadline = {
        let mut rx = stop_rx.clone();
        let state = state.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
            let busy = state.running.load(Ordering::SeqCst) + state.waiting.load(Ordering::SeqCst);
            if busy > 0 {
                state.log(&format!(
                    "shutting down: {busy} request(s) in flight, {:.0} s to finish",
                    state.config.shutdown_grace.as_secs_f64()
                ));
            }
            tokio::time::sleep(state.config.shutdown_grace).await;
            let n = state.cancel_all();
            if n > 0 {
                state.log(&format!("shutting down: ending {n} generation(s)"));
            }
            // Ended streams close within a step; connections that still hang on are dropped.
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    };
    tokio::select! {
        r = server => r?,
        _ = deadline => state.log("shutting down: connections still open after the grace period; closing"),
    }
    if let Some(e) = load_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e.context("loading the model"));
    }
    Ok(())
}
