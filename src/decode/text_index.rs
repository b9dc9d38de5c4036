//! The index of the committed text (prompt and output) and the drafter that continues the
//! text from the latest earlier place whose last few tokens equal the sequence's last few
//! tokens (prompt lookup with a multi-token key).
//!
//! The n-gram pool is keyed by the pending token alone and keeps the G most recent tuples of
//! that key, so with a small G the prompt's n-grams are soon evicted by the window's. The index
//! keeps every end position of every context of 1 to 6 tokens; the drafter looks up the longest
//! context of the sequence's end that occurred before and drafts what followed it, in one of
//! two ways ([`TextDraftMode`]). The step verifies the draft like any other, so the output does
//! not depend on it, only how many tokens a step confirms.
//!
//! Example, contexts of 2 tokens, committed `a b c d a b`: the context `a b` ended at index 1
//! and was followed by `c d`, so the 2-token draft after the final `a b` is `c d`.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use super::draft_length::{reach, DraftLengths};
use super::speculative::{Budget, Draft, Drafter};

/// Longest context indexed.
const LONGEST_CONTEXT: usize = 6;

/// Every end (index of the last token) of every context of 1 to 6 tokens (`LONGEST_CONTEXT`)
/// of the committed text.
#[derive(Debug, Clone, Default)]
pub struct TextIndex {
    /// Context tokens → its end indices, ascending.
    ends: HashMap<Vec<u32>, Vec<usize>>,
    /// Tokens of the text indexed.
    indexed: usize,
}

impl TextIndex {
    /// Indexes the new ends of `tokens` (the whole committed text, which only grows).
    pub fn extend(&mut self, tokens: &[u32]) {
        for end in self.indexed..tokens.len() {
            for k in 1..=LONGEST_CONTEXT.min(end + 1) {
                self.ends
                    .entry(tokens[end + 1 - k..=end].to_vec())
                    .or_default()
                    .push(end);
            }
        }
        self.indexed = self.indexed.max(tokens.len());
    }

    /// The latest end of the longest context of `contexts` tokens that `tokens` (the indexed
    /// text) ends with, among the ends followed by at least `followers` indexed tokens.
    pub fn latest_end(
        &self,
        tokens: &[u32],
        contexts: RangeInclusive<usize>,
        followers: usize,
    ) -> Option<usize> {
        self.latest_end_before(tokens, contexts, self.indexed.checked_sub(followers)?)
    }

    /// The latest end below `limit` of the longest context of `contexts` tokens that `tokens`
    /// ends with. With `limit` at most `tokens.len() - followers`, this is what
    /// [`Self::latest_end`] found when the index held `tokens` only, whatever was indexed
    /// since.
    pub fn latest_end_before(
        &self,
        tokens: &[u32],
        contexts: RangeInclusive<usize>,
        limit: usize,
    ) -> Option<usize> {
        let len = tokens.len();
        (*contexts.start()..=(*contexts.end()).min(len))
            .rev()
            .find_map(|k| {
                let ends = self.ends.get(&tokens[len - k..])?;
                ends.iter().rev().find(|&&e| e < limit).copied()
            })
    }
}

/// Matched tokens counted back from a found end (evidence for the longest drafts).
const MATCH_CAP: usize = 16;

/// How the text drafter drafts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextDraftMode {
    /// The budget's full length of what followed the latest earlier occurrence of the longest
    /// matching 2- or 3-token context (one token is the pool's key already, and longer
    /// contexts rarely differ from 3 on the text of one conversation).
    Continuation,
    /// A draft whose length follows the evidence: after the longest matching 1- to 6-token
    /// context, count the tokens matching backwards (at most 16) and draft as far as that many
    /// tokens reach ([`reach`]), or the length learned for that evidence ([`DraftLengths`]).
    /// Where the continuation reaches the end of the text it repeats with the distance between
    /// the two ends as its period (an overlapping copy, as in LZ77), so a loop in the text
    /// yields a full-length draft.
    FollowsMatch,
}

