//! Drafts from the draft corpus: what the model usually wrote after the longest context of the
//! sequence's end that the corpus knows.

use std::collections::VecDeque;
use std::sync::Arc;

use super::corpus::DraftCorpus;
use super::draft_length::{reach, DraftLengths};
use super::speculative::{Budget, Draft, Drafter};

/// At most one draft a step from a [`DraftCorpus`]; its evidence is the matched context's
/// length.
#[derive(Debug, Clone)]
pub struct CorpusDrafter {
    corpus: Arc<DraftCorpus>,
    /// Draft lengths learned from the generation (else as far as the evidence reaches,
    /// [`reach`]).
    lengths: Option<DraftLengths>,
    /// With learned lengths: the text position of `ahead`'s first entry (the next one to
    /// record in `lengths`).
    noted: usize,
    /// From `noted` on, for each position `q` the text passed: the corpus's next token after
    /// the first `q` tokens and its context's order (see [`CorpusDrafter::observe`]).
    ahead: VecDeque<Option<(u32, usize)>>,
}

impl CorpusDrafter {
    pub fn new(corpus: Arc<DraftCorpus>) -> Self {
        Self {
            corpus,
            lengths: None,
            noted: 0,
            ahead: VecDeque::new(),
        }
    }

    /// The same, its draft lengths learned by `lengths` (which this drafter records, and
    /// [`choose_together`] chooses) instead of [`reach`].
    ///
    /// [`choose_together`]: crate::decode::draft_length::choose_together
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
    fn begin(&mut self, prompt: &[u32]) {
        self.noted = prompt.len();
        self.ahead.clear();
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
            Some(learn) => self
                .corpus
                .draft(text, learn.length(order).min(budget.tokens)),
            None => self.corpus.draft(text, reach(order, budget.tokens)),
        };
        if tokens.is_empty() {
            return Vec::new();
        }
        vec![Draft {
            tokens,
            context: Some(order),
        }]
    }

    /// With learned lengths, records at every position the text passed the full-length draft
    /// proposed there (or that would have been: the corpus does not change, so the draft after
    /// the first `p` tokens is the corpus's draft after them), once the text decides it. Each
    /// token of a draft is the corpus's next token after the text and the draft before it, so
    /// while the draft is right, its token `j` is the corpus's next token after the first
    /// `p + j` tokens of the text: the draft at `p` matches as many tokens as the positions
    /// from `p` on whose next token is the text's, and one corpus look-up a position decides
    /// every draft.
    fn observe(&mut self, text: &[u32], _new: usize, _outputs: &[u32]) {
        let Some(learn) = self.lengths.as_mut() else {
            return;
        };
        for q in self.noted + self.ahead.len()..text.len() {
            self.ahead.push_back(self.corpus.next(&text[..q]));
        }
        let max = learn.max();
        while let Some(&first) = self.ahead.front() {
            let at = self.noted;
            match first {
                None => learn.note(at, 0, &[]),
                Some((_, order)) => {
                    // Right tokens, up to one the text departs from, where the corpus has no
                    // next token, or where the draft ends.
                    let mut right = 0;
                    while right < max {
                        match self.ahead.get(right) {
                            Some(Some((t, _))) if *t == text[at + right] => right += 1,
                            Some(_) => break,
                            // Undecided: so are the drafts after it, each right so far.
                            None => {
                                for (i, e) in self.ahead.iter().enumerate() {
                                    match e {
                                        Some((_, order)) => learn.note_open(at + i, *order),
                                        None => learn.note(at + i, 0, &[]),
                                    }
                                }
                                return learn.observe(text);
                            }
                        }
                    }
                    learn.note_decided(at, order, right);
                }
            }
            self.ahead.pop_front();
            self.noted += 1;
        }
        learn.observe(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::speculative::drafter::write_along;
    use crate::decode::test_rng::Lcg;

    /// The time learned lengths add to a step of the corpus drafter (recording every
    /// position, deciding, choosing with the corpus drafter alone), on a long generation that
    /// often follows its corpus: `cargo test --release --lib -- --ignored corpus_learning_cost
    /// --nocapture`.
    #[test]
    #[ignore]
    fn corpus_learning_cost() {
        use crate::decode::draft_length::{choose_together, StepPrice};
        use std::time::Instant;
        let mut rng = Lcg(5);
        let texts: Vec<Vec<u32>> = (0..200)
            .map(|_| (0..500).map(|_| rng.below(3000) as u32).collect())
            .collect();
        let corpus = Arc::new(DraftCorpus::from_texts(texts.iter().map(Vec::as_slice)));
        let mut text: Vec<u32> = Vec::new();
        while text.len() < 8192 {
            let t = &texts[rng.below(texts.len())];
            let from = rng.below(400);
            text.extend(&t[from..from + rng.below(100)]);
            text.extend((0..rng.below(20)).map(|_| rng.below(3000) as u32));
        }
        let price = StepPrice::new(|r| 1.0 + 0.023 * (r as f64 - 1.0));
        let budget = Budget {
            drafts: 1,
            tokens: 31,
        };
        for learned in [false, true] {
            let mut d = CorpusDrafter::new(corpus.clone())
                .with_lengths(learned.then(|| DraftLengths::new(31, 1, Some(price.clone()))));
            let t = Instant::now();
            let steps = write_along(&mut d, &text, 10, budget, |d| {
                choose_together([None, d.lengths_mut(), None]);
            });
            eprintln!(
                "corpus, learned {learned}: {steps} steps, {:.2} us a step",
                1e6 * t.elapsed().as_secs_f64() / steps as f64
            );
        }
    }

    /// With learned lengths, every position after the prompt is recorded with the corpus's
    /// full-length draft after the text up to there (what the drafter proposes there, by a
    /// fresh drafter) and the tokens of it the text then confirmed.
    #[test]
    fn every_position_is_recorded_with_the_corpus_draft() {
        let mut rng = Lcg(3);
        let source: Vec<u32> = (0..300).map(|_| rng.below(6) as u32).collect();
        let corpus = Arc::new(DraftCorpus::from_texts([source.as_slice()]));
        // The text copies stretches of the corpus text between random tokens.
        let mut text: Vec<u32> = Vec::new();
        while text.len() < 400 {
            let from = rng.below(250);
            text.extend(&source[from..from + rng.below(40)]);
            text.extend((0..rng.below(5)).map(|_| rng.below(6) as u32));
        }
        let max = 7;
        let mut d =
            CorpusDrafter::new(corpus.clone()).with_lengths(Some(DraftLengths::new(max, 1, None)));
        let prompt = 10;
        d.begin(&text[..prompt]);
        let mut len = prompt;
        let budget = Budget {
            drafts: 1,
            tokens: max,
        };
        while len < text.len() {
            d.propose(&text[..len], budget);
            let new = (1 + rng.below(6)).min(text.len() - len);
            len += new;
            d.observe(&text[..len], new, &[]);
        }
        let learn = d.lengths().unwrap();
        // Recorded from the prompt on; the drafts still open may wait.
        let recorded = learn.recorded();
        assert_eq!(recorded.start, prompt);
        let (mut drafts, mut long) = (0, 0);
        for at in prompt..text.len() {
            // What a drafter that knows no lengths proposes there at full length.
            let mut fresh = CorpusDrafter::new(corpus.clone());
            let proposed = fresh.propose(&text[..at], budget).pop();
            let order = proposed.as_ref().and_then(|p| p.context);
            let full = corpus.draft(&text[..at], max);
            let want = order.map(|o| {
                assert_eq!(
                    proposed.unwrap().tokens,
                    full[..reach(o, budget.tokens).min(full.len())]
                );
                let right = full
                    .iter()
                    .zip(&text[at..])
                    .take_while(|(a, b)| a == b)
                    .count();
                let open = right == text.len() - at && right < full.len();
                (DraftLengths::bucket_of(o), (!open).then_some(right))
            });
            if at >= recorded.end {
                assert!(want.is_some_and(|(_, right)| right.is_none()), "{at}");
                continue;
            }
            let got = learn.record(at).unwrap();
            match want {
                Some((b, right)) => {
                    assert_eq!(got, (Some(b), right), "{at}");
                    drafts += 1;
                    long += usize::from(right.is_some_and(|r| r >= 3));
                }
                None => assert_eq!(got, (None, Some(0)), "{at}"),
            }
        }
        assert!(drafts > 300 && long > 30, "{drafts} drafts, {long} long");
    }

    #[test]
    fn the_draft_reaches_as_far_as_the_matched_context_within_the_budget() {
        let text: Vec<u32> = (10..=30).collect();
        let mut d = CorpusDrafter::new(Arc::new(DraftCorpus::from_texts([text.as_slice()])));
        let budget = Budget {
            drafts: 1,
            tokens: 31,
        };
        // One token of context: 1 token; five: 3; eight, of which the corpus indexes six: 3.
        let short = d.propose(&[99, 12], budget);
        assert_eq!(short[0].tokens, vec![13]);
        assert_eq!(short[0].context, Some(1));
        let long = d.propose(&[11, 12, 13, 14, 15], budget);
        assert_eq!(long[0].tokens, (16..19).collect::<Vec<u32>>());
        assert_eq!(long[0].context, Some(5));
        let longer = d.propose(&(10..18).collect::<Vec<u32>>(), budget);
        assert_eq!(longer[0].tokens, (18..21).collect::<Vec<u32>>());
        assert_eq!(longer[0].context, Some(super::super::corpus::ORDER));
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
