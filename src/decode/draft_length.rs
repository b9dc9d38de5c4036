//! How long a draft to verify, learned from the text being written.
//!
//! A drafter that finds a draft on evidence (a context of the committed text, or of the draft
//! corpus, matching the end of the text) can continue it for many tokens; each token more is a
//! row more in the step's forward pass. Whether it pays depends on two things: how far such
//! drafts match what the model then writes, and what a step of so many rows costs on this
//! device. [`DraftLengths`] measures the first on the generation itself and takes the second
//! from the device's measured step costs ([`StepPrice`]); [`choose_together`] chooses the
//! lengths from both:
//!
//! - The drafter's full-length draft (as long as the budget allows) is recorded at **every**
//!   committed position of the text, not only where steps started: the output does not depend
//!   on the drafts, so what the drafter would have proposed after the first `p` tokens is a
//!   function of those tokens alone, and the drafter computes it once the text has passed `p`
//!   ([`DraftLengths::note`]). Each record keeps its evidence bucket (matched context of 1,
//!   2-3, 4-7, 8-15, 16+ tokens; or no draft) and, once the committed text covers the draft or
//!   departs from it, how many of its tokens were right (`matched`).
//! - In the decoder the drafters compete for a step's lead: the text's and the corpus's drafts
//!   by what their decided drafts of that evidence and length got right per unit of step time
//!   ([`takes_lead`]), the pool's where neither drafts. Their lengths (one per drafter and
//!   bucket) are therefore chosen together, by one replay that crosses the recorded positions
//!   exactly as the decoder's steps drafting those lengths would: from the first position, a
//!   step at a position where a drafter's record has a draft of bucket `b` offers `L[b]` of its
//!   tokens (none where `L[b]` is 0), the lead among the offers drafts them, and the step costs
//!   `price(base + L)` (`base`: the rows of the rest of the step; `L`: the lead's length, 0
//!   without a lead) and advances `1 + min(matched, L)` positions. A draft the text has not
//!   decided yet counts the tokens it got right so far, which is all a step there could
//!   commit. The replay's time per committed token does not depend on the lengths that ran,
//!   and it prices how the buckets lead into each other (a right draft lengthens the matched
//!   context, so often the next step's bucket). It covers every recorded position of the
//!   generation. A drafter alone has its lengths chosen the same way, as the only drafter of
//!   the replay.
//! - The lengths are chosen among 0, 1, 3, 7, 15, ... tokens (steps of 1, 2, 4, 8, 16, ... rows
//!   with the pending token: few step shapes) and the budget, by coordinate descent from the
//!   evidence rule (below): one bucket of one drafter at a time takes the length that lowers
//!   the replay's time per token most, until no single change lowers it. The choice is renewed
//!   whenever the recorded positions have grown by 16 (or by a sixteenth, on long texts), so
//!   that its cost per step stays small, and at the first chance after the price of a step's
//!   rows changed ([`DraftLengths::set_price`]).
//! - Until the lengths are first chosen, for a bucket without a recorded draft, and without a
//!   price, a draft reaches as far as its evidence: the longest of those lengths not above the
//!   matched context ([`reach`]). The records hold the full-length draft all the same, so they
//!   measure every length.
//!
//! These rules (the evidence before a bucket is measured, the replay over the whole
//! generation) were chosen on prompts outside the benchmarks' reported ones, against drafting
//! the budget and replaying the latest half (docs/benchmarks.md, "Learned draft lengths").

use std::collections::VecDeque;
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

/// The evidence rule: a draft after a match of `evidence` context tokens (at least 1) reaches
/// as far as the evidence, to the longest of 1, 3, 7, 15, ... tokens (and `max`) not above it;
/// at most `max` tokens.
pub fn reach(evidence: usize, max: usize) -> usize {
    let reach = evidence.max(1).min(max);
    if reach == max {
        return max;
    }
    // The longest 2^k - 1 not above `reach`.
    (1usize << (usize::BITS - (reach + 1).leading_zeros() - 1)) - 1
}

/// Evidence buckets: matched contexts of 1, 2-3, 4-7, 8-15 and 16+ tokens.
const BUCKETS: usize = 5;

fn bucket(evidence: usize) -> usize {
    ((usize::BITS - evidence.max(1).leading_zeros()) as usize - 1).min(BUCKETS - 1)
}

/// [`Record::bucket`] of a position without a draft.
const NO_DRAFT: u8 = u8::MAX;
/// The record of a position without a draft.
const NO_DRAFT_RECORD: Record = Record {
    bucket: NO_DRAFT,
    matched: 0,
};
/// [`Record::matched`] of a draft the text has not decided yet.
const UNDECIDED: u16 = u16::MAX;
/// Longest draft recorded (its matched count must stay below [`UNDECIDED`]).
const LONGEST: usize = UNDECIDED as usize - 1;

/// Most rounds of the coordinate descent (each tries every length of every drafted bucket).
const ROUNDS: usize = 8;
/// Fewest newly recorded positions before the lengths are chosen again.
const REPICK: usize = 16;

/// What the drafter proposed at one text position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    /// The draft's evidence bucket, or [`NO_DRAFT`].
    bucket: u8,
    /// Its tokens matched by the committed text, or [`UNDECIDED`].
    matched: u16,
}

/// A recorded draft the committed text does not decide yet.
#[derive(Debug, Clone)]
struct Pending {
    /// Position in the text of the draft's first token.
    at: usize,
    tokens: Vec<u32>,
}

/// The lengths of one drafter chosen by the replay ([`choose_together`]).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pick {
    lengths: [usize; BUCKETS],
    /// Buckets with a draft among the replayed positions (the others follow the evidence).
    drafted: [bool; BUCKETS],
}

/// The draft lengths of one drafter in one generation (see the module documentation).
#[derive(Debug, Clone)]
pub struct DraftLengths {
    /// Longest draft.
    max: usize,
    /// Rows of the rest of a step (the pending token, the window, the other drafts).
    base_rows: usize,
    price: Option<StepPrice>,
    /// Text position of the first record.
    start: usize,
    /// One per position from `start` on.
    records: Vec<Record>,
    pending: VecDeque<Pending>,
    /// Per bucket, indexed by the tokens a draft matched (0 to the longest draft): the decided
    /// drafts.
    matched: Vec<Vec<u64>>,
    pick: Option<Pick>,
    /// Positions recorded when the lengths were last chosen.
    picked_at: usize,
    /// Whether `pick` was chosen at another price of a step's rows than the current one (it is
    /// chosen again at the next chance).
    repriced: bool,
    /// Length of the committed text last observed.
    written: usize,
}

