//! A group of model replicas for Lookahead Parallelism (spec a.11): every device holds the whole
//! model and its own KV cache of the same sequence, and runs on its own host thread.
//!
//! Only token ids cross between the coordinator and the devices: batches go out as ids,
//! positions and a mask; the answers come back as one id per requested row: the argmax, or
//! what the caller's [`ChooseRows`] picks from the whole rows on the device's thread (the
//! decoder's choice of token: the model only offers the rows). Logits never leave a device,
//! except through [`CausalLm::forward`] of the whole group, which returns device 0's.
//!
//! The exchange runs over host channels (`std::sync::mpsc`). That is what runs for CPU devices
//! and for CUDA devices alike in this build; an NCCL exchange (cudarc's `nccl` module) is for
//! the multi-GPU machines when one is available to measure it against the channels, and is
//! not implemented here.
//!
//! As a [`CausalLm`] the group is the committed sequence: `cache_len` is the logical length,
//! and `forward`/`truncate`/`keep_rows` go to every device, so any decoder runs on it (each
//! device doing the whole step). Lookahead Parallelism uses [`DeviceGroup::forward_shares`]
//! (one different batch per device) and [`DeviceGroup::commit_shares`] instead, through a
//! handle of its own: clones of a [`DeviceGroup`] are handles to the same devices, so the
//! decoder holds one while the generation loop drives the sequence through another.
//!
//! After a parallel step only the device that held the winning candidate has the K/V of the
//! accepted draft tokens; the others keep `t0` only and remember the missing tokens, which they
//! feed (causally, in front of their next batch, in the same forward pass) at the next step, as
//! the authors' code does (`guess_skip_dist`). K/V rows never cross devices.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crate::model::{AttentionMask, Batch, CausalLm, Logits};
use crate::{LadeError, Result};

/// Picks one id per logit row of a share from the whole rows, on the device's thread.
pub trait ChooseRows: Send + Sync + std::fmt::Debug {
    fn choose(&self, logits: &Logits) -> Vec<u32>;
}

/// What a device answers for the logit rows of its share.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The argmax of every row (computed where the device can, e.g. on the GPU).
    Argmax,
    /// The ids the caller's rule picks from the whole rows.
    Choose(Arc<dyn ChooseRows>),
}

/// One device's part of a parallel step.
#[derive(Debug, Clone)]
pub struct Share<'a> {
    pub batch: Batch<'a>,
    pub answer: Answer,
}

/// What a device thread is asked to do.
enum Command {
    Forward {
        batch: OwnedBatch,
        want: Want,
        reply: Sender<Result<Reply>>,
    },
    KeepRows {
        start: usize,
        rows: Vec<usize>,
        reply: Sender<Result<Reply>>,
    },
    Truncate {
        len: usize,
    },
}

enum Want {
    Logits,
    Ids(Answer),
}

enum Reply {
    Logits(Logits),
    Ids(Vec<u32>),
    Done,
}

struct OwnedBatch {
    tokens: Vec<u32>,
    positions: Vec<u32>,
    mask: AttentionMask,
    logit_rows: Vec<usize>,
}

impl OwnedBatch {
    fn batch(&self) -> Batch<'_> {
        Batch {
            tokens: &self.tokens,
            positions: &self.positions,
            mask: &self.mask,
            logit_rows: &self.logit_rows,
        }
    }
}

/// The coordinator's view of one device.
struct Device {
    tx: Option<Sender<Command>>,
    thread: Option<JoinHandle<()>>,
    /// Positions in this device's cache.
    len: usize,
    /// Committed tokens at positions `len..` whose K/V this device has not computed yet.
    missing: Vec<u32>,
}

/// The devices of a [`DeviceGroup`] and the coordinator's view of them.
struct Group {
    devices: Vec<Device>,
    labels: Vec<String>,
    /// Length of the committed sequence's cache (what `cache_len` reports).
    len: usize,
    context: usize,
    vocab: usize,
    /// Set between `forward_shares` and `commit_shares`: the caches hold uncommitted rows.
    split: bool,
}

/// K replicas of one sequence, each on its own thread. Clones are handles to the same devices;
/// the threads end when the last handle is dropped.
#[derive(Clone)]
pub struct DeviceGroup(Arc<Mutex<Group>>);

