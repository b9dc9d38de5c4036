//! Model loading: GGUF files and Hugging Face safetensors directories.

pub mod gguf;
pub mod progress;
pub mod safetensors;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;

use crate::model::{Llama, WeightFormat};
use crate::tokenizer::TextTokenizer;
use crate::{LadeError, Result};

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub format: WeightFormat,
    pub device: Device,
    /// Show a progress bar (still hidden when stdout is not a terminal).
    pub progress: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            format: WeightFormat::Auto,
            device: Device::Cpu,
            progress: false,
        }
    }
}

/// A model, its tokenizer and where it came from.
pub struct LoadedModel {
    pub model: Arc<Llama>,
    pub tokenizer: TextTokenizer,
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
    let (model, tokenizer, file_format) = if path.is_dir() {
        if !path.join("config.json").exists() {
            return Err(LadeError::BadModelFile {
                path: path.to_path_buf(),
                reason: "directory has no config.json (expected a Hugging Face checkpoint)".into(),
            });
        }
        let model = safetensors::load_llama(path, opts)?;
        let tokenizer = TextTokenizer::from_hf_dir(path)?;
        (model, tokenizer, "safetensors")
    } else {
        let (content, mut reader) = gguf::read_header(path)?;
        let tokenizer = TextTokenizer::from_gguf(&content)?;
        let model = gguf::load_llama(path, &content, &mut reader, opts)?;
        (model, tokenizer, "gguf")
    };
    if tokenizer.vocab_size() > model.config.vocab_size {
        return Err(LadeError::Unsupported(format!(
            "tokenizer has {} tokens but the model only {}",
            tokenizer.vocab_size(),
            model.config.vocab_size
        )));
    }
    Ok(LoadedModel {
        model: Arc::new(model),
        tokenizer,
        path: path.to_path_buf(),
        file_format,
        load_ms: start.elapsed().as_secs_f64() * 1e3,
    })
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
