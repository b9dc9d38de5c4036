//! Model loading: GGUF files and Hugging Face safetensors directories.

pub mod gguf;
pub mod gguf_write;
pub mod progress;
pub mod safetensors;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;

use crate::model::{CausalLm, Llama, Session, WeightFormat};
use crate::sampling::PartialSampling;
use crate::tokenizer::TextTokenizer;
use crate::{LadeError, Result};

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub format: WeightFormat,
    pub device: Device,
    /// Show a progress bar (still hidden when stdout is not a terminal).
    pub progress: bool,
    /// Also upload the model to this CUDA device and decode there.
    pub gpu: Option<usize>,
    /// On the GPU, replay captured CUDA graphs (false: launch every kernel every step).
    pub cuda_graphs: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            format: WeightFormat::Auto,
            device: Device::Cpu,
            progress: false,
            gpu: None,
            cuda_graphs: true,
        }
    }
}

/// Where sequences of a loaded model are decoded.
#[derive(Clone)]
pub enum Backend {
    Cpu,
    #[cfg(feature = "cuda")]
    Cuda {
        model: Arc<crate::model::cuda::CudaLlama>,
        graphs: bool,
    },
}

impl Backend {
    /// Whether this build can use CUDA and a GPU is visible.
    pub fn cuda_available() -> bool {
        #[cfg(feature = "cuda")]
        {
            crate::model::cuda::device_count() > 0
        }
        #[cfg(not(feature = "cuda"))]
        {
            false
        }
    }
}

/// A model, its tokenizer and where it came from.
pub struct LoadedModel {
    /// The weights on the host (used by CPU sessions, and for the config).
    pub model: Arc<Llama>,
    pub backend: Backend,
    pub tokenizer: TextTokenizer,
    /// The sampling settings the model's files recommend (GGUF `general.sampling.*` keys, or
    /// `generation_config.json` beside safetensors); empty when they say nothing.
    pub recommended_sampling: PartialSampling,
    pub path: PathBuf,
    /// "gguf" or "safetensors".
    pub file_format: &'static str,
    pub load_ms: f64,
}

/// Loads a GGUF file or a Hugging Face checkpoint directory.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<LoadedModel> {
    let start = Instant::now();
    if !path.exists() {
        return Err(LadeError::ModelNotFound(path.to_path_buf()));
    }
    // For the GPU the host copy is only a staging area: keep the file's format (no CPU
    // re-quantization) so the f16 upload is the stored weights, exactly.
    let staged;
    let opts = if opts.gpu.is_some() && opts.format == WeightFormat::Auto {
        staged = LoadOptions {
            format: WeightFormat::Native,
            ..opts.clone()
        };
        &staged
    } else {
        opts
    };
    let (model, tokenizer, recommended_sampling, file_format) = if path.is_dir() {
        if !path.join("config.json").exists() {
            return Err(LadeError::BadModelFile {
                path: path.to_path_buf(),
                reason: "directory has no config.json (expected a Hugging Face checkpoint)".into(),
            });
        }
        let model = safetensors::load_llama(path, opts)?;
        let tokenizer = TextTokenizer::from_hf_dir(path)?;
        let sampling = safetensors::recommended_sampling_of_dir(path)?;
        (model, tokenizer, sampling, "safetensors")
    } else {
        let (content, mut reader) = gguf::read_header(path)?;
        let tokenizer = TextTokenizer::from_gguf(&content)?;
        let model = gguf::load_llama(path, &content, &mut reader, opts)?;
        (
            model,
            tokenizer,
            gguf::recommended_sampling(&content),
            "gguf",
        )
    };
    if tokenizer.vocab_size() > model.config.vocab_size {
        return Err(LadeError::Unsupported(format!(
            "tokenizer has {} tokens but the model only {}",
            tokenizer.vocab_size(),
            model.config.vocab_size
        )));
    }
    let backend = match opts.gpu {
        None => Backend::Cpu,
        #[cfg(feature = "cuda")]
        Some(ordinal) => {
            use crate::model::cuda::CudaLlama;
            let bar = progress::LoadProgress::new(
                CudaLlama::f16_bytes(&model.config) as u64,
                &format!("uploading to cuda:{ordinal}"),
                opts.progress,
            );
            let gpu = CudaLlama::upload(&model, ordinal, &mut |bytes| bar.advance(bytes))?;
            bar.finish();
            Backend::Cuda {
                model: Arc::new(gpu),
                graphs: opts.cuda_graphs,
            }
        }
        #[cfg(not(feature = "cuda"))]
        Some(_) => {
            return Err(LadeError::Unsupported(
                "this lade was built without CUDA support (build it with tools/build-cuda.sh)"
                    .into(),
            ))
        }
    };
    Ok(LoadedModel {
        model: Arc::new(model),
        backend,
        tokenizer,
        recommended_sampling,
        path: path.to_path_buf(),
        file_format,
        load_ms: start.elapsed().as_secs_f64() * 1e3,
    })
}

