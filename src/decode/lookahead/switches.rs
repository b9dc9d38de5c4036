//! The drafting switches of lookahead decoding: which drafters feed a step and how, next to
//! the algorithm's W, N and G.

use serde::Serialize;

/// Which sources of drafts lookahead decoding uses, and how. Every switch changes the speed
/// only, never the output: what a step commits is always verified against the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DraftSwitches {
    /// Seed the pool with the prompt's n-grams and keep adding committed ones.
    pub pool_from_prompt: bool,
    /// Reproduce the authors' choices: at most N-1 tokens per step (the bonus token after a
    /// fully matched candidate is dropped).
    pub reference_compat: bool,
    /// Put the continuation of the longest matching earlier context of the committed text
    /// first among the candidates (see [`crate::decode::text_index`]).
    pub context_match: bool,
    /// Without a window (W = 0) and with the context match: the context-matched candidate's
    /// length follows the evidence of the match (as far as the matched context reaches, or as
    /// learned with `learned_lengths`), at most N-1, and it continues periodically past the
    /// end of the text
    /// (see [`crate::decode::text_index::TextDraftMode::FollowsMatch`]). Off: one N-1-token
    /// candidate every step.
    pub adaptive_draft: bool,
    /// When the committed text offers no context-matched candidate, or (with
    /// `adaptive_draft`) only one after a shorter match than the corpus's context, draft
    /// from the decoder's draft corpus, if it has one (see [`crate::decode::DraftCorpus`] and
    /// [`crate::decode::speculative::policy`]).
    pub corpus_drafts: bool,
    /// The lengths of the context-matched drafts (W = 0 with `adaptive_draft`) and of the
    /// corpus's drafts are learned from the generation and priced by the device's measured
    /// step costs (see [`crate::decode::draft_length`]), chosen jointly with the lead between
    /// the text's and the corpus's drafts, instead of reaching as far as the matched context.
    /// `auto` turns it on for its picks without a window.
    pub learned_lengths: bool,
}

impl DraftSwitches {
    /// Every drafter on, the authors' mode off.
    pub const DEFAULT: DraftSwitches = DraftSwitches {
        pool_from_prompt: true,
        reference_compat: false,
        context_match: true,
        adaptive_draft: true,
        corpus_drafts: true,
        learned_lengths: false,
    };

    /// The suffixes of the benchmark syntax (`lookahead:W,N,G-pool-ctx-adapt-corpus+ref+learn`),
    /// in the order they must appear: each turns one switch away from its default.
    pub const SUFFIXES: [&'static str; 6] =
        ["-pool", "-ctx", "-adapt", "-corpus", "+ref", "+learn"];

    /// Splits the switch suffixes ([`Self::SUFFIXES`], in that order) off the end of `s`:
    /// the text before them and the switches they give.
    pub fn strip_suffixes(s: &str) -> (&str, DraftSwitches) {
        let mut rest = s;
        let mut has = [false; 6];
        for (i, suffix) in Self::SUFFIXES.iter().enumerate().rev() {
            if let Some(r) = rest.strip_suffix(suffix) {
                rest = r;
                has[i] = true;
            }
        }
        let d = Self::DEFAULT;
        let switches = DraftSwitches {
            pool_from_prompt: d.pool_from_prompt && !has[0],
            context_match: d.context_match && !has[1],
            adaptive_draft: d.adaptive_draft && !has[2],
            corpus_drafts: d.corpus_drafts && !has[3],
            reference_compat: d.reference_compat || has[4],
            learned_lengths: d.learned_lengths || has[5],
        };
        (rest, switches)
    }

    /// The suffixes that give these switches (empty for the defaults).
    pub fn suffixes(&self) -> String {
        let d = Self::DEFAULT;
        let on = [
            self.pool_from_prompt != d.pool_from_prompt,
            self.context_match != d.context_match,
            self.adaptive_draft != d.adaptive_draft,
            self.corpus_drafts != d.corpus_drafts,
            self.reference_compat != d.reference_compat,
            self.learned_lengths != d.learned_lengths,
        ];
        Self::SUFFIXES
            .iter()
            .zip(on)
            .filter(|(_, on)| *on)
            .map(|(s, _)| *s)
            .collect()
    }
}

impl Default for DraftSwitches {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_turn_single_switches_and_round_trip() {
        let (rest, s) = DraftSwitches::strip_suffixes("1,5,1-pool-ctx+ref");
        assert_eq!(rest, "1,5,1");
        assert!(!s.pool_from_prompt && !s.context_match && s.reference_compat);
        assert!(s.adaptive_draft && s.corpus_drafts);
        assert_eq!(s.suffixes(), "-pool-ctx+ref");
        let (rest, s) = DraftSwitches::strip_suffixes("0,32,1-adapt-corpus");
        assert_eq!(rest, "0,32,1");
        assert!(!s.adaptive_draft && !s.corpus_drafts && s.pool_from_prompt);
        let (rest, s) = DraftSwitches::strip_suffixes("0,32,1+learn");
        assert_eq!(rest, "0,32,1");
        assert!(s.learned_lengths && s.adaptive_draft);
        assert_eq!(s.suffixes(), "+learn");
        let (rest, s) = DraftSwitches::strip_suffixes("8,4,8");
        assert_eq!((rest, s), ("8,4,8", DraftSwitches::DEFAULT));
        assert_eq!(s.suffixes(), "");
        // Out of order, a suffix stays part of the text (and W,N,G parsing then fails).
        let (rest, _) = DraftSwitches::strip_suffixes("8,4,8+ref-pool");
        assert_eq!(rest, "8,4,8+ref");
    }
}
