//! The one place decoders are built from a [`DecoderSpec`]: `lade generate`, `lade serve`
//! (its default and each request), `lade bench` (each config) and `auto`'s own trials.
//!
//! `auto` is resolved first ([`resolve`]): by the measured cost model on the model's own
//! device, or, with several devices, as [`DecoderKind::DEFAULT_LOOKAHEAD`] (the cost model is
//! single-device). The resolved spec is then made by the decoding core
//! ([`crate::decode::construct`]): a lookahead decoder with its draft corpus, and with several
//! devices the device group its steps are split over.

use std::sync::Arc;

use super::{AutoChoice, AutoOptions, CostCache, SamplingMode, Strategy};
use crate::decode::draft_length::StepPrice;
use crate::decode::{
    construct, Decoder, DecoderKind, DecoderParts, DecoderSpec, DeviceGroup, DraftCorpus,
    DraftSwitches,
};
use crate::loader::LoadedModel;
use crate::model::CausalLm;
use crate::Result;

/// Where `auto` is measured: a model on its device.
pub struct AutoSource<'a> {
    /// The measured cost is kept per process and key ([`super::choose`]).
    pub key: String,
    /// A throwaway sequence of at least this many positions on the model.
    pub session: Box<dyn Fn(usize) -> Result<Box<dyn CausalLm>> + 'a>,
    /// Context positions a step may use (configs needing more rows are skipped).
    pub max_rows: usize,
    /// Where the measured curve is kept between starts (`None`: measured once per process).
    pub cache: Option<CostCache>,
    /// Whose acceptance statistics the pick expects (greedy or sampled generations).
    pub mode: SamplingMode,
}

impl<'a> AutoSource<'a> {
    /// `loaded` on the device it was loaded to.
    pub fn model(loaded: &'a LoadedModel, max_rows: usize) -> Self {
        Self {
            key: format!("{}|{}", loaded.path.display(), loaded.device_label()),
            session: Box::new(|n| Ok(loaded.new_session(n)? as Box<dyn CausalLm>)),
            max_rows,
            cache: CostCache::for_model(&loaded.path, &loaded.device_label()),
            mode: SamplingMode::Greedy,
        }
    }

    /// The same, for generations of `mode`.
    pub fn with_mode(mut self, mode: SamplingMode) -> Self {
        self.mode = mode;
        self
    }
}

/// What building a decoder borrows from its surroundings. Each part is asked for only when
/// the decoder needs it.
pub struct DecoderEnv<'a> {
    /// Where `auto` is measured; without one, `auto` decodes plainly.
    pub auto: Option<AutoSource<'a>>,
    /// The draft corpus; called for lookahead decoders only.
    pub corpus: &'a dyn Fn() -> Result<Option<Arc<DraftCorpus>>>,
    /// A device group over the spec's devices (Lookahead Parallelism); called once the spec
    /// is known to be valid.
    pub group: &'a dyn Fn() -> Result<DeviceGroup>,
}

impl<'a> DecoderEnv<'a> {
    /// `auto` measured on `loaded` (a step may use `max_rows` positions) for generations of
    /// `mode`, with this corpus and device group.
    pub fn on_model(
        loaded: &'a LoadedModel,
        max_rows: usize,
        mode: SamplingMode,
        corpus: &'a dyn Fn() -> Result<Option<Arc<DraftCorpus>>>,
        group: &'a dyn Fn() -> Result<DeviceGroup>,
    ) -> Self {
        DecoderEnv {
            auto: Some(AutoSource::model(loaded, max_rows).with_mode(mode)),
            corpus,
            group,
        }
    }
}

impl DecoderEnv<'static> {
    /// No model to measure, no draft corpus, no devices.
    pub fn bare() -> Self {
        let none = DecoderParts::none();
        DecoderEnv {
            auto: None,
            corpus: none.corpus,
            group: none.group,
        }
    }
}

/// How `auto` was resolved.
#[derive(Debug, Clone)]
pub enum AutoDecision {
    /// Measured on the model: the pick and the numbers behind it.
    Measured(AutoChoice),
    /// Several devices: the measured cost model is single-device, so `auto` is
    /// [`DecoderKind::DEFAULT_LOOKAHEAD`].
    ParallelDefault,
}

