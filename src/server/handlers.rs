//! HTTP routes, middleware and the OpenAI response bodies.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;

use super::engine::{self, Finished, Job};
use super::error::ApiError;
use super::request::{self, Endpoint};
use super::{auth, AppState, CancelGuard, Slot};
use crate::generate::FinishReason;

type St = State<Arc<AppState>>;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .route("/health", get(health))
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

/// The metrics label of a path: the route, never the raw path.
fn endpoint_label(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" => "/v1/chat/completions",
        "/v1/completions" => "/v1/completions",
        "/health" => "/health",
        "/metrics" => "/metrics",
        p if p == "/v1/models" || p.starts_with("/v1/models/") => "/v1/models",
        _ => "other",
    }
}

async fn count(State(st): St, req: Request, next: Next) -> Response {
    let label = endpoint_label(req.uri().path());
    let res = next.run(req).await;
    st.metrics.response(label, res.status().as_u16());
    res
}

async fn require_key(State(st): St, req: Request, next: Next) -> Response {
    if let Some(key) = &st.config.api_key {
        let header = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        if !auth::bearer_matches(header, key) {
            let msg = if header.is_none() {
                "Missing API key: send `Authorization: Bearer <key>`."
            } else {
                "Incorrect API key provided."
            };
            return ApiError::unauthorized(msg).into_response();
        }
    }
    next.run(req).await
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::route_not_found(method.as_str(), uri.path())
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(method.as_str(), uri.path())
}

async fn health(State(st): St) -> Response {
    if st.shutting_down.load(Ordering::SeqCst) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "shutting_down"})),
        )
            .into_response()
    } else if st.ready.get().is_some() {
        Json(json!({"status": "ok", "model": st.config.model_id})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(json!({"status": "loading"})),
        )
            .into_response()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn model_object(st: &AppState) -> Value {
    let mut m = json!({
        "id": st.config.model_id,
        "object": "model",
        "created": 0,
        "owned_by": "lade",
    });
    if let Some(r) = st.ready.get() {
        m["context_length"] = json!(r.context);
    }
    m
}

async fn models(State(st): St) -> Json<Value> {
    Json(json!({"object": "list", "data": [model_object(&st)]}))
}

async fn model(State(st): St, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    if id != st.config.model_id {
        return Err(ApiError::model_not_found(&id, &st.config.model_id));
    }
    Ok(Json(model_object(&st)))
}

async fn metrics(State(st): St) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(st.gauges()),
    )
        .into_response()
}

async fn chat(State(st): St, req: Request) -> Response {
    generation(st, Endpoint::Chat, req).await
}

async fn completions(State(st): St, req: Request) -> Response {
    generation(st, Endpoint::Completion, req).await
}

async fn generation(st: Arc<AppState>, endpoint: Endpoint, req: Request) -> Response {
    let arrived = Instant::now();
    match start_generation(st, endpoint, req, arrived).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// The body, at most `limit` bytes (413 beyond).
async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(format!("The request body could not be read: {e}"))
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::payload_too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// What every response of one request shares.
struct Meta {
    id: String,
    created: u64,
    model: String,
    endpoint: Endpoint,
    include_usage: bool,
}

impl Meta {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Completion, _) => "text_completion",
        }
    }

    /// A streamed chunk whose one choice is `choice`.
    fn chunk(&self, choice: Value) -> Value {
        let mut v = json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [choice],
        });
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        v
    }

    fn text_chunk(&self, text: &str) -> Value {
        self.chunk(match self.endpoint {
            Endpoint::Chat => json!({"index": 0, "delta": {"content": text},
                                     "logprobs": null, "finish_reason": null}),
            Endpoint::Completion => json!({"index": 0, "text": text,
                                           "logprobs": null, "finish_reason": null}),
        })
    }

    fn final_chunk(&self, finish: FinishReason) -> Value {
        self.chunk(match self.endpoint {
            Endpoint::Chat => json!({"index": 0, "delta": {}, "logprobs": null,
                                     "finish_reason": finish}),
            Endpoint::Completion => json!({"index": 0, "text": "", "logprobs": null,
                                           "finish_reason": finish}),
        })
    }

    fn usage_chunk(&self, f: &Finished) -> Value {
        json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [],
            "usage": usage(f),
        })
    }

    fn response(&self, f: &Finished) -> Value {
        let g = &f.generation;
        let choice = match self.endpoint {
            Endpoint::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": g.text},
                "logprobs": null,
                "finish_reason": g.finish_reason,
            }),
            Endpoint::Completion => json!({
                "index": 0,
                "text": g.text,
                "logprobs": null,
                "finish_reason": g.finish_reason,
            }),
        };
        json!({
            "id": self.id,
            "object": self.object(false),
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [choice],
            "usage": usage(f),
        })
    }
}

