//! `lade synth-model`: write a GGUF file of a named or custom LLaMA/Qwen2 shape with random
//! weights, to measure speed at sizes whose real weights are not at hand (see
//! docs/random-weight-models.md).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use lade::loader::progress::LoadProgress;
use lade::synth::{self, human_bytes, human_count, Arch, ModelShape, SynthSpec, TokenizerSource};

#[derive(Debug, Args)]
pub struct SynthModelArgs {
    /// Print the named shapes with their parameter counts and file sizes, and exit.
    #[arg(long)]
    pub list: bool,
    /// A named shape (see --list); the shape flags below change it. Without it, --hidden,
    /// --ffn, --layers and --heads give a custom shape.
    #[arg(long)]
    pub shape: Option<String>,
    /// The GGUF file to write (through FILE.partial, renamed when complete).
    #[arg(long, value_name = "FILE", required_unless_present = "list")]
    pub out: Option<PathBuf>,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
    /// Seed of the weights: the same seed writes the same bytes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Copy the tokenizer of this GGUF file (padded to the vocabulary) instead of writing the
    /// built-in byte-level one.
    #[arg(long, value_name = "MODEL.gguf")]
    pub tokenizer_from: Option<PathBuf>,
    /// Layout: `llama`, or `qwen2` (q/k/v biases).
    #[arg(long, value_name = "llama|qwen2")]
    pub arch: Option<String>,
    /// Hidden (embedding) size.
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Feed-forward (intermediate) size.
    #[arg(long)]
    pub ffn: Option<usize>,
    /// Number of layers.
    #[arg(long)]
    pub layers: Option<usize>,
    /// Attention heads.
    #[arg(long)]
    pub heads: Option<usize>,
    /// Key/value heads (grouped-query attention) [default: --heads].
    #[arg(long)]
    pub kv_heads: Option<usize>,
    /// Head dimension [default: hidden / heads].
    #[arg(long)]
    pub head_dim: Option<usize>,
    /// Vocabulary size [custom default: 32000].
    #[arg(long)]
    pub vocab: Option<usize>,
    /// Context length written to the metadata.
    #[arg(long)]
    pub ctx: Option<usize>,
    /// RoPE base frequency.
    #[arg(long)]
    pub rope_theta: Option<f32>,
    /// No progress bar and no summary line.
    #[arg(long, short)]
    pub quiet: bool,
}

fn shape_of(a: &SynthModelArgs) -> anyhow::Result<ModelShape> {
    let mut s = match &a.shape {
        Some(name) => {
            let mut s = ModelShape::named(name)?;
            let resized = a.hidden.is_some() || a.heads.is_some();
            s.hidden = a.hidden.unwrap_or(s.hidden);
            s.heads = a.heads.unwrap_or(s.heads);
            if resized && a.head_dim.is_none() {
                s.head_dim = ModelShape::head_dim_of(s.hidden, s.heads)?;
            }
            if resized || a.ffn.is_some() || a.head_dim.is_some() || a.kv_heads.is_some() {
                s.name = format!("{name}-modified");
            }
            s
        }
        None => {
            let need = |v: Option<usize>, flag: &str| {
                v.with_context(|| {
                    format!(
                        "give --shape NAME (known: {}) or a custom shape with --hidden, --ffn, \
                         --layers and --heads (missing {flag})",
                        synth::shape_names().join(", ")
                    )
                })
            };
            ModelShape::custom(
                need(a.hidden, "--hidden")?,
                need(a.ffn, "--ffn")?,
                need(a.layers, "--layers")?,
                need(a.heads, "--heads")?,
                a.head_dim,
                32000,
            )?
        }
    };
    if let Some(v) = a.ffn {
        s.ffn = v;
    }
    if let Some(v) = a.layers {
        s.layers = v;
    }
    if let Some(v) = a.kv_heads {
        s.kv_heads = v;
    }
    if let Some(v) = a.head_dim {
        s.head_dim = v;
    }
    if let Some(v) = a.vocab {
        s.vocab = v;
    }
    if let Some(v) = a.ctx {
        s.ctx = v;
    }
    if let Some(v) = a.rope_theta {
        s.rope_theta = v;
    }
    if let Some(arch) = &a.arch {
        s.arch = Arch::parse(arch)?;
    }
    Ok(s)
}

fn list() -> anyhow::Result<()> {
    println!(
        "| shape | arch | hidden | ffn | layers | heads / kv | vocab | ctx | parameters | f16 file | like |"
    );
    println!("|---|---|---:|---:|---:|---|---:|---:|---:|---:|---|");
    for (s, about) in synth::named_shapes() {
        let plan = synth::Plan::new(&SynthSpec {
            shape: s.clone(),
            seed: 0,
            tokenizer: TokenizerSource::Builtin,
        })?;
        println!(
            "| {} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} |",
            s.name,
            s.arch,
            s.hidden,
            s.ffn,
            s.layers,
            s.heads,
            s.kv_heads,
            s.vocab,
            s.ctx,
            human_count(s.param_count()),
            human_bytes(plan.file_len()?),
            about
        );
    }
    Ok(())
}

pub fn run(args: SynthModelArgs) -> anyhow::Result<()> {
    if args.list {
        return list();
    }
    let out = args.out.clone().context("--out FILE is required")?;
    let shape = shape_of(&args)?;
    if out.is_dir() {
        anyhow::bail!("--out {}: is a directory", out.display());
    }
    if out.exists() && !args.force {
        anyhow::bail!(
            "--out {}: the file exists (give --force to replace it)",
            out.display()
        );
    }
    let spec = SynthSpec {
        shape,
        seed: args.seed,
        tokenizer: match &args.tokenizer_from {
            Some(p) => TokenizerSource::CopyFrom(p.clone()),
            None => TokenizerSource::Builtin,
        },
    };
    let plan = synth::Plan::new(&spec)?;
    let total = plan.file_len()?;
    if !args.quiet {
        let s = &spec.shape;
        eprintln!(
            "writing {}: {} ({}), {} layers, hidden {}, ffn {}, heads {}/{}, vocab {}: {} \
             parameters, {}",
            out.display(),
            s.name,
            s.arch,
            s.layers,
            s.hidden,
            s.ffn,
            s.heads,
            s.kv_heads,
            s.vocab,
            human_count(s.param_count()),
            human_bytes(total)
        );
    }
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let bar = LoadProgress::new(total, &format!("writing {name}"), !args.quiet);
    let written = synth::write_model(&plan, &out, &mut |n| bar.advance(n))?;
    bar.finish();
    if !args.quiet {
        eprintln!(
            "wrote {} ({} in {:.1} s, {:.0} MB/s)",
            written.path.display(),
            human_bytes(written.bytes),
            written.seconds,
            written.bytes as f64 / 1e6 / written.seconds.max(1e-9)
        );
    }
    Ok(())
}
