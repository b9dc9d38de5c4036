//! Hyper-parameters of a LLaMA-family decoder, read from GGUF metadata or `config.json`.

use serde::Serialize;

/// Architecture names (GGUF `general.architecture`, config.json `model_type`) whose tensors
/// follow the LLaMA layout. `qwen2` is LLaMA with biases on the q/k/v projections and NeoX-style
/// (half-split) rotary rows, which the loaders turn into the interleaved layout.
pub const LLAMA_FAMILY: &[&str] = &["llama", "mistral", "qwen2"];

/// Whether an architecture has biases on its q/k/v projections.
pub fn has_qkv_bias(architecture: &str) -> bool {
    architecture == "qwen2"
}

/// Rejects architectures outside [`LLAMA_FAMILY`]; `what` names the field, for the message.
pub fn check_architecture(name: &str, what: &str) -> crate::Result<()> {
    if LLAMA_FAMILY.contains(&name) {
        return Ok(());
    }
    Err(crate::LadeError::Unsupported(format!(
        "{what} `{name}` is not supported (lade runs LLaMA-family models: {})",
        LLAMA_FAMILY.join(", ")
    )))
}

/// Shape and numeric constants of a LLaMA-family model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelConfig {
    /// `general.architecture` (GGUF) or `model_type` (config.json).
    pub architecture: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// Linear RoPE scaling factor (positions are divided by it); 1.0 = none.
    pub rope_linear_factor: f64,
    /// Context length the model was trained for.
    pub max_position_embeddings: usize,
    /// The q/k/v projections add a bias (Qwen2): each block's `b_qkv` holds it, in the row
    /// order of its `wqkv`.
    pub qkv_bias: bool,
}

impl ModelConfig {
    /// Query heads per key/value head (GQA group size).
    pub fn group_size(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }

    /// Checks the invariants the forward pass relies on.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::LadeError::Unsupported(m));
        if self.num_layers == 0 || self.hidden_size == 0 || self.vocab_size == 0 {
            return bad(format!("degenerate model shape: {self:?}"));
        }
        if self.num_heads == 0 || self.num_kv_heads == 0 || self.num_heads % self.num_kv_heads != 0
        {
            return bad(format!(
                "{} attention heads are not a multiple of {} key/value heads",
                self.num_heads, self.num_kv_heads
            ));
        }
        if self.head_dim == 0 || self.head_dim % 2 != 0 {
            return bad(format!("head dimension {} must be even", self.head_dim));
        }
        Ok(())
    }
}