/// OpenAI usage plus a `lookahead` block.
fn usage(f: &Finished) -> Value {
    let g = &f.generation;
    let s = &g.stats;
    let completion = g.token_ids.len();
    let mut v = json!({
        "prompt_tokens": g.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": g.prompt_tokens + completion,
        "lookahead": {
            "decoder": f.decoder,
            "steps": s.steps,
            "generated_tokens": s.generated_tokens,
            "compression": s.compression,
            "mean_accepted": s.compression,
            "drafted_tokens_accepted": s.drafted_tokens_accepted,
            "accepted_per_step": s.accepted_per_step,
            "decode_tokens_per_s": s.decode_tokens_per_s,
            "steps_by_rows": s.steps_by_rows,
        },
    });
    // The decoder's own counters (lookahead: its config, pool, candidates verified).
    if let Some(d) = &f.decoder_stats {
        v["lookahead"]["decoder_stats"] = d.clone();
    }
    // Lookahead Parallelism only (`lade serve --devices`): the group's devices.
    if let Some(d) = &f.devices {
        v["lookahead"]["devices"] = json!(d);
    }
    v
}

fn sse(v: &Value) -> Event {
    Event::default().data(v.to_string())
}

async fn start_generation(
    st: Arc<AppState>,
    endpoint: Endpoint,
    req: Request,
    arrived: Instant,
) -> Result<Response, ApiError> {
    let body = read_body(req.into_body(), st.config.max_body_bytes).await?;
    let parsed = request::parse(endpoint, &body)?;
    if let Some(m) = &parsed.model {
        if m != &st.config.model_id {
            return Err(ApiError::model_not_found(m, &st.config.model_id));
        }
    }
    let ready = st.ready().ok_or_else(ApiError::loading)?;
    let prompt = {
        let ready = ready.clone();
        let input = parsed.prompt.clone();
        tokio::task::spawn_blocking(move || ready.prompt_ids(&input))
            .await
            .map_err(|e| ApiError::internal(format!("tokenizing failed: {e}")))??
    };
    let max_tokens = ready.completion_budget(prompt.len(), parsed.max_tokens, endpoint)?;
    let slot = st.admit().await?;

    let n = st.next_request();
    let seed = parsed
        .seed
        .unwrap_or_else(|| crate::sampling::random_u64(st.id_salt ^ 0x5eed, n));
    let sampling = crate::sampling::PartialSampling::resolve(
        &parsed.sampling,
        &ready.loaded.recommended_sampling,
        seed,
    );
    let cancel = st.register_cancel(n);
    let job = Job {
        prompt,
        max_tokens,
        sampling,
        stop: parsed.stop.clone(),
        ignore_eos: parsed.ignore_eos,
        kind: parsed.lookahead.unwrap_or(st.config.lookahead),
        cancel: cancel.flag.clone(),
    };
    let prefix = match endpoint {
        Endpoint::Chat => "chatcmpl-",
        Endpoint::Completion => "cmpl-",
    };
    let meta = Meta {
        id: format!("{prefix}{}", st.request_id(n)),
        created: now_secs(),
        model: st.config.model_id.clone(),
        endpoint,
        include_usage: parsed.include_usage,
    };
    let run = Run {
        st,
        ready,
        job,
        slot,
        arrived,
    };
    if parsed.stream {
        Ok(stream(run, meta, cancel))
    } else {
        complete(run, meta, cancel).await
    }
}