/// Drafts from the committed text through its [`TextIndex`]: at most one draft a step.
#[derive(Debug, Clone)]
pub struct TextDrafter {
    index: TextIndex,
    mode: TextDraftMode,
    /// [`TextDraftMode::FollowsMatch`]: draft lengths learned from the generation (else
    /// [`reach`]).
    lengths: Option<DraftLengths>,
    /// Text positions recorded in `lengths` so far (its next position).
    recorded: usize,
}

impl TextDrafter {
    pub fn new(mode: TextDraftMode) -> Self {
        Self {
            index: TextIndex::default(),
            mode,
            lengths: None,
            recorded: 0,
        }
    }

    /// The same, its [`TextDraftMode::FollowsMatch`] draft lengths learned by `lengths` (which
    /// this drafter records, and [`choose_together`] chooses) instead of [`reach`].
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

    pub fn mode(&self) -> TextDraftMode {
        self.mode
    }

    /// The [`TextDraftMode::FollowsMatch`] draft after `tokens`, at most `max` tokens.
    fn follow_match(&self, tokens: &[u32], max: usize) -> Option<Draft> {
        follow_match_in(&self.index, tokens, |matched| reach(matched, max))
    }
}

/// The full-length [`TextDraftMode::FollowsMatch`] draft (`max` tokens) that a drafter proposed,
/// or would have, after the first `at` tokens of `text` (the text `index` holds): the same as a
/// drafter that stopped there proposes, though the index holds more.
fn proposal_at(index: &TextIndex, text: &[u32], at: usize, max: usize) -> Option<Draft> {
    follow_match_in(index, &text[..at], |_| max)
}

/// The [`TextDraftMode::FollowsMatch`] draft after `tokens` found through `index` (which may
/// hold more text: only ends with a follower within `tokens` count), of
/// `draft_tokens(matched)` tokens.
fn follow_match_in(
    index: &TextIndex,
    tokens: &[u32],
    draft_tokens: impl Fn(usize) -> usize,
) -> Option<Draft> {
    let len = tokens.len();
    let end = index.latest_end_before(tokens, 1..=LONGEST_CONTEXT, len.checked_sub(1)?)?;
    let matched = (0..MATCH_CAP.min(end + 1))
        .take_while(|&i| tokens[end - i] == tokens[len - 1 - i])
        .count();
    let period = len - 1 - end;
    let mut draft: Vec<u32> = Vec::new();
    for j in 0..draft_tokens(matched) {
        let src = end + 1 + j;
        let t = if src < len {
            tokens[src]
        } else {
            draft[j - period]
        };
        draft.push(t);
    }
    (!draft.is_empty()).then_some(Draft {
        tokens: draft,
        context: Some(matched),
    })
}

impl Drafter for TextDrafter {
    fn begin(&mut self, prompt: &[u32]) {
        self.index = TextIndex::default();
        self.index.extend(prompt);
        self.recorded = prompt.len();
        if let Some(l) = self.lengths.as_mut() {
            l.reset();
        }
    }

    fn propose(&mut self, text: &[u32], budget: Budget) -> Vec<Draft> {
        if budget.drafts == 0 || budget.tokens == 0 {
            return Vec::new();
        }
        let draft =
            match self.mode {
                TextDraftMode::Continuation => self
                    .index
                    .latest_end(text, 2..=3, budget.tokens)
                    .map(|end| Draft {
                        tokens: text[end + 1..=end + budget.tokens].to_vec(),
                        context: None,
                    }),
                TextDraftMode::FollowsMatch => match self.lengths.as_mut() {
                    Some(learn) => proposal_at(&self.index, text, text.len(), learn.max())
                        .and_then(|mut d| {
                            let matched = d.context.unwrap_or(1);
                            d.tokens.truncate(learn.length(matched).min(budget.tokens));
                            (!d.tokens.is_empty()).then_some(d)
                        }),
                    None => self.follow_match(text, budget.tokens),
                },
            };
        draft.into_iter().collect()
    }

