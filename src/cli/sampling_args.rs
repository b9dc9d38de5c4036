//! `--temperature`, `--top-k`, `--top-p`, `--min-p`, `--repeat-penalty`, `--repeat-last-n`
//! and `--seed`: the sampling flags of `lade generate` and `lade bench`. A flag left out is
//! filled in by the command: `generate` takes the model's recommended settings, else
//! llama.cpp's defaults; `bench` decodes greedily unless `--temperature` is given.

use clap::Args;
use lade::sampling::{PartialSampling, SamplingParams};

#[derive(Debug, Clone, Args)]
pub struct SamplingArgs {
    /// Sampling temperature; 0 = greedy decoding [default: the model's recommendation (GGUF
    /// `general.sampling.*`, `generation_config.json`), else 0.8 as llama.cpp; `bench`: 0].
    #[arg(long, allow_negative_numbers = true)]
    pub temperature: Option<f32>,
    /// Keep the k most likely tokens, 0 = off [default: the model's recommendation, else 40;
    /// greedy and `bench`: off].
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Nucleus sampling threshold, 1 = off [default: the model's recommendation, else 0.95;
    /// greedy and `bench`: off].
    #[arg(long, allow_negative_numbers = true)]
    pub top_p: Option<f32>,
    /// Drop tokens below min_p × the top probability, 0 = off [default: the model's
    /// recommendation, else 0.05; greedy and `bench`: off].
    #[arg(long, allow_negative_numbers = true)]
    pub min_p: Option<f32>,
    /// Repetition penalty, 1 = off [default: the model's recommendation, else off].
    #[arg(long, allow_negative_numbers = true)]
    pub repeat_penalty: Option<f32>,
    /// Tokens the repetition penalty looks back over [default: the model's recommendation,
    /// else 64].
    #[arg(long)]
    pub repeat_last_n: Option<usize>,
    /// Seed of the sampler: the draw for output position i depends only on (seed, i)
    /// [default: a random seed, printed so that the run can be repeated; greedy and `bench`:
    /// 0].
    #[arg(long)]
    pub seed: Option<u64>,
}

impl SamplingArgs {
    /// The settings given on the command line.
    pub fn given(&self) -> PartialSampling {
        PartialSampling {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
        }
    }

    /// Checks the given values (before a model loads); errors name the flag.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.given().over(SamplingParams::LLAMA_CPP).validate()?;
        Ok(())
    }

    /// Exactly the flags given, over greedy decoding with every filter off and seed 0 unless
    /// `--seed` is given: what `lade bench` decodes with.
    pub fn explicit(&self) -> SamplingParams {
        SamplingParams {
            seed: self.seed.unwrap_or(0),
            ..self.given().over(SamplingParams::greedy())
        }
    }
}