/// A request admitted to a slot, ready to generate.
struct Run {
    st: Arc<AppState>,
    ready: Arc<engine::Ready>,
    job: Job,
    slot: Slot,
    arrived: Instant,
}

impl Run {
    /// Generates on the current (blocking) thread, records metrics, logs, frees the slot.
    fn execute(self, id: &str, on_text: &mut dyn FnMut(&str)) -> crate::Result<Finished> {
        let Run {
            st,
            ready,
            job,
            slot,
            arrived,
        } = self;
        let mut ttft: Option<Duration> = None;
        let result = engine::run(&ready, &job, &mut |piece| {
            ttft.get_or_insert_with(|| arrived.elapsed());
            on_text(piece);
        });
        drop(slot);
        let latency = arrived.elapsed();
        match &result {
            Ok(f) => {
                let g = &f.generation;
                st.metrics
                    .generation(g.prompt_tokens, &g.stats, g.finish_reason, ttft, latency);
                let on = f
                    .devices
                    .as_ref()
                    .map_or(String::new(), |d| format!(" on {}", d.join(",")));
                st.log(&format!(
                    "{id}: {} prompt + {} tokens in {} steps ({}{on}, compression {:.2}), \
                     finish {:?}, {:.2} s",
                    g.prompt_tokens,
                    g.token_ids.len(),
                    g.stats.steps,
                    f.decoder,
                    g.stats.compression,
                    g.finish_reason,
                    latency.as_secs_f64()
                ));
            }
            Err(e) => st.log(&format!("{id}: generation failed: {e}")),
        }
        result
    }
}

async fn complete(run: Run, meta: Meta, cancel: CancelGuard) -> Result<Response, ApiError> {
    let id = meta.id.clone();
    // If the client goes away, this future is dropped with `cancel`, which ends the
    // generation at its next step.
    let result = tokio::task::spawn_blocking(move || run.execute(&id, &mut |_| {}))
        .await
        .map_err(|e| ApiError::internal(format!("the generation thread failed: {e}")))?;
    drop(cancel);
    let finished = result.map_err(|e| ApiError::internal(format!("generation failed: {e}")))?;
    Ok(Json(meta.response(&finished)).into_response())
}

fn stream(run: Run, meta: Meta, cancel: CancelGuard) -> Response {
    let (tx, rx) = mpsc::unbounded_channel::<Event>();
    if meta.endpoint == Endpoint::Chat {
        let _ = tx.send(sse(&meta.chunk(json!({
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": null,
            "finish_reason": null,
        }))));
    }
    let flag: Arc<AtomicBool> = cancel.flag.clone();
    tokio::task::spawn_blocking(move || {
        let id = meta.id.clone();
        let mut on_text = |piece: &str| {
            if tx.send(sse(&meta.text_chunk(piece))).is_err() {
                // The body is gone: stop at the next step.
                flag.store(true, Ordering::Relaxed);
            }
        };
        match run.execute(&id, &mut on_text) {
            Ok(f) => {
                let _ = tx.send(sse(&meta.final_chunk(f.generation.finish_reason)));
                if meta.include_usage {
                    let _ = tx.send(sse(&meta.usage_chunk(&f)));
                }
            }
            Err(e) => {
                let err = ApiError::internal(format!("generation failed: {e}"));
                let _ = tx.send(sse(&err.body()));
            }
        }
        let _ = tx.send(Event::default().data("[DONE]"));
    });
    // The guard lives as long as the body: a client that disconnects drops the body, and
    // with it the guard, which sets the cancel flag.
    let events = UnboundedReceiverStream::new(rx).map(move |e| {
        let _alive = &cancel;
        Ok::<_, Infallible>(e)
    });
    Sse::new(events).into_response()
}
