//! How long a draft to verify, learned from the text being written.
//!
//! A drafter that finds a draft on evidence (a context of the committed text, or of the draft
//! corpus, matching the end of the text) can continue it for many tokens; each token more is a
//! row more in the step's forward pass. Whether it pays depends on two numbers: how far such
//! drafts match what the model then writes, and what a step of so many rows costs on this
//! device. [`DraftLengths`] measures the first on the generation itself and takes the second
//! from the device's measured step costs ([`StepPrice`]):
//!
//! - Every step, the drafter's full-length draft (as long as the budget allows) is kept with
//!   its evidence bucket (matched context of 1, 2-3, 4-7, 8-15, 16+ tokens) until the
//!   committed text shows how many of its tokens were right (`matched`). That count does not
//!   depend on how much of the draft was verified (a drafted token is kept exactly when it is
//!   the token the model commits there), so every step scores the full length, whatever length
//!   it drafted. The step's advance (`advanced`: the tokens it committed, by whichever draft
//!   won) is kept with it.
//! - The scores are weighed by text position, not by step: the lengths that ran decide where
//!   steps start, so a stretch the model writes predictably is crossed in many steps under
//!   short drafts, each scoring a long match, and in one under long drafts. A scored step
//!   stands for the `advanced` positions it crossed; a length `L` would cross them at
//!   `1 + min(matched, L)` tokens a step, so its time per committed token is
//!   `Σ advanced · price(base + L) / (1 + min(matched, L)) / Σ advanced`, `base` being the
//!   rows of the rest of the step. Each bucket is weighed over its own positions: where a
//!   longer draft would reach past them, the steps it would save count in the buckets they
//!   were scored in (a right draft lengthens the matched context, so often a longer one).
//! - The draft length of a bucket is the one of 0, 1, 3, 7, 15, ... tokens (steps of 1, 2, 4,
//!   8, 16, ... rows with the pending token: few step shapes) or the budget with the least
//!   time per token, which is the most tokens per unit of time, `(1 + right(L)) / price(base +
//!   L)` with `right(L)` the right tokens of a step drafting `L` over those positions
//!   ([`DraftLengths::expected_right`]); 0 where no draft pays for its rows.
//! - Before a bucket has been scored, or without a price, the draft reaches as far as the
//!   evidence: the longest of those lengths not above the matched context.

use std::fmt;
use std::sync::Arc;

/// Relative time of a forward pass by its query rows (a single-row pass: 1), as measured on the
/// model's device.
#[derive(Clone)]
pub struct StepPrice(Arc<dyn Fn(usize) -> f64 + Send + Sync>);

impl StepPrice {
    /// `price(rows)`: the relative time of a pass of `rows` rows (finite and positive).
    pub fn new(price: impl Fn(usize) -> f64 + Send + Sync + 'static) -> Self {
        Self(Arc::new(price))
    }

    pub fn of(&self, rows: usize) -> f64 {
        (self.0)(rows)
    }
}

impl fmt::Debug for StepPrice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p: Vec<String> = [1, 2, 4, 8, 16, 32]
            .iter()
            .map(|&r| format!("{r}:{:.2}", self.of(r)))
            .collect();
        write!(f, "StepPrice({})", p.join(" "))
    }
}

/// Evidence buckets: matched contexts of 1, 2-3, 4-7, 8-15 and 16+ tokens.
const BUCKETS: usize = 5;

fn bucket(evidence: usize) -> usize {
    ((usize::BITS - evidence.max(1).leading_zeros()) as usize - 1).min(BUCKETS - 1)
}

/// A full-length draft waiting for the committed text to score it.
#[derive(Debug, Clone)]
struct Pending {
    /// Position in the text of the draft's first token.
    at: usize,
    bucket: usize,
    tokens: Vec<u32>,
    /// Tokens the step committed (known at the first observation after the draft was kept).
    advanced: Option<usize>,
}

/// The scored drafts of one evidence bucket.
#[derive(Debug, Clone)]
struct Scores {
    /// Scored drafts.
    drafts: u64,
    /// Indexed by the tokens a draft matched (0 to the longest draft): the text positions the
    /// steps of such drafts advanced over, summed.
    positions: Vec<u64>,
}

