//! Model shapes for random-weight files: the named ones and checks of custom ones.

use std::fmt;

use crate::{LadeError, Result};

/// Tensor layout family of a written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `general.architecture = llama`: no attention biases.
    Llama,
    /// `general.architecture = qwen2`: the LLaMA layout plus q/k/v biases.
    Qwen2,
}

impl Arch {
    /// The `general.architecture` value (and the prefix of the model's metadata keys).
    pub fn gguf_name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "llama" => Ok(Arch::Llama),
            "qwen2" => Ok(Arch::Qwen2),
            other => Err(LadeError::InvalidArgument(format!(
                "architecture `{other}`: expected llama or qwen2"
            ))),
        }
    }

    /// Whether q, k and v projections have biases.
    pub fn has_qkv_bias(self) -> bool {
        self == Arch::Qwen2
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.gguf_name())
    }
}

/// The dimensions and constants of a decoder to write.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelShape {
    /// A named shape's name, or `custom`.
    pub name: String,
    pub arch: Arch,
    pub hidden: usize,
    pub ffn: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
    /// `{arch}.context_length`.
    pub ctx: usize,
    pub rope_theta: f32,
    pub rms_eps: f32,
}

/// One row of the table of named shapes.
struct Named {
    name: &'static str,
    about: &'static str,
    arch: Arch,
    hidden: usize,
    ffn: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    vocab: usize,
    ctx: usize,
    rope_theta: f32,
    rms_eps: f32,
}

const NAMED: &[Named] = &[
    Named {
        name: "llama2-7b",
        about: "Llama-2-7B",
        arch: Arch::Llama,
        hidden: 4096,
        ffn: 11008,
        layers: 32,
        heads: 32,
        kv_heads: 32,
        vocab: 32000,
        ctx: 4096,
        rope_theta: 10_000.0,
        rms_eps: 1e-5,
    },
    Named {
        name: "llama3-8b",
        about: "Llama-3-8B (GQA 32/8, 128k vocabulary)",
        arch: Arch::Llama,
        hidden: 4096,
        ffn: 14336,
        layers: 32,
        heads: 32,
        kv_heads: 8,
        vocab: 128256,
        ctx: 8192,
        rope_theta: 500_000.0,
        rms_eps: 1e-5,
    },
    Named {
        name: "1b-gqa",
        about: "Llama-3.2-1B's body (GQA 32/8, 128k vocabulary, output not tied)",
        arch: Arch::Llama,
        hidden: 2048,
        ffn: 8192,
        layers: 16,
        heads: 32,
        kv_heads: 8,
        vocab: 128256,
        ctx: 4096,
        rope_theta: 500_000.0,
        rms_eps: 1e-5,
    },
    Named {
        name: "13b",
        about: "Llama-2-13B",
        arch: Arch::Llama,
        hidden: 5120,
        ffn: 13824,
        layers: 40,
        heads: 40,
        kv_heads: 40,
        vocab: 32000,
        ctx: 4096,
        rope_theta: 10_000.0,
        rms_eps: 1e-5,
    },
    Named {
        name: "70b-layer",
        about: "2 layers of Llama-2/3-70B's width (GQA 64/8); --layers N for more",
        arch: Arch::Llama,
        hidden: 8192,
        ffn: 28672,
        layers: 2,
        heads: 64,
        kv_heads: 8,
        vocab: 32000,
        ctx: 4096,
        rope_theta: 10_000.0,
        rms_eps: 1e-5,
    },
    Named {
        name: "smollm2-135m",
        about: "SmolLM2-135M, the default model's shape (GQA 9/3, head dim 64, output not tied)",
        arch: Arch::Llama,
        hidden: 576,
        ffn: 1536,
        layers: 30,
        heads: 9,
        kv_heads: 3,
        vocab: 49152,
        ctx: 8192,
        rope_theta: 100_000.0,
        rms_eps: 1e-5,
    },
    Named {
        name: "qwen2.5-7b",
        about: "Qwen2.5-7B (q/k/v biases, GQA 28/4)",
        arch: Arch::Qwen2,
        hidden: 3584,
        ffn: 18944,
        layers: 28,
        heads: 28,
        kv_heads: 4,
        vocab: 152064,
        ctx: 32768,
        rope_theta: 1_000_000.0,
        rms_eps: 1e-6,
    },
    Named {
        name: "qwen2.5-0.5b",
        about: "Qwen2.5-0.5B (q/k/v biases, GQA 14/2, output not tied)",
        arch: Arch::Qwen2,
        hidden: 896,
        ffn: 4864,
        layers: 24,
        heads: 14,
        kv_heads: 2,
        vocab: 151936,
        ctx: 32768,
        rope_theta: 1_000_000.0,
        rms_eps: 1e-6,
    },
];

impl Named {
    fn shape(&self) -> ModelShape {
        ModelShape {
            name: self.name.to_string(),
            arch: self.arch,
            hidden: self.hidden,
            ffn: self.ffn,
            layers: self.layers,
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.hidden / self.heads,
            vocab: self.vocab,
            ctx: self.ctx,
            rope_theta: self.rope_theta,
            rms_eps: self.rms_eps,
        }
    }
}

/// Names of the named shapes, in table order.
pub fn shape_names() -> Vec<&'static str> {
    NAMED.iter().map(|n| n.name).collect()
}

/// The named shapes with a line about each, in table order.
pub fn named_shapes() -> Vec<(ModelShape, &'static str)> {
    NAMED.iter().map(|n| (n.shape(), n.about)).collect()
}

