//! A stand-in model that answers a recorded greedy text: the next token at every position is
//! the text's. Decoding a prompt against it takes exactly the steps, rows and accepted drafts
//! that decoding against the model that wrote the text takes, wherever a step's outcome
//! depends only on the model's greedy choices after the committed text and a draft's right
//! tokens (every drafter without a Jacobi window): a draft row's answer counts only while the
//! draft before it is right, and there it is the recorded token. It runs no model, so a
//! decoder's steps on a recorded text cost its own time alone.

use super::{Batch, CausalLm, Logits};
use crate::{LadeError, Result};

/// The prompt and its greedy continuation, answered position by position.
#[derive(Debug, Clone)]
pub struct ReplayLm {
    /// Prompt and greedy output.
    text: Vec<u32>,
    vocab: usize,
    context: usize,
    cache: usize,
}

impl ReplayLm {
    /// Answers `text` (a prompt and its greedy continuation) over a vocabulary of `vocab`
    /// tokens and a context of `context` positions.
    pub fn new(text: Vec<u32>, vocab: usize, context: usize) -> Result<Self> {
        if let Some(t) = text.iter().find(|&&t| t as usize >= vocab) {
            return Err(LadeError::InvalidArgument(format!(
                "recorded token {t} outside the vocabulary of {vocab}"
            )));
        }
        Ok(Self {
            text,
            vocab,
            context,
            cache: 0,
        })
    }

    /// The recorded token after position `p` (past the recorded text: token 0).
    fn next_after(&self, p: u32) -> u32 {
        self.text.get(p as usize + 1).copied().unwrap_or(0)
    }

    fn check(&self, batch: &Batch<'_>) -> Result<()> {
        batch.validate(self.cache, self.vocab, self.context)?;
        let needed = self.cache + batch.tokens.len();
        if needed > self.context {
            return Err(LadeError::ContextExceeded {
                needed,
                limit: self.context,
            });
        }
        Ok(())
    }
}

impl CausalLm for ReplayLm {
    fn forward(&mut self, batch: &Batch<'_>) -> Result<Logits> {
        let next = self.forward_argmax(batch)?;
        let mut data = vec![0.0; next.len() * self.vocab];
        for (i, &t) in next.iter().enumerate() {
            data[i * self.vocab + t as usize] = 1.0;
        }
        Ok(Logits::new(data, next.len(), self.vocab))
    }

    fn forward_argmax(&mut self, batch: &Batch<'_>) -> Result<Vec<u32>> {
        self.check(batch)?;
        let next = batch
            .logit_rows
            .iter()
            .map(|&r| self.next_after(batch.positions[r]))
            .collect();
        self.cache += batch.tokens.len();
        Ok(next)
    }

    fn cache_len(&self) -> usize {
        self.cache
    }

    fn truncate(&mut self, len: usize) {
        self.cache = self.cache.min(len);
    }

    fn keep_rows(&mut self, start: usize, rows: &[usize]) -> Result<()> {
        if start > self.cache || rows.iter().any(|&r| start + r >= self.cache) {
            return Err(LadeError::InvalidArgument(format!(
                "rows {rows:?} after {start} outside a cache of {}",
                self.cache
            )));
        }
        self.cache = start + rows.len();
        Ok(())
    }

    fn context_size(&self) -> usize {
        self.context
    }

    fn vocab_size(&self) -> usize {
        self.vocab
    }
}
