//! How the drafters of a decoder make the drafts of one step.
//!
//! A decoder has up to three drafters: the n-gram pool (fed by the Jacobi window and by the
//! committed text), the index of the committed text (prompt and output), and the draft corpus.
//! The policy ([`DraftPolicy::combine`], the one place that decides it):
//!
//! 1. The **lead draft** is the text index's draft or the corpus's. The corpus's leads where the
//!    text has none; the text's where the corpus has none, or where either draft does not say
//!    how long a context it matched. Where both say it, the corpus's takes the lead
//!    ([`takes_lead`]):
//!    - where both drafters learn their draft lengths and have decided drafts of such
//!      evidence, if it is expected to commit more tokens per unit of step time than the
//!      text's: `(1 + expected) / price(base_rows + len)`, where `expected` is the right tokens
//!      its drafter's decided drafts of that evidence got on average at the draft's length
//!      `len`, `price` the relative time of a step by its rows and `base_rows` the step's rows
//!      besides the lead draft (without a price: if it is expected to get more tokens right);
//!    - otherwise, if it matched a longer context than the text index did (the text's latest
//!      occurrence of a short context is a worse guess than what the model usually wrote
//!      after a long one).
//!
//!    On a tie the text's draft keeps the lead (its own continuation is the more specific
//!    guess).
//! 2. The **pool's drafts** (oldest first) follow, the lead's duplicate removed, the oldest
//!    dropped so that at most [`DraftPolicy::drafts`] drafts are verified.
//!
//! Ties in verification go to the earlier draft, so the lead wins over an equally long pool
//! draft.

use super::drafter::Draft;
use crate::decode::draft_length::{takes_lead, DraftLengths, Offer, StepPrice};

/// Which drafter a step's draft came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Pool,
    Text,
    Corpus,
}

/// The drafts of one step, with where each came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepDrafts {
    pub drafts: Vec<Vec<u32>>,
    pub sources: Vec<Source>,
}

/// A draft of the text index or of the corpus competing for a step's lead.
#[derive(Debug, Clone, PartialEq)]
pub struct Contender {
    pub draft: Draft,
    /// Right tokens its drafter's decided drafts of the same evidence got on average at the
    /// draft's length (`None`: the drafter does not learn its lengths, or decided none yet).
    pub expected: Option<f64>,
}

impl Contender {
    /// `draft`, weighed on the decided drafts of `lengths` (its drafter's learned lengths).
    pub fn new(draft: Draft, lengths: Option<&DraftLengths>) -> Self {
        let expected = draft
            .context
            .zip(lengths)
            .and_then(|(evidence, l)| l.expected_right(evidence, draft.tokens.len()));
        Self { draft, expected }
    }

    /// What [`takes_lead`] weighs (`None`: the draft does not say its evidence).
    fn offer(&self) -> Option<Offer> {
        Some(Offer {
            evidence: self.draft.context?,
            len: self.draft.tokens.len(),
            expected: self.expected,
        })
    }
}

/// The combination rule (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DraftPolicy {
    /// Most drafts verified per step (G).
    pub drafts: usize,
}

impl DraftPolicy {
    pub fn new(drafts: usize) -> Self {
        Self { drafts }
    }

