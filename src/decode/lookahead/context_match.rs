//! Context-matched candidates: the continuation of the latest earlier place in the committed
//! text (prompt + output) whose last few tokens equal the sequence's last few tokens.
//!
//! The n-gram pool is keyed by the pending token alone and keeps the G most recent tuples of
//! that key, so with a small G the prompt's n-grams are soon evicted by the window's. This
//! index keeps, for every context of `min_context..=max_context` tokens, the latest end
//! position whose `arity` following tokens are committed; [`ContextIndex::lookup`] returns the
//! continuation after the longest context that matches the sequence's end (prompt lookup with
//! a multi-token key). The decoder verifies it like any pool candidate, so the output does not
//! depend on it — only how many tokens a step confirms.
//!
//! Example, arity 2, contexts of 2 tokens, committed `a b c d a b`: the context `a b` ended at
//! index 1 and was followed by `c d`, so the candidate after the final `a b` is `c d`.

use std::collections::HashMap;

use super::LookaheadConfig;

/// The latest end (index of the last token) of every context of `shortest..=longest` tokens
/// in the committed text that has `followers` committed tokens after it.
#[derive(Debug, Clone)]
struct LatestEnds {
    shortest: usize,
    longest: usize,
    followers: usize,
    /// Context tokens → latest end index.
    latest: HashMap<Vec<u32>, usize>,
    /// End indices below this are indexed.
    indexed: usize,
}

impl LatestEnds {
    fn new(shortest: usize, longest: usize, followers: usize) -> Self {
        Self {
            shortest,
            longest,
            followers,
            latest: HashMap::new(),
            indexed: 0,
        }
    }

    /// Indexes every end of `tokens` (the whole committed text, which only grows) with its
    /// followers committed. Without followers there is nothing to offer, and nothing is kept.
    fn extend(&mut self, tokens: &[u32]) {
        if self.followers == 0 {
            return;
        }
        let complete = tokens.len().saturating_sub(self.followers);
        for end in self.indexed..complete {
            for k in self.shortest..=self.longest.min(end + 1) {
                self.latest.insert(tokens[end + 1 - k..=end].to_vec(), end);
            }
        }
        self.indexed = self.indexed.max(complete);
    }

    /// The latest end of the longest indexed context that `tokens` ends with.
    fn latest_end(&self, tokens: &[u32]) -> Option<usize> {
        let len = tokens.len();
        (self.shortest..=self.longest.min(len))
            .rev()
            .find_map(|k| self.latest.get(&tokens[len - k..]))
            .copied()
    }
}

/// Latest end position of every 2- and 3-token context whose N-1 followers are committed.
#[derive(Debug, Clone)]
pub struct ContextIndex {
    /// Tokens per candidate (N-1).
    arity: usize,
    ends: LatestEnds,
}

impl ContextIndex {
    /// Contexts of 2 and 3 tokens: one token is the pool's key already, and longer contexts
    /// rarely differ from 3 on the text of one conversation.
    pub fn new(arity: usize) -> Self {
        Self {
            arity,
            ends: LatestEnds::new(2, 3, arity),
        }
    }

    /// Indexes every end position of `tokens` (the whole committed text, which only grows)
    /// whose `arity` following tokens are committed.
    pub fn extend(&mut self, tokens: &[u32]) {
        self.ends.extend(tokens);
    }

    /// The `arity` tokens that followed the latest earlier occurrence of the longest matching
    /// context of `tokens`'s end, if any (`tokens` = the committed text the index was extended
    /// with, or a longer one).
    pub fn lookup<'a>(&self, tokens: &'a [u32]) -> Option<&'a [u32]> {
        let end = self.ends.latest_end(tokens)?;
        Some(&tokens[end + 1..=end + self.arity])
    }
}

/// Draft length after a match of `matched` context tokens, at most `max`: 3 / 7 / 15 / 31
/// tokens (steps of 4 / 8 / 16 / 32 rows with the pending token) after 1 / 2-3 / 4-15 / 16+
/// matching tokens. Chosen by exact replays on greedy texts, each step priced at the H200's
/// measured cost of its row count: the longer the match, the more of its continuation is
/// accepted.
pub fn draft_len(matched: usize, max: usize) -> usize {
    let len = match matched {
        0 => 0,
        1 => 3,
        2..=3 => 7,
        4..=15 => 15,
        _ => 31,
    };
    len.min(max)
}

