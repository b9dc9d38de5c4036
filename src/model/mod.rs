//! Models: a function of (tokens, positions, attention mask, rows wanting logits) → logits,
//! over a KV cache whose rollback is a length change.

pub mod attention;
pub mod config;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod kv_cache;
pub mod llama;
pub mod mask;
pub mod replay;
pub mod rope;
pub mod step_io;
pub mod timed;
pub mod weights;

use std::sync::Arc;

pub use config::ModelConfig;
pub use kv_cache::KvCache;
pub use llama::Llama;
pub use mask::AttentionMask;
pub use replay::ReplayLm;
pub use timed::TimedLm;
pub use weights::{Linear, WeightFormat};

use crate::{LadeError, Result};

/// The new tokens of one forward pass.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// Token ids, one per new row.
    pub tokens: &'a [u32],
    /// Absolute position of each token (RoPE angle); rows may share positions.
    pub positions: &'a [u32],
    /// Who sees whom among cached and new tokens.
    pub mask: &'a AttentionMask,
    /// Rows whose next-token logits are wanted, in the order they are returned.
    pub logit_rows: &'a [usize],
}

impl<'a> Batch<'a> {
    /// Checks ids, positions, rows and mask against a cache of `past` positions.
    pub fn validate(&self, past: usize, vocab: usize, max_pos: usize) -> Result<()> {
        let q = self.tokens.len();
        let bad = |m: String| Err(LadeError::InvalidArgument(m));
        if q == 0 {
            return bad("empty batch".into());
        }
        if self.positions.len() != q {
            return bad(format!("{q} tokens but {} positions", self.positions.len()));
        }
        if let Some(t) = self.tokens.iter().find(|&&t| t as usize >= vocab) {
            return bad(format!("token id {t} outside the vocabulary of {vocab}"));
        }
        if let Some(p) = self.positions.iter().find(|&&p| p as usize >= max_pos) {
            return Err(LadeError::ContextExceeded {
                needed: *p as usize + 1,
                limit: max_pos,
            });
        }
        if let Some(r) = self.logit_rows.iter().find(|&&r| r >= q) {
            return bad(format!("logit row {r} outside a batch of {q}"));
        }
        self.mask.validate(past, q)
    }
}

/// Next-token logits of some rows of a batch: `rows × vocab`, row-major, f32 on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Logits {
    data: Vec<f32>,
    rows: usize,
    vocab: usize,
}

impl Logits {
    pub fn new(data: Vec<f32>, rows: usize, vocab: usize) -> Self {
        debug_assert_eq!(data.len(), rows * vocab);
        Self { data, rows, vocab }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// Logits of the `i`-th requested row.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.vocab..(i + 1) * self.vocab]
    }
}

/// One sequence being decoded: what every decoding strategy talks to.
///
/// Implemented by [`Session`] (a real model and its cache) and by mock models in tests.
pub trait CausalLm {
    /// Appends `batch` after the current cache and returns the logits of `batch.logit_rows`.
    /// On success the cache length grows by `batch.tokens.len()`.
    fn forward(&mut self, batch: &Batch<'_>) -> Result<Logits>;
    /// Committed positions in the cache.
    fn cache_len(&self) -> usize;
    /// Forgets positions `>= len` (O(1)).
    fn truncate(&mut self, len: usize);
    /// Keeps, of the rows at `start..cache_len`, the ones at offsets `rows`, moved down to
    /// `start..start+rows.len()`.
    fn keep_rows(&mut self, start: usize, rows: &[usize]) -> Result<()>;
    /// Largest number of positions the cache can hold.
    fn context_size(&self) -> usize;
    fn vocab_size(&self) -> usize;
    /// Like [`CausalLm::forward`] but returns only the argmax token of each logit row (lowest
    /// id on ties, as [`crate::sampling::argmax`]). Devices override it to avoid moving whole
    /// logit rows to the host when the decoder only needs greedy choices.
    fn forward_argmax(&mut self, batch: &Batch<'_>) -> Result<Vec<u32>> {
        let logits = self.forward(batch)?;
        Ok((0..logits.rows())
            .map(|i| crate::sampling::argmax(logits.row(i)))
            .collect())
    }
}

/// A model plus the KV cache of one sequence.
#[derive(Debug, Clone)]
pub struct Session {
    pub model: Arc<Llama>,
    pub cache: KvCache,
}

impl Session {
    /// `context`: positions to preallocate (clamped to the model's trained context).
    pub fn new(model: Arc<Llama>, context: usize) -> Result<Self> {
        let context = context.min(model.config.max_position_embeddings).max(1);
        let cache = model.new_cache(context)?;
        Ok(Self { model, cache })
    }
}

impl CausalLm for Session {
    fn forward(&mut self, batch: &Batch<'_>) -> Result<Logits> {
        self.model.forward(batch, &mut self.cache)
    }
    fn cache_len(&self) -> usize {
        self.cache.len()
    }
    fn truncate(&mut self, len: usize) {
        self.cache.truncate(len)
    }
    fn keep_rows(&mut self, start: usize, rows: &[usize]) -> Result<()> {
        self.cache.keep_rows(start, rows)
    }
    fn context_size(&self) -> usize {
        self.cache.capacity()
    }
    fn vocab_size(&self) -> usize {
        self.model.config.vocab_size
    }
}
