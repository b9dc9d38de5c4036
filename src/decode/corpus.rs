//! Drafts from a corpus of the model's own earlier text: the most frequent follower of the
//! longest matching context, token by token.
//!
//! With W = 0 a step drafts from the committed text (prompt + output) only, and about 40 % of
//! the steps find nothing there: the pending token has not occurred yet. A small model's text
//! is formulaic across requests (the same openings, code idioms, list markers), so what it
//! wrote for other prompts predicts many of those steps. The corpus is a set of token texts
//! (typically the model's greedy outputs on prompts unrelated to the ones being served, see
//! `lade draft-corpus`); this index keeps, for every context of 1 to [`ORDER`] tokens in it,
//! the follower seen most often. A draft extends the sequence by that follower of its longest
//! indexed context, then repeats from the extended sequence (a back-off n-gram model, as
//! llama.cpp's lookup cache). The decoder verifies a corpus draft like any candidate, so the
//! output never depends on the corpus — only how many tokens a step confirms.
//!
//! Example, texts `a b c` and `x b c`, `a b d`: after `... a b` the 2-token context `a b` was
//! followed by `c` once and `d` once; ties go to the follower seen first, so the draft starts
//! with `c`, and `b c` then continues it.

use std::collections::HashMap;

/// Longest context indexed, in tokens.
pub const ORDER: usize = 4;

/// A context of 1..=ORDER tokens, zero-padded (its length disambiguates the padding).
type ContextKey = (u8, [u32; ORDER]);

fn key(context: &[u32]) -> ContextKey {
    let mut k = [0u32; ORDER];
    k[..context.len()].copy_from_slice(context);
    (context.len() as u8, k)
}

/// Follower counts of one context while a corpus is indexed, in order of first appearance.
type Counts = Vec<(u32, u32)>;

/// The index of a draft corpus (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct DraftCorpus {
    /// The most frequent follower of each context (the first seen on ties).
    best: HashMap<ContextKey, u32>,
    texts: usize,
    tokens: usize,
}

