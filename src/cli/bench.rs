//! `lade bench`: every prompt of a dataset under every decoding config, interleaved in one
//! process, with per-prompt speed ratios against greedy and step compression; `--out` writes
//! CSV, JSON, markdown tables and PNG plots (scaling law, ablation).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use lade::decode::DecoderKind;
use lade::generate::{generate, StopRules};
use lade::model::CausalLm;
use lade::sampling::{Sampler, SamplingParams};
use lade::tune::{self, build, AutoDecision, DecoderEnv, SamplingMode, Strategy};
use lade::LadeError;
use serde_json::json;

use super::bench_config::BenchConfig;
use super::bench_plot::{has_scaling, plot_ablation, plot_scaling, scaling_lines};
use super::bench_report::{
    ablation_markdown, ablation_rows, read_csv, summarize, summary_markdown, write_csv, Run,
    Summary,
};
use super::corpus_args::CorpusArgs;
use super::generate::{load_lookahead_prior, prompt_ids};
use super::model_args::{device_group, parse_devices};
use super::sampling_args::SamplingArgs;
use super::ModelArgs;

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// JSONL file with a `prompt` field per line (e.g. ../shared/data/mt_bench.jsonl).
    #[arg(long, required_unless_present = "from_runs")]
    pub dataset: Option<PathBuf>,
    /// Use only the first K prompts (with --from-runs: only the runs of the first K).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Tokens to generate per prompt (end-of-generation ids are ignored so that every config
    /// decodes the same length, unless --stop-at-eos).
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// End each generation at the model's first end-of-generation token, as a user's request
    /// ends (every config still decodes the same tokens; short answers make noisy rates).
    #[arg(long)]
    pub stop_at_eos: bool,
    /// Wrap prompts in the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// Configs separated by `;`: `greedy`, `auto` (what `--lookahead auto` picks),
    /// `lookahead:W,N,G` (suffix `-pool`: no prompt n-grams, `-ctx`: no context-matched
    /// candidate, `-adapt`: with W = 0 a fixed N-1-token draft, `-corpus`: no drafts from the
    /// draft corpus, `+ref`: the authors' mode),
    /// `prompt-lookup:N,G` (candidates from prompt and output n-grams only, no window), or a
    /// preset: `scaling` (G = W, N in 3,5,7,11, W in 1..64) or `ablation` (the paper's
    /// Table 3). Greedy, the baseline of speedups, runs first and is added when missing.
    #[arg(long, default_value = "greedy;lookahead:8,4,8")]
    pub configs: String,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write runs.csv (updated after every prompt), summary.json and summary.md into this
    /// directory, plus scaling_compression.png and scaling_speedup.png when the configs hold
    /// a G = W grid and ablation.md and ablation.png when they hold ablation configs.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Expected tokens per step for the `auto` config, one `W,N,G,tokens_per_step` per line
    /// [default: the model's `<model>.lookahead-prior` file, else the most cautious of the
    /// shipped priors].
    #[arg(long, value_name = "FILE")]
    pub lookahead_prior: Option<PathBuf>,
    /// Decode every prompt this many times per config and keep the fastest run (wall-clock
    /// numbers on a machine with other load; the tokens must be identical every time).
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Decode nothing: rebuild the outputs of --out from these runs.csv files (comma
    /// separated; for a config found in several, the first file's runs are kept).
    #[arg(long, value_delimiter = ',', requires = "out")]
    pub from_runs: Vec<PathBuf>,
    /// Lookahead Parallelism: run the `lookahead:` configs on one replica per listed device
    /// (`cpu,cpu`, `cuda:0,cuda:1`), steps split across them; the other configs (greedy, the
    /// baseline of speedups, included) run on the first device alone.
    #[arg(long, value_name = "LIST", conflicts_with = "device")]
    pub devices: Option<String>,
    /// Run no model steps: decode every config against the greedy outputs recorded in FILE
    /// (the `greedy.jsonl` that `--out` writes, for the same dataset, `--chat` and model),
    /// answered position by position. Steps, rows, compression and identity are exactly the
    /// model's for configs without a window (which the replay refuses); times are the
    /// decoders' own. For pricing the steps under another device's step-cost curve.
    #[arg(long, value_name = "FILE", conflicts_with = "devices")]
    pub replay: Option<PathBuf>,
    #[command(flatten)]
    pub corpus: CorpusArgs,
    /// Every config decodes with these settings: greedy unless `--temperature` is given, and
    /// then only the filters given (seed 0 unless `--seed`); `greedy` is then plain decoding
    /// with the same sampler, and "identical" compares each output with it.
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// What the reports say about the runs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Meta {
    dataset: String,
    model: String,
    device: String,
    max_tokens: usize,
    chat: bool,
    prompts: usize,
    /// Generations ended at the first end-of-generation token (`--stop-at-eos`).
    #[serde(default)]
    stop_at_eos: bool,
    /// The sampling settings of every config ([`SamplingParams::describe`]).
    #[serde(default = "greedy_label")]
    sampling: String,
}

