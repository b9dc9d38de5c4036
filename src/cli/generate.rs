//! `lade generate`: one prompt, text streamed to stdout, optional JSON summary.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use lade::chat_template::{ChatMessage, ChatTemplate};
use lade::decode::{Decoder, DecoderKind, DecoderSpec, DraftSwitches};
use lade::generate::{generate, StopRules};
use lade::model::CausalLm;
use lade::sampling::{fresh_seed, PartialSampling, Sampler, SamplingParams};
use lade::tokenizer::TextTokenizer;
use lade::tune::{build, AutoDecision, DecoderEnv, SamplingMode};
use serde_json::json;

use super::corpus_args::CorpusArgs;
use super::model_args::{device_group, device_name, parse_devices};
use super::sampling_args::SamplingArgs;
use super::ModelArgs;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt text.
    #[arg(long, short, conflicts_with = "prompt_file")]
    pub prompt: Option<String>,
    /// Read the prompt from a file.
    #[arg(long)]
    pub prompt_file: Option<PathBuf>,
    /// Wrap the prompt in the model's chat template as a user message.
    #[arg(long)]
    pub chat: bool,
    /// System message for --chat.
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    /// Most tokens to generate.
    #[arg(long, short = 'n', default_value_t = 256)]
    pub max_tokens: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Stop when the text contains this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Print one JSON object with text, ids and stats instead of streaming text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub lookahead: LookaheadArgs,
    #[command(flatten)]
    pub corpus: CorpusArgs,
    /// Lookahead Parallelism: one replica of the model per listed device (`cpu,cpu` or
    /// `cuda:0,cuda:1`), one host thread each; every step's window columns and candidates
    /// are split across them and only token ids are exchanged. Needs lookahead (`auto`
    /// means 8,4,8 here). A single entry is the same as `--device`.
    #[arg(long, value_name = "LIST", conflicts_with = "device")]
    pub devices: Option<String>,
    /// Colour tokens that came from verified n-grams (terminal only).
    #[arg(long)]
    pub show_accepted: bool,
}

/// Lookahead Decoding options of `lade generate` ([`LookaheadArgs::spec`]).
#[derive(Debug, Clone, Args)]
pub struct LookaheadArgs {
    /// Lookahead window W, n-gram size N and candidates per step G, or `auto`: time forward
    /// passes of a few sizes on the loaded model (once per process) and pick the config with
    /// the highest expected tokens per second from a measured acceptance prior, or plain
    /// decoding when none beats it (on a CPU, where every extra query token costs about as
    /// much as a decoded one, that is plain decoding; see docs/benchmarks.md); `off` is
    /// --no-lookahead.
    #[arg(long, value_name = "W,N,G|auto|off", default_value = "auto")]
    pub lookahead: String,
    /// Plain decoding, one token per forward pass.
    #[arg(long)]
    pub no_lookahead: bool,
    /// Do not seed the n-gram pool with the prompt and the committed output.
    #[arg(long)]
    pub no_pool_from_prompt: bool,
    /// Do not put the continuation of the longest matching earlier context (prompt lookup
    /// with a 2-3 token key) among the candidates.
    #[arg(long)]
    pub no_context_match: bool,
    /// Without a window (W = 0): verify one N-1-token context-matched candidate every step
    /// instead of one whose length follows how much context matched.
    #[arg(long)]
    pub fixed_draft: bool,
    /// Reproduce the authors' choices (at most N-1 tokens per step) for comparison.
    #[arg(long)]
    pub reference_compat: bool,
    /// Learn the lengths of the drafts found in the text and in the draft corpus from this
    /// generation, priced by the step costs measured on the device, instead of reaching as far
    /// as the matched context (`auto` does this for its picks without a window).
    #[arg(long)]
    pub learned_draft_lengths: bool,
    /// Expected tokens per step for `--lookahead auto`, one `W,N,G,tokens_per_step` per
    /// line (e.g. measured with `lade bench` on this model) [default: the model's
    /// `<model>.lookahead-prior` file, else the most cautious of the shipped priors].
    #[arg(long, value_name = "FILE")]
    pub lookahead_prior: Option<PathBuf>,
}