impl DraftCorpus {
    /// Indexes `texts` (token sequences; each is a separate text: no context spans two).
    pub fn from_texts<'a>(texts: impl IntoIterator<Item = &'a [u32]>) -> Self {
        let mut counts: HashMap<ContextKey, Counts> = HashMap::new();
        let (mut n_texts, mut n_tokens) = (0, 0);
        for text in texts {
            n_texts += 1;
            n_tokens += text.len();
            for i in 1..text.len() {
                let next = text[i];
                for k in 1..=ORDER.min(i) {
                    let c = counts.entry(key(&text[i - k..i])).or_default();
                    match c.iter_mut().find(|(t, _)| *t == next) {
                        Some((_, n)) => *n += 1,
                        None => c.push((next, 1)),
                    }
                }
            }
        }
        let best = counts
            .into_iter()
            .map(|(k, c)| {
                // The first of the most frequent (max_by_key would keep the last).
                let (token, _) = c.iter().fold(
                    (0, 0),
                    |best, &(t, n)| if n > best.1 { (t, n) } else { best },
                );
                (k, token)
            })
            .collect();
        Self {
            best,
            texts: n_texts,
            tokens: n_tokens,
        }
    }

    /// Texts indexed.
    pub fn texts(&self) -> usize {
        self.texts
    }

    /// Tokens indexed.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Contexts indexed.
    pub fn contexts(&self) -> usize {
        self.best.len()
    }

    /// The most frequent follower of the longest indexed context that `tokens` ends with, and
    /// that context's length.
    pub fn next(&self, tokens: &[u32]) -> Option<(u32, usize)> {
        (1..=ORDER.min(tokens.len())).rev().find_map(|k| {
            self.best
                .get(&key(&tokens[tokens.len() - k..]))
                .map(|&t| (t, k))
        })
    }

    /// Up to `len` tokens that the corpus predicts after `tokens`, each the [`Self::next`] of
    /// the sequence extended by the ones before it. Empty when the last token never occurred
    /// in the corpus with a follower.
    pub fn draft(&self, tokens: &[u32], len: usize) -> Vec<u32> {
        let mut tail: Vec<u32> = tokens[tokens.len().saturating_sub(ORDER)..].to_vec();
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let Some((t, _)) = self.next(&tail) else {
                break;
            };
            out.push(t);
            tail.push(t);
            if tail.len() > ORDER {
                tail.remove(0);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The oracle: scan every text for every occurrence of the longest context (ORDER..1
    /// tokens) that has a follower, count followers, take the most frequent (first seen on
    /// ties).
    fn brute_next(texts: &[Vec<u32>], tokens: &[u32]) -> Option<u32> {
        for k in (1..=ORDER.min(tokens.len())).rev() {
            let ctx = &tokens[tokens.len() - k..];
            let mut seen: Vec<(u32, u32)> = Vec::new();
            for t in texts {
                for i in k..t.len() {
                    if &t[i - k..i] == ctx {
                        match seen.iter_mut().find(|(x, _)| *x == t[i]) {
                            Some((_, n)) => *n += 1,
                            None => seen.push((t[i], 1)),
                        }
                    }
                }
            }
            if let Some(max) = seen.iter().map(|s| s.1).max() {
                return seen.iter().find(|s| s.1 == max).map(|s| s.0);
            }
        }
        None
    }

    fn random_texts(seed: u64, n: usize, len: usize, alphabet: u64) -> Vec<Vec<u32>> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                (0..len)
                    .map(|_| {
                        s = s
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((s >> 33) % alphabet) as u32
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_next_token_agrees_with_a_brute_force_count() {
        let texts = random_texts(7, 6, 120, 6);
        let corpus = DraftCorpus::from_texts(texts.iter().map(Vec::as_slice));
        assert_eq!(corpus.texts(), 6);
        assert_eq!(corpus.tokens(), 720);
        let queries = random_texts(8, 200, 5, 7); // symbol 6 never occurs in the corpus
        let mut found = 0;
        for q in &queries {
            for end in 1..=q.len() {
                let got = corpus.next(&q[..end]).map(|(t, _)| t);
                assert_eq!(got, brute_next(&texts, &q[..end]), "query {:?}", &q[..end]);
                found += usize::from(got.is_some());
            }
        }
        assert!(found > 500, "the queries must exercise matches");
        assert!(found < 1000, "and misses");
    }

    #[test]
    fn drafts_extend_the_sequence_token_by_token_and_prefer_long_contexts() {
        let texts: Vec<Vec<u32>> = vec![vec![1, 2, 3, 4, 5], vec![9, 2, 3, 7], vec![8, 2, 3, 7]];
        let corpus = DraftCorpus::from_texts(texts.iter().map(Vec::as_slice));
        // `2 3` was followed by 7 twice and by 4 once; `1 2 3` only by 4.
        assert_eq!(corpus.next(&[5, 2, 3]), Some((7, 2)));
        assert_eq!(corpus.next(&[1, 2, 3]), Some((4, 3)));
        assert_eq!(corpus.draft(&[1, 2, 3], 9), vec![4, 5]);
        assert_eq!(corpus.draft(&[6, 9, 2], 9), vec![3, 7]);
        assert_eq!(corpus.draft(&[6, 9, 2], 1), vec![3]);
        assert!(corpus.draft(&[6], 4).is_empty(), "6 never occurs");
        assert!(corpus.draft(&[5], 4).is_empty(), "5 is never followed");
        // No context spans two texts: `5 9` is not a bigram of the corpus.
        assert_eq!(corpus.next(&[4, 5]), None);
        // Ties go to the follower seen first.
        let tie = DraftCorpus::from_texts([&[1u32, 2][..], &[1, 3], &[1, 3], &[1, 2]]);
        assert_eq!(tie.next(&[1]), Some((2, 1)));
    }
}