impl std::fmt::Debug for DeviceGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.group();
        f.debug_struct("DeviceGroup")
            .field("devices", &g.labels)
            .field("len", &g.len)
            .finish()
    }
}

fn device_error(d: usize, what: &str) -> LadeError {
    LadeError::Device(format!("device {d} {what}"))
}

/// Runs commands on one device until the coordinator hangs up.
fn serve(mut lm: Box<dyn CausalLm + Send>, rx: Receiver<Command>) {
    while let Ok(cmd) = rx.recv() {
        match cmd {
            Command::Forward { batch, want, reply } => {
                let b = batch.batch();
                let out = match want {
                    Want::Logits => lm.forward(&b).map(Reply::Logits),
                    Want::Ids(Answer::Argmax) => lm.forward_argmax(&b).map(Reply::Ids),
                    Want::Ids(Answer::Choose(rule)) => lm
                        .forward(&b)
                        .map(|logits| Reply::Ids(rule.choose(&logits))),
                };
                let _ = reply.send(out);
            }
            Command::KeepRows { start, rows, reply } => {
                let _ = reply.send(lm.keep_rows(start, &rows).map(|_| Reply::Done));
            }
            Command::Truncate { len } => lm.truncate(len),
        }
    }
}

/// `mask` over `q` rows with `m` causal rows put in front (the missing tokens of a device):
/// they see the cache and each other causally, and every row of `mask` sees all of them.
fn with_prefix(mask: &AttentionMask, m: usize, past: usize, q: usize) -> AttentionMask {
    if m == 0 {
        return mask.clone();
    }
    match mask {
        AttentionMask::Causal => AttentionMask::Causal,
        AttentionMask::Block { .. } | AttentionMask::Full { .. } => {
            // Keys: `past` cached, then m prefix rows, then the q rows; the original mask's
            // cached keys are `0..past + m`.
            let keys = past + m + q;
            let rows = m + q;
            let mut visible = vec![false; rows * keys];
            for r in 0..m {
                for k in 0..=past + r {
                    visible[r * keys + k] = true;
                }
            }
            for i in 0..q {
                for k in 0..keys {
                    visible[(m + i) * keys + k] = mask.sees(past + m, q, i, k);
                }
            }
            match mask {
                AttentionMask::Block { .. } => {
                    // Back to a block over the new rows (every row sees the whole cache).
                    let block = (0..rows)
                        .flat_map(|r| {
                            let row = &visible[r * keys..(r + 1) * keys];
                            row[past..].to_vec()
                        })
                        .collect();
                    AttentionMask::Block {
                        q: rows,
                        visible: block,
                    }
                }
                _ => AttentionMask::Full {
                    past,
                    q: rows,
                    visible,
                },
            }
        }
    }
}

impl Group {
    /// See [`DeviceGroup::new`].
    fn new(sessions: Vec<Box<dyn CausalLm + Send>>, labels: Vec<String>) -> Result<Self> {
        if sessions.is_empty() {
            return Err(LadeError::InvalidArgument(
                "a device group needs at least one device".into(),
            ));
        }
        let vocab = sessions[0].vocab_size();
        if let Some(s) = sessions.iter().find(|s| s.vocab_size() != vocab) {
            return Err(LadeError::InvalidArgument(format!(
                "devices disagree on the vocabulary ({} vs {vocab})",
                s.vocab_size()
            )));
        }
        let context = sessions.iter().map(|s| s.context_size()).min().unwrap_or(0);
        let labels = if labels.len() == sessions.len() {
            labels
        } else {
            (0..sessions.len()).map(|i| format!("device {i}")).collect()
        };
        let mut devices = Vec::with_capacity(sessions.len());
        for (i, mut lm) in sessions.into_iter().enumerate() {
            lm.truncate(0);
            let (tx, rx) = channel();
            let thread = std::thread::Builder::new()
                .name(format!("lade-device-{i}"))
                .spawn(move || serve(lm, rx))?;
            devices.push(Device {
                tx: Some(tx),
                thread: Some(thread),
                len: 0,
                missing: Vec::new(),
            });
        }
        Ok(Self {
            devices,
            labels,
            len: 0,
            context,
            vocab,
            split: false,
        })
    }