/// Latest earlier end of every 1- to 6-token context with at least one committed follower,
/// for drafts whose length follows the match (`LookaheadConfig::adaptive_draft`).
#[derive(Debug, Clone)]
pub struct DraftIndex {
    /// Longest draft.
    max_draft: usize,
    ends: LatestEnds,
}

/// Longest context indexed by [`DraftIndex`].
const DRAFT_CONTEXT: usize = 6;
/// Matched tokens counted back from a found end (the longest threshold of [`draft_len`]).
const MATCH_CAP: usize = 16;

impl DraftIndex {
    pub fn new(max_draft: usize) -> Self {
        Self {
            max_draft,
            ends: LatestEnds::new(1, DRAFT_CONTEXT, 1),
        }
    }

    /// Indexes every end of `tokens` (the committed text, which only grows) that has a
    /// committed follower.
    pub fn extend(&mut self, tokens: &[u32]) {
        self.ends.extend(tokens);
    }

    /// The draft after `tokens`: the latest earlier end of the longest indexed context of
    /// `tokens`'s end, the number of tokens matching backwards from there (at most 16), and
    /// [`draft_len`] of that many tokens of what followed it. Where the continuation reaches
    /// the end of the text it repeats with the distance between the two ends as its period
    /// (an overlapping copy, as in LZ77), so a loop in the text yields a full-length draft.
    /// The draft comes with how many tokens matched.
    pub fn draft(&self, tokens: &[u32]) -> Option<TextDraft> {
        let len = tokens.len();
        let end = self.ends.latest_end(tokens)?;
        let matched = (0..MATCH_CAP.min(end + 1))
            .take_while(|&i| tokens[end - i] == tokens[len - 1 - i])
            .count();
        let period = len - 1 - end;
        let mut draft: Vec<u32> = Vec::new();
        for j in 0..draft_len(matched, self.max_draft) {
            let src = end + 1 + j;
            let t = if src < len {
                tokens[src]
            } else {
                draft[j - period]
            };
            draft.push(t);
        }
        (!draft.is_empty()).then_some(TextDraft {
            tokens: draft,
            matched: Some(matched),
        })
    }
}

/// A candidate from the committed text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextDraft {
    pub tokens: Vec<u32>,
    /// Tokens before it that matched backwards (at most 16), for a draft whose length follows
    /// the match; `None` for a fixed-length continuation.
    pub matched: Option<usize>,
}

/// The context-matched candidate of a decoder: off, a fixed N-1-token continuation
/// ([`ContextIndex`]) or a draft whose length follows the match ([`DraftIndex`]; W = 0 with
/// `adaptive_draft`).
#[derive(Debug, Clone)]
pub enum ContextMatch {
    Off,
    Fixed(ContextIndex),
    Adaptive(DraftIndex),
}

impl ContextMatch {
    /// What `config` asks for (nothing without candidates, G = 0).
    pub fn for_config(config: &LookaheadConfig) -> Self {
        let arity = config.ngram - 1;
        if !config.context_match || config.guesses == 0 {
            Self::Off
        } else if config.window == 0 && config.adaptive_draft {
            Self::Adaptive(DraftIndex::new(arity))
        } else {
            Self::Fixed(ContextIndex::new(arity))
        }
    }

    /// Whether drafts follow the match.
    pub fn is_adaptive(&self) -> bool {
        matches!(self, Self::Adaptive(_))
    }

    /// Indexes the committed text `tokens` (which only grows).
    pub fn extend(&mut self, tokens: &[u32]) {
        match self {
            Self::Off => {}
            Self::Fixed(index) => index.extend(tokens),
            Self::Adaptive(index) => index.extend(tokens),
        }
    }

