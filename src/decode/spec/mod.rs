//! The complete description of a decoder: what `lade generate`, `lade serve` (its default and
//! each request's `lookahead` field) and `lade bench` (each config of `--configs`) ask for.
//!
//! - [`DecoderSpec`] (this file): the strategy ([`DecoderKind`]), the drafting switches
//!   ([`DraftSwitches`]), the seed of the lookahead window and the devices of Lookahead
//!   Parallelism; what a spec may hold ([`DecoderSpec::validate`]).
//! - [`parse`]: the text syntax every front end shares (`auto`, `off`, `W,N,G`, the benchmark
//!   configs).
//! - [`build`](mod@build): the construction of a decoder from a resolved spec (the front ends
//!   go through `lade::tune::build`, which resolves `auto` on the model first).

pub mod build;
pub mod parse;

pub use build::{construct, DecoderParts};

use super::lookahead::{DraftSwitches, LookaheadConfig};
use super::prompt_lookup::PromptLookupConfig;
use crate::{LadeError, Result};

/// Which decoding strategy a spec asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderKind {
    /// One token per forward pass.
    Plain,
    /// Whatever is expected to be fastest on the model's device, picked by the measured cost
    /// model (`lade::tune::choose`): plain decoding on a CPU.
    Auto,
    /// Lookahead decoding with window W, n-gram size N and G candidates per step (see
    /// [`LookaheadConfig`]).
    Lookahead {
        window: usize,
        ngram: usize,
        guesses: usize,
    },
    /// Prompt lookup decoding: drafts from the n-grams of the committed text alone.
    PromptLookup(PromptLookupConfig),
}

impl DecoderKind {
    /// [`LookaheadConfig::DEFAULT`]'s W, N and G: what `auto` means where nothing is measured
    /// (Lookahead Parallelism) and what a request's `"lookahead": true` asks for.
    pub const DEFAULT_LOOKAHEAD: DecoderKind = DecoderKind::Lookahead {
        window: LookaheadConfig::DEFAULT.window,
        ngram: LookaheadConfig::DEFAULT.ngram,
        guesses: LookaheadConfig::DEFAULT.guesses,
    };

    /// Lookahead with W, N and G, checked ([`LookaheadConfig::validate`]).
    pub fn lookahead(window: usize, ngram: usize, guesses: usize) -> Result<Self> {
        LookaheadConfig::new(window, ngram, guesses).validate()?;
        Ok(Self::Lookahead {
            window,
            ngram,
            guesses,
        })
    }

    /// Prompt lookup with N and G, checked ([`PromptLookupConfig::validate`]).
    pub fn prompt_lookup(ngram: usize, guesses: usize) -> Result<Self> {
        let c = PromptLookupConfig::new(ngram, guesses);
        c.validate()?;
        Ok(Self::PromptLookup(c))
    }

    /// `auto`, `plain`, `lookahead(W,N,G)` or `prompt-lookup(N,G)`.
    pub fn label(&self) -> String {
        match *self {
            Self::Plain => "plain".into(),
            Self::Auto => "auto".into(),
            Self::Lookahead {
                window,
                ngram,
                guesses,
            } => LookaheadConfig::new(window, ngram, guesses).label(),
            Self::PromptLookup(c) => c.label(),
        }
    }
}

/// Everything that decides how a sequence is decoded (the model and the sampler aside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecoderSpec {
    pub kind: DecoderKind,
    /// The drafting switches of lookahead (also of the lookahead config `auto` picks).
    pub switches: DraftSwitches,
    /// Seed of the lookahead window's initialisation (the sampling seed, where a front end
    /// has one).
    pub seed: u64,
    /// Lookahead Parallelism: one replica per entry (`None`: the CPU, `Some(n)`: CUDA device
    /// n). Fewer than two entries: the model's own device alone.
    pub devices: Vec<Option<usize>>,
}

impl DecoderSpec {
    /// `kind` with the default switches, seed 0, on one device.
    pub fn new(kind: DecoderKind) -> Self {
        Self {
            kind,
            switches: DraftSwitches::DEFAULT,
            seed: 0,
            devices: Vec::new(),
        }
    }

    pub fn with_switches(mut self, switches: DraftSwitches) -> Self {
        self.switches = switches;
        self
    }

    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn with_devices(mut self, devices: Vec<Option<usize>>) -> Self {
        self.devices = devices;
        self
    }

    /// Whether steps are split over several devices (Lookahead Parallelism).
    pub fn is_parallel(&self) -> bool {
        self.devices.len() > 1
    }

