//! The paper's drafter: the n-gram pool, fed by the diagonals of the Jacobi window and by the
//! committed text.
//!
//! Each step the window rides in the forward pass as lookahead rows; their argmax is the next
//! Jacobi iteration of the window's top level, whose columns read bottom-up are n-grams of the
//! Jacobi trajectory (spec a.7). The drafts are the pool's tuples for the pending token, once
//! the window is warm. Without a window (W = 0, prompt lookup) the pool holds the committed
//! text's n-grams alone.

use super::pool::NgramPool;
use super::window::JacobiWindow;
use crate::decode::speculative::{Budget, Draft, Drafter, LookaheadRows};

/// The Jacobi window a sequence starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowShape {
    /// Columns (W ≥ 1).
    pub columns: usize,
    /// N-gram size (the window has N-1 levels).
    pub ngram: usize,
    /// Seed of the initialisation from random prompt tokens.
    pub seed: u64,
}

/// The n-gram pool and its feeds.
#[derive(Debug, Clone)]
pub struct PoolDrafter {
    /// Tokens per tuple (N-1) and most tuples per key (G).
    arity: usize,
    capacity: usize,
    pool: NgramPool,
    shape: Option<WindowShape>,
    window: Option<JacobiWindow>,
    /// Pool the prompt's and the committed output's n-grams.
    from_text: bool,
}

impl PoolDrafter {
    /// A pool of at most `capacity` tuples of `arity` tokens per key, fed by a window of
    /// `shape` (if any) and by the committed text (if `from_text`).
    pub fn new(arity: usize, capacity: usize, shape: Option<WindowShape>, from_text: bool) -> Self {
        Self {
            arity,
            capacity,
            pool: NgramPool::new(arity, capacity),
            shape,
            window: None,
            from_text,
        }
    }

    pub fn pool(&self) -> &NgramPool {
        &self.pool
    }

    /// The Jacobi window (none before `begin` and without one).
    pub fn window(&self) -> Option<&JacobiWindow> {
        self.window.as_ref()
    }

    /// [`Drafter::observe`], and without a window, before pooling each new n-gram, `record(p,
    /// first)` for each text position `p` the text passed since the last step (its length
    /// `p`: the step's start, then the positions its committed tokens crossed): `first` is the
    /// first (oldest) tuple the pool held for the pending token there, the first draft it
    /// proposed or would have after the first `p` tokens (empty: none). Without a window the
    /// pool holds the n-grams of the text, pooled in order of their last token, so at `p` it
    /// held those ending before `p`, whatever the steps were.
    pub fn observe_recording(
        &mut self,
        text: &[u32],
        new: usize,
        outputs: &[u32],
        mut record: impl FnMut(usize, &[u32]),
    ) {
        if self.window.is_some() {
            self.observe(text, new, outputs);
            return;
        }
        for end in text.len() - new..text.len() {
            let first = end
                .checked_sub(1)
                .and_then(|pending| self.pool.get(text[pending]).first());
            record(end, first.map_or(&[], Vec::as_slice));
            if self.from_text {
                self.pool.insert_ending(&text[..=end], 1);
            }
        }
    }
}

impl Drafter for PoolDrafter {
    fn begin(&mut self, prompt: &[u32]) {
        self.window = self
            .shape
            .map(|s| JacobiWindow::from_prompt(prompt, s.columns, s.ngram, s.seed));
        self.pool = NgramPool::new(self.arity, self.capacity);
        if self.from_text {
            self.pool.insert_sequence(prompt);
        }
    }

    /// The pool's tuples for the pending token, oldest first, once the window is warm.
    fn propose(&mut self, text: &[u32], budget: Budget) -> Vec<Draft> {
        let Some(&pending) = text.last() else {
            return Vec::new();
        };
        if !self.window.as_ref().is_none_or(JacobiWindow::is_warm) {
            return Vec::new();
        }
        self.pool
            .get(pending)
            .iter()
            .take(budget.drafts)
            .map(|v| Draft {
                tokens: v[..v.len().min(budget.tokens)].to_vec(),
                context: None,
            })
            .collect()
    }

    fn lookahead_rows(&self) -> LookaheadRows {
        self.window
            .as_ref()
            .map(JacobiWindow::lookahead_rows)
            .unwrap_or_default()
    }

    /// Harvests the window's n-grams and moves it one Jacobi iteration on (when the step ran
    /// it), then pools the n-grams that end in the new tokens.
    fn observe(&mut self, text: &[u32], new: usize, outputs: &[u32]) {
        if let Some(window) = self.window.as_mut().filter(|_| !outputs.is_empty()) {
            let pending = text[text.len() - new - 1];
            for gram in window.ngrams(pending, outputs) {
                self.pool.insert(gram[0], &gram[1..]);
            }
            window.advance(outputs);
        }
        if self.from_text {
            self.pool.insert_ending(text, new);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::test_rng::Lcg;

    /// Without a window, the first draft recorded at every position is what a pool that
    /// stopped there (a fresh one, begun on the text up to there) proposes first.
    #[test]
    fn recorded_first_drafts_are_what_a_pool_stopped_there_proposes() {
        let mut rng = Lcg(21);
        let text: Vec<u32> = (0..400).map(|_| rng.below(5) as u32).collect();
        for (arity, capacity) in [(2, 1), (4, 1), (3, 4)] {
            let mut pool = PoolDrafter::new(arity, capacity, None, true);
            let prompt = 7;
            pool.begin(&text[..prompt]);
            let mut recorded = Vec::new();
            let mut len = prompt;
            while len < text.len() {
                let new = (1 + rng.below(6)).min(text.len() - len);
                len += new;
                pool.observe_recording(&text[..len], new, &[], |at, first| {
                    recorded.push((at, first.to_vec()))
                });
            }
            let budget = Budget {
                drafts: capacity,
                tokens: arity,
            };
            let mut found = 0;
            for (i, (at, first)) in recorded.into_iter().enumerate() {
                assert_eq!(at, prompt + i);
                let mut fresh = PoolDrafter::new(arity, capacity, None, true);
                fresh.begin(&text[..at]);
                let want = fresh.propose(&text[..at], budget);
                assert_eq!(
                    first,
                    want.first().map(|d| d.tokens.clone()).unwrap_or_default(),
                    "{arity} {capacity}: {at}"
                );
                found += usize::from(!first.is_empty());
            }
            assert!(found > 300, "{found}");
        }
    }
}