impl LoadedModel {
    /// A fresh sequence of `context` positions on this model's backend.
    pub fn new_session(&self, context: usize) -> Result<Box<dyn CausalLm + Send>> {
        match &self.backend {
            Backend::Cpu => Ok(Box::new(Session::new(self.model.clone(), context)?)),
            #[cfg(feature = "cuda")]
            Backend::Cuda { model, graphs } => Ok(Box::new(crate::model::cuda::CudaSession::new(
                model.clone(),
                context,
                *graphs,
            )?)),
        }
    }

    /// A fresh sequence of `context` positions on a given device, for the replicas of
    /// Lookahead Parallelism: `None` = the CPU (the host weights), `Some(n)` = CUDA device
    /// `n` (this model's GPU copy when it lives on `n`, else a new upload of the host weights,
    /// which are kept in the file's format when the model was loaded for a GPU).
    pub fn new_session_on(
        &self,
        gpu: Option<usize>,
        context: usize,
    ) -> Result<Box<dyn CausalLm + Send>> {
        match gpu {
            None => Ok(Box::new(Session::new(self.model.clone(), context)?)),
            #[cfg(feature = "cuda")]
            Some(ordinal) => {
                use crate::model::cuda::{CudaLlama, CudaSession};
                let (model, graphs) = match &self.backend {
                    Backend::Cuda { model, graphs } if model.ordinal() == ordinal => {
                        (model.clone(), *graphs)
                    }
                    Backend::Cuda { graphs, .. } => (
                        Arc::new(CudaLlama::upload(&self.model, ordinal, &mut |_| {})?),
                        *graphs,
                    ),
                    Backend::Cpu => (
                        Arc::new(CudaLlama::upload(&self.model, ordinal, &mut |_| {})?),
                        true,
                    ),
                };
                Ok(Box::new(CudaSession::new(model, context, graphs)?))
            }
            #[cfg(not(feature = "cuda"))]
            Some(_) => Err(LadeError::Unsupported(
                "this lade was built without CUDA support (build it with tools/build-cuda.sh)"
                    .into(),
            )),
        }
    }

    /// A fresh GPU sequence with the CUDA-only controls (profiling); `None` on
    /// the CPU.
    #[cfg(feature = "cuda")]
    pub fn cuda_session(&self, context: usize) -> Option<Result<crate::model::cuda::CudaSession>> {
        match &self.backend {
            Backend::Cpu => None,
            Backend::Cuda { model, graphs } => Some(crate::model::cuda::CudaSession::new(
                model.clone(),
                context,
                *graphs,
            )),
        }
    }

    /// Where sequences run, for logs and benchmark reports ("cpu", "cuda:0 (NVIDIA H100 ...)").
    pub fn device_label(&self) -> String {
        match &self.backend {
            Backend::Cpu => "cpu".into(),
            #[cfg(feature = "cuda")]
            Backend::Cuda { model, graphs } => format!(
                "cuda:{} ({}{})",
                model.ordinal(),
                model.device_name,
                if *graphs { "" } else { ", no CUDA graphs" }
            ),
        }
    }

    /// Bytes of weights one forward pass reads on this backend.
    pub fn weight_bytes(&self) -> usize {
        match &self.backend {
            Backend::Cpu => self.model.weight_bytes(),
            #[cfg(feature = "cuda")]
            Backend::Cuda { model, .. } => model.weight_bytes(),
        }
    }
}

/// Only the tokenizer of a model (no weights are read).
pub fn load_tokenizer(path: &Path) -> Result<TextTokenizer> {
    if !path.exists() {
        return Err(LadeError::ModelNotFound(path.to_path_buf()));
    }
    if path.is_dir() {
        TextTokenizer::from_hf_dir(path)
    } else {
        let (content, _) = gguf::read_header(path)?;
        TextTokenizer::from_gguf(&content)
    }
}