    /// The lookahead config (W, N, G with the switches and the seed), for lookahead.
    pub fn lookahead_config(&self) -> Option<LookaheadConfig> {
        match self.kind {
            DecoderKind::Lookahead {
                window,
                ngram,
                guesses,
            } => Some(LookaheadConfig {
                switches: self.switches,
                seed: self.seed,
                ..LookaheadConfig::new(window, ngram, guesses)
            }),
            _ => None,
        }
    }

    /// Query rows of a full steady-state step: `(W + G)(N - 1)` for lookahead (`1 + G(N-1)`
    /// without a window), `1 + G(N - 1)` for prompt lookup, 1 otherwise (`auto`: unknown
    /// before it picks).
    pub fn step_tokens(&self) -> usize {
        match (self.kind, self.lookahead_config()) {
            (_, Some(c)) => c.step_tokens(c.guesses),
            (DecoderKind::PromptLookup(c), _) => 1 + c.guesses * (c.ngram - 1),
            _ => 1,
        }
    }

    /// Rejects what no decoder can run: a lookahead or prompt lookup config out of range,
    /// and Lookahead Parallelism of anything but lookahead with a window (`auto` is then
    /// [`DecoderKind::DEFAULT_LOOKAHEAD`]).
    pub fn validate(&self) -> Result<()> {
        match self.kind {
            DecoderKind::Lookahead { .. } => {
                if let Some(c) = self.lookahead_config() {
                    c.validate()?;
                }
            }
            DecoderKind::PromptLookup(c) => c.validate()?,
            DecoderKind::Plain | DecoderKind::Auto => {}
        }
        if self.is_parallel() {
            let why = match self.kind {
                DecoderKind::Plain => Some("drop --no-lookahead (or list one device)"),
                DecoderKind::PromptLookup(_) => Some("prompt lookup has no window to split"),
                DecoderKind::Lookahead { window: 0, .. } => {
                    Some("it splits the window's columns over the devices: it needs W ≥ 1")
                }
                _ => None,
            };
            if let Some(why) = why {
                return Err(LadeError::InvalidArgument(format!(
                    "several devices run Lookahead Parallelism: {why}"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_composes_the_lookahead_config() {
        let switches = DraftSwitches {
            context_match: false,
            ..DraftSwitches::DEFAULT
        };
        let spec = DecoderSpec::new(DecoderKind::lookahead(4, 3, 2).unwrap())
            .with_switches(switches)
            .with_seed(9);
        let c = spec.lookahead_config().unwrap();
        assert_eq!((c.window, c.ngram, c.guesses, c.seed), (4, 3, 2, 9));
        assert_eq!(c.switches, switches);
        assert_eq!(spec.step_tokens(), c.step_tokens(2));
        assert_eq!(spec.kind.label(), c.label());
        assert!(DecoderSpec::new(DecoderKind::Auto)
            .lookahead_config()
            .is_none());
    }

    #[test]
    fn parallelism_needs_lookahead_with_a_window() {
        let two = vec![None, None];
        for kind in [
            DecoderKind::Plain,
            DecoderKind::lookahead(0, 8, 1).unwrap(),
            DecoderKind::prompt_lookup(4, 4).unwrap(),
        ] {
            let spec = DecoderSpec::new(kind).with_devices(two.clone());
            assert!(spec.validate().is_err(), "{kind:?}");
            // One device is no parallelism.
            assert!(DecoderSpec::new(kind)
                .with_devices(vec![None])
                .validate()
                .is_ok());
        }
        for kind in [DecoderKind::Auto, DecoderKind::lookahead(3, 3, 3).unwrap()] {
            assert!(DecoderSpec::new(kind)
                .with_devices(two.clone())
                .validate()
                .is_ok());
        }
        let e = DecoderSpec::new(DecoderKind::Plain)
            .with_devices(two)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("--no-lookahead"), "{e}");
    }

    #[test]
    fn out_of_range_configs_are_refused() {
        assert!(DecoderKind::lookahead(4, 1, 2).is_err());
        assert!(DecoderKind::lookahead(0, 4, 0).is_err());
        assert!(DecoderKind::lookahead(513, 4, 2).is_err());
        assert!(DecoderKind::prompt_lookup(1, 3).is_err());
        // A spec assembled by hand is checked too.
        let spec = DecoderSpec::new(DecoderKind::Lookahead {
            window: 1,
            ngram: 1,
            guesses: 1,
        });
        assert!(spec.validate().is_err());
    }
}
