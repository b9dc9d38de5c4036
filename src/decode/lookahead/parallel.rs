//! Lookahead Parallelism (spec a.11): the step of [`LookaheadDecoder`] split across the
//! devices of a [`DeviceGroup`], each holding the whole model and its own copy of the cache.
//!
//! Every step, the window's columns are cut into contiguous chunks and the candidates into
//! contiguous slices, one of each per device ([`Partition`]). Device `d` runs, in one forward
//! pass, the pending token `t0`, its candidates, and its columns at every level (plus level 0
//! of the columns before them, which its level-0 rows attend to): [`StepLayout::build_share`].
//! Each device answers with token ids only (the argmax, or the seeded sampler's choice, of
//! each of its logit rows). The coordinator merges them into exactly the single-device step:
//! `y0` from device 0, the same [`verify`] over the candidates in their global order (so ties
//! go to the same candidate), the same new top level, n-grams, window shift and pool. Every
//! device then keeps `t0`; the device that held the winning candidate also keeps its rows, and
//! the others feed the accepted tokens in front of their next share (see [`DeviceGroup`]).
//!
//! The devices exchange ids over host channels; see `model/group.rs` for NCCL.

use std::ops::Range;
use std::sync::Arc;

use super::{LookaheadConfig, LookaheadDecoder, StepLayout};
use crate::decode::{Decoder, DraftCorpus, SequenceView, StepOutcome};
use crate::model::{CausalLm, Pick, Share};
use crate::sampling::Sampler;
use crate::{LadeError, Result};

use super::verify::verify;

