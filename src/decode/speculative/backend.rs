//! Where a step's rows run: one model, or the replicas of a device group (Lookahead
//! Parallelism, spec a.11).
//!
//! On a group, the lookahead outputs and the drafts are cut into contiguous slices, one of
//! each per device ([`Partition`]). Device `d` runs, in one forward pass, `t0`, its drafts and
//! the lookahead rows its outputs need ([`StepTree::share`]), and answers with token ids only
//! (the argmax, or the seeded sampler's choice, of each of its logit rows). The answers are put
//! back in the order of the whole step's logits, so the step verifies exactly as on one model
//! (ties go to the same draft). Every device then keeps `t0`; the device that held the winning
//! draft also keeps its rows, and the others feed the accepted tokens in front of their next
//! share (see [`DeviceGroup`]).

use std::ops::Range;
use std::sync::Arc;

use super::tree::{LookaheadRows, StepTree};
use crate::decode::device_group::{Answer, ChooseRows, DeviceGroup, Share};
use crate::decode::{RowOutputs, SequenceView};
use crate::model::{CausalLm, Logits};
use crate::sampling::{argmax, Sampler};
use crate::{LadeError, Result};

/// The rows of one step and what they were made from.
#[derive(Debug, Clone, Copy)]
pub struct StepPlan<'a> {
    pub pending: u32,
    /// Cache length before the step (the position of `pending`).
    pub past: usize,
    pub drafts: &'a [Vec<u32>],
    pub lookahead: &'a LookaheadRows,
    /// The whole step.
    pub tree: &'a StepTree,
}

/// Runs the rows of a step and keeps the accepted ones.
pub trait StepBackend {
    /// Committed positions in the cache.
    fn cache_len(&self) -> usize;
    /// Runs `plan` in one forward pass (per device); the outputs are indexed like the logits
    /// of `plan.tree`.
    fn run(
        &mut self,
        plan: &StepPlan<'_>,
        seq: SequenceView<'_>,
        sampler: &Sampler,
    ) -> Result<RowOutputs>;
    /// Ends the step: the cache keeps `t0` and the first `kept.len() - 1` tokens of draft
    /// `winner`; `kept` is `t0` followed by those tokens.
    fn keep(&mut self, plan: &StepPlan<'_>, winner: Option<usize>, kept: &[u32]) -> Result<()>;
}

/// A step on one model.
pub struct OneModel<'a>(pub &'a mut dyn CausalLm);

impl StepBackend for OneModel<'_> {
    fn cache_len(&self) -> usize {
        self.0.cache_len()
    }

    fn run(
        &mut self,
        plan: &StepPlan<'_>,
        _seq: SequenceView<'_>,
        sampler: &Sampler,
    ) -> Result<RowOutputs> {
        RowOutputs::forward(self.0, &plan.tree.batch(), sampler)
    }

    fn keep(&mut self, plan: &StepPlan<'_>, winner: Option<usize>, kept: &[u32]) -> Result<()> {
        let mut rows = vec![0usize];
        if let Some(c) = winner {
            rows.extend((0..kept.len() - 1).map(|i| plan.tree.draft_logits(c, i)));
        }
        self.0.keep_rows(plan.past, &rows)
    }
}

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

/// Which lookahead outputs and which drafts each device computes in one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Lookahead outputs (for the Jacobi window: its columns) of each device.
    pub outputs: Vec<Range<usize>>,
    /// Drafts (indices into the step's drafts) of each device.
    pub drafts: Vec<Range<usize>>,
}

impl Partition {
    /// Splits `outputs` lookahead outputs and `drafts` drafts over `devices` devices. Window
    /// columns to the right carry a longer level-0 prefix, so the first devices get the spare
    /// output and the spare draft.
    pub fn new(outputs: usize, drafts: usize, devices: usize) -> Self {
        Self {
            outputs: split(outputs, devices),
            drafts: split(drafts, devices),
        }
    }

    pub fn devices(&self) -> usize {
        self.outputs.len()
    }

    /// The device computing lookahead output `k`.
    pub fn output_owner(&self, k: usize) -> Option<usize> {
        self.outputs.iter().position(|r| r.contains(&k))
    }

    /// The device verifying draft `c`.
    pub fn draft_owner(&self, c: usize) -> Option<usize> {
        self.drafts.iter().position(|r| r.contains(&c))
    }
}

/// A share's choices: row `i` becomes `sampler.choose(row, history ++ rows[i].extra,
/// rows[i].index)`, or the argmax where `rows[i]` is `None` (the lookahead rows).
#[derive(Debug)]
struct SampledRows {
    sampler: Arc<Sampler>,
    history: Arc<Vec<u32>>,
    rows: Vec<Option<(Vec<u32>, u64)>>,
}

impl ChooseRows for SampledRows {
    fn choose(&self, logits: &Logits) -> Vec<u32> {
        let mut h: Vec<u32> = self.history.as_ref().clone();
        let base = h.len();
        (0..logits.rows())
            .map(|i| match self.rows.get(i).and_then(Option::as_ref) {
                Some((extra, index)) => {
                    h.truncate(base);
                    h.extend_from_slice(extra);
                    self.sampler.choose(logits.row(i), &h, *index)
                }
                None => argmax(logits.row(i)),
            })
            .collect()
    }
}

