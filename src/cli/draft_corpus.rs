//! `lade draft-corpus`: decode a prompt set greedily and write the texts (prompt + output
//! ids) as a draft corpus for `--draft-corpus` (see `lade::decode::DraftCorpus`). The prompts
//! come from a dataset, from the model itself (`--self-prompts`, see [`super::self_prompts`]),
//! or both.

use std::path::PathBuf;

use clap::Args;
use lade::decode::corpus_file::corpus_beside;
use lade::decode::{CorpusFile, PlainDecoder};
use lade::generate::{generate, StopRules};
use lade::loader::progress::LoadProgress;
use lade::model::CausalLm;
use lade::sampling::Sampler;

use super::bench::read_prompts;
use super::generate::prompt_ids;
use super::self_prompts::{user_turn_prefix, write_prompt, SelfPromptRules};
use super::ModelArgs;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("prompts").required(true).multiple(true).args(["dataset", "self_prompts"])))]
pub struct DraftCorpusArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// JSONL file with a `prompt` field per line.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Wrap the dataset's prompts in the model's chat template (self-prompts always are).
    #[arg(long)]
    pub chat: bool,
    /// Also let the model write N prompts of its own: the opening of a user turn in its chat
    /// template, sampled with N seeds, each then answered greedily like a dataset prompt.
    #[arg(long, value_name = "N")]
    pub self_prompts: Option<usize>,
    /// Sampling temperature of the self-prompts' text.
    #[arg(long, default_value_t = 0.8)]
    pub self_prompt_temperature: f32,
    /// Self-prompt i (0-based) is sampled with seed S + i.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub self_prompt_seed: u64,
    /// Most tokens of one self-prompt; a prompt the model has not ended by then is dropped.
    #[arg(long, default_value_t = 96)]
    pub self_prompt_max_tokens: usize,
    /// Leave out the first K prompts (e.g. the ones a benchmark decodes).
    #[arg(long, default_value_t = 0)]
    pub skip: usize,
    /// Use at most K prompts (after --skip).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Most tokens generated per prompt.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Keep decoding past end-of-generation tokens (as `lade bench` does) instead of ending
    /// the text there.
    #[arg(long)]
    pub through_eos: bool,
    /// Add the texts to this corpus file if it exists (it must be for the same tokenizer).
    #[arg(long)]
    pub append: bool,
    /// The corpus file to write [default: beside the model, `M.corpus` for `M.gguf`, where
    /// `generate`, `bench` and `serve` find it].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: DraftCorpusArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.max_tokens > 0, "--max-tokens must be at least 1");
    let self_rules = match args.self_prompts {
        Some(0) => anyhow::bail!("--self-prompts must be at least 1"),
        Some(_) => {
            anyhow::ensure!(
                args.self_prompt_temperature > 0.0 && args.self_prompt_temperature.is_finite(),
                "--self-prompt-temperature must be above 0 (greedy would write one prompt N times)"
            );
            anyhow::ensure!(
                args.self_prompt_max_tokens > 0,
                "--self-prompt-max-tokens must be at least 1"
            );
            Some(SelfPromptRules {
                temperature: args.self_prompt_temperature,
                first_seed: args.self_prompt_seed,
                max_tokens: args.self_prompt_max_tokens,
            })
        }
        None => None,
    };
    let dataset_prompts = match &args.dataset {
        Some(path) => {
            let all = read_prompts(path, args.limit.map(|l| l + args.skip))?;
            anyhow::ensure!(
                all.len() > args.skip,
                "{} has {} prompts, all left out by --skip {}",
                path.display(),
                all.len(),
                args.skip
            );
            all[args.skip..].to_vec()
        }
        None => Vec::new(),
    };
    let loaded = args.model.load()?;
    let tok = &loaded.tokenizer;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| corpus_beside(&loaded.path));
    let mut corpus = if args.append && out.exists() {
        let c = CorpusFile::read(&out)?;
        c.check_tokenizer(tok, &out.display().to_string())?;
        c
    } else {
        CorpusFile::for_tokenizer(tok)
    };
    let context = args
        .model
        .context(loaded.model.config.max_position_embeddings)?;
    let mut session = loaded.new_session(context)?;
    let sampler = Sampler::new(Default::default())?;
    let rules = StopRules {
        max_tokens: args.max_tokens,
        stop_ids: if args.through_eos {
            Vec::new()
        } else {
            tok.eog_ids().to_vec()
        },
        ..Default::default()
    };
    let mut answer = |lm: &mut dyn CausalLm, ids: Vec<u32>, what: &str| -> anyhow::Result<usize> {
        anyhow::ensure!(
            ids.len() + args.max_tokens <= context,
            "{what} ({} tokens) and --max-tokens {} do not fit the context of {context}",
            ids.len(),
            args.max_tokens
        );
        let g = generate(
            lm,
            &mut PlainDecoder,
            &sampler,
            &ids,
            &rules,
            None,
            &mut |_, _| {},
        )?;
        let n = g.token_ids.len();
        corpus.texts.push([ids, g.token_ids].concat());
        Ok(n)
    };
    let n_self = args.self_prompts.unwrap_or(0);
    let bar = LoadProgress::counting(
        (dataset_prompts.len() + n_self) as u64,
        "decoding prompts",
        !args.model.quiet,
    );
    let (mut generated, mut texts) = (0, 0);
    for (i, p) in dataset_prompts.iter().enumerate() {
        let ids = prompt_ids(tok, p, args.chat, None)?;
        generated += answer(session.as_mut(), ids, &format!("prompt {}", args.skip + i))?;
        texts += 1;
        bar.advance(1);
    }
    let mut dropped = 0;
    if let Some(self_rules) = &self_rules {
        let prefix = user_turn_prefix(tok)?;
        for i in 0..n_self {
            // Prompt and answer share the session; `generate` starts each from an empty cache.
            match write_prompt(session.as_mut(), tok, &prefix, self_rules, i)? {
                Some(p) => {
                    let ids = prompt_ids(tok, &p, true, None)?;
                    generated += answer(session.as_mut(), ids, &format!("self-prompt {i}"))?;
                    texts += 1;
                }
                None => dropped += 1,
            }
            bar.advance(1);
        }
    }
    bar.finish();
    corpus.write(&out)?;
    let index = corpus.index();
    let dropped_note = if dropped > 0 {
        format!(
            "; {dropped} of {n_self} self-prompts dropped (not ended within {} tokens)",
            args.self_prompt_max_tokens
        )
    } else {
        String::new()
    };
    args.model.log(&format!(
        "wrote {}: {} texts ({texts} new, {generated} generated tokens), {} tokens, {} contexts{dropped_note}",
        out.display(),
        index.texts(),
        index.tokens(),
        index.contexts()
    ));
    Ok(())
}