/// `0..n` cut into `parts` contiguous ranges whose sizes differ by at most one (the first
/// ones are the larger); ranges past `n` are empty.
pub fn split(n: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.max(1);
    let (base, extra) = (n / parts, n % parts);
    let mut start = 0;
    (0..parts)
        .map(|d| {
            let len = base + usize::from(d < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .collect()
}

/// Which window columns and which candidates each device computes in one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Window columns (0 = the pending token's column) of each device.
    pub columns: Vec<Range<usize>>,
    /// Candidate indices (into the step's candidate list) of each device.
    pub candidates: Vec<Range<usize>>,
}

impl Partition {
    /// Splits `columns` window columns and `candidates` candidates over `devices` devices.
    /// Columns to the right carry a longer level-0 prefix, so the first devices get the
    /// spare column and the spare candidate.
    pub fn new(columns: usize, candidates: usize, devices: usize) -> Self {
        Self {
            columns: split(columns, devices),
            candidates: split(candidates, devices),
        }
    }

    pub fn devices(&self) -> usize {
        self.columns.len()
    }

    /// The device computing window column `j`.
    pub fn column_owner(&self, j: usize) -> Option<usize> {
        self.columns.iter().position(|r| r.contains(&j))
    }

    /// The device verifying candidate `c`.
    pub fn candidate_owner(&self, c: usize) -> Option<usize> {
        self.candidates.iter().position(|r| r.contains(&c))
    }
}

/// Per-step counters of the split.
#[derive(Debug, Clone, Default)]
struct ParallelStats {
    /// Rows of the largest share, summed over parallel steps (what bounds a step's time).
    max_share_tokens: usize,
    /// Rows of every share (missing tokens fed included), summed over parallel steps.
    all_share_tokens: usize,
    parallel_steps: usize,
}

/// [`LookaheadDecoder`] with its steps split across the devices of a [`DeviceGroup`] (the
/// `lm` given to [`Decoder::step`] must be one: see [`CausalLm::as_group`]).
///
/// [`DeviceGroup`]: crate::model::DeviceGroup
#[derive(Debug, Clone)]
pub struct ParallelLookaheadDecoder {
    inner: LookaheadDecoder,
    stats: ParallelStats,
}

impl ParallelLookaheadDecoder {
    pub fn new(config: LookaheadConfig) -> Result<Self> {
        if config.window == 0 {
            return Err(LadeError::InvalidArgument(
                "Lookahead Parallelism splits the window's columns over the devices: it needs \
                 W ≥ 1"
                    .into(),
            ));
        }
        Ok(Self {
            inner: LookaheadDecoder::new(config)?,
            stats: ParallelStats::default(),
        })
    }

    /// This decoder drafting from `corpus` (see [`LookaheadDecoder::with_corpus`]).
    pub fn with_corpus(mut self, corpus: Option<Arc<DraftCorpus>>) -> Self {
        self.inner = self.inner.with_corpus(corpus);
        self
    }

    /// The single-device state (window, pool, counters), identical to what a
    /// [`LookaheadDecoder`] has after the same steps.
    pub fn inner(&self) -> &LookaheadDecoder {
        &self.inner
    }
}

impl Decoder for ParallelLookaheadDecoder {
    fn name(&self) -> String {
        format!("{}-parallel", self.inner.name())
    }

    fn begin(&mut self, prompt: &[u32]) -> Result<()> {
        self.stats = ParallelStats::default();
        self.inner.begin(prompt)
    }

    fn step(
        &mut self,
        lm: &mut dyn CausalLm,
        seq: SequenceView<'_>,
        sampler: &Sampler,
    ) -> Result<StepOutcome> {
        let max_match = self.inner.max_match();
        let pending = *seq
            .tokens
            .last()
            .ok_or_else(|| LadeError::InvalidArgument("empty sequence".into()))?;
        let Some(window) = self.inner.window.as_ref() else {
            return Err(LadeError::InvalidArgument(
                "lookahead step before begin".into(),
            ));
        };
        let p = lm.cache_len();
        let (candidates, corpus_first) = self.inner.candidates(seq.tokens, window.is_warm());
        let arity = self.inner.config.ngram - 1;
        // The same rule as one device, so that both take the same steps: near the context
        // limit, one token by plain decoding (every device runs it).
        let full = StepLayout::full_len(window, candidates.len(), arity);
        if p + full > lm.context_size() {
            return self.inner.fallback(lm, seq, sampler);
        }
        let Some(group) = lm.as_group() else {
            return Err(LadeError::InvalidArgument(
                "Lookahead Parallelism needs a device group (--devices)".into(),
            ));
        };
        let parts = Partition::new(window.columns(), candidates.len(), group.len());
        let layouts: Vec<StepLayout> = (0..parts.devices())
            .map(|d| {
                StepLayout::build_share(
                    pending,
                    p as u32,
                    window,
                    &candidates[parts.candidates[d].clone()],
                    parts.columns[d].clone(),
                )
            })
            .collect();

        // How each device turns its rows into ids: the sampler's choice for t0 and candidate
        // rows (whose histories are known up front: a candidate row is only used when its
        // prefix was accepted), the argmax for the window's top level.
        let index = seq.next_output_index();
        let picks: Vec<Pick> = if sampler.is_argmax() {
            vec![Pick::Argmax; parts.devices()]
        } else {
            let sampler = Arc::new(sampler.clone());
            let history = Arc::new(seq.tokens.to_vec());
            (0..parts.devices())
                .map(|d| {
                    let l = &layouts[d];
                    let mut rows = vec![None; l.logit_rows.len()];
                    rows[l.t0_logits()] = Some((Vec::new(), index));
                    for (k, c) in parts.candidates[d].clone().enumerate() {
                        for i in 0..arity {
                            rows[l.candidate_logits(k, i)] =
                                Some((candidates[c][..=i].to_vec(), index + i as u64 + 1));
                        }
                    }
                    Pick::Choose {
                        sampler: sampler.clone(),
                        history: history.clone(),
                        rows,
                    }
                })
                .collect()
        };
        let shares: Vec<Share<'_>> = layouts
            .iter()
            .zip(picks)
            .map(|(l, pick)| Share {
                batch: l.batch(),
                pick,
            })
            .collect();
        let missing: usize = group.device_missing().iter().sum();
        let ids = group.forward_shares(&shares)?;
        drop(shares);

        let id = |d: usize, row: usize| -> Result<u32> {
            ids.get(d).and_then(|v| v.get(row)).copied().ok_or_else(|| {
                LadeError::Device(format!("device {d} returned no id for its row {row}"))
            })
        };
        let y0 = id(0, layouts[0].t0_logits())?;
        let mut lost = None;
        let verdict = verify(&candidates, y0, max_match, &mut |c, i, _| {
            let found = parts.candidate_owner(c).and_then(|d| {
                let row = layouts[d].candidate_logits(c - parts.candidates[d].start, i);
                id(d, row).ok()
            });
            found.unwrap_or_else(|| {
                lost = Some(c);
                y0
            })
        });
        if let Some(c) = lost {
            return Err(LadeError::Device(format!(
                "no device answered for candidate {c}"
            )));
        }
        let new_top: Vec<u32> = (0..window.columns())
            .map(|j| {
                let d = parts
                    .column_owner(j)
                    .ok_or_else(|| LadeError::Device(format!("no device owns column {j}")))?;
                id(d, layouts[d].top_logits(j - parts.columns[d].start))
            })
            .collect::<Result<_>>()?;

        // Every device keeps t0; the winner's device also keeps the confirmed draft rows.
        let mut committed = vec![pending];
        committed.extend_from_slice(&verdict.tokens[..verdict.matched]);
        let winner = verdict
            .winner
            .and_then(|c| parts.candidate_owner(c).map(|d| (c, d)));
        let keep: Vec<Vec<usize>> = (0..parts.devices())
            .map(|d| {
                let mut rows = vec![0usize];
                if let Some((c, wd)) = winner {
                    if wd == d {
                        let local = c - parts.candidates[d].start;
                        rows.extend(
                            (0..verdict.matched).map(|i| layouts[d].candidate_logits(local, i)),
                        );
                    }
                }
                rows
            })
            .collect();
        group.commit_shares(p, &keep, &committed)?;

        self.stats.parallel_steps += 1;
        self.stats.max_share_tokens += layouts.iter().map(StepLayout::len).max().unwrap_or(0);
        self.stats.all_share_tokens += layouts.iter().map(StepLayout::len).sum::<usize>() + missing;
        Ok(self.inner.after_step(
            pending,
            &new_top,
            seq,
            verdict,
            (candidates.len(), corpus_first),
            full,
        ))
    }

    fn stats_json(&self) -> Option<serde_json::Value> {
        let mut v = self.inner.stats_json()?;
        let steps = self.stats.parallel_steps.max(1) as f64;
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "mean_max_share_tokens".into(),
                (self.stats.max_share_tokens as f64 / steps).into(),
            );
            o.insert(
                "mean_all_share_tokens".into(),
                (self.stats.all_share_tokens as f64 / steps).into(),
            );
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::lookahead::JacobiWindow;

    #[test]
    fn no_window_no_parallelism() {
        let e = ParallelLookaheadDecoder::new(LookaheadConfig::new(0, 8, 1)).unwrap_err();
        assert!(e.to_string().contains("W ≥ 1"), "{e}");
    }

    #[test]
    fn split_covers_every_index_once_in_order() {
        for n in 0..20 {
            for parts in 1..7 {
                let r = split(n, parts);
                assert_eq!(r.len(), parts);
                let flat: Vec<usize> = r.iter().flat_map(|x| x.clone()).collect();
                assert_eq!(flat, (0..n).collect::<Vec<_>>(), "n={n} parts={parts}");
                let sizes: Vec<usize> = r.iter().map(|x| x.len()).collect();
                assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
            }
        }
    }

    /// The shares' rows together are exactly the single-device step's rows: same
    /// (token, position) for every column at every level and every candidate token, each
    /// computed by exactly one device (level-0 prefixes and t0 aside), and each share's mask
    /// gives every row the same chain as in the full step.
    #[test]
    fn shares_partition_the_full_step() {
        for &(w, n, g, k) in &[
            (5, 4, 3, 2),
            (3, 3, 0, 3),
            (1, 2, 2, 3),
            (8, 5, 7, 3),
            (2, 4, 5, 4),
        ] {
            let prompt: Vec<u32> = (100..140).collect();
            let mut win = JacobiWindow::from_prompt(&prompt, w, n, 9);
            for warm in 0..n {
                let cands: Vec<Vec<u32>> = (0..g)
                    .map(|c| (0..n - 1).map(|i| (500 + 10 * c + i) as u32).collect())
                    .collect();
                let full = StepLayout::build(7, 60, &win, &cands);
                assert_eq!(full.len(), StepLayout::full_len(&win, g, n - 1));
                let parts = Partition::new(win.columns(), g, k);
                let mut tops = Vec::new();
                let mut cand_rows = Vec::new();
                for d in 0..k {
                    let share = StepLayout::build_share(
                        7,
                        60,
                        &win,
                        &cands[parts.candidates[d].clone()],
                        parts.columns[d].clone(),
                    );
                    assert_eq!(share.tokens[share.t0_logits()], 7);
                    assert_eq!(share.top_columns(), parts.columns[d].len());
                    for j in 0..share.top_columns() {
                        let r = share.logit_rows[share.top_logits(j)];
                        tops.push((
                            parts.columns[d].start + j,
                            share.tokens[r],
                            share.positions[r],
                        ));
                    }
                    for (local, c) in parts.candidates[d].clone().enumerate() {
                        for i in 0..n - 1 {
                            let r = share.candidate_logits(local, i);
                            cand_rows.push((c, i, share.tokens[r], share.positions[r]));
                        }
                    }
                }
                let want_tops: Vec<_> = (0..full.top_columns())
                    .map(|j| {
                        let r = full.logit_rows[full.top_logits(j)];
                        (j, full.tokens[r], full.positions[r])
                    })
                    .collect();
                assert_eq!(tops, want_tops, "W={w} N={n} K={k} warm={warm}");
                let want_cands: Vec<_> = (0..g)
                    .flat_map(|c| (0..n - 1).map(move |i| (c, i)))
                    .map(|(c, i)| {
                        let r = full.candidate_logits(c, i);
                        (c, i, full.tokens[r], full.positions[r])
                    })
                    .collect();
                assert_eq!(cand_rows, want_cands);
                let top: Vec<u32> = (0..win.columns() as u32).map(|x| 900 + x).collect();
                if win.is_warm() {
                    break;
                }
                win.advance(&top);
            }
        }
    }
}
