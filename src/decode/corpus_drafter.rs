//! Drafts from the draft corpus: what the model usually wrote after the longest context of the
//! sequence's end that the corpus knows.

use std::sync::Arc;

use super::corpus::DraftCorpus;
use super::draft_length::DraftLengths;
use super::speculative::{Budget, Draft, Drafter};

/// Tokens drafted from the draft corpus when the context it matched is `order` tokens long:
/// 3 (a 4-row step with the pending token, about 1.01 single-row steps on the H200) after a
/// short context, 7 (8 rows, 1.09) after 4 or more tokens, which the corpus continues further
/// (chosen by exact replays on greedy texts).
pub fn corpus_draft_len(order: usize) -> usize {
    if order >= 4 {
        7
    } else {
        3
    }
}

/// At most one draft a step from a [`DraftCorpus`]; its evidence is the matched context's
/// length.
#[derive(Debug, Clone)]
pub struct CorpusDrafter {
    corpus: Arc<DraftCorpus>,
    /// Draft lengths learned from the generation (else [`corpus_draft_len`]).
    lengths: Option<DraftLengths>,
}

impl CorpusDrafter {
    pub fn new(corpus: Arc<DraftCorpus>) -> Self {
        Self {
            corpus,
            lengths: None,
        }
    }

    /// The same, its draft lengths learned by `lengths` instead of [`corpus_draft_len`].
    pub fn with_lengths(mut self, lengths: Option<DraftLengths>) -> Self {
        self.lengths = lengths;
        self
    }

    pub fn lengths(&self) -> Option<&DraftLengths> {
        self.lengths.as_ref()
    }

    pub fn lengths_mut(&mut self) -> Option<&mut DraftLengths> {
        self.lengths.as_mut()
    }

    pub fn corpus(&self) -> &Arc<DraftCorpus> {
        &self.corpus
    }
}

impl Drafter for CorpusDrafter {
    fn begin(&mut self, _prompt: &[u32]) {
        if let Some(l) = self.lengths.as_mut() {
            l.reset();
        }
    }

    fn propose(&mut self, text: &[u32], budget: Budget) -> Vec<Draft> {
        if budget.drafts == 0 {
            return Vec::new();
        }
        let Some((_, order)) = self.corpus.next(text) else {
            return Vec::new();
        };
        let tokens = match self.lengths.as_mut() {
            Some(learn) => {
                let mut full = self.corpus.draft(text, learn.max());
                learn.note(text.len(), order, &full);
                full.truncate(learn.length(order).min(budget.tokens));
                full
            }
            None => self
                .corpus
                .draft(text, corpus_draft_len(order).min(budget.tokens)),
        };
        if tokens.is_empty() {
            return Vec::new();
        }
        vec![Draft {
            tokens,
            context: Some(order),
        }]
    }

    fn observe(&mut self, text: &[u32], _new: usize, _outputs: &[u32]) {
        if let Some(l) = self.lengths.as_mut() {
            l.observe(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_draft_grows_with_the_matched_context_within_the_budget() {
        let text: Vec<u32> = (10..=30).collect();
        let mut d = CorpusDrafter::new(Arc::new(DraftCorpus::from_texts([text.as_slice()])));
        let budget = Budget {
            drafts: 1,
            tokens: 31,
        };
        // One token of context: 3 tokens; five: 7.
        let short = d.propose(&[99, 12], budget);
        assert_eq!(short[0].tokens, vec![13, 14, 15]);
        assert_eq!(short[0].context, Some(1));
        let long = d.propose(&[11, 12, 13, 14, 15], budget);
        assert_eq!(long[0].tokens, (16..23).collect::<Vec<u32>>());
        assert_eq!(long[0].context, Some(5));
        let capped = d.propose(
            &[11, 12, 13, 14, 15],
            Budget {
                drafts: 1,
                tokens: 2,
            },
        );
        assert_eq!(capped[0].tokens, vec![16, 17]);
        assert!(d.propose(&[5, 6], budget).is_empty(), "unknown context");
        assert!(d
            .propose(
                &[12],
                Budget {
                    drafts: 0,
                    tokens: 7
                }
            )
            .is_empty());
    }
}