impl Scores {
    fn new(max: usize) -> Self {
        Self {
            drafts: 0,
            positions: vec![0; max + 1],
        }
    }

    /// `Σ advanced / (1 + min(matched, len))`: the steps drafts of `len` tokens would take
    /// over the scored positions, and `Σ advanced · min(matched, len) / (1 + min(matched,
    /// len))`: the right tokens of those steps. `None` before any step advanced.
    fn steps_and_right(&self, len: usize) -> Option<(f64, f64)> {
        let mut steps = 0.0;
        let mut right = 0.0;
        for (matched, &positions) in self.positions.iter().enumerate() {
            let per_step = matched.min(len) as f64;
            let n = positions as f64 / (1.0 + per_step);
            steps += n;
            right += n * per_step;
        }
        (steps > 0.0).then_some((steps, right))
    }
}

/// The draft lengths of one drafter in one generation (see the module documentation).
#[derive(Debug, Clone)]
pub struct DraftLengths {
    /// Longest draft.
    max: usize,
    /// Rows of the rest of a step (the pending token, the window, the other drafts).
    base_rows: usize,
    price: Option<StepPrice>,
    /// Per evidence bucket.
    scores: Vec<Scores>,
    pending: Vec<Pending>,
}

impl DraftLengths {
    /// Drafts of at most `max` tokens in steps whose other rows number `base_rows`, priced by
    /// `price` (`None`: drafts reach as far as their evidence).
    pub fn new(max: usize, base_rows: usize, price: Option<StepPrice>) -> Self {
        Self {
            max,
            base_rows: base_rows.max(1),
            price,
            scores: vec![Scores::new(max); BUCKETS],
            pending: Vec::new(),
        }
    }

    /// Prices rows by `price` from now on.
    pub fn set_price(&mut self, price: Option<StepPrice>) {
        self.price = price;
    }

    /// Forgets the scores (a new generation).
    pub fn reset(&mut self) {
        self.scores = vec![Scores::new(self.max); BUCKETS];
        self.pending.clear();
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// The lengths a draft may have: 0, 1, 3, 7, ... below `max`, and `max`.
    fn candidates(&self) -> impl Iterator<Item = usize> + '_ {
        (0..usize::BITS)
            .map(|k| (1usize << k) - 1)
            .take_while(|&l| l < self.max)
            .chain((self.max > 0).then_some(self.max))
    }

    /// How many tokens to draft after a match of `evidence` context tokens.
    pub fn length(&self, evidence: usize) -> usize {
        let scores = &self.scores[bucket(evidence)];
        let (Some(price), true) = (&self.price, scores.steps_and_right(0).is_some()) else {
            let reach = evidence.max(1);
            return self
                .candidates()
                .filter(|&l| l <= reach)
                .last()
                .unwrap_or(0);
        };
        // Time per committed token over the scored positions: steps times their price, over
        // the positions (the same for every length, so left out).
        let time = |l: usize| -> f64 {
            let (steps, _) = scores.steps_and_right(l).unwrap_or((f64::INFINITY, 0.0));
            steps * price.of(self.base_rows + l)
        };
        let mut best = (0, f64::INFINITY);
        for l in self.candidates() {
            let t = time(l);
            if t < best.1 {
                best = (l, t);
            }
        }
        best.0
    }

    /// Right tokens a step drafting `len` tokens on `evidence` context tokens would get on
    /// average, were every step of this bucket to draft `len` tokens: the scored positions
    /// crossed at `1 + min(matched, len)` tokens a step (`None` before any was scored).
    pub fn expected_right(&self, evidence: usize, len: usize) -> Option<f64> {
        let (steps, right) = self.scores[bucket(evidence)].steps_and_right(len)?;
        Some(right / steps)
    }

    /// Keeps `draft`, the full-length draft after `text` on `evidence` context tokens, for
    /// scoring once the text goes on.
    pub fn note(&mut self, text_len: usize, evidence: usize, draft: &[u32]) {
        if !draft.is_empty() {
            self.pending.push(Pending {
                at: text_len,
                bucket: bucket(evidence),
                tokens: draft[..draft.len().min(self.max)].to_vec(),
                advanced: None,
            });
        }
    }

