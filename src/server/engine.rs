//! The model side of the server: prompts, the decoder of a request, and one generation.
//!
//! Every request gets its own session (KV cache) over the shared weights, on the backend the
//! model was loaded to, and runs [`generate`] on a blocking thread. A finished request's
//! session is kept for a later one that fits in it ([`SessionPool`]; never two at once). CPU kernels are
//! batch-invariant, so what a request gets does not depend on what else runs.
//!
//! A request's decoder is built from its [`DecoderSpec`] ([`Ready::spec`]) by
//! [`crate::tune::build()`], as `lade generate` builds its own.
//!
//! With a [`DeviceSet`] (`lade serve --devices`), a lookahead request runs Lookahead
//! Parallelism instead: it gets its own [`DeviceGroup`] (a fresh session per device, sized as
//! the single-device one, each on its own host thread) and
//! [`crate::decode::SpeculativeDecoder::lookahead_parallel`].
//! Requests never share a group, so concurrent requests cannot disturb each other's caches;
//! only the weights are shared, read-only. Requests that decode plainly run on the first
//! device alone, as without `--devices`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde_json::Value;

use super::error::ApiError;
use super::request::{Endpoint, PromptInput};
use super::session_pool::SessionPool;
use crate::chat_template::ChatTemplate;
use crate::decode::{DecoderKind, DecoderSpec, DeviceGroup, DraftCorpus};
use crate::generate::{generate, Generation, StopRules};
use crate::loader::LoadedModel;
use crate::model::CausalLm;
use crate::sampling::{Sampler, SamplingParams};
use crate::tokenizer::TextTokenizer;
use crate::tune::{build, resolve, AutoSource, DecoderEnv, SamplingMode};
use crate::{LadeError, Result};

/// Extra KV positions a step of `kind` may use beyond the committed tokens.
fn scratch_positions(kind: DecoderKind) -> usize {
    match kind {
        DecoderKind::Plain | DecoderKind::Auto => 0,
        _ => DecoderSpec::new(kind).step_tokens() + 1,
    }
}

/// One device of a [`DeviceSet`].
#[derive(Clone)]
pub struct GroupDevice {
    /// Its name in logs and in `usage.lookahead.devices`, e.g. `cpu` or `cuda:1`.
    pub label: String,
    /// `None`: the CPU; `Some(n)`: CUDA device `n`.
    pub gpu: Option<usize>,
    /// The model its sessions are made from: `None` for the server's own model
    /// ([`Ready::loaded`], which must live on this device or be the host weights of a CPU
    /// device), else a copy loaded onto this device once at start-up (so that requests do
    /// not upload weights).
    pub model: Option<Arc<LoadedModel>>,
}

impl std::fmt::Debug for GroupDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupDevice")
            .field("label", &self.label)
            .field("gpu", &self.gpu)
            .field("own_model", &self.model.is_some())
            .finish()
    }
}

/// The devices of Lookahead Parallelism (`lade serve --devices`): every lookahead request
/// gets a [`DeviceGroup`] of one fresh session per device.
#[derive(Debug, Clone)]
pub struct DeviceSet {
    devices: Vec<GroupDevice>,
}

impl DeviceSet {
    /// At least two devices (one device is plain single-device serving).
    pub fn new(devices: Vec<GroupDevice>) -> Result<Self> {
        if devices.len() < 2 {
            return Err(LadeError::InvalidArgument(format!(
                "Lookahead Parallelism needs at least two devices, got {}",
                devices.len()
            )));
        }
        Ok(Self { devices })
    }

    pub fn devices(&self) -> &[GroupDevice] {
        &self.devices
    }

    /// The devices as a [`DecoderSpec`] lists them (`None`: the CPU).
    pub fn gpus(&self) -> Vec<Option<usize>> {
        self.devices.iter().map(|d| d.gpu).collect()
    }

    /// The device names, e.g. `["cpu", "cpu"]`.
    pub fn labels(&self) -> Vec<String> {
        self.devices.iter().map(|d| d.label.clone()).collect()
    }

