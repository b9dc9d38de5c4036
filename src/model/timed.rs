//! A sequence whose model calls are timed: what a generation spends waiting on the model
//! (forward passes and cache moves, including the device's work), as opposed to the decoder's
//! own host work between them.

use std::time::{Duration, Instant};

use super::{Batch, CausalLm, Logits};
use crate::Result;

/// Forwards every call to `inner` and sums the wall time of those that run the model.
pub struct TimedLm<'a> {
    inner: &'a mut dyn CausalLm,
    /// Wall time inside `forward`, `forward_argmax` and `keep_rows` so far.
    pub spent: Duration,
}

impl<'a> TimedLm<'a> {
    pub fn new(inner: &'a mut dyn CausalLm) -> Self {
        Self {
            inner,
            spent: Duration::ZERO,
        }
    }

    fn timed<T>(&mut self, f: impl FnOnce(&mut dyn CausalLm) -> T) -> T {
        let t = Instant::now();
        let out = f(&mut *self.inner);
        self.spent += t.elapsed();
        out
    }
}

impl CausalLm for TimedLm<'_> {
    fn forward(&mut self, batch: &Batch<'_>) -> Result<Logits> {
        self.timed(|lm| lm.forward(batch))
    }

    fn cache_len(&self) -> usize {
        self.inner.cache_len()
    }

    fn truncate(&mut self, len: usize) {
        self.inner.truncate(len)
    }

    fn keep_rows(&mut self, start: usize, rows: &[usize]) -> Result<()> {
        self.timed(|lm| lm.keep_rows(start, rows))
    }

    fn context_size(&self) -> usize {
        self.inner.context_size()
    }

    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    fn forward_argmax(&mut self, batch: &Batch<'_>) -> Result<Vec<u32>> {
        self.timed(|lm| lm.forward_argmax(batch))
    }
}