fn greedy_label() -> String {
    SamplingParams::greedy().describe()
}

impl Meta {
    fn subtitle(&self) -> String {
        let file = |p: &str| {
            Path::new(p)
                .file_name()
                .map_or(p.to_string(), |f| f.to_string_lossy().into_owned())
        };
        format!(
            "{}{}, {} prompts × {} tokens, {}; {}; {}",
            file(&self.dataset),
            if self.chat { " (chat)" } else { "" },
            self.prompts,
            self.max_tokens,
            self.sampling,
            file(&self.model),
            self.device
        )
    }
}

pub fn read_prompts(path: &Path, limit: Option<usize>) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut prompts = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        if limit.is_some_and(|k| prompts.len() >= k) {
            break;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}", path.display(), i + 1))?;
        let p = v["prompt"]
            .as_str()
            .with_context(|| format!("line {} has no `prompt`", i + 1))?;
        prompts.push(p.to_string());
    }
    anyhow::ensure!(!prompts.is_empty(), "no prompts in {}", path.display());
    Ok(prompts)
}

/// One prompt's greedy generation, as `greedy.jsonl` keeps it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Recorded {
    prompt: usize,
    /// The prompt's token ids.
    ids: Vec<u32>,
    /// The greedy output's token ids.
    tokens: Vec<u32>,
}

fn read_recorded(path: &Path) -> anyhow::Result<Vec<Recorded>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{} line {}: not a greedy record", path.display(), i + 1))
        })
        .collect()
}

