//! The construction of a decoder from a resolved [`DecoderSpec`] (anything but `auto`): plain,
//! prompt lookup, or lookahead with the spec's switches and seed, its draft corpus and, with
//! several devices, the device group its steps are split over.
//!
//! Front ends do not call this directly: they go through `lade::tune::build`, which resolves
//! `auto` on the model first and then comes here.

use std::sync::Arc;

use super::{DecoderKind, DecoderSpec};
use crate::decode::draft_length::StepPrice;
use crate::decode::{Decoder, DeviceGroup, DraftCorpus, PlainDecoder, SpeculativeDecoder};
use crate::{LadeError, Result};

/// What a decoder borrows from its surroundings. Each part is asked for only when the decoder
/// needs it.
#[derive(Clone, Copy)]
pub struct DecoderParts<'a> {
    /// The draft corpus; called for lookahead decoders only.
    pub corpus: &'a dyn Fn() -> Result<Option<Arc<DraftCorpus>>>,
    /// A device group over the spec's devices (Lookahead Parallelism); called once the spec
    /// is known to be valid.
    pub group: &'a dyn Fn() -> Result<DeviceGroup>,
    /// The price of a step's rows on the model's device; called for lookahead with learned
    /// draft lengths only (`None`: drafts reach as far as their evidence).
    pub step_price: &'a dyn Fn() -> Result<Option<StepPrice>>,
}

impl DecoderParts<'static> {
    /// No draft corpus, no devices.
    pub fn none() -> Self {
        DecoderParts {
            corpus: &no_corpus,
            group: &no_group,
            step_price: &no_price,
        }
    }
}

fn no_corpus() -> Result<Option<Arc<DraftCorpus>>> {
    Ok(None)
}

fn no_price() -> Result<Option<StepPrice>> {
    Ok(None)
}

fn no_group() -> Result<DeviceGroup> {
    Err(LadeError::InvalidArgument(
        "Lookahead Parallelism needs a device group".into(),
    ))
}

/// The decoder `spec` describes, and with several devices the group it splits its steps over
/// (made after the spec is checked). `auto` must be resolved before.
pub fn construct(
    spec: &DecoderSpec,
    parts: &DecoderParts<'_>,
) -> Result<(Box<dyn Decoder>, Option<DeviceGroup>)> {
    spec.validate()?;
    let mut group = None;
    let decoder: Box<dyn Decoder> = match (spec.kind, spec.lookahead_config()) {
        (DecoderKind::Auto, _) => {
            return Err(LadeError::InvalidArgument(
                "`auto` is resolved on a model before a decoder is made".into(),
            ))
        }
        (_, Some(config)) => {
            config.validate()?;
            let corpus = (parts.corpus)()?;
            let decoder = if spec.is_parallel() {
                let g = (parts.group)()?;
                let d = SpeculativeDecoder::lookahead_parallel(config, g.clone())?;
                group = Some(g);
                d
            } else {
                SpeculativeDecoder::lookahead(config)?
            };
            let price = if config.switches.learned_lengths {
                (parts.step_price)()?
            } else {
                None
            };
            Box::new(decoder.with_corpus(corpus).with_step_price(price))
        }
        (DecoderKind::PromptLookup(c), _) => Box::new(SpeculativeDecoder::prompt_lookup(c)?),
        _ => Box::new(PlainDecoder),
    };
    Ok((decoder, group))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_not_a_decoder() {
        let e = construct(&DecoderSpec::new(DecoderKind::Auto), &DecoderParts::none())
            .err()
            .unwrap();
        assert!(e.to_string().contains("resolved"), "{e}");
    }
}