    /// Scores the kept drafts that `text` (the committed text) now decides: those that went
    /// wrong at a committed token, and those it covers entirely. A draft kept before the last
    /// step learns that step's advance here.
    pub fn observe(&mut self, text: &[u32]) {
        let scores = &mut self.scores;
        self.pending.retain_mut(|p| {
            let written = text.get(p.at..).unwrap_or(&[]);
            if p.advanced.is_none() && !written.is_empty() {
                p.advanced = Some(written.len());
            }
            let right = p
                .tokens
                .iter()
                .zip(written)
                .take_while(|(a, b)| a == b)
                .count();
            let decided =
                right < p.tokens.len().min(written.len()) || written.len() >= p.tokens.len();
            if let (true, Some(advanced)) = (decided, p.advanced) {
                let s = &mut scores[p.bucket];
                s.drafts += 1;
                s.positions[right] += advanced as u64;
            }
            !decided
        });
    }

    /// Scored drafts per bucket (for statistics).
    pub fn scored(&self) -> Vec<u64> {
        self.scores.iter().map(|s| s.drafts).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::test_rng::Lcg;

    #[test]
    fn buckets_double() {
        let b: Vec<usize> = [0, 1, 2, 3, 4, 7, 8, 15, 16, 1000]
            .iter()
            .map(|&e| bucket(e))
            .collect();
        assert_eq!(b, vec![0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
    }

    #[test]
    fn unscored_drafts_reach_as_far_as_their_evidence() {
        let d = DraftLengths::new(31, 1, None);
        let lens: Vec<usize> = [1, 2, 3, 4, 7, 8, 16, 40]
            .iter()
            .map(|&e| d.length(e))
            .collect();
        assert_eq!(lens, vec![1, 1, 3, 3, 7, 7, 15, 31]);
        // Within the budget, which is a length too.
        let d = DraftLengths::new(5, 1, None);
        assert_eq!(d.length(16), 5);
        assert_eq!(d.length(4), 3);
        assert_eq!(DraftLengths::new(0, 1, None).length(9), 0);
    }

    /// Every scored count, by brute force: for each kept draft, the committed tokens it
    /// matched from its position on, weighed by the tokens its step committed.
    #[test]
    fn drafts_are_scored_by_the_text_that_follows() {
        let text: Vec<u32> = vec![1, 2, 3, 4, 5, 6, 7, 8];
        let mut d = DraftLengths::new(4, 1, None);
        // At 2: [3, 4, 9] matches 2; at 3: [4, 5, 6, 7] matches 4; at 6: [7, 8, 9, 9] is
        // undecided until the text goes on (2 right so far); at 7: [1] is wrong at once.
        d.note(2, 1, &[3, 4, 9]);
        d.note(3, 2, &[4, 5, 6, 7, 8, 9]);
        d.note(6, 4, &[7, 8, 9, 9]);
        d.note(7, 16, &[1]);
        // Five tokens decide the first (wrong at its third; the text advanced 3 past it);
        // the others wait.
        d.observe(&text[..5]);
        assert_eq!(d.scored(), vec![1, 0, 0, 0, 0]);
        assert_eq!(d.scores[0].positions[2], 3);
        // The draft at 3 learned its advance (2) then; those at 6 and 7 learn theirs now.
        d.observe(&text);
        assert_eq!(d.scores[1].positions[4], 2, "capped at the longest draft");
        assert_eq!(d.scores[4].positions[0], 1);
        assert_eq!(d.scored(), vec![1, 1, 0, 0, 1]);
        d.observe(&[text.clone(), vec![9, 1]].concat());
        assert_eq!(d.scores[2].positions[3], 2);
        assert_eq!(d.scored(), vec![1, 1, 1, 0, 1]);
        let total: u64 = d.scores.iter().flat_map(|s| &s.positions).sum();
        assert_eq!(total, 3 + 2 + 2 + 1);
        d.reset();
        assert_eq!(d.scored(), vec![0; 5]);
        assert_eq!(d.expected_right(1, 3), None);
    }

    /// Drafts after one-token contexts that matched 0, 3 and 7 tokens, each in a step that
    /// committed its draft's right tokens and one more (1, 4 and 8 positions).
    fn scored_once_each(price: StepPrice) -> DraftLengths {
        let mut d = DraftLengths::new(15, 1, Some(price));
        let text: Vec<u32> = (0..40).collect();
        for (at, right) in [(0, 0), (10, 3), (20, 7)] {
            let mut draft: Vec<u32> = text[at..at + 15].to_vec();
            draft[right] = 999;
            d.note(at, 1, &draft);
            d.observe(&text[..at + 1 + right]);
        }
        d.observe(&text);
        assert_eq!(d.scored()[0], 3);
        d
    }

    #[test]
    fn the_price_of_rows_sets_the_length() {
        let d = scored_once_each(StepPrice::new(|r| r as f64));
        // Drafting 7 crosses the 13 positions in 3 steps, 10 of their tokens drafted; drafting
        // 1 in 1 + 2 + 4 = 7 steps, 6 drafted.
        assert_eq!(d.expected_right(1, 7), Some(10.0 / 3.0));
        assert!((d.expected_right(1, 1).unwrap() - 6.0 / 7.0).abs() < 1e-12);
        assert_eq!(d.expected_right(1, 0), Some(0.0));
        assert_eq!(
            d.expected_right(16, 7),
            None,
            "nothing scored on long contexts"
        );
        // Rows nearly free up to 16 (a GPU): the longest candidate that saves steps.
        let flat = scored_once_each(StepPrice::new(|r| 1.0 + 0.001 * r as f64));
        assert_eq!(flat.length(1), 7);
        // Every row as dear as a token (a CPU): no draft pays for its rows.
        let linear = scored_once_each(StepPrice::new(|r| r as f64));
        assert_eq!(linear.length(1), 0);
        // Rows at half price: 3 tokens (4 steps of 2.5) beat 7 (3 of 4.5) and 1 (7 of 1.5).
        let half = scored_once_each(StepPrice::new(|r| 0.5 + 0.5 * r as f64));
        assert_eq!(half.length(1), 3);
        // Unscored buckets still follow their evidence.
        assert_eq!(linear.length(16), 15);
    }

    /// The choice is the candidate with the least time per position, checked against a direct
    /// evaluation of `Σ advanced · price / (1 + min(matched, L))` over the steps as they ran.
    #[test]
    fn the_length_minimises_the_time_per_position() {
        let price = StepPrice::new(|r| 1.0 + 0.05 * (r as f64).powf(1.3));
        let mut d = DraftLengths::new(31, 2, Some(price.clone()));
        let text: Vec<u32> = (0..400).map(|i| i % 97).collect();
        let mut rng = Lcg(7);
        let mut steps = Vec::new();
        let mut at = 0;
        while at < 360 {
            let right = rng.below(32);
            let mut draft = text[at..at + 31].to_vec();
            if right < 31 {
                draft[right] = 1000;
            }
            d.note(at, 5, &draft);
            // Some other draft may have won the step: it advanced 1 to 12 tokens.
            let advanced = 1 + rng.below(12);
            steps.push((right, advanced));
            at += advanced;
            d.observe(&text[..at]);
        }
        d.observe(&text);
        assert_eq!(d.scored()[bucket(5)], steps.len() as u64);
        let time = |l: usize| {
            steps
                .iter()
                .map(|&(m, a)| a as f64 * price.of(2 + l) / (1 + m.min(l)) as f64)
                .sum::<f64>()
        };
        let best = [0, 1, 3, 7, 15, 31]
            .into_iter()
            .min_by(|a, b| time(*a).total_cmp(&time(*b)))
            .unwrap();
        assert_eq!(d.length(5), best);
    }

    /// A text of predictable runs (1 to 40 tokens) between stretches of 5 to 30 tokens no
    /// drafter knows, and for every position the tokens a draft from there gets right: the
    /// rest of its run.
    fn runs_text(seed: u64, len: usize) -> (Vec<u32>, Vec<usize>) {
        let mut rng = Lcg(seed);
        let (mut text, mut predictable) = (Vec::new(), Vec::new());
        while text.len() < len {
            for _ in 0..5 + rng.below(26) {
                text.push(rng.below(50_000) as u32);
                predictable.push(0);
            }
            let run = 1 + rng.below(40);
            for k in 0..run {
                text.push(rng.below(50_000) as u32);
                predictable.push(run - k);
            }
        }
        text.truncate(len);
        predictable.truncate(len);
        (text, predictable)
    }

    /// Positions per unit of time of a policy drafting `len` tokens at every step, stepped
    /// through the text directly: each step commits `1 + min(right, len)` tokens.
    fn policy_rate(predictable: &[usize], len: usize, price: &StepPrice, base_rows: usize) -> f64 {
        let (mut at, mut time) = (0, 0.0);
        while at < predictable.len() {
            time += price.of(base_rows + len);
            at += 1 + predictable[at].min(len);
        }
        predictable.len() as f64 / time
    }

    /// A learner trained under a policy of `trained_len`-token drafts on the run text: each
    /// step the drafter (which knows the runs) offers its full draft, the step commits what
    /// `trained_len` tokens of it allow. Also the right tokens of every step, for the
    /// per-step estimate.
    fn trained(
        text: &[u32],
        predictable: &[usize],
        trained_len: usize,
        price: &StepPrice,
    ) -> (DraftLengths, Vec<usize>) {
        let mut d = DraftLengths::new(31, 1, Some(price.clone()));
        let mut rights = Vec::new();
        let mut at = 0;
        while at + 32 < text.len() {
            let right = predictable[at];
            let mut draft = text[at..at + right.min(31)].to_vec();
            draft.push(u32::MAX);
            d.note(at, 1, &draft);
            rights.push(right.min(31));
            at += 1 + right.min(trained_len);
            d.observe(&text[..at]);
        }
        (d, rights)
    }

    /// On a text of predictable runs, the length learned under short drafts (and under long
    /// ones) is the best fixed length of a direct simulation, or within 2 % of its rate; the
    /// same steps scored per step, as they ran, pick a length that drafts longer than pays.
    #[test]
    fn the_learned_length_is_the_best_policy_of_a_direct_simulation() {
        // A 7B model's step on a GPU: each row beyond the first costs 2.3 % of a step.
        let price = StepPrice::new(|r| 1.0 + 0.023 * (r as f64 - 1.0));
        let candidates = [0, 1, 3, 7, 15, 31];
        for seed in [1, 2, 3] {
            let (text, predictable) = runs_text(seed, 6000);
            let rate = |l: usize| policy_rate(&predictable, l, &price, 1);
            let best = candidates
                .into_iter()
                .max_by(|a, b| rate(*a).total_cmp(&rate(*b)))
                .unwrap();
            for trained_len in [1, 31] {
                let (learner, rights) = trained(&text, &predictable, trained_len, &price);
                let learned = learner.length(1);
                assert!(
                    rate(learned) >= 0.98 * rate(best),
                    "seed {seed}, trained on {trained_len}: learned {learned} ({:.3}) against \
                     the best {best} ({:.3})",
                    rate(learned),
                    rate(best)
                );
                if trained_len == 1 {
                    // The per-step estimate: mean right tokens of the steps that ran.
                    let per_step = |l: usize| {
                        let right: usize = rights.iter().map(|&m| m.min(l)).sum();
                        (1.0 + right as f64 / rights.len() as f64) / price.of(1 + l)
                    };
                    let per_step_pick = candidates
                        .into_iter()
                        .max_by(|a, b| per_step(*a).total_cmp(&per_step(*b)))
                        .unwrap();
                    assert!(
                        per_step_pick > best && rate(per_step_pick) < 0.95 * rate(best),
                        "seed {seed}: per step {per_step_pick} ({:.3}) against the best \
                         {best} ({:.3})",
                        rate(per_step_pick),
                        rate(best)
                    );
                }
            }
        }
    }
}