/// A decoder ready to run.
pub struct BuiltDecoder {
    pub decoder: Box<dyn Decoder>,
    /// Lookahead Parallelism: the group the decoder splits its steps over, the sequence to
    /// decode on.
    pub group: Option<DeviceGroup>,
    /// The spec it was built from, `auto` resolved.
    pub spec: DecoderSpec,
    /// How `auto` was resolved (`None`: the spec was not `auto`, or nothing was measured).
    pub auto: Option<AutoDecision>,
}

/// `spec` with `auto` resolved: with several devices [`DecoderKind::DEFAULT_LOOKAHEAD`];
/// else the pick of the cost model measured on `source` (once per process and key), or plain
/// decoding without a source. Other specs come back as they are.
pub fn resolve(
    spec: &DecoderSpec,
    source: Option<&AutoSource<'_>>,
) -> Result<(DecoderSpec, Option<AutoDecision>)> {
    if spec.kind != DecoderKind::Auto {
        return Ok((spec.clone(), None));
    }
    let resolved = |kind| DecoderSpec {
        kind,
        ..spec.clone()
    };
    if spec.is_parallel() {
        return Ok((
            resolved(DecoderKind::DEFAULT_LOOKAHEAD),
            Some(AutoDecision::ParallelDefault),
        ));
    }
    let Some(source) = source else {
        return Ok((resolved(DecoderKind::Plain), None));
    };
    let choice = choose_on_source(source)?;
    let spec = DecoderSpec {
        switches: picked_switches(choice.strategy, spec.switches),
        ..resolved(choice.strategy.kind())
    };
    Ok((spec, Some(AutoDecision::Measured(choice))))
}

/// The switches `auto` runs its pick with: the caller's, and without a window the drafts'
/// lengths learned from the generation, priced by the step costs just measured (see
/// [`crate::decode::draft_length`]).
fn picked_switches(strategy: Strategy, switches: DraftSwitches) -> DraftSwitches {
    DraftSwitches {
        learned_lengths: switches.learned_lengths
            || matches!(strategy, Strategy::Lookahead(c) if c.window == 0),
        ..switches
    }
}

/// `auto`'s pick on `source` (measured once per process and key, or read from its cache).
fn choose_on_source(source: &AutoSource<'_>) -> Result<AutoChoice> {
    let opts = AutoOptions {
        max_rows: source.max_rows,
        mode: source.mode,
        ..AutoOptions::default()
    };
    super::choose_cached(
        &source.key,
        source.cache.as_ref(),
        |n| (source.session)(n),
        &opts,
    )
}