impl ModelShape {
    /// A named shape; an unknown name's error lists the known ones.
    pub fn named(name: &str) -> Result<Self> {
        NAMED
            .iter()
            .find(|n| n.name == name)
            .map(Named::shape)
            .ok_or_else(|| {
                LadeError::InvalidArgument(format!(
                    "unknown shape `{name}` (known: {})",
                    shape_names().join(", ")
                ))
            })
    }

    /// `hidden / heads`, when the heads divide the hidden size.
    pub fn head_dim_of(hidden: usize, heads: usize) -> Result<usize> {
        if heads == 0 || hidden % heads != 0 {
            return Err(LadeError::InvalidArgument(format!(
                "{heads} attention heads do not divide the hidden size {hidden} \
                 (give the head dimension explicitly)"
            )));
        }
        Ok(hidden / heads)
    }

    /// A custom LLaMA-layout shape (no grouped-query attention, Llama-2's constants);
    /// `head_dim` defaults to `hidden / heads`. Call [`ModelShape::validate`] after changing
    /// fields.
    pub fn custom(
        hidden: usize,
        ffn: usize,
        layers: usize,
        heads: usize,
        head_dim: Option<usize>,
        vocab: usize,
    ) -> Result<Self> {
        let head_dim = match head_dim {
            Some(d) => d,
            None => Self::head_dim_of(hidden, heads)?,
        };
        Ok(Self {
            name: "custom".into(),
            arch: Arch::Llama,
            hidden,
            ffn,
            layers,
            heads,
            kv_heads: heads,
            head_dim,
            vocab,
            ctx: 4096,
            rope_theta: 10_000.0,
            rms_eps: 1e-5,
        })
    }

    /// Checks that the shape is one a LLaMA-family forward pass can run; `min_vocab` is the
    /// size of the tokenizer the file will carry.
    pub fn validate(&self, min_vocab: usize) -> Result<()> {
        let bad = |m: String| {
            Err(LadeError::InvalidArgument(format!(
                "shape {}: {m}",
                self.name
            )))
        };
        for (what, v) in [
            ("hidden size", self.hidden),
            ("feed-forward size", self.ffn),
            ("layer count", self.layers),
            ("head count", self.heads),
            ("key/value head count", self.kv_heads),
            ("head dimension", self.head_dim),
            ("context length", self.ctx),
        ] {
            if v == 0 {
                return bad(format!("{what} must be positive"));
            }
        }
        if self.heads % self.kv_heads != 0 {
            return bad(format!(
                "{} key/value heads do not divide {} attention heads",
                self.kv_heads, self.heads
            ));
        }
        if self.head_dim % 2 != 0 {
            return bad(format!(
                "head dimension {} must be even (rotary embeddings rotate pairs)",
                self.head_dim
            ));
        }
        if self.vocab < min_vocab {
            return bad(format!(
                "vocabulary of {} is smaller than the tokenizer's {min_vocab} tokens",
                self.vocab
            ));
        }
        if !(self.rope_theta > 0.0 && self.rope_theta.is_finite()) {
            return bad(format!("rope theta {} must be positive", self.rope_theta));
        }
        Ok(())
    }

    /// Width of the query projection (heads * head_dim).
    pub fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Width of the key and value projections (kv_heads * head_dim).
    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// Parameters of the model as written (embedding and output projection both counted).
    pub fn param_count(&self) -> u64 {
        let (h, f, v) = (self.hidden as u64, self.ffn as u64, self.vocab as u64);
        let (q, kv) = (self.q_dim() as u64, self.kv_dim() as u64);
        let bias = if self.arch.has_qkv_bias() {
            q + 2 * kv
        } else {
            0
        };
        let layer = h * q + 2 * h * kv + q * h + 3 * h * f + 2 * h + bias;
        2 * v * h + self.layers as u64 * layer + h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_parameter_counts_match_the_published_models() {
        // Published sizes (untied output counted once more for the tied ones).
        let billions = |n: &str| ModelShape::named(n).unwrap().param_count() as f64 / 1e9;
        assert!((billions("llama2-7b") - 6.74).abs() < 0.01);
        assert!((billions("llama3-8b") - 8.03).abs() < 0.01);
        assert!((billions("13b") - 13.02).abs() < 0.01);
        assert!((billions("qwen2.5-7b") - 7.62).abs() < 0.01);
        // SmolLM2-135M: 134.5 M published (tied) plus its 28.3 M output projection.
        assert!((billions("smollm2-135m") - 0.1628).abs() < 0.0005);
        let s = ModelShape::named("1b-gqa").unwrap();
        assert_eq!(s.kv_dim(), 512);
        assert_eq!(s.head_dim, 64);
        let s = ModelShape::named("smollm2-135m").unwrap();
        assert_eq!((s.head_dim, s.kv_dim()), (64, 192));
    }

    #[test]
    fn bad_shapes_are_refused_with_the_reason() {
        let mut s = ModelShape::custom(64, 128, 2, 4, None, 512).unwrap();
        s.validate(300).unwrap();
        s.kv_heads = 3;
        let e = s.validate(300).unwrap_err().to_string();
        assert!(e.contains("do not divide"), "{e}");
        s.kv_heads = 2;
        s.head_dim = 7;
        assert!(s.validate(300).unwrap_err().to_string().contains("even"));
        s.head_dim = 16;
        assert!(s
            .validate(600)
            .unwrap_err()
            .to_string()
            .contains("vocabulary"));
        let e = ModelShape::custom(64, 128, 2, 6, None, 512)
            .unwrap_err()
            .to_string();
        assert!(e.contains("do not divide the hidden size 64"), "{e}");
        let e = ModelShape::named("llama-9000").unwrap_err().to_string();
        assert!(e.contains("llama2-7b") && e.contains("70b-layer"), "{e}");
    }
}
