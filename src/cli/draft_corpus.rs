//! `lade draft-corpus`: decode a prompt set greedily and write the texts (prompt + output
//! ids) as a draft corpus for `--draft-corpus` (see `lade::decode::DraftCorpus`).

use std::path::PathBuf;

use clap::Args;
use lade::decode::{CorpusFile, PlainDecoder};
use lade::generate::{generate, StopRules};
use lade::loader::progress::LoadProgress;
use lade::sampling::Sampler;

use super::bench::read_prompts;
use super::generate::prompt_ids;
use super::ModelArgs;

#[derive(Debug, Args)]
pub struct DraftCorpusArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// JSONL file with a `prompt` field per line.
    #[arg(long)]
    pub dataset: PathBuf,
    /// Wrap prompts in the model's chat template.
    #[arg(long)]
    pub chat: bool,
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
    /// The corpus file to write.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: DraftCorpusArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.max_tokens > 0, "--max-tokens must be at least 1");
    let all = read_prompts(&args.dataset, args.limit.map(|l| l + args.skip))?;
    anyhow::ensure!(
        all.len() > args.skip,
        "{} has {} prompts, all left out by --skip {}",
        args.dataset.display(),
        all.len(),
        args.skip
    );
    let prompts = &all[args.skip..];
    let loaded = args.model.load()?;
    let tok = &loaded.tokenizer;
    let mut corpus = if args.append && args.out.exists() {
        let c = CorpusFile::read(&args.out)?;
        c.check_tokenizer(tok, &args.out.display().to_string())?;
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
    let bar = LoadProgress::counting(prompts.len() as u64, "decoding prompts", !args.model.quiet);
    let mut generated = 0;
    for (i, p) in prompts.iter().enumerate() {
        let ids = prompt_ids(tok, p, args.chat, None)?;
        anyhow::ensure!(
            ids.len() + args.max_tokens <= context,
            "prompt {} ({} tokens) and --max-tokens {} do not fit the context of {context}",
            args.skip + i,
            ids.len(),
            args.max_tokens
        );
        let g = generate(
            session.as_mut(),
            &mut PlainDecoder,
            &sampler,
            &ids,
            &rules,
            None,
            &mut |_, _| {},
        )?;
        generated += g.token_ids.len();
        corpus.texts.push([ids, g.token_ids].concat());
        bar.advance(1);
    }
    bar.finish();
    corpus.write(&args.out)?;
    let index = corpus.index();
    args.model.log(&format!(
        "wrote {}: {} texts ({} new, {generated} generated tokens), {} tokens, {} contexts",
        args.out.display(),
        index.texts(),
        prompts.len(),
        index.tokens(),
        index.contexts()
    ));
    Ok(())
}