impl DraftLengths {
    /// Drafts of at most `max` tokens in steps whose other rows number `base_rows`, priced by
    /// `price` (`None`: drafts reach as far as their evidence), their lengths chosen by
    /// [`choose_together`].
    pub fn new(max: usize, base_rows: usize, price: Option<StepPrice>) -> Self {
        let max = max.min(LONGEST);
        Self {
            max,
            base_rows: base_rows.max(1),
            price,
            start: 0,
            records: Vec::new(),
            pending: VecDeque::new(),
            matched: vec![vec![0; max + 1]; BUCKETS],
            pick: None,
            picked_at: 0,
            repriced: false,
            written: 0,
        }
    }

    /// Prices rows by `price` from now on: lengths already chosen are chosen again by the next
    /// [`choose_together`] (before any choice, the first comes as usual).
    pub fn set_price(&mut self, price: Option<StepPrice>) {
        self.price = price;
        self.repriced |= self.pick.is_some();
    }

    /// Forgets the records (a new generation).
    pub fn reset(&mut self) {
        self.start = 0;
        self.records.clear();
        self.pending.clear();
        for m in &mut self.matched {
            m.iter_mut().for_each(|n| *n = 0);
        }
        self.pick = None;
        self.picked_at = 0;
        self.repriced = false;
        self.written = 0;
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

    /// The evidence rule: the longest candidate not above `evidence` (at least 1).
    fn reach(&self, evidence: usize) -> usize {
        reach(evidence, self.max)
    }

    /// How many tokens to draft after a match of `evidence` context tokens.
    pub fn length(&self, evidence: usize) -> usize {
        let b = bucket(evidence);
        match &self.pick {
            Some(p) if p.drafted[b] => p.lengths[b],
            // Not measured yet (its records measure every length all the same), or no price.
            _ => self.reach(evidence),
        }
    }

    /// Right tokens a draft of `len` tokens on `evidence` context tokens gets on average: the
    /// mean of `min(matched, len)` over the decided drafts of its bucket, one a text position
    /// (`None` before any was decided).
    pub fn expected_right(&self, evidence: usize, len: usize) -> Option<f64> {
        let m = &self.matched[bucket(evidence)];
        let drafts: u64 = m.iter().sum();
        let right: u64 = m
            .iter()
            .enumerate()
            .map(|(k, &n)| n * k.min(len) as u64)
            .sum();
        (drafts > 0).then(|| right as f64 / drafts as f64)
    }

    /// Records `draft`, the full-length draft the drafter proposes after the first `at` tokens
    /// of the text on `evidence` context tokens (empty: no draft), to be decided as the text
    /// goes on. Positions are recorded in order; one skipped counts as without a draft, one
    /// recorded again is ignored.
    pub fn note(&mut self, at: usize, evidence: usize, draft: &[u32]) {
        let tokens = &draft[..draft.len().min(self.max)];
        if tokens.is_empty() {
            self.push(at, NO_DRAFT_RECORD);
        } else if self.push(
            at,
            Record {
                bucket: bucket(evidence) as u8,
                matched: UNDECIDED,
            },
        ) {
            self.pending.push_back(Pending {
                at,
                tokens: tokens.to_vec(),
            });
        }
    }

    /// Records, as [`Self::note`] does, a draft the drafter has already decided: after the
    /// first `at` tokens of the text, on `evidence` context tokens, `matched` of its tokens
    /// right (as many as the longest draft at most; no draft where that is 0).
    /// A position recorded open ([`Self::note_open`]) is decided here.
    pub fn note_decided(&mut self, at: usize, evidence: usize, matched: usize) {
        if self.max == 0 {
            self.push(at, NO_DRAFT_RECORD);
            return;
        }
        let (b, matched) = (bucket(evidence), matched.min(self.max));
        let record = Record {
            bucket: b as u8,
            matched: matched as u16,
        };
        let open = at
            .checked_sub(self.start)
            .and_then(|i| self.records.get_mut(i))
            .filter(|r| r.matched == UNDECIDED && r.bucket == record.bucket);
        if let Some(r) = open {
            *r = record;
            self.matched[b][matched] += 1;
        } else if self.push(at, record) {
            self.matched[b][matched] += 1;
        }
    }

    /// Records a draft after the first `at` tokens of the text, on `evidence` context tokens,
    /// that the drafter will decide later ([`Self::note_decided`]) and that every committed
    /// token after `at` confirmed so far.
    pub fn note_open(&mut self, at: usize, evidence: usize) {
        let record = if self.max == 0 {
            NO_DRAFT_RECORD
        } else {
            Record {
                bucket: bucket(evidence) as u8,
                matched: UNDECIDED,
            }
        };
        self.push(at, record);
    }

    /// Appends `record` at text position `at`, the positions skipped since the last record
    /// counting as without a draft; false (nothing recorded) where `at` was recorded already.
    fn push(&mut self, at: usize, record: Record) -> bool {
        if self.records.is_empty() && self.pending.is_empty() {
            self.start = at;
        }
        let Some(skipped) = at.checked_sub(self.start + self.records.len()) else {
            return false;
        };
        self.records
            .extend(std::iter::repeat_n(NO_DRAFT_RECORD, skipped));
        self.records.push(record);
        true
    }

    /// Decides the recorded drafts that `text` (the committed text) now decides: those that
    /// went wrong at a committed token, and those it covers entirely.
    pub fn observe(&mut self, text: &[u32]) {
        self.written = self.written.max(text.len());
        let (start, records, matched) = (self.start, &mut self.records, &mut self.matched);
        self.pending.retain(|p| {
            let written = text.get(p.at..).unwrap_or(&[]);
            let right = p
                .tokens
                .iter()
                .zip(written)
                .take_while(|(a, b)| a == b)
                .count();
            let decided =
                right < p.tokens.len().min(written.len()) || written.len() >= p.tokens.len();
            if decided {
                let r = &mut records[p.at - start];
                r.matched = right as u16;
                matched[r.bucket as usize][right] += 1;
            }
            !decided
        });
    }

    /// Decided drafts per bucket (for statistics).
    pub fn scored(&self) -> Vec<u64> {
        self.matched.iter().map(|m| m.iter().sum()).collect()
    }

    /// The record at text position `at`: `None` where none was made; else the draft's bucket
    /// (`None`: no draft) and its matched tokens (`None`: undecided).
    #[cfg(test)]
    pub(crate) fn record(&self, at: usize) -> Option<(Option<usize>, Option<usize>)> {
        let r = self.records.get(at.checked_sub(self.start)?)?;
        Some((
            (r.bucket != NO_DRAFT).then_some(r.bucket as usize),
            (r.matched != UNDECIDED).then_some(r.matched as usize),
        ))
    }

    /// The positions decided from the first one recorded on, up to the first undecided one.
    #[cfg(test)]
    fn decided(&self) -> usize {
        self.records
            .iter()
            .take_while(|r| r.matched != UNDECIDED)
            .count()
    }

    /// The first position recorded, and the positions recorded.
    #[cfg(test)]
    pub(crate) fn recorded(&self) -> std::ops::Range<usize> {
        self.start..self.start + self.records.len()
    }

    /// The bucket of `evidence` context tokens.
    #[cfg(test)]
    pub(crate) fn bucket_of(evidence: usize) -> usize {
        bucket(evidence)
    }

    /// The lengths chosen per bucket (`None` for a bucket that follows its evidence), for
    /// statistics.
    pub fn chosen(&self) -> Vec<Option<usize>> {
        (0..BUCKETS)
            .map(|b| self.pick.filter(|p| p.drafted[b]).map(|p| p.lengths[b]))
            .collect()
    }
}

/// A draft offered for a step's lead: the context it matched, its length, and the right tokens
/// that its drafter's decided drafts of that evidence got on average at that length (`None`
/// before any was decided).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Offer {
    pub evidence: usize,
    pub len: usize,
    pub expected: Option<f64>,
}