    /// A new group for one sequence of `context` positions: one session per device (over
    /// `primary`, the server's model, where the device has no model of its own), each on its
    /// own thread until the group is dropped.
    pub fn group(&self, primary: &LoadedModel, context: usize) -> Result<DeviceGroup> {
        let sessions = self
            .devices
            .iter()
            .map(|d| {
                d.model
                    .as_deref()
                    .unwrap_or(primary)
                    .new_session_on(d.gpu, context)
            })
            .collect::<Result<Vec<_>>>()?;
        DeviceGroup::new(sessions, self.labels())
    }
}

/// A loaded model, ready to serve.
pub struct Ready {
    /// Weights, tokenizer and backend (sessions are made with [`LoadedModel::new_session`],
    /// so requests run where the model was loaded: CPU or GPU).
    pub loaded: LoadedModel,
    /// The chat template, or why it does not compile.
    pub template: std::result::Result<ChatTemplate, String>,
    /// Positions one request may use: prompt + completion.
    pub context: usize,
    /// What [`DecoderKind::Auto`] meant at start-up on this model and device (never `Auto`).
    pub auto: DecoderKind,
    /// Whether `auto` requests pick again, each from the step costs measured at start-up and
    /// the acceptance of the requests finished so far ([`Self::with_learning`]).
    pub learns: bool,
    /// Lookahead Parallelism: the devices of every lookahead request's group (`None`: one
    /// device, the model's).
    pub devices: Option<DeviceSet>,
    /// Single-device sessions of finished requests, for later ones.
    pub sessions: SessionPool,
    /// Drafts for lookahead steps whose text has none.
    pub corpus: Option<Arc<DraftCorpus>>,
}

impl Ready {
    /// `auto` is what `--lookahead auto` resolves to ([`crate::tune::resolve`]).
    pub fn new(loaded: LoadedModel, context: usize, auto: DecoderKind) -> Self {
        let template = ChatTemplate::from_tokenizer(&loaded.tokenizer).map_err(|e| e.to_string());
        let context = context.min(loaded.model.config.max_position_embeddings);
        let auto = match auto {
            DecoderKind::Auto => DecoderKind::Plain,
            k => k,
        };
        Self {
            loaded,
            template,
            context,
            auto,
            learns: false,
            devices: None,
            sessions: SessionPool::new(0),
            corpus: None,
        }
    }

    /// The same, `auto` requests picking again from what the server has learned when
    /// `learns` (`auto` was measured at start-up on this device): every finished lookahead
    /// request feeds its acceptance to [`crate::tune::record`], so that a config that accepts
    /// less than expected on this workload gives way to another, or to plain decoding.
    pub fn with_learning(mut self, learns: bool) -> Self {
        self.learns = learns;
        self
    }

    /// The same, lookahead requests drafting from `corpus` where their text has no draft.
    pub fn with_corpus(mut self, corpus: Option<Arc<DraftCorpus>>) -> Self {
        self.corpus = corpus;
        self
    }

    /// The same, keeping up to `keep` finished sessions for later requests (0: none).
    pub fn with_session_pool(mut self, keep: usize) -> Self {
        self.sessions = SessionPool::new(keep);
        self
    }

    /// The same, decoding lookahead requests with Lookahead Parallelism over `devices`.
    pub fn with_devices(mut self, devices: Option<DeviceSet>) -> Self {
        self.devices = devices;
        self
    }

    /// The decoding of a request: `kind` with `auto` as it was resolved at start-up.
    pub fn kind(&self, kind: DecoderKind) -> DecoderKind {
        match kind {
            DecoderKind::Auto => self.auto,
            k => k,
        }
    }

    /// The decoding of a request about to run: `kind`, with `auto` picked again from the
    /// acceptance of `mode`'s requests so far where the server [learns](Self::learns) (a
    /// config not yet run on this device is first timed once), else as at start-up.
    pub fn pick(&self, kind: DecoderKind, mode: SamplingMode) -> DecoderKind {
        if kind != DecoderKind::Auto || !self.learns {
            return self.kind(kind);
        }
        let source = AutoSource::model(&self.loaded, self.context).with_mode(mode);
        match resolve(&DecoderSpec::new(DecoderKind::Auto), Some(&source)) {
            Ok((spec, _)) => spec.kind,
            Err(_) => self.auto,
        }
    }