fn write_recorded(path: &Path, recorded: &[Recorded]) -> anyhow::Result<()> {
    let mut text = String::new();
    for r in recorded {
        text.push_str(&serde_json::to_string(r)?);
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if !args.from_runs.is_empty() {
        return replot(&args);
    }
    let configs = BenchConfig::parse_list(&args.configs)?;
    anyhow::ensure!(args.max_tokens > 0, "--max-tokens must be at least 1");
    args.sampling.validate()?;
    let sampling = args.sampling.explicit();
    let dataset = args.dataset.as_ref().context("--dataset is required")?;
    let prompts = read_prompts(dataset, args.limit)?;
    let devices = args.devices.as_deref().map(parse_devices).transpose()?;
    let loaded = match &devices {
        Some(d) => args.model.load_for_devices(d)?,
        None => args.model.load()?,
    };
    let context = args
        .model
        .context(loaded.model.config.max_position_embeddings)?;
    load_lookahead_prior(args.lookahead_prior.as_deref(), &loaded.path, &|l| {
        args.model.log(l)
    })?;
    let mode = SamplingMode::of(&sampling);
    let corpus = args.corpus.load(&loaded, &|l| args.model.log(l))?;
    let recorded = args.replay.as_deref().map(read_recorded).transpose()?;
    if recorded.is_some() {
        anyhow::ensure!(
            sampling.is_greedy() && sampling.repeat_penalty == 1.0,
            "--replay answers greedy outputs: it takes no --temperature or --repeat-penalty"
        );
        if let Some(c) = configs
            .iter()
            .find(|c| c.spec.lookahead_config().is_some_and(|l| l.window > 0))
        {
            anyhow::bail!(
                "--replay cannot decode {}: a window's rows see what the model writes after \
                 wrong tokens, which a greedy record does not hold",
                c.label
            );
        }
    }
    let mut greedy_out: Vec<Recorded> = Vec::new();
    let mut session = loaded.new_session(context)?;
    // Lookahead Parallelism over the devices of `--devices`, when there are several.
    let parallel: Vec<Option<usize>> = devices.filter(|l| l.len() > 1).unwrap_or_default();
    let group = (!parallel.is_empty())
        .then(|| device_group(&loaded, &parallel, context))
        .transpose()?;
    let sampler = Sampler::new(sampling)?;
    let rules = StopRules {
        max_tokens: args.max_tokens,
        stop_ids: if args.stop_at_eos {
            loaded.tokenizer.eog_ids().to_vec()
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    let device = loaded.device_label();
    let device = match &group {
        Some(g) => format!("{device}; lookahead on {} (parallel)", g.labels().join(",")),
        None => device,
    };
    // What the runs drafted from, beside the device in the report's header.
    let device = match &corpus {
        Some(c) => format!(
            "{device}; draft corpus of {} texts, {} tokens (configs without `-corpus`)",
            c.texts(),
            c.tokens()
        ),
        None => device,
    };
    // Greedy (the baseline) first, then the configs as listed.
    let mut order: Vec<&BenchConfig> = configs.iter().filter(|c| c.is_greedy()).collect();
    order.extend(configs.iter().filter(|c| !c.is_greedy()));

    let mut runs: Vec<Run> = Vec::new();
    let mut last_auto: Option<String> = None;
    // Configs the device cannot run (a kernel limit, say): reported and left out, so that a
    // sweep such as `scaling` still measures every config the device can run.
    let mut not_run: Vec<(String, String)> = Vec::new();
    for (pi, p) in prompts.iter().enumerate() {
        let ids = prompt_ids(&loaded.tokenizer, p, args.chat, None)?;
        let replayed = match &recorded {
            None => None,
            Some(rec) => {
                let r = rec
                    .iter()
                    .find(|r| r.prompt == pi)
                    .with_context(|| format!("--replay holds no prompt {pi}"))?;
                anyhow::ensure!(
                    r.ids == ids,
                    "--replay's prompt {pi} is another text (dataset, --chat or model differ)"
                );
                Some([r.ids.as_slice(), &r.tokens].concat())
            }
        };
        let mut greedy: Option<(Vec<u32>, f64)> = None;
        'configs: for cfg in &order {
            if not_run.iter().any(|(label, _)| *label == cfg.label) {
                continue;
            }
            // `lookahead:` configs run on the device group, if any; the others on the first
            // device alone.
            let spec = match cfg.spec.kind {
                DecoderKind::Lookahead { .. } if group.is_some() => {
                    cfg.spec.clone().with_devices(parallel.clone())
                }
                _ => cfg.spec.clone(),
            };
            let shared_corpus = || Ok(corpus.clone());
            let shared_group = || {
                group
                    .clone()
                    .ok_or_else(|| LadeError::InvalidArgument("--devices lists one device".into()))
            };
            let built = build(
                &spec,
                &DecoderEnv::on_model(
                    &loaded,
                    context.saturating_sub(ids.len() + args.max_tokens),
                    mode,
                    &shared_corpus,
                    &shared_group,
                ),
            )?;
            let mut dec = built.decoder;
            let mut on_group = built.group;
            let mut auto_pick = None;
            let mut replay_lm = match &replayed {
                Some(text) => {
                    if let Some(AutoDecision::Measured(choice)) = &built.auto {
                        anyhow::ensure!(
                            !matches!(choice.strategy, Strategy::Lookahead(c) if c.window > 0),
                            "--replay cannot decode {}: it picked a window ({})",
                            cfg.label,
                            choice.describe()
                        );
                    }
                    let lm = session.as_mut();
                    Some(lade::model::ReplayLm::new(
                        text.clone(),
                        lm.vocab_size(),
                        lm.context_size(),
                    )?)
                }
                None => None,
            };
            if let Some(AutoDecision::Measured(choice)) = &built.auto {
                let line = choice.describe();
                if last_auto.as_deref() != Some(line.as_str()) {
                    args.model.log(&format!("auto: {line}"));
                    last_auto = Some(line);
                }
                if let Strategy::Lookahead(c) = choice.strategy {
                    auto_pick = Some(c);
                }
            }
            // The fastest of `--repeat` runs (the tokens are the same every time).
            let mut best: Option<lade::generate::Generation> = None;
            for _ in 0..args.repeat.max(1) {
                let lm: &mut dyn CausalLm = match (&mut on_group, &mut replay_lm) {
                    (_, Some(r)) => {
                        r.truncate(0);
                        r
                    }
                    (Some(grp), None) => grp,
                    (None, None) => session.as_mut(),
                };
                let g = match generate(
                    lm,
                    dec.as_mut(),
                    &sampler,
                    &ids,
                    &rules,
                    None,
                    &mut |_, _| {},
                ) {
                    Ok(g) => g,
                    Err(LadeError::Unsupported(why)) if !cfg.is_greedy() && pi == 0 => {
                        eprintln!("warning: {} is not run on this device: {why}", cfg.label);
                        not_run.push((cfg.label.clone(), why));
                        continue 'configs;
                    }
                    Err(e) => return Err(e.into()),
                };
                if let Some(b) = &best {
                    anyhow::ensure!(
                        b.token_ids == g.token_ids,
                        "{} decoded prompt {pi} differently when repeated",
                        cfg.label
                    );
                }
                if best
                    .as_ref()
                    .is_none_or(|b| g.stats.decode_ms < b.stats.decode_ms)
                {
                    best = Some(g);
                }
            }
            let g = best.expect("at least one run");
            let s = &g.stats;
            if let Some(c) = auto_pick {
                tune::record(&c, mode, s.generated_tokens, &s.steps_by_rows);
            }
            let (identical, speedup) = match &greedy {
                Some((toks, tps)) if !cfg.is_greedy() => (
                    Some(*toks == g.token_ids),
                    Some(s.decode_tokens_per_s / tps),
                ),
                _ => (None, None),
            };
            if cfg.is_greedy() && greedy.is_none() {
                greedy = Some((g.token_ids.clone(), s.decode_tokens_per_s));
                if replayed.is_none() {
                    greedy_out.push(Recorded {
                        prompt: pi,
                        ids: ids.clone(),
                        tokens: g.token_ids.clone(),
                    });
                }
            }
            args.model.log(&format!(
                "prompt {pi:>3} {:<24} {:>4} tokens {:>4} steps {:>8.1} tok/s compression {:.2}",
                cfg.label, s.generated_tokens, s.steps, s.decode_tokens_per_s, s.compression
            ));
            runs.push(Run {
                prompt: pi,
                config: cfg.label.clone(),
                tokens: s.generated_tokens,
                steps: s.steps,
                decode_ms: s.decode_ms,
                tokens_per_s: s.decode_tokens_per_s,
                compression: s.compression,
                identical_to_greedy: identical,
                speedup,
                decoder: dec.name(),
                rows: s.rows(),
                steps_by_rows: s.steps_by_rows.clone(),
                model_ms: s.model_ms,
            });
        }
        // Runs so far, so that a long benchmark stopped midway still leaves its results.
        if let Some(dir) = &args.out {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            write_csv(&dir.join("runs.csv"), &runs)?;
            if !greedy_out.is_empty() {
                write_recorded(&dir.join("greedy.jsonl"), &greedy_out)?;
            }
        }
    }
    let configs: Vec<BenchConfig> = configs
        .into_iter()
        .filter(|c| !not_run.iter().any(|(label, _)| *label == c.label))
        .collect();
    anyhow::ensure!(
        configs.iter().any(|c| !c.is_greedy()) || not_run.is_empty(),
        "no config of --configs could run on this device ({})",
        not_run
            .iter()
            .map(|(label, why)| format!("{label}: {why}"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let meta = Meta {
        dataset: dataset.display().to_string(),
        model: loaded.path.display().to_string(),
        device,
        max_tokens: args.max_tokens,
        chat: args.chat,
        prompts: prompts.len(),
        stop_at_eos: args.stop_at_eos,
        sampling: sampling.describe(),
    };
    report(&args, &configs, &runs, &meta)?;
    for (label, why) in &not_run {
        println!("not run on this device: {label} ({why})");
    }
    Ok(())
}

/// `--from-runs`: the outputs of earlier runs, merged.
fn replot(args: &BenchArgs) -> anyhow::Result<()> {
    let mut runs: Vec<Run> = Vec::new();
    let mut labels: Vec<String> = Vec::new();
    let mut meta: Option<Meta> = None;
    for path in &args.from_runs {
        let before: HashSet<String> = labels.iter().cloned().collect();
        for r in read_csv(path)? {
            if before.contains(&r.config) || args.limit.is_some_and(|k| r.prompt >= k) {
                continue;
            }
            if !labels.contains(&r.config) {
                labels.push(r.config.clone());
            }
            runs.push(r);
        }
        if meta.is_none() {
            meta = path
                .parent()
                .map(|d| d.join("summary.json"))
                .and_then(|p| std::fs::read_to_string(p).ok())
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| serde_json::from_value::<Meta>(v["meta"].clone()).ok());
        }
    }
    let configs: Vec<BenchConfig> = labels
        .iter()
        .map(|l| BenchConfig::parse(l))
        .collect::<anyhow::Result<_>>()?;
    let prompts = runs.iter().map(|r| r.prompt + 1).max().unwrap_or(0);
    let meta = meta.unwrap_or(Meta {
        dataset: "unknown dataset".into(),
        model: "unknown model".into(),
        device: "unknown device".into(),
        max_tokens: runs.iter().map(|r| r.tokens).max().unwrap_or(0),
        chat: false,
        prompts,
        stop_at_eos: false,
        sampling: greedy_label(),
    });
    report(args, &configs, &runs, &Meta { prompts, ..meta })
}

/// Prints the summary and writes the files of `--out`.
fn report(
    args: &BenchArgs,
    configs: &[BenchConfig],
    runs: &[Run],
    meta: &Meta,
) -> anyhow::Result<()> {
    let summary = summarize(configs, runs);
    let report = json!({
        "dataset": meta.dataset,
        "model": meta.model,
        "device": meta.device,
        "max_tokens": meta.max_tokens,
        "chat": meta.chat,
        "meta": meta,
        "summary": summary,
    });
    let table = format!(
        "device: {}; {} prompts; {} new tokens each{}; {}\n{}",
        meta.device,
        meta.prompts,
        meta.max_tokens,
        if meta.stop_at_eos {
            " at most, ended at the end-of-generation token"
        } else {
            ""
        },
        meta.sampling,
        summary_markdown(&summary)
    );
    if let Some(dir) = &args.out {
        write_outputs(dir, configs, runs, &summary, meta, &report, &table)?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{table}");
    }
    Ok(())
}

fn write_outputs(
    dir: &Path,
    configs: &[BenchConfig],
    runs: &[Run],
    summary: &[Summary],
    meta: &Meta,
    report: &serde_json::Value,
    table: &str,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_csv(&dir.join("runs.csv"), runs)?;
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    std::fs::write(dir.join("summary.md"), table)?;
    let subtitle = meta.subtitle();
    if !ablation_rows(summary).is_empty() {
        std::fs::write(
            dir.join("ablation.md"),
            ablation_markdown(summary, &subtitle),
        )?;
        plot_ablation(&dir.join("ablation.png"), summary, &subtitle)?;
    }
    if has_scaling(configs, summary) {
        let lines = scaling_lines(configs, summary);
        plot_scaling(
            &dir.join("scaling_compression.png"),
            &lines,
            false,
            &subtitle,
        )?;
        if lines
            .iter()
            .any(|(_, pts)| pts.iter().any(|p| p.speedup.is_some()))
        {
            plot_scaling(&dir.join("scaling_speedup.png"), &lines, true, &subtitle)?;
        }
    }
    Ok(())
}
