//! The LLaMA-family decoder (Llama 2/3, CodeLlama, Mistral-style, SmolLM2, Qwen2): a function of
//! (tokens, positions, attention mask, rows wanting logits) over a [`KvCache`].

use candle_core::{DType, Device, Tensor};

use super::attention::{attend_cpu, visible_keys, RowKeys};
use super::config::ModelConfig;
use super::kv_cache::KvCache;
use super::rope::RopeTable;
use super::weights::Linear;
use super::{Batch, Logits};
use crate::{LadeError, Result};

/// How a forward pass applies its mask: per-row key lists for the CPU kernel, or an additive
/// (q, past + q) matrix for tensor-op attention (`None`: every key visible).
enum AttentionInput {
    Rows(Vec<RowKeys>),
    Additive(Option<Tensor>),
}

/// One transformer block.
#[derive(Debug, Clone)]
pub struct Block {
    pub attn_norm: Tensor, // (hidden,) f32
    /// q | k | v stacked: ((heads + 2 * kv_heads) * head_dim, hidden). The q and k rows are in
    /// the interleaved rotary layout (pairs `(2i, 2i+1)` of a head rotate together).
    pub wqkv: Linear,
    /// Bias of the q | k | v projection (when `config.qkv_bias`): ((heads + 2 * kv_heads) *
    /// head_dim,) f32, in the row order of `wqkv` (q and k permuted alike).
    pub b_qkv: Option<Tensor>,
    pub wo: Linear,       // (hidden, heads * head_dim)
    pub ffn_norm: Tensor, // (hidden,) f32
    /// gate | up stacked: (2 * ffn, hidden)
    pub w_gate_up: Linear,
    pub w_down: Linear, // (hidden, ffn)
}

/// Weights of a whole model, shared by every sequence decoded with it.
#[derive(Debug, Clone)]
pub struct Llama {
    pub config: ModelConfig,
    pub embedding: Tensor, // (vocab, hidden) f32
    pub blocks: Vec<Block>,
    pub final_norm: Tensor, // (hidden,) f32
    pub lm_head: Linear,    // (vocab, hidden)
    pub rope: RopeTable,
    pub device: Device,
}

/// The loaded tensors of a model, before RoPE tables are built.
pub struct LlamaParts {
    pub config: ModelConfig,
    pub embedding: Tensor,
    pub blocks: Vec<Block>,
    pub final_norm: Tensor,
    pub lm_head: Linear,
    /// Llama-3 style per-frequency divisors (`rope_freqs.weight`), if any.
    pub rope_freq_factors: Option<Vec<f32>>,
}

impl Llama {
    /// Builds the model from loaded tensors and checks it against its config.
    pub fn assemble(parts: LlamaParts, device: &Device) -> Result<Self> {
        let c = &parts.config;
        let rope = RopeTable::new(
            c.head_dim,
            c.rope_theta,
            c.rope_linear_factor,
            parts.rope_freq_factors.as_deref(),
            c.max_position_embeddings,
            device,
        )?;
        let model = Llama {
            config: parts.config,
            embedding: parts.embedding,
            blocks: parts.blocks,
            final_norm: parts.final_norm,
            lm_head: parts.lm_head,
            rope,
            device: device.clone(),
        };
        model.check()?;
        Ok(model)
    }

    /// A cache for `capacity` positions on this model's device.
    pub fn new_cache(&self, capacity: usize) -> Result<KvCache> {
        let c = &self.config;
        KvCache::new(
            c.num_layers,
            c.num_kv_heads,
            c.head_dim,
            capacity,
            DType::F32,
            &self.device,
        )
    }

    /// Runs `batch` on top of `cache`, appending its K/V rows (the cache grows by
    /// `batch.tokens.len()`; the caller truncates or keeps rows afterwards). Returns the logits
    /// of the rows listed in `batch.logit_rows`, in that order.
    pub fn forward(&self, batch: &Batch<'_>, cache: &mut KvCache) -> Result<Logits> {
        let c = &self.config;
        let q = batch.tokens.len();
        let past = cache.len();
        batch.validate(past, c.vocab_size, self.rope.max_positions())?;
        cache.ensure_room(q)?;
        let dev = &self.device;

        let ids = Tensor::new(batch.tokens, dev)?;
        let positions = Tensor::new(batch.positions, dev)?;
        let (cos, sin) = self.rope.gather(&positions, DType::F32)?; // (q, head_dim/2)
        let mask = if dev.is_cpu() {
            AttentionInput::Rows(visible_keys(batch.mask, past, q))
        } else {
            AttentionInput::Additive(batch.mask.to_additive(past, q, dev)?) // (q, past+q)
        };
        let mut x = self.embedding.index_select(&ids, 0)?; // (q, hidden)
        for (layer, block) in self.blocks.iter().enumerate() {
            x = self.block_forward(block, layer, &x, &cos, &sin, &mask, cache)?;
        }
        cache.advance(q)?;

        let rows = batch.logit_rows;
        if rows.is_empty() {
            return Ok(Logits::new(Vec::new(), 0, c.vocab_size));
        }
        let wanted = if rows.len() == q && rows.iter().enumerate().all(|(i, &r)| i == r) {
            x
        } else {
            let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
            x.index_select(&Tensor::new(idx.as_slice(), dev)?, 0)?
        };
        let h = candle_nn::ops::rms_norm(&wanted, &self.final_norm, c.rms_norm_eps as f32)?;
        let logits = self.lm_head.forward(&h)?; // (rows, vocab)
        let data = logits.flatten_all()?.to_vec1::<f32>()?;
        Ok(Logits::new(data, rows.len(), c.vocab_size))
    }

