//! Typed errors of the library. The binary turns them into one-line messages.

use std::path::PathBuf;

/// Everything that can go wrong inside the engine.
#[derive(Debug, thiserror::Error)]
pub enum LadeError {
    #[error("model file not found: {0}")]
    ModelNotFound(PathBuf),
    #[error("cannot read {path}: {reason}")]
    BadModelFile { path: PathBuf, reason: String },
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    #[error("chat template error: {0}")]
    ChatTemplate(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("context limit reached: {needed} tokens needed but the context holds {limit}")]
    ContextExceeded { needed: usize, limit: usize },
    #[error("model fetch failed: {0}")]
    Fetch(String),
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("device error: {0}")]
    Device(String),
    #[error("GPU error: {0}")]
    Gpu(String),
    #[error("bad draft corpus {origin}: {reason}")]
    BadDraftCorpus { origin: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    WriteFailed { path: PathBuf, reason: String },
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = LadeError> = std::result::Result<T, E>;
