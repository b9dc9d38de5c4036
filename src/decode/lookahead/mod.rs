//! Lookahead Decoding (Fu et al., ICML 2024): exact parallel decoding without a draft model.
//!
//! Each step is ONE forward pass over the pending token, the 2D Jacobi window and up to G
//! drafts from the n-gram pool; the model's own choices verify the drafts, the window moves one
//! Jacobi iteration forward and its diagonals feed the pool. With W = 0 there is no window: the
//! step verifies drafts from the prompt, the output and the draft corpus only.
//!
//! This module holds the paper's drafter ([`PoolDrafter`]: [`JacobiWindow`] and [`NgramPool`])
//! and the configuration ([`LookaheadConfig`]); the decoder is
//! [`crate::decode::SpeculativeDecoder::lookahead`], one step of which is
//! [`crate::decode::speculative::speculative_step`].

pub mod config;
pub mod pool;
pub mod pool_drafter;
pub mod switches;
pub mod window;

pub use config::LookaheadConfig;
pub use pool::NgramPool;
pub use pool_drafter::{PoolDrafter, WindowShape};
pub use switches::DraftSwitches;
pub use window::JacobiWindow;

use super::speculative::{LookaheadRows, StepTree};

/// A full step of a warm window of `w` columns and `n - 1` levels with `g` drafts, at position
/// `past`, its tokens `id(i)` for arbitrary (deterministic) `i`: the shape and mask of a real
/// step, for timing forward passes.
pub fn synthetic_step(
    w: usize,
    n: usize,
    g: usize,
    past: usize,
    id: impl Fn(usize) -> u32,
) -> StepTree {
    let drafts: Vec<Vec<u32>> = (0..g)
        .map(|c| (0..n - 1).map(|i| id(past + 97 * c + i)).collect())
        .collect();
    if w == 0 {
        return StepTree::new(id(past), past as u32, &drafts, &LookaheadRows::default());
    }
    let mut levels = vec![(1..w).map(|j| id(past + j)).collect::<Vec<u32>>()];
    levels.extend((1..n - 1).map(|l| (0..w).map(|j| id(past + 31 * l + j)).collect()));
    let window = JacobiWindow::from_levels(levels);
    StepTree::new(id(past), past as u32, &drafts, &window.lookahead_rows())
}