/// Installs the acceptance prior of `auto` for the model at `model`: the `--lookahead-prior`
/// file if given, else the model's own, else the shipped ones ([`lade::tune::load_prior`]).
pub fn load_lookahead_prior(
    path: Option<&std::path::Path>,
    model: &std::path::Path,
    log: &dyn Fn(&str),
) -> anyhow::Result<()> {
    lade::tune::load_prior(path, model, &mut |l| log(l))?;
    Ok(())
}

impl LookaheadArgs {
    /// The drafting switches these flags give (the others at their defaults).
    pub fn switches(&self) -> DraftSwitches {
        DraftSwitches {
            pool_from_prompt: !self.no_pool_from_prompt,
            reference_compat: self.reference_compat,
            context_match: !self.no_context_match,
            adaptive_draft: !self.fixed_draft,
            learned_lengths: self.learned_draft_lengths,
            ..DraftSwitches::DEFAULT
        }
    }

    /// The decoder these flags ask for, checked: `seed` seeds the lookahead window and
    /// `devices` (of `--devices`) run Lookahead Parallelism when there are several.
    pub fn spec(&self, seed: u64, devices: Vec<Option<usize>>) -> lade::Result<DecoderSpec> {
        let kind = if self.no_lookahead {
            DecoderKind::Plain
        } else {
            DecoderKind::parse(&self.lookahead)?
        };
        let spec = DecoderSpec::new(kind)
            .with_switches(self.switches())
            .with_seed(seed)
            .with_devices(devices);
        spec.validate()?;
        Ok(spec)
    }
}

/// The sampling settings of a run: the flags given over the model's `recommended` settings
/// over llama.cpp's defaults ([`PartialSampling::resolve`]), with the seed of `--seed`, else
/// 0 for greedy decoding (where it only seeds the lookahead window) and a fresh random one
/// for sampling. Also the line that describes them for the log.
pub fn resolve_sampling(
    args: &SamplingArgs,
    recommended: &PartialSampling,
) -> (SamplingParams, String) {
    let given = args.given();
    let greedy = PartialSampling::resolve(&given, recommended, 0).is_greedy();
    let seed = match args.seed {
        Some(s) => s,
        None if greedy => 0,
        None => fresh_seed(),
    };
    let params = PartialSampling::resolve(&given, recommended, seed);
    let mut notes = Vec::new();
    if given.temperature.is_none() || !greedy {
        notes.push(if recommended.is_empty() {
            "flags not given: llama.cpp's defaults".to_string()
        } else {
            "flags not given: the model's recommendation".to_string()
        });
    }
    if args.seed.is_none() && !greedy {
        notes.push(format!("repeat with --seed {seed}"));
    }
    let mut line = format!("sampling: {}", params.describe());
    if !notes.is_empty() {
        line.push_str(&format!(" ({})", notes.join("; ")));
    }
    (params, line)
}

impl GenerateArgs {
    fn prompt_text(&self) -> anyhow::Result<String> {
        let text = match (&self.prompt, &self.prompt_file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .with_context(|| format!("reading prompt file {}", f.display()))?,
            (None, None) => anyhow::bail!("give a prompt with --prompt TEXT or --prompt-file FILE"),
        };
        anyhow::ensure!(!text.is_empty(), "the prompt is empty");
        Ok(text)
    }
}

/// Prompt token ids: raw text, or a user turn rendered with the model's chat template.
pub fn prompt_ids(
    tok: &TextTokenizer,
    text: &str,
    chat: bool,
    system: Option<&str>,
) -> anyhow::Result<Vec<u32>> {
    let rendered = if chat {
        render_user_turn(tok, text, system)?
    } else {
        text.to_string()
    };
    let ids = tok.encode_prompt(&rendered)?;
    anyhow::ensure!(!ids.is_empty(), "the prompt encodes to no tokens");
    Ok(ids)
}

