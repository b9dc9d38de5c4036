//! `lade serve`: the OpenAI-compatible HTTP server (see `lade::server`).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use lade::decode::DecoderKind;
use lade::server::{
    serve_with, DeviceSet, GroupDevice, ServedModel, ServedModelLoader, ServerConfig,
};

use super::corpus_args::CorpusArgs;
use super::model_args::{device_name, parse_devices};
use super::ModelArgs;

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub corpus: CorpusArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port; the chosen one is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on every endpoint but /health.
    #[arg(long, env = "LADE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Generations running at once.
    #[arg(long, default_value_t = 4)]
    pub max_concurrent: usize,
    /// Requests that may wait for a slot; beyond that, 429 with Retry-After.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Decoding of requests that do not choose with their `lookahead` field: W,N,G, `auto`
    /// (plain decoding on the CPU, as `lade generate`) or `off`.
    #[arg(long, value_name = "W,N,G|auto|off", default_value = "auto")]
    pub lookahead: String,
    /// Expected tokens per step for `--lookahead auto` before any request has run, one
    /// `W,N,G,tokens_per_step` per line [default: the model's `<model>.lookahead-prior` file,
    /// else the most cautious of the shipped priors]. Requests then refine it.
    #[arg(long, value_name = "FILE")]
    pub lookahead_prior: Option<std::path::PathBuf>,
    /// The model name clients send [default: the model file's name without extension].
    #[arg(long)]
    pub model_name: Option<String>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    pub max_body_bytes: usize,
    /// Seconds in-flight requests may run after SIGTERM/SIGINT before they are ended.
    #[arg(long, default_value_t = 30.0)]
    pub shutdown_grace: f64,
    /// Lookahead Parallelism: one replica of the model per listed device (`cpu,cpu` or
    /// `cuda:0,cuda:1`); every lookahead request runs on a device group of its own (one
    /// session and host thread per device), its window columns and candidates split across
    /// them. Plain requests run on the first device; `--lookahead auto` means 8,4,8 here. A
    /// single entry is the same as `--device`.
    #[arg(long, value_name = "LIST", conflicts_with = "device")]
    pub devices: Option<String>,
    /// Give every request a fresh session (KV cache, and on a GPU its captured step graphs)
    /// instead of reusing a finished request's that fits (up to --max-concurrent are kept).
    #[arg(long)]
    pub fresh_sessions: bool,
}

/// The devices of `--devices` (two or more): the first shares the server's model (loaded
/// there), every other GPU gets one copy of its own, loaded once and shared by its entries.
fn device_set(
    model: &ModelArgs,
    list: &[Option<usize>],
    first: Option<usize>,
) -> anyhow::Result<DeviceSet> {
    let mut copies: HashMap<usize, Arc<lade::loader::LoadedModel>> = HashMap::new();
    let mut devices = Vec::with_capacity(list.len());
    for &d in list {
        let own = match d {
            Some(n) if d != first => Some(match copies.get(&n) {
                Some(m) => m.clone(),
                None => {
                    let m = Arc::new(
                        model
                            .load_on(Some(n))
                            .with_context(|| format!("loading the replica for cuda:{n}"))?,
                    );
                    copies.insert(n, m.clone());
                    m
                }
            }),
            _ => None,
        };
        devices.push(GroupDevice {
            label: device_name(d),
            gpu: d,
            model: own,
        });
    }
    Ok(DeviceSet::new(devices)?)
}

/// The model name of a GGUF file or checkpoint directory.
fn model_id(path: &Path) -> String {
    let name = if path.is_dir() {
        path.file_name()
    } else {
        path.file_stem()
    };
    name.map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "lade".to_string())
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.max_concurrent >= 1,
        "--max-concurrent must be at least 1"
    );
    anyhow::ensure!(
        args.shutdown_grace.is_finite() && args.shutdown_grace >= 0.0,
        "--shutdown-grace must be a number of seconds >= 0"
    );
    anyhow::ensure!(
        args.max_body_bytes > 0,
        "--max-body-bytes must be at least 1"
    );
    if let Some(k) = &args.api_key {
        anyhow::ensure!(!k.trim().is_empty(), "--api-key must not be empty");
    }
    let lookahead = DecoderKind::parse(&args.lookahead).context("--lookahead")?;
    if let Some(p) = &args.lookahead_prior {
        anyhow::ensure!(
            lookahead == DecoderKind::Auto,
            "--lookahead-prior {}: only `--lookahead auto` reads a prior (the server's default \
             decoding is {})",
            p.display(),
            lookahead.label()
        );
        lade::tune::AcceptanceTable::read(p).context("--lookahead-prior")?;
    }
    let devices = args.devices.as_deref().map(parse_devices).transpose()?;
    if let (Some(list), Some(s)) = (&devices, &args.devices) {
        anyhow::ensure!(
            list.iter().all(Option::is_none) || lade::loader::Backend::cuda_available(),
            "--devices {s}: no CUDA device can be used (this lade was built without CUDA \
             support, or no GPU is visible)"
        );
    }
    if args.model.ctx_size == Some(0) {
        anyhow::bail!("--ctx-size must be at least 1");
    }
    // Before any thread pool starts.
    args.model.apply_threads()?;

    let path = args.model.model_path_hint();
    let config = ServerConfig {
        model_id: args.model_name.clone().unwrap_or_else(|| model_id(&path)),
        api_key: args.api_key.clone().map(|k| k.trim().to_string()),
        max_concurrent: args.max_concurrent,
        queue: args.queue,
        lookahead,
        lookahead_prior: args.lookahead_prior.clone(),
        max_body_bytes: args.max_body_bytes,
        shutdown_grace: Duration::from_secs_f64(args.shutdown_grace),
        log: !args.model.quiet,
        reuse_sessions: !args.fresh_sessions,
    };
    let model_args = args.model.clone();
    let corpus_args = args.corpus.clone();
    let loader: ServedModelLoader = Box::new(move || {
        let loaded = match &devices {
            Some(list) => model_args.load_for_devices(list)?,
            None => model_args.load()?,
        };
        let context = model_args.context(loaded.model.config.max_position_embeddings)?;
        let devices = match devices.as_deref() {
            Some(list) if list.len() > 1 => Some(device_set(
                &model_args,
                list,
                list.iter().flatten().next().copied(),
            )?),
            _ => None,
        };
        let corpus = corpus_args.load(&loaded, &|l| model_args.log(l))?;
        Ok(ServedModel {
            loaded,
            context,
            devices,
            corpus,
        })
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
        let addr = listener.local_addr()?;
        // One line on stdout, for scripts and tests that start the server on port 0.
        println!("listening on http://{addr}");
        std::io::stdout().flush()?;
        serve_with(listener, config, loader, shutdown_signal()).await
    });
    // A model still loading must not hold the process.
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