/// The decoder `spec` describes, `auto` resolved on `env.auto`: plain, prompt lookup, or
/// lookahead with the spec's switches and seed, the draft corpus of `env.corpus`, and with
/// several devices the group of `env.group` (made after the spec is checked).
pub fn build(spec: &DecoderSpec, env: &DecoderEnv<'_>) -> Result<BuiltDecoder> {
    spec.validate()?;
    let (spec, auto) = resolve(spec, env.auto.as_ref())?;
    // Learned draft lengths are priced by the step costs `auto` measured (or would measure)
    // on the model's device.
    let measured = match &auto {
        Some(AutoDecision::Measured(choice)) => Some(choice.cost.clone()),
        _ => None,
    };
    let step_price = || -> Result<Option<StepPrice>> {
        let cost = match (&measured, &env.auto) {
            (Some(c), _) => c.clone(),
            (None, Some(source)) => choose_on_source(source)?.cost,
            (None, None) => return Ok(None),
        };
        Ok(Some(super::cost::step_price(cost)))
    };
    let parts = DecoderParts {
        corpus: env.corpus,
        group: env.group,
        step_price: &step_price,
    };
    let (decoder, group) = construct(&spec, &parts)?;
    Ok(BuiltDecoder {
        decoder,
        group,
        spec,
        auto,
    })
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::decode::DraftSwitches;

    #[test]
    fn picks_without_a_window_learn_their_draft_lengths() {
        use crate::decode::LookaheadConfig;
        for switches in [
            DraftSwitches::DEFAULT,
            DraftSwitches {
                corpus_drafts: false,
                ..DraftSwitches::DEFAULT
            },
        ] {
            for (strategy, learned) in [
                (Strategy::Plain, false),
                (Strategy::Lookahead(LookaheadConfig::new(4, 3, 4)), false),
                (Strategy::Lookahead(LookaheadConfig::new(0, 32, 1)), true),
                (Strategy::Lookahead(LookaheadConfig::new(0, 8, 3)), true),
            ] {
                let got = picked_switches(strategy, switches);
                assert_eq!(got.learned_lengths, learned, "{strategy:?}");
                // Nothing else changes.
                assert_eq!(
                    DraftSwitches {
                        learned_lengths: switches.learned_lengths,
                        ..got
                    },
                    switches
                );
            }
        }
        // The caller's choice stands with a window too.
        let on = DraftSwitches {
            learned_lengths: true,
            ..DraftSwitches::DEFAULT
        };
        assert!(picked_switches(Strategy::Plain, on).learned_lengths);
    }

    #[test]
    fn each_kind_builds_its_decoder() {
        let env = DecoderEnv::bare();
        let name = |kind| build(&DecoderSpec::new(kind), &env).unwrap().decoder.name();
        assert_eq!(name(DecoderKind::Plain), "plain");
        // Nothing to measure on: `auto` decodes plainly.
        assert_eq!(name(DecoderKind::Auto), "plain");
        let la = DecoderKind::lookahead(4, 3, 2).unwrap();
        assert_eq!(name(la), la.label());
        let pl = DecoderKind::prompt_lookup(4, 5).unwrap();
        assert_eq!(name(pl), pl.label());
    }

    #[test]
    fn the_corpus_is_asked_for_by_lookahead_only_and_the_switches_reach_the_decoder() {
        let asked = Cell::new(0);
        let corpus = || {
            asked.set(asked.get() + 1);
            Ok(None)
        };
        let env = DecoderEnv {
            corpus: &corpus,
            ..DecoderEnv::bare()
        };
        for kind in [
            DecoderKind::Plain,
            DecoderKind::prompt_lookup(3, 3).unwrap(),
        ] {
            build(&DecoderSpec::new(kind), &env).unwrap();
        }
        assert_eq!(asked.get(), 0);
        let switches = DraftSwitches {
            pool_from_prompt: false,
            reference_compat: true,
            ..DraftSwitches::DEFAULT
        };
        let spec = DecoderSpec::new(DecoderKind::lookahead(2, 3, 2).unwrap())
            .with_switches(switches)
            .with_seed(7);
        let built = build(&spec, &env).unwrap();
        assert_eq!(asked.get(), 1);
        let stats = built.decoder.stats_json().unwrap();
        assert_eq!(stats["pool_from_prompt"], false);
        assert_eq!(stats["reference_compat"], true);
        assert_eq!(built.spec, spec);
        assert!(built.group.is_none() && built.auto.is_none());
    }

    #[test]
    fn several_devices_resolve_auto_to_the_default_and_check_before_the_group() {
        let spec = DecoderSpec::new(DecoderKind::Auto).with_devices(vec![None, None]);
        let (resolved, decision) = resolve(&spec, None).unwrap();
        assert_eq!(resolved.kind, DecoderKind::DEFAULT_LOOKAHEAD);
        assert!(matches!(decision, Some(AutoDecision::ParallelDefault)));
        // An invalid spec never makes its group.
        let made = Cell::new(false);
        let group = || -> Result<DeviceGroup> {
            made.set(true);
            Err(crate::LadeError::InvalidArgument("no devices here".into()))
        };
        let env = DecoderEnv {
            group: &group,
            ..DecoderEnv::bare()
        };
        let bad = DecoderSpec::new(DecoderKind::Plain).with_devices(vec![None, None]);
        assert!(build(&bad, &env).is_err());
        assert!(!made.get());
        // A valid one does (and here fails with it).
        let e = build(&spec, &env).err().unwrap();
        assert!(made.get());
        assert!(e.to_string().contains("no devices here"), "{e}");
    }
}
