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