    fn send(&self, d: usize, cmd: Command) -> Result<()> {
        self.devices[d]
            .tx
            .as_ref()
            .ok_or_else(|| device_error(d, "is shut down"))?
            .send(cmd)
            .map_err(|_| device_error(d, "stopped (its thread ended)"))
    }

    /// Sends `batch` (which starts at the logical length) to device `d`, its missing tokens
    /// fed first; returns the receiver of the answer.
    fn dispatch(
        &mut self,
        d: usize,
        batch: &Batch<'_>,
        want: Want,
    ) -> Result<Receiver<Result<Reply>>> {
        let dev = &self.devices[d];
        let m = dev.missing.len();
        let q = batch.tokens.len();
        let mut tokens = dev.missing.clone();
        tokens.extend_from_slice(batch.tokens);
        let mut positions: Vec<u32> = (dev.len as u32..(dev.len + m) as u32).collect();
        positions.extend_from_slice(batch.positions);
        let owned = OwnedBatch {
            tokens,
            positions,
            mask: with_prefix(batch.mask, m, dev.len, q),
            logit_rows: batch.logit_rows.iter().map(|r| r + m).collect(),
        };
        let (reply, rx) = channel();
        self.send(
            d,
            Command::Forward {
                batch: owned,
                want,
                reply,
            },
        )?;
        let dev = &mut self.devices[d];
        dev.len += m + q;
        dev.missing.clear();
        Ok(rx)
    }

    fn receive(d: usize, rx: &Receiver<Result<Reply>>) -> Result<Reply> {
        rx.recv()
            .map_err(|_| device_error(d, "failed (its thread ended during the step)"))?
    }

    /// Device `d` keeps, of its cache rows from `start`, those at the offsets `rows_of(d)`
    /// (all devices at once, then every answer awaited); its length becomes `start` plus their
    /// number.
    fn keep_rows_each<'r>(
        &mut self,
        start: usize,
        rows_of: impl Fn(usize) -> &'r [usize],
    ) -> Result<()> {
        let receivers = (0..self.devices.len())
            .map(|d| {
                let (reply, rx) = channel();
                let rows = rows_of(d).to_vec();
                self.send(d, Command::KeepRows { start, rows, reply })?;
                Ok(rx)
            })
            .collect::<Result<Vec<_>>>()?;
        for (d, rx) in receivers.iter().enumerate() {
            Self::receive(d, rx)?;
            self.devices[d].len = start + rows_of(d).len();
        }
        Ok(())
    }

    fn ensure_joined(&self, what: &str) -> Result<()> {
        if self.split {
            return Err(LadeError::InvalidArgument(format!(
                "{what} on a device group between forward_shares and commit_shares"
            )));
        }
        Ok(())
    }

    fn forward_shares(&mut self, shares: &[Share<'_>]) -> Result<Vec<Vec<u32>>> {
        self.ensure_joined("forward_shares")?;
        if shares.len() != self.devices.len() {
            return Err(LadeError::InvalidArgument(format!(
                "{} shares for {} devices",
                shares.len(),
                self.devices.len()
            )));
        }
        for s in shares {
            s.batch.validate(self.len, self.vocab, self.context)?;
            if self.len + s.batch.tokens.len() > self.context {
                return Err(LadeError::ContextExceeded {
                    needed: self.len + s.batch.tokens.len(),
                    limit: self.context,
                });
            }
        }
        self.split = true;
        let receivers = shares
            .iter()
            .enumerate()
            .map(|(d, s)| self.dispatch(d, &s.batch, Want::Ids(s.answer.clone())))
            .collect::<Result<Vec<_>>>()?;
        receivers
            .iter()
            .enumerate()
            .map(|(d, rx)| match Self::receive(d, rx)? {
                Reply::Ids(ids) => Ok(ids),
                _ => Err(device_error(d, "answered with the wrong kind of reply")),
            })
            .collect()
    }

    fn commit_shares(
        &mut self,
        start: usize,
        keep: &[Vec<usize>],
        committed: &[u32],
    ) -> Result<()> {
        if !self.split || start != self.len || keep.len() != self.devices.len() {
            return Err(LadeError::InvalidArgument(
                "commit_shares without a matching forward_shares".into(),
            ));
        }
        if let Some(k) = keep.iter().find(|k| k.len() > committed.len()) {
            return Err(LadeError::InvalidArgument(format!(
                "a device keeps {} rows but only {} tokens are committed",
                k.len(),
                committed.len()
            )));
        }
        self.keep_rows_each(start, |d| &keep[d])?;
        for (d, dev) in self.devices.iter_mut().enumerate() {
            dev.missing = committed[keep[d].len()..].to_vec();
        }
        self.len = start + committed.len();
        self.split = false;
        Ok(())
    }

    /// Runs `batch` on every device (each feeding its missing tokens first); `want(d)` says
    /// what device `d` answers. Returns every device's answer.
    fn broadcast(&mut self, batch: &Batch<'_>, want: impl Fn(usize) -> Want) -> Result<Vec<Reply>> {
        self.ensure_joined("forward")?;
        batch.validate(self.len, self.vocab, self.context)?;
        let receivers = (0..self.devices.len())
            .map(|d| self.dispatch(d, batch, want(d)))
            .collect::<Result<Vec<_>>>()?;
        let replies = receivers
            .iter()
            .enumerate()
            .map(|(d, rx)| Self::receive(d, rx))
            .collect::<Result<Vec<_>>>()?;
        self.len += batch.tokens.len();
        Ok(replies)
    }

    fn forward_all(&mut self, batch: &Batch<'_>) -> Result<Vec<Logits>> {
        self.broadcast(batch, |_| Want::Logits)?
            .into_iter()
            .enumerate()
            .map(|(d, r)| match r {
                Reply::Logits(l) => Ok(l),
                _ => Err(device_error(d, "answered with the wrong kind of reply")),
            })
            .collect()
    }
}