/// Per-step counters of the split.
#[derive(Debug, Clone, Default)]
pub struct SplitStats {
    /// Rows of the largest share, summed over steps (what bounds a step's time).
    pub max_share_tokens: usize,
    /// Rows of every share (missing tokens fed included), summed over steps.
    pub all_share_tokens: usize,
    pub steps: usize,
}

/// A step split over the replicas of a device group.
pub struct Replicas<'a> {
    group: &'a DeviceGroup,
    stats: &'a mut SplitStats,
    /// The partition and the shares of the step in flight.
    shares: Option<(Partition, Vec<StepTree>)>,
}

impl<'a> Replicas<'a> {
    pub fn new(group: &'a DeviceGroup, stats: &'a mut SplitStats) -> Self {
        Self {
            group,
            stats,
            shares: None,
        }
    }
}

impl StepBackend for Replicas<'_> {
    fn cache_len(&self) -> usize {
        self.group.cache_len()
    }

    fn run(
        &mut self,
        plan: &StepPlan<'_>,
        seq: SequenceView<'_>,
        sampler: &Sampler,
    ) -> Result<RowOutputs> {
        let tree = plan.tree;
        let parts = Partition::new(
            tree.lookahead_outputs(),
            plan.drafts.len(),
            self.group.len(),
        );
        let shares: Vec<StepTree> = (0..parts.devices())
            .map(|d| {
                StepTree::share(
                    plan.pending,
                    plan.past as u32,
                    plan.drafts,
                    plan.lookahead,
                    parts.drafts[d].clone(),
                    parts.outputs[d].clone(),
                )
            })
            .collect();
        // How each device turns its rows into ids: the sampler's choice for t0 and draft rows
        // (whose histories are known up front: a draft row is only used when its prefix was
        // accepted), the argmax for the lookahead rows.
        let index = seq.next_output_index();
        let answers: Vec<Answer> = if sampler.is_argmax() {
            vec![Answer::Argmax; parts.devices()]
        } else {
            let sampler = Arc::new(sampler.clone());
            let history = Arc::new(seq.tokens.to_vec());
            (0..parts.devices())
                .map(|d| {
                    let share = &shares[d];
                    let mut rows = vec![None; share.logit_rows.len()];
                    rows[share.t0_logits()] = Some((Vec::new(), index));
                    for (k, c) in parts.drafts[d].clone().enumerate() {
                        for i in 0..plan.drafts[c].len() {
                            rows[share.draft_logits(k, i)] =
                                Some((plan.drafts[c][..=i].to_vec(), index + i as u64 + 1));
                        }
                    }
                    Answer::Choose(Arc::new(SampledRows {
                        sampler: sampler.clone(),
                        history: history.clone(),
                        rows,
                    }))
                })
                .collect()
        };
        let batches: Vec<Share<'_>> = shares
            .iter()
            .zip(answers)
            .map(|(s, answer)| Share {
                batch: s.batch(),
                answer,
            })
            .collect();
        let missing: usize = self.group.device_missing().iter().sum();
        let ids = self.group.forward_shares(&batches)?;
        drop(batches);

        // The devices' answers in the order of the whole step's logits.
        let id = |d: usize, row: usize| -> Result<u32> {
            ids.get(d).and_then(|v| v.get(row)).copied().ok_or_else(|| {
                LadeError::Device(format!("device {d} returned no id for its row {row}"))
            })
        };
        let mut chosen = vec![id(0, shares[0].t0_logits())?];
        for (c, draft) in plan.drafts.iter().enumerate() {
            let d = parts
                .draft_owner(c)
                .ok_or_else(|| LadeError::Device(format!("no device verifies draft {c}")))?;
            for i in 0..draft.len() {
                chosen.push(id(d, shares[d].draft_logits(c - parts.drafts[d].start, i))?);
            }
        }
        for k in 0..tree.lookahead_outputs() {
            let d = parts
                .output_owner(k)
                .ok_or_else(|| LadeError::Device(format!("no device computes output {k}")))?;
            chosen.push(id(
                d,
                shares[d].lookahead_logits(k - parts.outputs[d].start),
            )?);
        }

        self.stats.steps += 1;
        self.stats.max_share_tokens += shares.iter().map(StepTree::len).max().unwrap_or(0);
        self.stats.all_share_tokens += shares.iter().map(StepTree::len).sum::<usize>() + missing;
        self.shares = Some((parts, shares));
        Ok(RowOutputs::Chosen(chosen))
    }

    fn keep(&mut self, plan: &StepPlan<'_>, winner: Option<usize>, kept: &[u32]) -> Result<()> {
        let (parts, shares) = self.shares.take().ok_or_else(|| {
            LadeError::InvalidArgument("keep without a step run on the devices".into())
        })?;
        // Every device keeps t0; the winner's device also keeps the confirmed draft rows.
        let winner = winner.and_then(|c| parts.draft_owner(c).map(|d| (c, d)));
        let keep: Vec<Vec<usize>> = (0..parts.devices())
            .map(|d| {
                let mut rows = vec![0usize];
                if let Some((c, wd)) = winner {
                    if wd == d {
                        let local = c - parts.drafts[d].start;
                        rows.extend((0..kept.len() - 1).map(|i| shares[d].draft_logits(local, i)));
                    }
                }
                rows
            })
            .collect();
        self.group.commit_shares(plan.past, &keep, kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
