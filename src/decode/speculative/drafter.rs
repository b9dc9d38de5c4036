//! The drafter: anything that guesses how the committed text goes on.
//!
//! Before a step a drafter proposes drafts within a budget; after it, it observes what was
//! committed. A drafter may also put rows of its own into the step's forward pass whose outputs
//! only it reads ([`LookaheadRows`]: the Jacobi window's guesses, which are not drafts to verify
//! but ride in the same pass). Drafts never change the output, only how many tokens a step
//! commits: the step verifies them against the model's own choices.

use std::fmt::Debug;

use super::tree::LookaheadRows;

/// How much a drafter may propose for one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Most drafts.
    pub drafts: usize,
    /// Most tokens per draft.
    pub tokens: usize,
}

/// One guess of the tokens after the pending token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub tokens: Vec<u32>,
    /// Tokens at the end of the committed text that the drafter matched to find the draft,
    /// where it measures that (the evidence the combination policy weighs).
    pub context: Option<usize>,
}

/// A source of drafts for one sequence.
pub trait Drafter: Debug + Send {
    /// Starts a sequence with `prompt`.
    fn begin(&mut self, prompt: &[u32]);
    /// Drafts continuing `text` (the committed text; its last token is the pending one),
    /// within `budget`. A drafter may keep what it proposed, to score it in
    /// [`Self::observe`].
    fn propose(&mut self, text: &[u32], budget: Budget) -> Vec<Draft>;
    /// Rows this drafter adds to the next step, whose outputs only it reads.
    fn lookahead_rows(&self) -> LookaheadRows {
        LookaheadRows::default()
    }
    /// After a step: `text` is the committed text, its last `new` tokens committed by the step;
    /// `outputs` are the model's argmax at [`Self::lookahead_rows`]'s outputs (empty when the
    /// step did not run them: a plain step near the end of the context).
    fn observe(&mut self, text: &[u32], new: usize, outputs: &[u32]);
}

/// Drives `drafter` along `text` from its first `from` tokens (after `begin` on them) as a
/// decoder whose model writes `text` would: each step commits the first draft's right tokens
/// and one more, and after the drafter observed it, `after_step` runs on the drafter. Returns
/// the steps taken.
#[cfg(test)]
pub(crate) fn write_along<D: Drafter>(
    drafter: &mut D,
    text: &[u32],
    from: usize,
    budget: Budget,
    mut after_step: impl FnMut(&mut D),
) -> usize {
    drafter.begin(&text[..from]);
    let (mut len, mut steps) = (from, 0);
    while len < text.len() {
        let right = drafter
            .propose(&text[..len], budget)
            .first()
            .map_or(0, |d| {
                d.tokens
                    .iter()
                    .zip(&text[len..])
                    .take_while(|(a, b)| a == b)
                    .count()
            });
        let new = (1 + right).min(text.len() - len);
        len += new;
        drafter.observe(&text[..len], new, &[]);
        after_step(drafter);
        steps += 1;
    }
    steps
}