impl DeviceGroup {
    /// Starts one thread per session. Every session must be empty (a fresh sequence) and all
    /// must share vocabulary; the group's context is the smallest of theirs.
    pub fn new(sessions: Vec<Box<dyn CausalLm + Send>>, labels: Vec<String>) -> Result<Self> {
        Ok(Self(Arc::new(Mutex::new(Group::new(sessions, labels)?))))
    }

    /// The devices (a panic on another handle's thread leaves them usable: every operation
    /// keeps the lengths consistent before it can fail).
    fn group(&self) -> MutexGuard<'_, Group> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Number of devices.
    pub fn len(&self) -> usize {
        self.group().devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.group().devices.is_empty()
    }

    /// Device names, for logs.
    pub fn labels(&self) -> Vec<String> {
        self.group().labels.clone()
    }

    /// Positions in each device's cache (tests: after a committed step they differ only by
    /// the tokens a device has still to feed).
    pub fn device_cache_lens(&self) -> Vec<usize> {
        self.group().devices.iter().map(|d| d.len).collect()
    }

    /// Committed tokens each device has not computed K/V for yet.
    pub fn device_missing(&self) -> Vec<usize> {
        self.group()
            .devices
            .iter()
            .map(|d| d.missing.len())
            .collect()
    }

    /// Runs one share per device, all starting at the committed length, concurrently; returns
    /// each device's chosen ids, one per logit row of its share. Must be followed by
    /// [`Self::commit_shares`].
    pub fn forward_shares(&self, shares: &[Share<'_>]) -> Result<Vec<Vec<u32>>> {
        self.group().forward_shares(shares)
    }

    /// Ends a parallel step: `committed` are the tokens now committed from position `start`
    /// (the committed length before the step), and device `d` keeps the rows `keep[d]` of its
    /// share, which must hold the K/V of `committed[..keep[d].len()]`. The rest of `committed`
    /// is fed by that device at its next forward pass.
    pub fn commit_shares(
        &self,
        start: usize,
        keep: &[Vec<usize>],
        committed: &[u32],
    ) -> Result<()> {
        self.group().commit_shares(start, keep, committed)
    }

    /// Runs `batch` on every device and returns the logits of each: replicas of one sequence
    /// must agree (a check for tests and debugging; the decoders never move logits).
    pub fn forward_all(&self, batch: &Batch<'_>) -> Result<Vec<Logits>> {
        self.group().forward_all(batch)
    }
}

impl CausalLm for DeviceGroup {
    fn forward(&mut self, batch: &Batch<'_>) -> Result<Logits> {
        self.group().forward(batch)
    }