    /// Indexes the new tokens; with learned lengths, records the full-length draft proposed
    /// (or that would have been) at every position the text passed since the last step: the
    /// step's start and the positions its committed tokens crossed.
    fn observe(&mut self, text: &[u32], _new: usize, _outputs: &[u32]) {
        self.index.extend(text);
        if self.mode == TextDraftMode::FollowsMatch {
            if let Some(learn) = self.lengths.as_mut() {
                let max = learn.max();
                for at in self.recorded..text.len() {
                    match proposal_at(&self.index, text, at, max) {
                        Some(d) => learn.note(at, d.context.unwrap_or(1), &d.tokens),
                        None => learn.note(at, 0, &[]),
                    }
                }
            }
        }
        self.recorded = self.recorded.max(text.len());
        if let Some(l) = self.lengths.as_mut() {
            l.observe(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::speculative::drafter::write_along;
    use crate::decode::test_rng::Lcg;

    /// A text drafter with a budget of one draft of `tokens` tokens.
    struct Probe {
        drafter: TextDrafter,
        tokens: usize,
    }

    impl Probe {
        fn extend(&mut self, text: &[u32]) {
            self.drafter.observe(text, 0, &[]);
        }
        fn draft(&self, text: &[u32]) -> Option<Draft> {
            let budget = Budget {
                drafts: 1,
                tokens: self.tokens,
            };
            // A copy proposes: probing leaves the drafter as it was.
            self.drafter.clone().propose(text, budget).pop()
        }
        fn lookup(&self, text: &[u32]) -> Option<Vec<u32>> {
            self.draft(text).map(|d| d.tokens)
        }
    }

    /// The continuation drafter, drafts of `arity` tokens.
    fn continuation(arity: usize) -> Probe {
        Probe {
            drafter: TextDrafter::new(TextDraftMode::Continuation),
            tokens: arity,
        }
    }

    /// The match-following drafter, drafts of at most `max` tokens.
    fn follow(max: usize) -> Probe {
        Probe {
            drafter: TextDrafter::new(TextDraftMode::FollowsMatch),
            tokens: max,
        }
    }

    /// The oracle: scan the text backwards for the latest end whose context matches, longest
    /// context first, with a complete continuation before the current end.
    fn brute_force(tokens: &[u32], arity: usize) -> Option<Vec<u32>> {
        let len = tokens.len();
        for k in (2..=3.min(len)).rev() {
            let ctx = &tokens[len - k..];
            for end in (k - 1..len.saturating_sub(arity)).rev() {
                if &tokens[end + 1 - k..=end] == ctx {
                    return Some(tokens[end + 1..=end + arity].to_vec());
                }
            }
        }
        None
    }

    #[test]
    fn finds_the_continuation_of_the_latest_longest_match() {
        let text = [1, 2, 3, 4, 9, 2, 3, 5, 6, 1, 2, 3];
        let mut idx = continuation(2);
        idx.extend(&text);
        // `1 2 3` (3 tokens) ended at index 2 → `4 9`; the later `2 3` (index 6) matches only
        // 2 tokens, so the longer, earlier context wins.
        assert_eq!(idx.lookup(&text), Some(vec![4, 9]));
        let text2 = [1, 2, 3, 4, 9, 2, 3, 5, 6, 7, 2, 3];
        let mut idx = continuation(2);
        idx.extend(&text2);
        assert_eq!(idx.lookup(&text2), Some(vec![5, 6]), "latest `2 3`");
        assert_eq!(idx.lookup(&[5, 5, 5, 8]), None, "no match");
    }

    #[test]
    fn agrees_with_a_brute_force_scan_as_text_is_committed_in_chunks() {
        // A pseudo-random text over a small alphabet (many repeats), committed 1-4 tokens at a
        // time as decoding steps do.
        let mut rng = Lcg(12345);
        let text: Vec<u32> = (0..600).map(|_| rng.below(5) as u32).collect();
        for arity in [1, 3, 6] {
            let mut idx = continuation(arity);
            let mut len = 1;
            let mut found = 0;
            while len <= text.len() {
                idx.extend(&text[..len]);
                let got = idx.lookup(&text[..len]);
                assert_eq!(
                    got,
                    brute_force(&text[..len], arity),
                    "arity {arity}, len {len}"
                );
                found += usize::from(got.is_some());
                len += 1 + len % 4;
            }
            assert!(found > 50, "the test text must exercise matches");
        }
    }

    /// The draft oracle: scan back for the latest end of the longest context (6..1 tokens)
    /// with a follower, count matching tokens back, copy with overlap.
    fn brute_force_draft(tokens: &[u32], max: usize) -> Option<Vec<u32>> {
        brute_force_draft_of(tokens, |m| brute_force_reach(m, max)).map(|(d, _)| d)
    }

    /// The evidence rule by enumeration: the longest of 1, 3, 7, 15, ... tokens and `max` not
    /// above the matched tokens.
    fn brute_force_reach(matched: usize, max: usize) -> usize {
        (1..=max)
            .filter(|&l| (l + 1).is_power_of_two() || l == max)
            .filter(|&l| l <= matched.max(1))
            .max()
            .unwrap_or(0)
    }

    /// The same, of `len(matched)` tokens; with the matched tokens.
    fn brute_force_draft_of(
        tokens: &[u32],
        draft_tokens: impl Fn(usize) -> usize,
    ) -> Option<(Vec<u32>, usize)> {
        let len = tokens.len();
        for k in (1..=6.min(len)).rev() {
            let ctx = &tokens[len - k..];
            for end in (k - 1..len.saturating_sub(1)).rev() {
                if &tokens[end + 1 - k..=end] == ctx {
                    let mut m = 0;
                    while m < 16 && m <= end && tokens[end - m] == tokens[len - 1 - m] {
                        m += 1;
                    }
                    let mut ext = tokens.to_vec();
                    for j in 0..draft_tokens(m) {
                        let t = ext[end + 1 + j];
                        ext.push(t);
                    }
                    return Some((ext[len..].to_vec(), m)).filter(|(d, _)| !d.is_empty());
                }
            }
        }
        None
    }

    #[test]
    fn drafts_agree_with_a_brute_force_scan_and_grow_with_the_match() {
        let text = looping_text(99, 700);
        for max in [3, 7, 31] {
            let mut idx = follow(max);
            let (mut len, mut long) = (1, 0);
            while len <= text.len() {
                idx.extend(&text[..len]);
                let got = idx.draft(&text[..len]).map(|d| d.tokens);
                assert_eq!(
                    got,
                    brute_force_draft(&text[..len], max),
                    "max {max}, len {len}"
                );
                // The longest the evidence allows (16 matched tokens).
                long += usize::from(
                    got.as_ref()
                        .is_some_and(|d| d.len() == brute_force_reach(16, max)),
                );
                len += 1 + len % 3;
            }
            assert!(long > 20, "the text must exercise the longest drafts");
        }
        // A loop of period 2: the draft continues it past the end of the text.
        let text = [9, 1, 2, 1, 2, 1, 2, 1, 2, 1];
        let mut idx = follow(7);
        idx.extend(&text);
        assert_eq!(
            idx.draft(&text).map(|d| d.tokens),
            Some(vec![2, 1, 2, 1, 2, 1, 2])
        );
    }

    /// Random text with a repeated loop in its second half.
    fn looping_text(seed: u64, len: usize) -> Vec<u32> {
        let mut rng = Lcg(seed);
        (0..len)
            .map(|i| {
                let random = rng.below(7) as u32;
                if i > len * 4 / 7 && i % 37 < 20 {
                    10 + (i % 37) as u32
                } else {
                    random
                }
            })
            .collect()
    }

    /// The full-length draft after every past position, found through an index of the whole
    /// text, is what a drafter that stopped there proposes: one fed the text up to there (a
    /// fresh index), and the brute-force scan.
    #[test]
    fn past_proposals_are_what_a_drafter_stopped_there_proposes() {
        let text = looping_text(5, 500);
        let mut whole = TextIndex::default();
        whole.extend(&text);
        let mut so_far = TextIndex::default();
        let mut found = 0;
        for max in [3, 15] {
            for at in 1..=text.len() {
                so_far.extend(&text[..at]);
                let past = proposal_at(&whole, &text, at, max);
                assert_eq!(past, follow_match_in(&so_far, &text[..at], |_| max), "{at}");
                let mut fresh = TextIndex::default();
                fresh.extend(&text[..at]);
                assert_eq!(past, follow_match_in(&fresh, &text[..at], |_| max), "{at}");
                assert_eq!(
                    past.as_ref()
                        .map(|d| (d.tokens.clone(), d.context.unwrap())),
                    brute_force_draft_of(&text[..at], |_| max),
                    "{at}"
                );
                found += usize::from(past.is_some());
            }
        }
        assert!(found > 800, "the text must exercise drafts");
    }

    /// With learned lengths, the drafter records at every position after the prompt the
    /// full-length draft a drafter stopped there proposes (by the brute-force scan), with the
    /// tokens of it the text then confirmed, however the text was committed.
    #[test]
    fn every_position_is_recorded_with_its_past_proposal() {
        let text = looping_text(8, 600);
        let max = 15;
        for seed in [1, 2] {
            let mut rng = Lcg(seed);
            let prompt = 20 + rng.below(30);
            let mut d = TextDrafter::new(TextDraftMode::FollowsMatch)
                .with_lengths(Some(DraftLengths::new(max, 1, None)));
            d.begin(&text[..prompt]);
            let mut len = prompt;
            while len < text.len() {
                let budget = Budget {
                    drafts: 1,
                    tokens: max,
                };
                d.propose(&text[..len], budget);
                let new = (1 + rng.below(9)).min(text.len() - len);
                len += new;
                d.observe(&text[..len], new, &[]);
            }
            let learn = d.lengths().unwrap();
            assert_eq!(learn.recorded(), prompt..text.len());
            let mut decided = 0;
            for at in prompt..text.len() {
                let want = brute_force_draft_of(&text[..at], |_| max).map(|(draft, m)| {
                    let right = draft
                        .iter()
                        .zip(&text[at..])
                        .take_while(|(a, b)| a == b)
                        .count();
                    let open = right == text.len() - at && right < draft.len();
                    (DraftLengths::bucket_of(m), (!open).then_some(right))
                });
                let got = learn.record(at).unwrap();
                match want {
                    Some((b, right)) => assert_eq!(got, (Some(b), right), "{at}"),
                    None => assert_eq!(got, (None, Some(0)), "{at}"),
                }
                decided += usize::from(want.is_some_and(|(_, r)| r.is_some_and(|r| r > 3)));
            }
            assert!(decided > 50, "the text must exercise long matches");
        }
    }

    /// The time learned lengths add to a step (recording every position, deciding the drafts,
    /// choosing the lengths again with the text drafter alone), on a long generation: `cargo
    /// test --release --lib -- --ignored learning_cost --nocapture`.
    #[test]
    #[ignore]
    fn learning_cost() {
        use crate::decode::draft_length::{choose_together, StepPrice};
        use std::time::Instant;
        let text = looping_text(4, 8192);
        let prompt = 200;
        let price = StepPrice::new(|r| 1.0 + 0.023 * (r as f64 - 1.0));
        for learned in [false, true] {
            let mut d = TextDrafter::new(TextDraftMode::FollowsMatch)
                .with_lengths(learned.then(|| DraftLengths::new(31, 1, Some(price.clone()))));
            let budget = Budget {
                drafts: 1,
                tokens: 31,
            };
            let t = Instant::now();
            let steps = write_along(&mut d, &text, prompt, budget, |d| {
                choose_together([d.lengths_mut(), None, None]);
            });
            let spent = t.elapsed().as_secs_f64();
            eprintln!(
                "learned {learned}: {steps} steps over {} tokens, {:.2} us a step",
                text.len() - prompt,
                1e6 * spent / steps as f64
            );
        }
    }

    #[test]
    fn incomplete_continuations_are_not_offered() {
        let mut idx = continuation(3);
        let text = [7, 8, 1, 7, 8];
        idx.extend(&text);
        // `7 8` ended at index 1, but only 3 tokens follow it up to the end → [1, 7, 8] is
        // complete; with arity 4 it is not.
        assert_eq!(idx.lookup(&text), Some(vec![1, 7, 8]));
        let mut idx = continuation(4);
        idx.extend(&text);
        assert_eq!(idx.lookup(&text), None);
    }
}