/// Whether `challenger` (the corpus's draft) takes a step's lead from `holder` (the text's).
/// Where both drafters have decided drafts of such evidence: the one expected to commit more
/// tokens per unit of step time, `(1 + expected) / price(base_rows + len)` (without a price,
/// the one expected to get more tokens right). Before that: the one on the longer context. On a
/// tie the holder keeps the lead (the text's own continuation is the more specific guess).
pub fn takes_lead(
    holder: Offer,
    challenger: Offer,
    price: Option<&StepPrice>,
    base_rows: usize,
) -> bool {
    let steps = price.map(|p| {
        (
            p.of(base_rows + holder.len),
            p.of(base_rows + challenger.len),
        )
    });
    leads(holder, challenger, steps)
}

/// [`takes_lead`] with the prices of the holder's and the challenger's steps, if known.
fn leads(holder: Offer, challenger: Offer, steps: Option<(f64, f64)>) -> bool {
    match (holder.expected, challenger.expected) {
        (Some(h), Some(c)) => match steps {
            Some((hp, cp)) => (1.0 + c) / cp > (1.0 + h) / hp,
            None => c > h,
        },
        _ => challenger.evidence > holder.evidence,
    }
}

/// The drafters that compete for a step's lead, in the decoder's order: the text's and the
/// corpus's drafts compete ([`takes_lead`]), the pool's leads only where neither drafts.
pub const TEXT: usize = 0;
pub const CORPUS: usize = 1;
pub const POOL: usize = 2;
const PARTS: usize = 3;

/// Chooses the lengths of the drafters of [`TEXT`], [`CORPUS`] and [`POOL`] (those present; a
/// drafter alone is the only one present) together, once enough positions were recorded since
/// the last choice or the price of a step's rows changed ([`DraftLengths::set_price`]): by
/// replaying every recorded position of the generation exactly as the decoder's steps would
/// cross them with a set of lengths (at each position the text's and the corpus's
/// drafts of those lengths compete for the lead by [`takes_lead`], on every decided draft's
/// right tokens; where neither drafts, the pool's; the step costs the price of its rows and
/// advances past the lead's right tokens), by coordinate descent from the evidence rule (see
/// the module documentation). The price and the rows of the rest of a step are the first
/// present drafter's. Without a price the drafts follow their evidence.
pub fn choose_together(mut parts: [Option<&mut DraftLengths>; PARTS]) {
    let Some(first) = parts.iter().flatten().next() else {
        return;
    };
    let (price, base) = (first.price.clone(), first.base_rows);
    let Some(price) = price else {
        for p in parts.iter_mut().flatten() {
            p.pick = None;
            p.repriced = false;
        }
        return;
    };
    let Some(joint) = Joint::of(&parts) else {
        return;
    };
    let due = |p: &DraftLengths| {
        p.repriced || p.records.len() >= p.picked_at + REPICK.max(p.picked_at / 16)
    };
    if !parts.iter().flatten().any(|p| due(p)) {
        return;
    }
    let max = parts.iter().flatten().map(|p| p.max).max().unwrap_or(0);
    let prices: Vec<f64> = (0..=max).map(|l| price.of(base + l)).collect();
    let picks = joint.choose(&parts, &prices);
    for (k, p) in parts.iter_mut().enumerate() {
        if let Some(p) = p {
            p.pick = Some(picks[k]);
            p.picked_at = p.records.len();
            p.repriced = false;
        }
    }
}

/// The positions every drafter of [`choose_together`] recorded: per position and drafter, the
/// draft's bucket (or [`NO_DRAFT`]) and its right tokens.
struct Joint {
    /// Text position of the first row.
    #[cfg(test)]
    first: usize,
    rows: Vec<[Record; PARTS]>,
}

impl Joint {
    /// The positions from the first one any drafter recorded to the first one some drafter has
    /// not recorded (`None`: none). A draft the text has not decided yet matched every token
    /// committed after it so far, and a step there could commit no more: it counts those.
    fn of(parts: &[Option<&mut DraftLengths>; PARTS]) -> Option<Self> {
        let recording = || parts.iter().flatten().filter(|p| !p.records.is_empty());
        let start = recording().map(|p| p.start).min()?;
        let end = recording().map(|p| p.start + p.records.len()).min()?;
        let rows: Vec<[Record; PARTS]> = (start..end)
            .map(|at| {
                std::array::from_fn(|k| {
                    let Some(p) = parts[k].as_ref() else {
                        return NO_DRAFT_RECORD;
                    };
                    match at.checked_sub(p.start).and_then(|i| p.records.get(i)) {
                        Some(r) if r.matched == UNDECIDED => Record {
                            matched: p.written.saturating_sub(at).min(p.max) as u16,
                            ..*r
                        },
                        Some(r) => *r,
                        None => NO_DRAFT_RECORD,
                    }
                })
            })
            .collect();
        (!rows.is_empty()).then_some(Self {
            #[cfg(test)]
            first: start,
            rows,
        })
    }

    /// Time per committed token of the decoder's steps over the positions with `lengths`
    /// (per drafter and bucket), the text's and the corpus's drafts weighed on `expected` (per
    /// drafter, bucket and length), `prices` by draft length.
    fn replay(
        &self,
        lengths: &[[usize; BUCKETS]; PARTS],
        expected: &[Vec<Vec<f64>>; PARTS],
        prices: &[f64],
    ) -> f64 {
        let (mut at, mut time) = (0, 0.0);
        while let Some(r) = self.rows.get(at) {
            // (length, right tokens, offer) of a drafter's draft here, if it drafts.
            let offer = |k: usize| {
                let rec = r[k];
                if rec.bucket == NO_DRAFT {
                    return None;
                }
                let b = rec.bucket as usize;
                let len = lengths[k][b];
                (len > 0).then(|| {
                    let o = Offer {
                        evidence: 1 << b,
                        len,
                        expected: Some(expected[k][b][len]),
                    };
                    (len, rec.matched as usize, o)
                })
            };
            let lead = match (offer(TEXT), offer(CORPUS)) {
                (Some(t), Some(c)) => {
                    if leads(t.2, c.2, Some((prices[t.0], prices[c.0]))) {
                        Some(c)
                    } else {
                        Some(t)
                    }
                }
                (t, c) => t.or(c).or_else(|| offer(POOL)),
            };
            let (len, right) = lead.map_or((0, 0), |(l, m, _)| (l, m));
            time += prices[len];
            at += 1 + right.min(len);
        }
        time / at.max(1) as f64
    }

