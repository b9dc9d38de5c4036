//! How the drafters of a decoder make the drafts of one step.
//!
//! A decoder has up to three drafters: the n-gram pool (fed by the Jacobi window and by the
//! committed text), the index of the committed text (prompt and output), and the draft corpus.
//! The policy:
//!
//! 1. The **lead draft** is the text index's draft; the corpus's draft takes its place where the
//!    text has none, or where the corpus matched a longer context than the text index did (the
//!    text's latest occurrence of a short context is a worse guess than what the model usually
//!    wrote after a long one; on a tie the text's own continuation is the more specific guess).
//!    A text draft that does not say how long a context it matched keeps its place. With
//!    learned draft lengths the decoder weighs the two on what their drafts got right before
//!    they reach the policy ([`crate::decode::draft_length::takes_lead`]), of which this is the
//!    rule before any draft was decided.
//! 2. The **pool's drafts** (oldest first) follow, the lead's duplicate removed, the oldest
//!    dropped so that at most [`DraftPolicy::drafts`] drafts are verified.
//!
//! Ties in verification go to the earlier draft, so the lead wins over an equally long pool
//! draft.

use super::drafter::Draft;
use crate::decode::draft_length::{takes_lead, Offer};

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

    /// The step's drafts from the pool's, the text index's and the corpus's proposals.
    pub fn combine(
        &self,
        pool: Vec<Draft>,
        text: Option<Draft>,
        corpus: Option<Draft>,
    ) -> StepDrafts {
        let offer = |d: &Draft, evidence| Offer {
            evidence,
            len: d.tokens.len(),
            expected: None,
        };
        let corpus_leads = |c: &Draft| match &text {
            None => true,
            Some(t) => match (t.context, c.context) {
                (Some(m), Some(o)) => takes_lead(offer(t, m), offer(c, o), None, 0),
                _ => false,
            },
        };
        let lead = match corpus.filter(corpus_leads) {
            Some(c) => Some((c.tokens, Source::Corpus)),
            None => text.map(|t| (t.tokens, Source::Text)),
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

    fn pool() -> Vec<Draft> {
        vec![d(&[1, 2], None), d(&[3, 4], None), d(&[5, 6], None)]
    }

    #[test]
    fn the_lead_goes_first_and_the_oldest_pool_drafts_make_room() {
        let p = DraftPolicy::new(3);
        let s = p.combine(pool(), Some(d(&[9, 9], Some(2))), None);
        assert_eq!(s.drafts, vec![vec![9, 9], vec![3, 4], vec![5, 6]]);
        assert_eq!(s.sources, vec![Source::Text, Source::Pool, Source::Pool]);
        // The lead's duplicate in the pool goes, so nothing else has to.
        let s = p.combine(pool(), Some(d(&[3, 4], None)), None);
        assert_eq!(s.drafts, vec![vec![3, 4], vec![1, 2], vec![5, 6]]);
        // No lead: the pool alone.
        let s = p.combine(pool(), None, None);
        assert_eq!(s.drafts.len(), 3);
        assert!(s.sources.iter().all(|&x| x == Source::Pool));
    }

    #[test]
    fn the_corpus_leads_where_the_text_has_nothing_or_a_shorter_match() {
        let p = DraftPolicy::new(1);
        let corpus = || Some(d(&[7, 7, 7], Some(4)));
        let lead = |text: Option<Draft>| p.combine(vec![], text, corpus()).sources[0];
        assert_eq!(lead(None), Source::Corpus);
        assert_eq!(lead(Some(d(&[8], Some(1)))), Source::Corpus);
        assert_eq!(lead(Some(d(&[8], Some(3)))), Source::Corpus, "4 > 3");
        assert_eq!(
            lead(Some(d(&[8], Some(4)))),
            Source::Text,
            "a tie: the text"
        );
        assert_eq!(lead(Some(d(&[8], Some(9)))), Source::Text);
        assert_eq!(
            lead(Some(d(&[8], None))),
            Source::Text,
            "no evidence to weigh"
        );
        let s = p.combine(pool(), None, corpus());
        assert_eq!(s.drafts, vec![vec![7, 7, 7]], "G = 1: the lead only");
    }
}