    /// The candidate after the committed text `tokens`, if its end matches.
    pub fn candidate(&self, tokens: &[u32]) -> Option<TextDraft> {
        match self {
            Self::Off => None,
            Self::Fixed(index) => index.lookup(tokens).map(|c| TextDraft {
                tokens: c.to_vec(),
                matched: None,
            }),
            Self::Adaptive(index) => index.draft(tokens),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut idx = ContextIndex::new(2);
        idx.extend(&text);
        // `1 2 3` (3 tokens) ended at index 2 → `4 9`; the later `2 3` (index 6) matches only
        // 2 tokens, so the longer, earlier context wins.
        assert_eq!(idx.lookup(&text), Some(&[4, 9][..]));
        let text2 = [1, 2, 3, 4, 9, 2, 3, 5, 6, 7, 2, 3];
        let mut idx = ContextIndex::new(2);
        idx.extend(&text2);
        assert_eq!(idx.lookup(&text2), Some(&[5, 6][..]), "latest `2 3`");
        assert_eq!(idx.lookup(&[5, 5, 5, 8]), None, "no match");
    }

    #[test]
    fn agrees_with_a_brute_force_scan_as_text_is_committed_in_chunks() {
        // A pseudo-random text over a small alphabet (many repeats), committed 1-4 tokens at a
        // time as decoding steps do.
        let mut s = 12345u64;
        let text: Vec<u32> = (0..600)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) % 5) as u32
            })
            .collect();
        for arity in [1, 3, 6] {
            let mut idx = ContextIndex::new(arity);
            let mut len = 1;
            let mut found = 0;
            while len <= text.len() {
                idx.extend(&text[..len]);
                let got = idx.lookup(&text[..len]).map(<[u32]>::to_vec);
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
                    for j in 0..draft_len(m, max) {
                        let t = ext[end + 1 + j];
                        ext.push(t);
                    }
                    return Some(ext[len..].to_vec()).filter(|d| !d.is_empty());
                }
            }
        }
        None
    }

    #[test]
    fn drafts_agree_with_a_brute_force_scan_and_grow_with_the_match() {
        let mut s = 99u64;
        let mut text: Vec<u32> = Vec::new();
        for i in 0..700 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Random text with a repeated loop in its second half.
            text.push(if i > 400 && i % 37 < 20 {
                10 + (i % 37) as u32
            } else {
                ((s >> 33) % 7) as u32
            });
        }
        for max in [3, 7, 31] {
            let mut idx = DraftIndex::new(max);
            let (mut len, mut long) = (1, 0);
            while len <= text.len() {
                idx.extend(&text[..len]);
                let got = idx.draft(&text[..len]).map(|d| d.tokens);
                assert_eq!(
                    got,
                    brute_force_draft(&text[..len], max),
                    "max {max}, len {len}"
                );
                long += usize::from(got.as_ref().is_some_and(|d| d.len() == max));
                len += 1 + len % 3;
            }
            assert!(long > 20, "the text must exercise full-length drafts");
        }
        // A loop of period 2: the draft continues it past the end of the text.
        let text = [9, 1, 2, 1, 2, 1, 2, 1];
        let mut idx = DraftIndex::new(7);
        idx.extend(&text);
        assert_eq!(
            idx.draft(&text).map(|d| d.tokens),
            Some(vec![2, 1, 2, 1, 2, 1, 2])
        );
    }

    #[test]
    fn draft_length_grows_with_the_match_within_its_bound() {
        for max in [1, 3, 7, 31, 100] {
            assert_eq!(draft_len(0, max), 0, "no match, no draft");
            let lens: Vec<usize> = (1..=64).map(|m| draft_len(m, max)).collect();
            assert!(
                lens.iter().all(|&l| (1..=max).contains(&l)),
                "{max}: {lens:?}"
            );
            assert!(lens.windows(2).all(|w| w[0] <= w[1]), "{max}: {lens:?}");
        }
        // A long match is worth a longer draft than a one-token match, when allowed.
        assert!(draft_len(64, 100) > draft_len(1, 100));
    }

    #[test]
    fn incomplete_continuations_are_not_offered() {
        let mut idx = ContextIndex::new(3);
        let text = [7, 8, 1, 7, 8];
        idx.extend(&text);
        // `7 8` ended at index 1, but only 3 tokens follow it up to the end → [1, 7, 8] is
        // complete; with arity 4 it is not.
        assert_eq!(idx.lookup(&text), Some(&[1, 7, 8][..]));
        let mut idx = ContextIndex::new(4);
        idx.extend(&text);
        assert_eq!(idx.lookup(&text), None);
    }
}