    #[allow(clippy::too_many_arguments)]
    fn block_forward(
        &self,
        b: &Block,
        layer: usize,
        x: &Tensor, // (q, hidden)
        cos: &Tensor,
        sin: &Tensor,
        mask: &AttentionInput,
        cache: &KvCache,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (q, _) = x.dims2()?;
        let (nh, nkv, hd) = (c.num_heads, c.num_kv_heads, c.head_dim);
        let group = nh / nkv;
        let eps = c.rms_norm_eps as f32;

        let h = candle_nn::ops::rms_norm(x, &b.attn_norm, eps)?;
        // (q, heads*hd) → (1, heads, q, hd)
        let to_heads = |t: Tensor, heads: usize| -> Result<Tensor> {
            Ok(t.reshape((1, q, heads, hd))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let mut qkv = b.wqkv.forward(&h)?; // (q, (heads + 2 kv_heads) * hd)
        if let Some(bias) = &b.b_qkv {
            qkv = qkv.broadcast_add(bias)?;
        }
        let (qd, kvd) = (nh * hd, nkv * hd);
        let qh = to_heads(qkv.narrow(1, 0, qd)?.contiguous()?, nh)?;
        let kh = to_heads(qkv.narrow(1, qd, kvd)?.contiguous()?, nkv)?;
        let vh = to_heads(qkv.narrow(1, qd + kvd, kvd)?.contiguous()?, nkv)?;
        let qh = RopeTable::apply(&qh, cos, sin)?;
        let kh = RopeTable::apply(&kh, cos, sin)?;

        let attn = match mask {
            AttentionInput::Rows(rows) => {
                let (keys, values) = cache.write(layer, &kh.squeeze(0)?, &vh.squeeze(0)?)?;
                attend_cpu(&qh.squeeze(0)?, keys, values, rows, nkv)? // (q, heads*hd)
            }
            AttentionInput::Additive(m) => {
                let (keys, values) =
                    cache.write_and_view(layer, &kh.squeeze(0)?, &vh.squeeze(0)?)?;
                let l = keys.dim(1)?; // past + q
                                      // Query head h uses key/value head h / group: (heads, q, hd) = (kv, group*q, hd).
                let qg = (qh.reshape((nkv, group * q, hd))? * (1.0 / (hd as f64).sqrt()))?;
                let mut scores = qg.matmul(&keys.t()?)?; // (kv, group*q, L)
                if let Some(m) = m {
                    scores = scores
                        .reshape((nkv, group, q, l))?
                        .broadcast_add(m)?
                        .reshape((nkv, group * q, l))?;
                }
                let probs = candle_nn::ops::softmax_last_dim(&scores)?;
                probs
                    .matmul(&values)? // (kv, group*q, hd)
                    .reshape((nh, q, hd))?
                    .transpose(0, 1)?
                    .contiguous()?
                    .reshape((q, nh * hd))?
            }
        };
        let x = (x + b.wo.forward(&attn)?)?;

        let h = candle_nn::ops::rms_norm(&x, &b.ffn_norm, eps)?;
        let gate_up = b.w_gate_up.forward(&h)?; // (q, 2 * ffn)
        let ffn = c.intermediate_size;
        let gate = candle_nn::ops::silu(&gate_up.narrow(1, 0, ffn)?.contiguous()?)?;
        let up = gate_up.narrow(1, ffn, ffn)?.contiguous()?;
        let down = b.w_down.forward(&(gate * up)?)?;
        Ok((x + down)?)
    }

    /// Bytes of weights streamed per forward pass (projections and LM head).
    pub fn weight_bytes(&self) -> usize {
        let per_block: usize = self
            .blocks
            .iter()
            .map(|b| {
                [&b.wqkv, &b.wo, &b.w_gate_up, &b.w_down]
                    .iter()
                    .map(|l| l.size_in_bytes())
                    .sum::<usize>()
            })
            .sum();
        per_block + self.lm_head.size_in_bytes()
    }

    /// Checks that the output projection covers the vocabulary and that every block has the
    /// q/k/v bias its config announces (used by loaders).
    pub fn check(&self) -> Result<()> {
        let c = &self.config;
        let qkv_rows = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim;
        for (i, b) in self.blocks.iter().enumerate() {
            match (&b.b_qkv, c.qkv_bias) {
                (None, false) => {}
                (Some(bias), true) if bias.dims() == [qkv_rows] => {}
                (bias, _) => {
                    return Err(LadeError::Unsupported(format!(
                        "block {i}: q/k/v bias {:?} does not fit the config (bias expected: {}, \
                         {qkv_rows} rows)",
                        bias.as_ref().map(|t| t.dims().to_vec()),
                        c.qkv_bias
                    )))
                }
            }
        }
        if self.lm_head.out_dim()? != self.config.vocab_size {
            return Err(LadeError::Unsupported(format!(
                "output projection has {} rows, vocabulary has {}",
                self.lm_head.out_dim()?,
                self.config.vocab_size
            )));
        }
        Ok(())
    }
}