    /// The full description of a request's decoder: `kind` (`auto` resolved), the default
    /// switches, the request's seed for the window, and with [`Self::devices`] the group's
    /// devices where there is a window to split (plain decoding and lookahead without a
    /// window run on the first device alone).
    pub fn spec(&self, kind: DecoderKind, seed: u64) -> DecoderSpec {
        let spec = DecoderSpec::new(self.kind(kind)).with_seed(seed);
        match (&self.devices, spec.kind) {
            (Some(set), DecoderKind::Lookahead { window, .. }) if window > 0 => {
                spec.with_devices(set.gpus())
            }
            _ => spec,
        }
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.loaded.tokenizer
    }

    /// Prompt token ids: chat messages through the model's template, text, or checked ids.
    pub fn prompt_ids(&self, input: &PromptInput) -> Result<Vec<u32>, ApiError> {
        let tok = self.tokenizer();
        let (ids, param) = match input {
            PromptInput::Tokens(ids) => {
                let vocab = self.loaded.model.config.vocab_size;
                if let Some(t) = ids.iter().find(|&&t| t as usize >= vocab) {
                    return Err(ApiError::invalid(
                        "prompt",
                        format!("token id {t} in `prompt` is outside the vocabulary of {vocab}"),
                    ));
                }
                (ids.clone(), "prompt")
            }
            PromptInput::Text(text) => (encode(tok, text)?, "prompt"),
            PromptInput::Messages(messages) => {
                let template = self.template.as_ref().map_err(|e| {
                    ApiError::internal(format!("the model's chat template is unusable: {e}"))
                })?;
                let rendered = template
                    .render(
                        messages,
                        true,
                        tok.bos_token().as_deref().unwrap_or(""),
                        tok.eos_token().as_deref().unwrap_or(""),
                    )
                    .map_err(|e| match e {
                        LadeError::ChatTemplate(m) => ApiError::invalid(
                            "messages",
                            format!("the model's chat template refused the messages: {m}"),
                        ),
                        other => ApiError::internal(other.to_string()),
                    })?;
                (encode(tok, &rendered)?, "messages")
            }
        };
        if ids.is_empty() {
            return Err(ApiError::invalid(param, "the prompt encodes to no tokens"));
        }
        Ok(ids)
    }

    /// Checks the prompt and completion against the context; returns the completion budget
    /// (`max_tokens`, or what is left of the context).
    pub fn completion_budget(
        &self,
        prompt_len: usize,
        max_tokens: Option<usize>,
        endpoint: Endpoint,
    ) -> Result<usize, ApiError> {
        let c = self.context;
        if prompt_len >= c {
            let param = match endpoint {
                Endpoint::Chat => "messages",
                Endpoint::Completion => "prompt",
            };
            return Err(ApiError::invalid(
                param,
                format!(
                    "This model's maximum context length is {c} tokens, but the prompt has \
                     {prompt_len} tokens; shorten the prompt (at least one position must be \
                     left to generate)."
                ),
            )
            .code("context_length_exceeded"));
        }
        let room = c - prompt_len;
        match max_tokens {
            Some(m) if m > room => Err(ApiError::invalid(
                "max_tokens",
                format!(
                    "This model's maximum context length is {c} tokens, but {} were requested \
                     ({prompt_len} in the prompt, {m} for the completion); at most {room} can \
                     be generated after this prompt.",
                    prompt_len.saturating_add(m)
                ),
            )
            .code("context_length_exceeded")),
            Some(m) => Ok(m),
            None => Ok(room),
        }
    }
}