/// The prompt text of a user turn `text` (after a system turn `system`, if given) in the
/// model's chat template, ending with the opening of the assistant's turn.
pub fn render_user_turn(
    tok: &TextTokenizer,
    text: &str,
    system: Option<&str>,
) -> anyhow::Result<String> {
    let template = ChatTemplate::from_tokenizer(tok)?;
    let mut messages = Vec::new();
    if let Some(s) = system {
        messages.push(ChatMessage::new("system", s));
    }
    messages.push(ChatMessage::new("user", text));
    Ok(template.render(
        &messages,
        true,
        tok.bos_token().as_deref().unwrap_or(""),
        tok.eos_token().as_deref().unwrap_or(""),
    )?)
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    args.sampling.validate()?;
    let devices = args.devices.as_deref().map(parse_devices).transpose()?;
    // The decoding options are checked before the model loads.
    args.lookahead
        .spec(0, devices.clone().unwrap_or_default())?;
    anyhow::ensure!(args.max_tokens > 0, "--max-tokens must be at least 1");
    let text = args.prompt_text()?;
    let loaded = match &devices {
        Some(d) => args.model.load_for_devices(d)?,
        None => args.model.load()?,
    };
    let tok = &loaded.tokenizer;
    let ids = prompt_ids(tok, &text, args.chat, args.system.as_deref())?;
    let (sampling, sampling_line) = resolve_sampling(&args.sampling, &loaded.recommended_sampling);
    sampling.validate()?;
    args.model.log(&sampling_line);
    let seed = sampling.seed;
    let spec = args.lookahead.spec(seed, devices.unwrap_or_default())?;
    if let Some(p) = &args.lookahead.lookahead_prior {
        anyhow::ensure!(
            spec.kind == DecoderKind::Auto && !spec.is_parallel(),
            "--lookahead-prior {}: only `--lookahead auto` on one device reads a prior \
             (this run decodes with {})",
            p.display(),
            spec.kind.label()
        );
    }
    if spec.kind == DecoderKind::Auto && !spec.is_parallel() {
        load_lookahead_prior(
            args.lookahead.lookahead_prior.as_deref(),
            &loaded.path,
            &|l| args.model.log(l),
        )?;
    }
    let context = args
        .model
        .context(loaded.model.config.max_position_embeddings)?;
    // Indexed only for a decoder that drafts (auto on the CPU decodes plainly).
    let corpus = || args.corpus.load(&loaded, &|l| args.model.log(l));
    let group = || device_group(&loaded, &spec.devices, context);
    let built = build(
        &spec,
        &DecoderEnv::on_model(
            &loaded,
            context.saturating_sub(ids.len() + args.max_tokens),
            SamplingMode::of(&sampling),
            &corpus,
            &group,
        ),
    )?;
    let mut decoder: Box<dyn Decoder> = built.decoder;
    let device_names: Vec<String> = spec.devices.iter().map(|&d| device_name(d)).collect();
    let mut auto = None;
    let mut session: Box<dyn CausalLm + Send> = match built.group {
        Some(group) => {
            args.model.log(&format!(
                "lookahead parallelism: {} on {} (host-channel exchange){}",
                decoder.name(),
                device_names.join(","),
                if matches!(built.auto, Some(AutoDecision::ParallelDefault)) {
                    "; --lookahead auto is single-device, using the default config"
                } else {
                    ""
                }
            ));
            Box::new(group)
        }
        None => {
            if let Some(AutoDecision::Measured(choice)) = built.auto {
                args.model
                    .log(&format!("lookahead auto: {}", choice.describe()));
                auto = Some(choice);
            }
            loaded.new_session(context)?
        }
    };
    let sampler = Sampler::new(sampling)?;
    let rules = StopRules {
        max_tokens: args.max_tokens,
        stop_ids: tok.eog_ids().to_vec(),
        stop_strings: args.stop.clone(),
        ..Default::default()
    };
    let stream = !args.json;
    let colour = args.show_accepted && std::io::stdout().is_terminal();
    let mut stdout = std::io::stdout().lock();
    let mut sink = |piece: &str, from_draft: bool| {
        if stream {
            let _ = if colour && from_draft {
                write!(stdout, "\x1b[32m{piece}\x1b[0m")
            } else {
                stdout.write_all(piece.as_bytes())
            };
            let _ = stdout.flush();
        }
    };
    let gen = generate(
        session.as_mut(),
        decoder.as_mut(),
        &sampler,
        &ids,
        &rules,
        Some(tok),
        &mut sink,
    )?;
    if gen.hit_context_limit {
        args.model.log(&format!(
            "\n[stopped: the context of {context} positions is full; raise --ctx-size]"
        ));
    }
    let s = &gen.stats;
    if args.json {
        let out = json!({
            "text": gen.text,
            "token_ids": gen.token_ids,
            "prompt_tokens": gen.prompt_tokens,
            "finish_reason": gen.finish_reason,
            "stats": {
                "seed": seed,
                "sampling": sampling,
                "steps": s.steps,
                "generated_tokens": s.generated_tokens,
                "compression": s.compression,
                "prefill_ms": s.prefill_ms,
                "decode_ms": s.decode_ms,
                "decode_tokens_per_s": s.decode_tokens_per_s,
                "model_ms": s.model_ms,
                "decoder": decoder.name(),
                "accepted_per_step": s.accepted_per_step,
                "steps_by_rows": s.steps_by_rows,
                "mean_accepted": s.compression,
                "step_ms": if s.steps > 0 { s.decode_ms / s.steps as f64 } else { 0.0 },
                "lookahead": decoder.stats_json(),
                "devices": spec.is_parallel().then_some(&device_names),
                "auto": auto.as_ref().map(|c| json!({
                    "strategy": c.strategy,
                    "expected_tokens_per_s": c.expected_tokens_per_s,
                    "plain_tokens_per_s": c.plain_tokens_per_s,
                    "best_lookahead": c.best_lookahead,
                    "forward_seconds_by_rows": c.cost.samples(),
                })),
            },
        });
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!();
        args.model.log(&format!(
            "[{} prompt tokens, prefill {:.0} ms ({:.1} tok/s); {} tokens in {} steps, {:.1} tok/s, compression {:.2}, finish: {:?}]",
            gen.prompt_tokens,
            s.prefill_ms,
            if s.prefill_ms > 0.0 { (gen.prompt_tokens.saturating_sub(1)) as f64 / (s.prefill_ms / 1e3) } else { 0.0 },
            s.generated_tokens,
            s.steps,
            s.decode_tokens_per_s,
            s.compression,
            gen.finish_reason
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use lade::decode::{DecoderKind, DecoderSpec, DraftSwitches};

    use super::LookaheadArgs;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        lookahead: LookaheadArgs,
    }

    fn spec(args: &[&str]) -> lade::Result<DecoderSpec> {
        let flags = Flags::try_parse_from(std::iter::once("lade").chain(args.iter().copied()))
            .expect("known flags");
        flags.lookahead.spec(5, Vec::new())
    }

    #[test]
    fn flags_give_the_spec_of_the_bench_syntax() {
        // The default is auto.
        assert_eq!(spec(&[]).unwrap().kind, DecoderKind::Auto);
        for off in [&["--no-lookahead"][..], &["--lookahead", "off"][..]] {
            assert_eq!(spec(off).unwrap().kind, DecoderKind::Plain, "{off:?}");
        }
        let flags = spec(&[
            "--lookahead",
            "1,5,1",
            "--no-pool-from-prompt",
            "--no-context-match",
            "--reference-compat",
        ])
        .unwrap();
        let bench = DecoderSpec::parse_config("lookahead:1,5,1-pool-ctx+ref").unwrap();
        assert_eq!(flags, bench.with_seed(5));
        let learned = spec(&["--lookahead", "0,8,1", "--learned-draft-lengths"]).unwrap();
        assert_eq!(
            learned,
            DecoderSpec::parse_config("lookahead:0,8,1+learn")
                .unwrap()
                .with_seed(learned.seed)
        );
        let fixed = spec(&["--lookahead", "0,8,1", "--fixed-draft"]).unwrap();
        assert_eq!(
            fixed.switches,
            DraftSwitches {
                adaptive_draft: false,
                ..DraftSwitches::DEFAULT
            }
        );
    }

    #[test]
    fn bad_flags_are_clear_errors() {
        let e = spec(&["--lookahead", "3,1,2"]).unwrap_err().to_string();
        assert!(e.contains("at least 2"), "{e}");
        let e = spec(&["--lookahead", "fast"]).unwrap_err().to_string();
        assert!(e.contains("W,N,G"), "{e}");
        let flags = Flags::try_parse_from(["lade", "--no-lookahead"]).unwrap();
        let e = flags
            .lookahead
            .spec(0, vec![None, None])
            .unwrap_err()
            .to_string();
        assert!(e.contains("Lookahead Parallelism"), "{e}");
    }
}