    fn forward_argmax(&mut self, batch: &Batch<'_>) -> Result<Vec<u32>> {
        self.group().forward_argmax(batch)
    }

    fn cache_len(&self) -> usize {
        self.group().cache_len()
    }

    fn truncate(&mut self, len: usize) {
        self.group().truncate(len)
    }

    fn keep_rows(&mut self, start: usize, rows: &[usize]) -> Result<()> {
        self.group().keep_rows(start, rows)
    }

    fn context_size(&self) -> usize {
        self.group().context_size()
    }

    fn vocab_size(&self) -> usize {
        self.group().vocab_size()
    }
}

impl CausalLm for Group {
    /// Every device runs `batch` (their caches must stay equal); device 0's logits come back.
    fn forward(&mut self, batch: &Batch<'_>) -> Result<Logits> {
        let want = |d: usize| {
            if d == 0 {
                Want::Logits
            } else {
                Want::Ids(Answer::Argmax)
            }
        };
        match self.broadcast(batch, want)?.into_iter().next() {
            Some(Reply::Logits(l)) => Ok(l),
            _ => Err(device_error(0, "answered with the wrong kind of reply")),
        }
    }

    fn forward_argmax(&mut self, batch: &Batch<'_>) -> Result<Vec<u32>> {
        match self
            .broadcast(batch, |_| Want::Ids(Answer::Argmax))?
            .into_iter()
            .next()
        {
            Some(Reply::Ids(ids)) => Ok(ids),
            _ => Err(device_error(0, "answered with the wrong kind of reply")),
        }
    }

    fn cache_len(&self) -> usize {
        self.len
    }

    fn truncate(&mut self, len: usize) {
        for d in 0..self.devices.len() {
            let dev = &self.devices[d];
            if len <= dev.len {
                // A device whose thread has ended reports that at its next forward pass.
                let _ = self.send(d, Command::Truncate { len });
                let dev = &mut self.devices[d];
                dev.len = len;
                dev.missing.clear();
            } else {
                let keep = len - dev.len;
                self.devices[d].missing.truncate(keep);
            }
        }
        self.len = self.len.min(len);
        self.split = false;
    }

    fn keep_rows(&mut self, start: usize, rows: &[usize]) -> Result<()> {
        self.ensure_joined("keep_rows")?;
        if self.devices.iter().any(|d| d.len != self.len) {
            return Err(LadeError::InvalidArgument(
                "keep_rows on a device group whose devices are not all at the committed length"
                    .into(),
            ));
        }
        self.keep_rows_each(start, |_| rows)?;
        self.len = start + rows.len();
        Ok(())
    }

    fn context_size(&self) -> usize {
        self.context
    }

    fn vocab_size(&self) -> usize {
        self.vocab
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        for d in &mut self.devices {
            d.tx = None; // hang up: the thread's loop ends
        }
        for d in &mut self.devices {
            if let Some(t) = d.thread.take() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_rows_are_causal_and_seen_by_every_row() {
        let block = AttentionMask::Block {
            q: 2,
            visible: vec![true, false, false, true],
        };
        let past = 3;
        let m = with_prefix(&block, 2, past, 2);
        let AttentionMask::Block { q, visible } = &m else {
            panic!("block expected");
        };
        assert_eq!(*q, 4);
        let seen = |r: usize| -> Vec<usize> { (0..4).filter(|&c| visible[r * 4 + c]).collect() };
        assert_eq!(seen(0), vec![0]);
        assert_eq!(seen(1), vec![0, 1]);
        assert_eq!(seen(2), vec![0, 1, 2]);
        assert_eq!(seen(3), vec![0, 1, 3], "the original rows stay apart");
        m.validate(past, 4).unwrap();
        assert_eq!(
            with_prefix(&AttentionMask::Causal, 3, past, 2),
            AttentionMask::Causal
        );
        assert_eq!(with_prefix(&block, 0, past, 2), block);
    }
}