/// Encodes prompt text the way `lade generate` does ([`TextTokenizer::encode_prompt`]).
fn encode(tok: &TextTokenizer, text: &str) -> Result<Vec<u32>, ApiError> {
    tok.encode_prompt(text)
        .map_err(|e| ApiError::internal(format!("tokenizing the prompt failed: {e}")))
}

/// One generation to run.
#[derive(Debug, Clone)]
pub struct Job {
    pub prompt: Vec<u32>,
    /// Checked against the context by [`Ready::completion_budget`].
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
    /// The request's decoding (`auto` is picked when the job runs: [`Ready::pick`]).
    pub kind: DecoderKind,
    pub cancel: Arc<AtomicBool>,
}

/// A finished generation and its decoder.
#[derive(Debug, Clone)]
pub struct Finished {
    pub generation: Generation,
    /// Decoder name, e.g. `plain` or `lookahead(8,4,8)`.
    pub decoder: String,
    /// The decoder's own statistics (lookahead only).
    pub decoder_stats: Option<Value>,
    /// The devices of Lookahead Parallelism, when the request ran on a group.
    pub devices: Option<Vec<String>>,
}

/// Runs `job` to the end (blocking); `on_text` receives the text as it becomes final.
pub fn run(ready: &Ready, job: &Job, on_text: &mut dyn FnMut(&str)) -> Result<Finished> {
    let mode = SamplingMode::of(&job.sampling);
    let kind = ready.pick(job.kind, mode);
    // Only the positions this request can use: prompt + completion (+ one lookahead step).
    let capacity = (job.prompt.len() + job.max_tokens + scratch_positions(kind))
        .min(ready.context)
        .max(job.prompt.len() + 1);
    // Lookahead requests on a device group get their own group (its threads end when it is
    // dropped at the end of this function); the others take a single-device session, from
    // the pool where one fits, and give it back.
    let spec = ready.spec(kind, job.sampling.seed);
    let corpus = || Ok(ready.corpus.clone());
    let group = || match &ready.devices {
        Some(set) => set.group(&ready.loaded, capacity),
        None => Err(LadeError::InvalidArgument(
            "Lookahead Parallelism needs the devices of `lade serve --devices`".into(),
        )),
    };
    let built = build(
        &spec,
        &DecoderEnv {
            auto: None,
            corpus: &corpus,
            group: &group,
        },
    )?;
    let mut decoder = built.decoder;
    let (mut session, devices): (Box<dyn CausalLm + Send>, _) = match built.group {
        Some(group) => (
            Box::new(group),
            ready.devices.as_ref().map(DeviceSet::labels),
        ),
        None => (
            ready
                .sessions
                .take(capacity, ready.context, |n| ready.loaded.new_session(n))?,
            None,
        ),
    };
    let sampler = Sampler::new(job.sampling)?;
    let rules = StopRules {
        max_tokens: job.max_tokens,
        stop_ids: if job.ignore_eos {
            Vec::new()
        } else {
            ready.tokenizer().eog_ids().to_vec()
        },
        stop_strings: job.stop.clone(),
        cancel: Some(job.cancel.clone()),
    };
    let generation = generate(
        session.as_mut(),
        decoder.as_mut(),
        &sampler,
        &job.prompt,
        &rules,
        Some(ready.tokenizer()),
        &mut |piece, _| on_text(piece),
    )?;
    if devices.is_none() {
        ready.sessions.put(session);
        // What this request accepted is what later `auto` picks expect (single-device steps:
        // the cost model's).
        if let Some(c) = spec.lookahead_config() {
            let s = &generation.stats;
            crate::tune::record(&c, mode, s.generated_tokens, &s.steps_by_rows);
        }
    }
    Ok(Finished {
        generation,
        decoder: decoder.name(),
        decoder_stats: decoder.stats_json(),
        devices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookahead_step_reserves_its_rows() {
        assert_eq!(scratch_positions(DecoderKind::Plain), 0);
        let la = DecoderKind::lookahead(4, 3, 2).unwrap();
        assert_eq!(
            scratch_positions(la),
            DecoderSpec::new(la).step_tokens() + 1
        );
    }
}