    /// The step's drafts from the pool's, the text index's and the corpus's proposals; the
    /// lead weighed on `price`, the relative time of a step by its rows (if known), and
    /// `base_rows`, the step's rows besides the lead draft.
    pub fn combine(
        &self,
        pool: Vec<Draft>,
        text: Option<Contender>,
        corpus: Option<Contender>,
        price: Option<&StepPrice>,
        base_rows: usize,
    ) -> StepDrafts {
        let corpus_leads = |c: &Contender| match &text {
            None => true,
            Some(t) => match (t.offer(), c.offer()) {
                (Some(holder), Some(challenger)) => {
                    takes_lead(holder, challenger, price, base_rows)
                }
                _ => false,
            },
        };
        let lead = match corpus.filter(corpus_leads) {
            Some(c) => Some((c.draft.tokens, Source::Corpus)),
            None => text.map(|t| (t.draft.tokens, Source::Text)),
        };
        let mut pool: Vec<Vec<u32>> = pool.into_iter().map(|d| d.tokens).collect();
        let Some((lead, source)) = lead else {
            let sources = vec![Source::Pool; pool.len()];
            return StepDrafts {
                drafts: pool,
                sources,
            };
        };
        pool.retain(|v| *v != lead);
        let drop = (pool.len() + 1).saturating_sub(self.drafts);
        let mut drafts = Vec::with_capacity(self.drafts);
        drafts.push(lead);
        drafts.extend(pool.into_iter().skip(drop));
        let mut sources = vec![Source::Pool; drafts.len()];
        sources[0] = source;
        StepDrafts { drafts, sources }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(tokens: &[u32], context: Option<usize>) -> Draft {
        Draft {
            tokens: tokens.to_vec(),
            context,
        }
    }

    /// A contender that learned nothing yet.
    fn c(tokens: &[u32], context: Option<usize>) -> Option<Contender> {
        Some(Contender {
            draft: d(tokens, context),
            expected: None,
        })
    }

    fn pool() -> Vec<Draft> {
        vec![d(&[1, 2], None), d(&[3, 4], None), d(&[5, 6], None)]
    }

    #[test]
    fn the_lead_goes_first_and_the_oldest_pool_drafts_make_room() {
        let p = DraftPolicy::new(3);
        let s = p.combine(pool(), c(&[9, 9], Some(2)), None, None, 0);
        assert_eq!(s.drafts, vec![vec![9, 9], vec![3, 4], vec![5, 6]]);
        assert_eq!(s.sources, vec![Source::Text, Source::Pool, Source::Pool]);
        // The lead's duplicate in the pool goes, so nothing else has to.
        let s = p.combine(pool(), c(&[3, 4], None), None, None, 0);
        assert_eq!(s.drafts, vec![vec![3, 4], vec![1, 2], vec![5, 6]]);
        // No lead: the pool alone.
        let s = p.combine(pool(), None, None, None, 0);
        assert_eq!(s.drafts.len(), 3);
        assert!(s.sources.iter().all(|&x| x == Source::Pool));
    }

    #[test]
    fn the_corpus_leads_where_the_text_has_nothing_or_a_shorter_match() {
        let p = DraftPolicy::new(1);
        let corpus = || c(&[7, 7, 7], Some(4));
        let lead = |text: Option<Contender>| p.combine(vec![], text, corpus(), None, 0).sources[0];
        assert_eq!(lead(None), Source::Corpus);
        assert_eq!(lead(c(&[8], Some(1))), Source::Corpus);
        assert_eq!(lead(c(&[8], Some(3))), Source::Corpus, "4 > 3");
        assert_eq!(lead(c(&[8], Some(4))), Source::Text, "a tie: the text");
        assert_eq!(lead(c(&[8], Some(9))), Source::Text);
        assert_eq!(lead(c(&[8], None)), Source::Text, "no evidence to weigh");
        let s = p.combine(pool(), None, corpus(), None, 0);
        assert_eq!(s.drafts, vec![vec![7, 7, 7]], "G = 1: the lead only");
    }

    /// Where both drafters learned what their drafts get right, the one expected to commit more
    /// tokens per unit of step time leads, whatever the contexts; without a price, the one
    /// expected to get more tokens right; until both learned, the longer context.
    #[test]
    fn learned_expectations_weigh_tokens_per_step_time() {
        let p = DraftPolicy::new(2);
        // A step of r rows takes 1 + r/10: 3 base rows and a draft of 2 tokens, 1.5; of 7
        // tokens, 2.0.
        let price = StepPrice::new(|r| 1.0 + r as f64 / 10.0);
        let weighed = |tokens: &[u32], context, expected| {
            Some(Contender {
                draft: d(tokens, Some(context)),
                expected,
            })
        };
        let lead = |text, corpus, price: Option<&StepPrice>| {
            p.combine(pool(), text, corpus, price, 3).sources[0]
        };
        // The text: 2 tokens on a 9-token context, 1.0 right: (1 + 1.0) / 1.5 = 1.33 tokens a
        // unit of time. The corpus: 7 tokens on a 2-token context, 2.0 right: 3.0 / 2.0 = 1.5.
        let text = || weighed(&[8, 8], 9, Some(1.0));
        let corpus = |expected| weighed(&[7; 7], 2, expected);
        assert_eq!(
            lead(text(), corpus(Some(2.0)), Some(&price)),
            Source::Corpus
        );
        // 1.6 right: 2.6 / 2.0 = 1.3, below the text's 1.33.
        assert_eq!(lead(text(), corpus(Some(1.6)), Some(&price)), Source::Text);
        // 1.75 right: 2.75 / 2.0 = 1.375, above.
        assert_eq!(
            lead(text(), corpus(Some(1.75)), Some(&price)),
            Source::Corpus
        );
        // Without a price, right tokens alone: 1.6 > 1.0.
        assert_eq!(lead(text(), corpus(Some(1.6)), None), Source::Corpus);
        assert_eq!(lead(text(), corpus(Some(1.0)), None), Source::Text, "a tie");
        // The corpus learned nothing yet: the text's longer context.
        assert_eq!(lead(text(), corpus(None), Some(&price)), Source::Text);
        // Nor did the text: the corpus's longer context, whatever the corpus expects.
        let unlearned_text = || weighed(&[8, 8], 1, None);
        assert_eq!(
            lead(unlearned_text(), corpus(Some(0.0)), Some(&price)),
            Source::Corpus
        );
        // Every case as [`takes_lead`] decides it, on a grid of expectations and lengths.
        let mut outcomes = [0; 2];
        for (text_right, corpus_right) in [(0.0, 0.5), (1.0, 2.0), (3.0, 1.0), (2.5, 2.5)] {
            for (text_len, corpus_len) in [(1, 7), (3, 3), (7, 1), (15, 3)] {
                for step_price in [None, Some(&price)] {
                    let t = Contender {
                        draft: d(&vec![8; text_len], Some(5)),
                        expected: Some(text_right),
                    };
                    let c = Contender {
                        draft: d(&vec![7; corpus_len], Some(2)),
                        expected: Some(corpus_right),
                    };
                    let case = format!("{text_right} {corpus_right} {text_len} {corpus_len}");
                    let by_hand = match step_price {
                        Some(sp) => {
                            (1.0 + corpus_right) / sp.of(3 + corpus_len)
                                > (1.0 + text_right) / sp.of(3 + text_len)
                        }
                        None => corpus_right > text_right,
                    };
                    let rule = takes_lead(t.offer().unwrap(), c.offer().unwrap(), step_price, 3);
                    assert_eq!(rule, by_hand, "{case}");
                    let s = p.combine(pool(), Some(t), Some(c), step_price, 3);
                    assert_eq!(s.sources[0] == Source::Corpus, by_hand, "{case}");
                    outcomes[usize::from(by_hand)] += 1;
                    assert_eq!(s.drafts.len(), 2, "the lead and one pool draft");
                }
            }
        }
        assert!(outcomes.iter().all(|&n| n > 5), "{outcomes:?}");
    }

    /// A contender's expectation is its drafter's mean right tokens at the draft's length on
    /// the draft's evidence; nothing without learned lengths or evidence.
    #[test]
    fn a_contender_is_weighed_on_its_drafters_decided_drafts() {
        let mut lengths = DraftLengths::new(7, 1, None);
        // At 0 and 1 drafts on one-token contexts, 3 and 1 right; at 2, on 5 tokens, 6 right.
        lengths.note_decided(0, 1, 3);
        lengths.note_decided(1, 1, 1);
        lengths.note_decided(2, 5, 6);
        let weighed = |tokens: usize, context| {
            Contender::new(d(&vec![1; tokens], context), Some(&lengths)).expected
        };
        assert_eq!(weighed(2, Some(1)), Some(1.5), "(2 + 1) / 2");
        assert_eq!(weighed(7, Some(1)), Some(2.0), "(3 + 1) / 2");
        assert_eq!(weighed(3, Some(4)), Some(3.0));
        assert_eq!(
            weighed(3, Some(16)),
            None,
            "nothing decided on such contexts"
        );
        assert_eq!(weighed(3, None), None, "no evidence");
        let unlearned = Contender::new(d(&[1, 2], Some(1)), None);
        assert_eq!(unlearned.expected, None);
    }
}