    /// Per drafter, bucket and length below `lengths`: the right tokens its decided drafts
    /// got on average.
    fn expected(
        parts: &[Option<&mut DraftLengths>; PARTS],
        lengths: usize,
    ) -> [Vec<Vec<f64>>; PARTS] {
        std::array::from_fn(|k| match &parts[k] {
            Some(p) => (0..BUCKETS)
                .map(|b| {
                    (0..lengths)
                        .map(|l| p.expected_right(1 << b, l).unwrap_or(0.0))
                        .collect()
                })
                .collect(),
            None => Vec::new(),
        })
    }

    /// The lengths of least replayed time per token, by coordinate descent from the evidence
    /// rule, for the drafters present.
    fn choose(&self, parts: &[Option<&mut DraftLengths>; PARTS], prices: &[f64]) -> [Pick; PARTS] {
        let mut drafted = [[false; BUCKETS]; PARTS];
        for r in &self.rows {
            for k in 0..PARTS {
                if r[k].bucket != NO_DRAFT {
                    drafted[k][r[k].bucket as usize] = true;
                }
            }
        }
        let expected = Self::expected(parts, prices.len());
        let candidates: [Vec<usize>; PARTS] = std::array::from_fn(|k| {
            parts[k]
                .as_ref()
                .map_or(Vec::new(), |p| p.candidates().collect())
        });
        let mut lengths: [[usize; BUCKETS]; PARTS] = std::array::from_fn(|k| {
            std::array::from_fn(|b| parts[k].as_ref().map_or(0, |p| p.reach(1 << b)))
        });
        let mut best = self.replay(&lengths, &expected, prices);
        for _ in 0..ROUNDS {
            let mut changed = false;
            for k in 0..PARTS {
                for b in (0..BUCKETS).filter(|&b| drafted[k][b]) {
                    for &l in &candidates[k] {
                        if l == lengths[k][b] {
                            continue;
                        }
                        let mut trial = lengths;
                        trial[k][b] = l;
                        let t = self.replay(&trial, &expected, prices);
                        if t < best * (1.0 - 1e-12) {
                            (best, lengths, changed) = (t, trial, true);
                        }
                    }
                }
            }
            if !changed {
                break;
            }
        }
        std::array::from_fn(|k| Pick {
            lengths: lengths[k],
            drafted: drafted[k],
        })
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

    /// The evidence rule against an enumeration of the lengths a draft may have.
    #[test]
    fn the_evidence_rule_is_the_longest_candidate_within_the_evidence() {
        for max in 0..70 {
            let d = DraftLengths::new(max, 1, None);
            let candidates: Vec<usize> = d.candidates().collect();
            for evidence in 0..100 {
                let want = candidates
                    .iter()
                    .copied()
                    .filter(|&l| l <= evidence.max(1))
                    .max()
                    .unwrap_or(0);
                assert_eq!(reach(evidence, max), want, "max {max}, evidence {evidence}");
            }
        }
    }

    #[test]
    fn undecided_drafts_reach_as_far_as_their_evidence() {
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

    /// Every record, by brute force: for each recorded draft, the committed tokens it matched
    /// from its position on, decided once the text departs from it or covers it.
    #[test]
    fn drafts_are_decided_by_the_text_that_follows() {
        let text: Vec<u32> = vec![1, 2, 3, 4, 5, 6, 7, 8];
        let mut d = DraftLengths::new(4, 1, None);
        // At 2: [3, 4, 9] matches 2; 3: [4, 5, 6, 7] matches 4; 4: nothing (5 is skipped, so
        // nothing either); 6: [7, 8, 9, 9] is undecided until the text goes on (2 right so
        // far); 7: [1] is wrong at once.
        d.note(2, 1, &[3, 4, 9]);
        d.note(3, 2, &[4, 5, 6, 7, 8, 9]);
        d.note(4, 3, &[]);
        d.note(6, 4, &[7, 8, 9, 9]);
        d.note(7, 16, &[1]);
        d.note(7, 1, &[8]);
        let undecided = Record {
            bucket: 0,
            matched: UNDECIDED,
        };
        let none = Record {
            bucket: NO_DRAFT,
            matched: 0,
        };
        assert_eq!(d.records.len(), 6, "positions 2 to 7, the second 7 ignored");
        // Five tokens decide the first (wrong at its third); the others wait.
        d.observe(&text[..5]);
        assert_eq!(d.scored(), vec![1, 0, 0, 0, 0]);
        assert_eq!(
            d.records[0],
            Record {
                matched: 2,
                ..undecided
            }
        );
        assert_eq!(d.decided(), 1, "the draft at 3 is undecided");
        d.observe(&text);
        assert_eq!(d.scored(), vec![1, 1, 0, 0, 1]);
        assert_eq!(d.decided(), 4, "the draft at 6 is undecided");
        d.observe(&[text.clone(), vec![9, 1]].concat());
        let rec = |bucket, matched| Record { bucket, matched };
        assert_eq!(
            d.records,
            vec![rec(0, 2), rec(1, 4), none, none, rec(2, 3), rec(4, 0)]
        );
        assert_eq!(d.decided(), 6);
        assert_eq!(d.scored(), vec![1, 1, 1, 0, 1]);
        assert_eq!(d.matched[1][4], 1, "capped at the longest draft");
        d.reset();
        assert_eq!(d.scored(), vec![0; 5]);
        assert_eq!(d.expected_right(1, 3), None);
    }

    /// A text of distinct tokens and a learner that recorded, at every position from 0 on, a
    /// draft on `evidence` context tokens matching `matched` tokens (`None`: no draft); every
    /// draft decided.
    fn recorded(
        specs: &[Option<(usize, usize)>],
        max: usize,
        base_rows: usize,
        price: Option<StepPrice>,
    ) -> DraftLengths {
        let text: Vec<u32> = (0..(specs.len() + max + 1) as u32).collect();
        let mut d = DraftLengths::new(max, base_rows, price);
        for (at, spec) in specs.iter().enumerate() {
            let draft = match *spec {
                None => Vec::new(),
                Some((_, m)) => {
                    let mut draft = text[at..at + max].to_vec();
                    if m < max {
                        draft[m] = u32::MAX;
                    }
                    draft
                }
            };
            d.note(at, spec.map_or(0, |(e, _)| e), &draft);
        }
        d.observe(&text);
        assert_eq!(d.decided(), specs.len());
        d
    }

    #[test]
    fn expected_right_is_the_mean_over_the_positions_of_the_bucket() {
        let specs = [Some((1, 0)), Some((1, 3)), None, Some((1, 7)), Some((4, 2))];
        let d = recorded(&specs, 15, 1, None);
        assert_eq!(d.expected_right(1, 7), Some(10.0 / 3.0));
        assert_eq!(d.expected_right(1, 1), Some(2.0 / 3.0));
        assert_eq!(d.expected_right(1, 0), Some(0.0));
        assert_eq!(d.expected_right(5, 1), Some(1.0));
        assert_eq!(d.expected_right(16, 7), None, "nothing on long contexts");
    }

    /// A drafter alone ([`choose_together`] with no other drafter): the replay's time per token,
    /// against a direct simulation of the steps on the text and the drafts as they were
    /// proposed, over the positions the replay covers: each step verifies the first `L[b]`
    /// tokens of the draft at its position and advances past the ones the text confirms (so far,
    /// for a draft the text has not decided yet).
    #[test]
    fn the_replay_of_a_drafter_alone_costs_what_a_direct_simulation_costs() {
        let price = StepPrice::new(|r| 1.0 + 0.05 * (r as f64).powf(1.3));
        for seed in 0..6 {
            let mut rng = Lcg(seed);
            let max = [3, 7, 15, 31][seed as usize % 4];
            // A text over a small alphabet; each position's draft is a noisy copy of the
            // text after it (or none), on random evidence.
            let text: Vec<u32> = (0..500).map(|_| rng.below(4) as u32).collect();
            let start = rng.below(20);
            let mut drafts = Vec::new();
            for at in start..text.len() {
                let draft: Vec<u32> = if rng.below(5) == 0 {
                    Vec::new()
                } else {
                    (0..1 + rng.below(max + 4))
                        .map(|j| match text.get(at + j) {
                            Some(&t) if rng.below(12) > 0 => t,
                            _ => rng.below(4) as u32,
                        })
                        .collect()
                };
                drafts.push((1 + rng.below(40), draft));
            }
            let mut d = DraftLengths::new(max, 3, Some(price.clone()));
            // Committed a few tokens at a time, each position recorded once it is passed.
            let mut len = start;
            while len < text.len() {
                let next = (len + 1 + rng.below(6)).min(text.len());
                for at in len..next {
                    let (e, draft) = &drafts[at - start];
                    d.note(at, *e, draft);
                }
                len = next;
                d.observe(&text[..len]);
            }
            // The decided end: the first draft the text neither departs from nor covers.
            let end = (start..text.len())
                .find(|&at| {
                    let draft = &drafts[at - start].1;
                    let draft = &draft[..draft.len().min(max)];
                    let written = &text[at..];
                    written.len() < draft.len() && written == &draft[..written.len()]
                })
                .unwrap_or(text.len());
            assert_eq!(d.start + d.decided(), end, "seed {seed}");
            let parts = [Some(&mut d), None, None];
            let joint = Joint::of(&parts).expect("recorded positions");
            // The replay covers every recorded position.
            let first = start;
            assert_eq!(joint.first, first, "seed {seed}");
            assert_eq!(joint.first + joint.rows.len(), text.len(), "every position");
            let prices: Vec<f64> = (0..=max).map(|l| price.of(3 + l)).collect();
            let expected = Joint::expected(&parts, max + 1);
            let candidates: Vec<usize> = parts[TEXT].as_ref().unwrap().candidates().collect();
            for _ in 0..20 {
                let lengths: [usize; BUCKETS] =
                    std::array::from_fn(|_| candidates[rng.below(candidates.len())]);
                let (mut at, mut time) = (first, 0.0);
                while at < text.len() {
                    let (e, draft) = &drafts[at - start];
                    let l = if draft.is_empty() {
                        0
                    } else {
                        lengths[bucket(*e)]
                    };
                    let right = draft[..l.min(draft.len())]
                        .iter()
                        .zip(&text[at..])
                        .take_while(|(a, b)| a == b)
                        .count();
                    time += price.of(3 + l);
                    at += 1 + right;
                }
                let direct = time / (at - first) as f64;
                let alone = [lengths, [0; BUCKETS], [0; BUCKETS]];
                let replayed = joint.replay(&alone, &expected, &prices);
                assert!(
                    (direct - replayed).abs() < 1e-9 * direct,
                    "seed {seed} {lengths:?}: {direct} against {replayed}"
                );
            }
        }
    }

    /// Random records over few buckets, with matches that run in stretches (so that buckets
    /// lead into each other as on real text).
    fn random_specs(
        rng: &mut Lcg,
        n: usize,
        buckets: usize,
        max: usize,
    ) -> Vec<Option<(usize, usize)>> {
        let mut specs = Vec::new();
        while specs.len() < n {
            if rng.below(4) == 0 {
                specs.push(None);
                continue;
            }
            let run = rng.below(2 * max);
            let e0 = 1 << rng.below(buckets);
            for k in (0..=run).rev() {
                let evidence = (e0 + run - k).min((1 << buckets) - 1);
                specs.push(Some((evidence, k.min(max))));
            }
        }
        specs.truncate(n);
        specs
    }

    /// Time per committed token of steps drafting `lengths[bucket]` tokens over `specs` (as
    /// [`recorded`] takes them), stepped through directly from the first: a step at a draft
    /// of `matched` right tokens commits `1 + min(matched, length)` tokens and costs
    /// `price(base_rows + length)`, one without a draft `price(base_rows)`.
    fn spec_time(
        specs: &[Option<(usize, usize)>],
        lengths: &[usize; BUCKETS],
        price: &StepPrice,
        base_rows: usize,
    ) -> f64 {
        let (mut at, mut time) = (0, 0.0);
        while let Some(spec) = specs.get(at) {
            let (l, matched) = spec.map_or((0, 0), |(e, m)| (lengths[bucket(e)], m));
            time += price.of(base_rows + l);
            at += 1 + matched.min(l);
        }
        time / at as f64
    }

    /// A drafter alone ([`choose_together`] with no other drafter): against a direct
    /// simulation of the positions the choice replays, no single bucket's change of length is
    /// faster, and on small cases no set of lengths at all; the drafter then drafts the chosen
    /// lengths.
    #[test]
    fn the_choice_of_a_drafter_alone_is_a_local_optimum_and_on_small_cases_the_best() {
        let prices = [
            StepPrice::new(|r| 1.0 + 0.023 * (r as f64 - 1.0)),
            StepPrice::new(|r| 1.0 + 0.003 * r as f64),
            StepPrice::new(|r| 0.6 + 0.4 * r as f64),
            StepPrice::new(|r| 1.0 + 0.1 * (r as f64).sqrt()),
        ];
        let mut differs = 0;
        for seed in 0..24 {
            let mut rng = Lcg(100 + seed);
            let buckets = 2 + seed as usize % 2;
            let max = [3, 7, 15][seed as usize % 3];
            let price = prices[seed as usize % prices.len()].clone();
            let n = 60 + rng.below(200);
            let specs = random_specs(&mut rng, n, buckets, max);
            let mut d = recorded(&specs, max, 2, Some(price.clone()));
            choose_together([Some(&mut d), None, None]);
            let pick = d.pick.expect("recorded positions and a price");
            // The positions the choice replays (all of them), and the buckets drafted there.
            let replayed = &specs[..];
            let drafted: [bool; BUCKETS] = std::array::from_fn(|b| {
                replayed
                    .iter()
                    .any(|s| s.is_some_and(|(e, _)| bucket(e) == b))
            });
            assert_eq!(pick.drafted, drafted, "seed {seed}");
            let time = |lengths: &[usize; BUCKETS]| spec_time(replayed, lengths, &price, 2);
            let chosen = time(&pick.lengths);
            let candidates: Vec<usize> = d.candidates().collect();
            // No single bucket's change is better.
            for b in 0..BUCKETS {
                for &l in &candidates {
                    let mut trial = pick.lengths;
                    trial[b] = l;
                    assert!(time(&trial) >= chosen * (1.0 - 1e-9), "seed {seed}");
                }
            }
            // Every set of the drafted buckets' lengths: none better.
            let mut best = f64::INFINITY;
            let mut set = pick.lengths;
            let drafted: Vec<usize> = (0..BUCKETS).filter(|&b| drafted[b]).collect();
            for code in 0..candidates.len().pow(drafted.len() as u32) {
                let mut c = code;
                for &b in &drafted {
                    set[b] = candidates[c % candidates.len()];
                    c /= candidates.len();
                }
                best = best.min(time(&set));
            }
            assert!(
                chosen <= best * (1.0 + 1e-9),
                "seed {seed}: {chosen} > {best}"
            );
            differs += usize::from(
                pick.lengths[..buckets]
                    .iter()
                    .collect::<std::collections::HashSet<_>>()
                    .len()
                    > 1,
            );
            // The lengths are those of the pick; the others, not measured yet, follow their
            // evidence.
            for b in 0..BUCKETS {
                let e = 1 << b;
                let want = if pick.drafted[b] {
                    pick.lengths[b]
                } else {
                    reach(e, max)
                };
                assert_eq!(d.length(e), want);
            }
        }
        assert!(
            differs > 5,
            "the cases must exercise different lengths per bucket"
        );
    }

    /// The lengths of a drafter alone are chosen once [`REPICK`] positions are recorded, again
    /// once as many more are, and at the next chance after its price changed; before the first
    /// choice a new price waits for it, and without a price the drafts follow their evidence.
    #[test]
    fn the_lengths_are_chosen_again_as_the_text_grows_or_the_price_changes() {
        // Drafts on one-token contexts that are all right: the longest pays where rows are
        // nearly free, none where a step's time grows with the square of its rows.
        let specs = vec![Some((1, 15)); 2 * REPICK];
        let free = StepPrice::new(|r| 1.0 + 0.001 * r as f64);
        let dear = StepPrice::new(|r| (r * r) as f64);
        let mut d = recorded(&specs[..REPICK - 1], 15, 1, Some(free.clone()));
        choose_together([Some(&mut d), None, None]);
        assert_eq!(
            (d.pick, d.length(1)),
            (None, 1),
            "too few positions: the evidence"
        );
        d.set_price(Some(dear.clone()));
        choose_together([Some(&mut d), None, None]);
        assert_eq!(d.pick, None, "the first choice waits for its positions");
        let mut d = recorded(&specs[..REPICK], 15, 1, Some(free.clone()));
        choose_together([Some(&mut d), None, None]);
        assert_eq!((d.picked_at, d.length(1)), (REPICK, 15));
        d.set_price(Some(dear.clone()));
        assert_eq!(d.length(1), 15, "chosen at the next chance");
        choose_together([Some(&mut d), None, None]);
        assert_eq!((d.picked_at, d.length(1)), (REPICK, 0), "chosen at once");
        choose_together([Some(&mut d), None, None]);
        d.set_price(None);
        choose_together([Some(&mut d), None, None]);
        assert_eq!((d.pick, d.length(1)), (None, 1), "no price: the evidence");
        // Grown by REPICK positions, it chooses again.
        let mut d = recorded(&specs[..2 * REPICK - 1], 15, 1, Some(dear.clone()));
        d.picked_at = REPICK;
        d.pick = Some(Pick {
            lengths: [7; BUCKETS],
            drafted: [true; BUCKETS],
        });
        choose_together([Some(&mut d), None, None]);
        assert_eq!(d.length(1), 7, "one position short");
        let mut d = recorded(&specs[..2 * REPICK], 15, 1, Some(dear));
        d.picked_at = REPICK;
        d.pick = Some(Pick {
            lengths: [7; BUCKETS],
            drafted: [true; BUCKETS],
        });
        choose_together([Some(&mut d), None, None]);
        assert_eq!((d.picked_at, d.length(1)), (2 * REPICK, 0));
    }

    /// Three drafters (text, corpus, pool) that recorded a noisy copy of a random text (or no
    /// draft) at every position as it was committed a few tokens at a time: the text, each
    /// position's drafts with their evidence, and the learners.
    #[allow(clippy::type_complexity)]
    fn three_drafters(
        seed: u64,
        max: usize,
        price: &StepPrice,
    ) -> (
        Vec<u32>,
        Vec<[(usize, Vec<u32>); PARTS]>,
        [DraftLengths; PARTS],
    ) {
        let mut rng = Lcg(seed);
        let text: Vec<u32> = (0..300 + rng.below(300))
            .map(|_| rng.below(3) as u32)
            .collect();
        let drafts: Vec<[(usize, Vec<u32>); PARTS]> = (0..text.len())
            .map(|at| {
                std::array::from_fn(|k| {
                    if rng.below(4) == 0 {
                        return (0, Vec::new());
                    }
                    let noise = [6, 3, 10][k];
                    // Drafts run as long as asked (the budget, the longest).
                    let draft = (0..max + rng.below(3))
                        .map(|j| match text.get(at + j) {
                            Some(&t) if rng.below(noise) > 0 => t,
                            _ => rng.below(3) as u32,
                        })
                        .collect();
                    (if k == POOL { 1 } else { 1 + rng.below(20) }, draft)
                })
            })
            .collect();
        let mut parts: [DraftLengths; PARTS] =
            std::array::from_fn(|_| DraftLengths::new(max, 2, Some(price.clone())));
        let start = 1 + rng.below(10);
        let mut len = start;
        while len < text.len() {
            let next = (len + 1 + rng.below(6)).min(text.len());
            for (k, p) in parts.iter_mut().enumerate() {
                for (at, d) in drafts.iter().enumerate().take(next).skip(len) {
                    p.note(at, d[k].0, &d[k].1);
                }
                p.observe(&text[..next]);
            }
            len = next;
        }
        (text, drafts, parts)
    }

    /// The joint replay's time per token, against a direct simulation of the decoder's steps
    /// on the text and the drafts as they were proposed: at each position the text's and the
    /// corpus's drafts, cut to their lengths, compete by [`takes_lead`], the pool's drafts
    /// where neither does, and the step advances past the lead's tokens the text confirms.
    #[test]
    fn the_joint_replay_costs_what_a_direct_simulation_of_the_decoder_costs() {
        let price = StepPrice::new(|r| 1.0 + 0.03 * (r as f64).powf(1.2));
        for seed in 0..6 {
            let max = [3, 7, 15][seed as usize % 3];
            let (text, drafts, mut parts) = three_drafters(seed, max, &price);
            let [t, c, p] = &mut parts;
            let refs = [Some(t), Some(c), Some(p)];
            let joint = Joint::of(&refs).expect("recorded positions");
            assert_eq!(joint.first + joint.rows.len(), text.len(), "every position");
            let first = refs.iter().flatten().map(|p| p.start).min();
            assert_eq!(
                Some(joint.first),
                first,
                "from the first recorded position on"
            );
            let prices: Vec<f64> = (0..=max).map(|l| price.of(2 + l)).collect();
            let expected = Joint::expected(&refs, max + 1);
            let mut rng = Lcg(50 + seed);
            let candidates: Vec<usize> = refs[0].as_ref().unwrap().candidates().collect();
            for _ in 0..20 {
                let lengths: [[usize; BUCKETS]; PARTS] = std::array::from_fn(|_| {
                    std::array::from_fn(|_| candidates[rng.below(candidates.len())])
                });
                let (mut at, mut time) = (joint.first, 0.0);
                while at < text.len() {
                    let cut = |k: usize| {
                        let (e, d) = &drafts[at][k];
                        let l = lengths[k][bucket(*e)].min(d.len());
                        (!d.is_empty() && l > 0).then(|| (*e, d[..l].to_vec()))
                    };
                    let offer = |k: usize, (e, d): &(usize, Vec<u32>)| Offer {
                        evidence: *e,
                        len: d.len(),
                        expected: refs[k].as_ref().unwrap().expected_right(*e, d.len()),
                    };
                    let lead = match (cut(TEXT), cut(CORPUS)) {
                        (Some(t), Some(c)) => {
                            let (ot, oc) = (offer(TEXT, &t), offer(CORPUS, &c));
                            Some(if takes_lead(ot, oc, Some(&price), 2) {
                                c
                            } else {
                                t
                            })
                        }
                        (t, c) => t.or(c).or_else(|| cut(POOL)),
                    };
                    let draft = lead.map_or(Vec::new(), |(_, d)| d);
                    let right = draft
                        .iter()
                        .zip(&text[at..])
                        .take_while(|(a, b)| a == b)
                        .count();
                    time += price.of(2 + draft.len());
                    at += 1 + right;
                }
                let direct = time / (at - joint.first) as f64;
                let replayed = joint.replay(&lengths, &expected, &prices);
                assert!(
                    (direct - replayed).abs() < 1e-9 * direct,
                    "seed {seed} {lengths:?}: {direct} against {replayed}"
                );
            }
        }
    }

    /// The joint choice: no single drafter's bucket does better with another length, and each
    /// drafter then drafts the chosen lengths.
    #[test]
    fn the_joint_choice_is_a_local_optimum_and_each_drafter_follows_it() {
        let prices = [
            StepPrice::new(|r| 1.0 + 0.023 * (r as f64 - 1.0)),
            StepPrice::new(|r| 1.0 + 0.003 * r as f64),
            StepPrice::new(|r| 0.6 + 0.4 * r as f64),
        ];
        let mut differs = 0;
        for seed in 0..9 {
            let max = [3, 7, 15][seed as usize % 3];
            let price = prices[seed as usize % prices.len()].clone();
            let (_, _, mut parts) = three_drafters(100 + seed, max, &price);
            {
                let [t, c, p] = &mut parts;
                // Every recorded position is new: a choice is due.
                choose_together([Some(t), Some(c), Some(p)]);
            }
            let [t, c, p] = &mut parts;
            let refs = [Some(t), Some(c), Some(p)];
            let joint = Joint::of(&refs).unwrap();
            let p: Vec<f64> = (0..=max).map(|l| price.of(2 + l)).collect();
            let expected = Joint::expected(&refs, max + 1);
            let picks: [Pick; PARTS] =
                std::array::from_fn(|k| refs[k].as_ref().unwrap().pick.unwrap());
            let lengths: [[usize; BUCKETS]; PARTS] = std::array::from_fn(|k| picks[k].lengths);
            let chosen = joint.replay(&lengths, &expected, &p);
            let candidates: Vec<usize> = refs[0].as_ref().unwrap().candidates().collect();
            for k in 0..PARTS {
                for b in (0..BUCKETS).filter(|&b| picks[k].drafted[b]) {
                    for &l in &candidates {
                        let mut trial = lengths;
                        trial[k][b] = l;
                        let t = joint.replay(&trial, &expected, &p);
                        assert!(t >= chosen * (1.0 - 1e-9), "seed {seed}: {k} {b} {l}");
                    }
                    assert_eq!(refs[k].as_ref().unwrap().length(1 << b), lengths[k][b]);
                }
            }
            differs += usize::from(lengths[TEXT] != lengths[CORPUS]);
        }
        assert!(differs > 2, "the drafters must get different lengths");
    }

    /// A draft recorded open and decided later counts like one recorded decided.
    #[test]
    fn open_drafts_are_decided_in_place() {
        let mut a = DraftLengths::new(7, 1, None);
        let mut b = DraftLengths::new(7, 1, None);
        a.note_open(4, 2);
        a.note_open(5, 9);
        a.note(6, 0, &[]);
        a.observe(&[0; 7]);
        assert_eq!(a.decided(), 0, "open drafts wait");
        assert_eq!(a.record(5), Some((Some(bucket(9)), None)));
        a.note_decided(5, 9, 3);
        a.note_decided(4, 2, 1);
        a.observe(&[0; 7]);
        for (at, e, m) in [(4, 2, 1), (5, 9, 3)] {
            b.note_decided(at, e, m);
        }
        b.note(6, 0, &[]);
        b.observe(&[0; 7]);
        assert_eq!(a.records, b.records);
        assert_eq!(a.matched, b.matched);
        assert_eq!(a.decided(), 3);
    }

    /// The time of one choice of a drafter's lengths alone after 256 to 8192 recorded
    /// positions (it replays all of them): `cargo test --release --lib -- --ignored
    /// choice_cost --nocapture`.
    #[test]
    #[ignore]
    fn choice_cost() {
        let price = StepPrice::new(|r| 1.0 + 0.023 * (r as f64 - 1.0));
        for n in [256, 1024, 4096, 8192] {
            let mut rng = Lcg(n as u64);
            let specs = random_specs(&mut rng, n, 5, 31);
            let mut d = recorded(&specs, 31, 1, Some(price.clone()));
            let t = std::time::Instant::now();
            let reps = 20;
            for _ in 0..reps {
                // The price set again: the next choice is due.
                d.set_price(Some(price.clone()));
                choose_together([Some(&mut d), None, None]);
            }
            let choice = t.elapsed().as_secs_f64() / reps as f64;
            eprintln!(
                "{n} positions: {:.1} us a choice, lengths {:?}",
                1e6 * choice,
                d.pick.unwrap().lengths
            );
        }
    }

    /// `d` after [`choose_together`] with no other drafter.
    fn chosen_alone(mut d: DraftLengths) -> DraftLengths {
        choose_together([Some(&mut d), None, None]);
        d
    }

    #[test]
    fn the_price_of_rows_sets_the_length() {
        // Runs of 0 to 9 right tokens on one-token contexts.
        let specs: Vec<Option<(usize, usize)>> = (0..300)
            .map(|i| Some((1, (9 - i % 10).min(i % 13))))
            .collect();
        let length =
            |price: StepPrice| chosen_alone(recorded(&specs, 15, 1, Some(price))).length(1);
        // Rows nearly free up to 16 (a GPU): the longest candidate that saves steps.
        assert_eq!(length(StepPrice::new(|r| 1.0 + 0.001 * r as f64)), 15);
        // Every row as dear as a token (a CPU): no draft pays for its rows.
        assert_eq!(length(StepPrice::new(|r| r as f64)), 0);
        // Without a price, the evidence.
        assert_eq!(chosen_alone(recorded(&specs, 15, 1, None)).length(1), 1);
    }

    /// A text of predictable runs (1 to 40 tokens) between stretches of 5 to 30 tokens no
    /// drafter knows, and for every position the tokens a draft from there gets right (the rest
    /// of its run) and its evidence (1 to 3 tokens at the run's start, growing along it).
    fn runs_text(seed: u64, len: usize) -> (Vec<u32>, Vec<usize>, Vec<usize>) {
        let mut rng = Lcg(seed);
        let (mut text, mut predictable, mut evidence) = (Vec::new(), Vec::new(), Vec::new());
        while text.len() < len {
            for _ in 0..5 + rng.below(26) {
                text.push(rng.below(50_000) as u32);
                predictable.push(0);
                evidence.push(1);
            }
            let run = 1 + rng.below(40);
            let context = 1 + rng.below(3);
            for k in 0..run {
                text.push(rng.below(50_000) as u32);
                predictable.push(run - k);
                evidence.push(context + k);
            }
        }
        text.truncate(len);
        predictable.truncate(len);
        evidence.truncate(len);
        (text, predictable, evidence)
    }

    /// Positions per unit of time of steps drafting `lengths[bucket]` tokens, stepped through
    /// the text directly from position `first` on: each step commits `1 + min(right, length)`
    /// tokens, `right` the rest of the run within the text (all a draft at the text's end can
    /// have confirmed so far).
    fn policy_rate(
        predictable: &[usize],
        evidence: &[usize],
        first: usize,
        lengths: &[usize; BUCKETS],
        price: &StepPrice,
    ) -> f64 {
        let len = predictable.len();
        let (mut at, mut time) = (first, 0.0);
        while at < len {
            let l = lengths[bucket(evidence[at])];
            time += price.of(1 + l);
            at += 1 + predictable[at].min(len - at).min(l);
        }
        (at - first) as f64 / time
    }

    /// A learner trained while steps drafted `running` tokens: the drafter (which knows the
    /// runs) records its full draft at every position the text passes; the steps commit what
    /// `running` tokens of their draft allow, and the lengths are chosen after each step as the
    /// decoder does ([`choose_together`], the drafter alone), then once more as the text ends.
    fn trained(
        text: &[u32],
        predictable: &[usize],
        evidence: &[usize],
        running: usize,
        price: &StepPrice,
    ) -> DraftLengths {
        let mut d = DraftLengths::new(31, 1, Some(price.clone()));
        let mut at = 0;
        while at < text.len() {
            let next = (at + 1 + predictable[at].min(running)).min(text.len());
            for p in at..next {
                let end = (p + predictable[p].min(31)).min(text.len());
                d.note(p, evidence[p], &[&text[p..end], &[u32::MAX]].concat());
            }
            at = next;
            d.observe(&text[..at]);
            choose_together([Some(&mut d), None, None]);
        }
        // The price set again: chosen over the text as it ends (the last choice may be up to a
        // sixteenth behind).
        d.set_price(Some(price.clone()));
        chosen_alone(d)
    }

    /// On a text of predictable runs, the lengths learned are the same whatever lengths ran
    /// (short drafts or long ones), and as fast in a direct simulation of the positions they
    /// were chosen on (the whole text) as the best set of lengths there (within
    /// 1 %), faster than every single length.
    #[test]
    fn the_learned_lengths_are_the_best_policy_of_a_direct_simulation() {
        // A 7B model's step on a GPU: each row beyond the first costs 2.3 % of a step.
        let price = StepPrice::new(|r| 1.0 + 0.023 * (r as f64 - 1.0));
        let candidates = [0, 1, 3, 7, 15, 31];
        for seed in [1, 2, 3] {
            let (text, predictable, evidence) = runs_text(seed, 6000);
            // The whole text is replayed.
            let first = 0;
            let rate =
                |l: &[usize; BUCKETS]| policy_rate(&predictable, &evidence, first, l, &price);
            let mut best = (0.0, [0; BUCKETS]);
            for code in 0..candidates.len().pow(BUCKETS as u32) {
                let mut c = code;
                let set: [usize; BUCKETS] = std::array::from_fn(|_| {
                    let l = candidates[c % candidates.len()];
                    c /= candidates.len();
                    l
                });
                let r = rate(&set);
                if r > best.0 {
                    best = (r, set);
                }
            }
            let single = candidates
                .iter()
                .map(|&l| rate(&[l; BUCKETS]))
                .fold(0.0, f64::max);
            let short = trained(&text, &predictable, &evidence, 1, &price);
            let long = trained(&text, &predictable, &evidence, 31, &price);
            let lengths = |d: &DraftLengths| -> [usize; BUCKETS] {
                std::array::from_fn(|b| d.length(1 << b))
            };
            assert_eq!(lengths(&short), lengths(&long), "seed {seed}");
            let learned = lengths(&short);
            assert!(
                rate(&learned) >= 0.99 * best.0 && rate(&learned) > single,
                "seed {seed}: learned {learned:?} ({:.4}) against the best {:?} ({:.4}), \
                 one length {single:.4}",
                rate(&learned),
                best.1,
                best.0
            );
        }
    }
}
