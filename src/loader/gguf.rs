//! GGUF loader for the LLaMA architecture family (and Qwen2: LLaMA with q/k/v biases, whose q/k
//! rows are stored in the half-split rotary layout and are reordered here into the interleaved
//! one that lade's RoPE uses, exactly, block by block).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::{Content, TensorInfo, Value};
use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};

use super::progress::LoadProgress;
use super::LoadOptions;
use crate::model::llama::{Block, LlamaParts};
use crate::model::weights::{
    check_dims, interleaved_rotary_order, permute_qtensor_rows, permute_rows, Linear, WeightFormat,
};
use crate::model::{Llama, ModelConfig};
use crate::sampling::PartialSampling;
use crate::{LadeError, Result};

/// Reads and checks the GGUF header (metadata and tensor directory) of `path`.
pub fn read_header(path: &Path) -> Result<(Content, BufReader<File>)> {
    let bad = |reason: String| LadeError::BadModelFile {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut reader = BufReader::new(file);
    let mut magic = [0u8; 4];
    if reader.read_exact(&mut magic).is_err() || &magic != b"GGUF" {
        return Err(bad("not a GGUF file (bad magic bytes)".into()));
    }
    reader.rewind()?;
    let content =
        Content::read(&mut reader).map_err(|e| bad(format!("corrupt GGUF header: {e}")))?;
    let file_len = reader.get_ref().metadata()?.len();
    for (name, info) in &content.tensor_infos {
        let bytes = tensor_bytes(info);
        let end = content
            .tensor_data_offset
            .saturating_add(info.offset)
            .saturating_add(bytes);
        if end > file_len {
            return Err(bad(format!(
                "truncated: tensor {name} ends at byte {end} but the file has {file_len} bytes"
            )));
        }
    }
    Ok((content, reader))
}

fn meta<'a>(ct: &'a Content, key: &str) -> Option<&'a Value> {
    ct.metadata.get(key)
}

fn meta_usize(ct: &Content, key: &str) -> Result<Option<usize>> {
    match meta(ct, key) {
        None => Ok(None),
        Some(v) => {
            let n = v
                .to_u64()
                .or_else(|_| v.to_u32().map(u64::from))
                .or_else(|_| v.to_i32().map(|x| x.max(0) as u64))
                .map_err(|_| LadeError::Unsupported(format!("metadata {key} is not an integer")))?;
            Ok(Some(n as usize))
        }
    }
}

fn meta_f64(ct: &Content, key: &str) -> Option<f64> {
    meta(ct, key).and_then(|v| v.to_f32().map(f64::from).or_else(|_| v.to_f64()).ok())
}

fn required(ct: &Content, key: &str) -> Result<usize> {
    meta_usize(ct, key)?.ok_or_else(|| LadeError::Unsupported(format!("GGUF metadata lacks {key}")))
}

/// A number of any GGUF numeric type.
fn meta_number(ct: &Content, key: &str) -> Option<f64> {
    Some(match meta(ct, key)? {
        Value::U8(x) => f64::from(*x),
        Value::I8(x) => f64::from(*x),
        Value::U16(x) => f64::from(*x),
        Value::I16(x) => f64::from(*x),
        Value::U32(x) => f64::from(*x),
        Value::I32(x) => f64::from(*x),
        Value::U64(x) => *x as f64,
        Value::I64(x) => *x as f64,
        Value::F32(x) => f64::from(*x),
        Value::F64(x) => *x,
        _ => return None,
    })
}

/// The sampling settings the file recommends, from llama.cpp's `general.sampling.*` keys
/// (`temp`, `top_k`, `top_p`, `min_p`, `penalty_repeat`, `penalty_last_n`, where
/// `penalty_last_n` = -1 means the whole text). Keys that are absent, not numbers or out of
/// range are left out.
pub fn recommended_sampling(ct: &Content) -> PartialSampling {
    let num = |k: &str| meta_number(ct, &format!("general.sampling.{k}"));
    let count = |x: f64| (x >= 0.0 && x.fract() == 0.0).then_some(x as usize);
    PartialSampling {
        temperature: num("temp").map(|x| x as f32),
        top_k: num("top_k").and_then(count),
        top_p: num("top_p").map(|x| x as f32),
        min_p: num("min_p").map(|x| x as f32),
        repeat_penalty: num("penalty_repeat").map(|x| x as f32),
        repeat_last_n: num("penalty_last_n").and_then(|x| {
            if x == -1.0 {
                Some(usize::MAX)
            } else {
                count(x)
            }
        }),
    }
    .valid_only()
}

/// Model hyper-parameters from GGUF metadata.
pub fn config_from_gguf(ct: &Content) -> Result<ModelConfig> {
    let arch = meta(ct, "general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .ok_or_else(|| LadeError::Unsupported("GGUF has no general.architecture".into()))?;
    crate::model::config::check_architecture(&arch, "architecture")?;
    let k = |s: &str| format!("{arch}.{s}");
    let hidden = required(ct, &k("embedding_length"))?;
    let heads = required(ct, &k("attention.head_count"))?;
    let kv_heads = meta_usize(ct, &k("attention.head_count_kv"))?.unwrap_or(heads);
    let head_dim = match meta_usize(ct, &k("attention.key_length"))? {
        Some(d) => d,
        None => hidden / heads.max(1),
    };
    let vocab = match meta_usize(ct, &k("vocab_size"))? {
        Some(v) => v,
        None => ct
            .tensor_infos
            .get("token_embd.weight")
            .map(|t| t.shape.dims()[0])
            .ok_or_else(|| LadeError::Unsupported("GGUF has no token_embd.weight".into()))?,
    };
    let linear = match meta(ct, &k("rope.scaling.type")).and_then(|v| v.to_string().ok()) {
        Some(t) if t == "linear" => meta_f64(ct, &k("rope.scaling.factor")).unwrap_or(1.0),
        _ => 1.0,
    };
    let config = ModelConfig {
        architecture: arch.clone(),
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: required(ct, &k("feed_forward_length"))?,
        num_layers: required(ct, &k("block_count"))?,
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        rms_norm_eps: meta_f64(ct, &k("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5),
        rope_theta: meta_f64(ct, &k("rope.freq_base")).unwrap_or(10_000.0),
        rope_linear_factor: linear,
        max_position_embeddings: meta_usize(ct, &k("context_length"))?.unwrap_or(4096),
        qkv_bias: crate::model::config::has_qkv_bias(&arch),
    };
    config.validate()?;
    Ok(config)
}

/// Tensor reader over an opened GGUF file that reports progress and shares repeated tensors.
struct TensorSource<'a> {
    path: &'a Path,
    ct: &'a Content,
    reader: &'a mut BufReader<File>,
    device: &'a Device,
    progress: LoadProgress,
    seen: HashMap<String, Arc<QTensor>>,
}

impl TensorSource<'_> {
    fn has(&self, name: &str) -> bool {
        self.ct.tensor_infos.contains_key(name)
    }

    fn get(&mut self, name: &str) -> Result<Arc<QTensor>> {
        if let Some(t) = self.seen.get(name) {
            return Ok(t.clone());
        }
        if !self.has(name) {
            return Err(LadeError::Unsupported(format!("GGUF lacks tensor {name}")));
        }
        let t = self
            .ct
            .tensor(self.reader, name, self.device)
            .map_err(|e| LadeError::BadModelFile {
                path: self.path.to_path_buf(),
                reason: format!("tensor {name}: {e}"),
            })?;
        self.progress.advance(t.storage_size_in_bytes() as u64);
        let t = Arc::new(t);
        self.seen.insert(name.to_string(), t.clone());
        Ok(t)
    }

    /// A projection of shape `want` = (out, in).
    fn linear(&mut self, name: &str, want: [usize; 2], fmt: WeightFormat) -> Result<Linear> {
        let t = self.get(name)?;
        check_dims(name, t.shape().dims(), &want)?;
        Linear::from_qtensor(t, fmt)
    }

    /// A projection of shape `want` = (out, in) whose rows are taken in `order` (exactly: the
    /// stored blocks are moved, see [`permute_qtensor_rows`]).
    fn linear_reordered(
        &mut self,
        name: &str,
        want: [usize; 2],
        fmt: WeightFormat,
        order: &[usize],
    ) -> Result<Linear> {
        let t = self.get(name)?;
        check_dims(name, t.shape().dims(), &want)?;
        if order.iter().enumerate().all(|(i, &r)| i == r) {
            return Linear::from_qtensor(t, fmt);
        }
        let t = permute_qtensor_rows(&t, order).map_err(|e| LadeError::BadModelFile {
            path: self.path.to_path_buf(),
            reason: format!("tensor {name}: {e}"),
        })?;
        Linear::from_qtensor(Arc::new(t), fmt)
    }

    /// A tensor dequantized to f32 with shape `want`.
    fn dense(&mut self, name: &str, want: &[usize]) -> Result<Tensor> {
        let t = self.get(name)?;
        check_dims(name, t.shape().dims(), want)?;
        crate::model::weights::dequantize(&t)?
            .to_device(self.device)
            .map_err(Into::into)
    }
}

/// Whether a GGUF architecture stores its q/k rows in the half-split rotary layout (llama.cpp
/// runs it with NeoX-style RoPE), rather than llama's pre-permuted interleaved one.
fn half_split_rotary(architecture: &str) -> bool {
    architecture == "qwen2"
}

fn tensor_bytes(t: &TensorInfo) -> u64 {
    (t.shape.elem_count() / t.ggml_dtype.block_size().max(1)) as u64
        * t.ggml_dtype.type_size() as u64
}

/// Loads the weights of a LLaMA-family GGUF file.
pub fn load_llama(
    path: &Path,
    ct: &Content,
    reader: &mut BufReader<File>,
    opts: &LoadOptions,
) -> Result<Llama> {
    let config = config_from_gguf(ct)?;
    let total: u64 = ct.tensor_infos.values().map(tensor_bytes).sum();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut src = TensorSource {
        path,
        ct,
        reader,
        device: &opts.device,
        progress: LoadProgress::new(total, &format!("loading {name}"), opts.progress),
        seen: HashMap::new(),
    };
    let c = &config;
    let (h, f, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
    let (qd, kvd) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
    let fmt = opts.format;
    // Row orders of q and k: the interleaved rotary layout, or the file's (llama's GGUF
    // converter already permuted them).
    let (q_order, k_order): (Vec<usize>, Vec<usize>) = if half_split_rotary(&c.architecture) {
        (
            interleaved_rotary_order(c.num_heads, c.head_dim),
            interleaved_rotary_order(c.num_kv_heads, c.head_dim),
        )
    } else {
        ((0..qd).collect(), (0..kvd).collect())
    };

    let mut blocks = Vec::with_capacity(c.num_layers);
    for i in 0..c.num_layers {
        let p = |s: &str| format!("blk.{i}.{s}.weight");
        let b_qkv = if c.qkv_bias {
            let b = |s: &str| format!("blk.{i}.{s}.bias");
            let bq = permute_rows(&src.dense(&b("attn_q"), &[qd])?, &q_order)?;
            let bk = permute_rows(&src.dense(&b("attn_k"), &[kvd])?, &k_order)?;
            let bv = src.dense(&b("attn_v"), &[kvd])?;
            Some(Tensor::cat(&[&bq, &bk, &bv], 0)?)
        } else {
            None
        };
        blocks.push(Block {
            attn_norm: src.dense(&p("attn_norm"), &[h])?,
            wqkv: Linear::stack_rows(vec![
                src.linear_reordered(&p("attn_q"), [qd, h], fmt, &q_order)?,
                src.linear_reordered(&p("attn_k"), [kvd, h], fmt, &k_order)?,
                src.linear(&p("attn_v"), [kvd, h], fmt)?,
            ])?,
            b_qkv,
            wo: src.linear(&p("attn_output"), [h, qd], fmt)?,
            ffn_norm: src.dense(&p("ffn_norm"), &[h])?,
            w_gate_up: Linear::stack_rows(vec![
                src.linear(&p("ffn_gate"), [f, h], fmt)?,
                src.linear(&p("ffn_up"), [f, h], fmt)?,
            ])?,
            w_down: src.linear(&p("ffn_down"), [h, f], fmt)?,
        });
    }
    let embedding = src.dense("token_embd.weight", &[v, h])?;
    let final_norm = src.dense("output_norm.weight", &[h])?;
    let lm_head = if src.has("output.weight") {
        src.linear("output.weight", [v, h], fmt)?
    } else {
        // Tied embeddings: the output projection is the (still quantized) embedding table.
        src.linear("token_embd.weight", [v, h], fmt)?
    };
    let freq_factors: Option<Vec<f32>> = if src.has("rope_freqs.weight") {
        Some(
            src.dense("rope_freqs.weight", &[c.head_dim / 2])?
                .to_vec1()?,
        )
    } else {
        None
    };
    src.progress.finish();
    Llama::assemble(
        LlamaParts {
            config,
            embedding,
            blocks,
            final_norm,
            lm_head,
            rope_freq_factors: freq_factors,
        },
        &opts.device,
    )
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::gguf_file::VersionedMagic;

    use super::*;

    fn content(pairs: Vec<(&str, Value)>) -> Content {
        Content {
            magic: VersionedMagic::GgufV3,
            metadata: pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            tensor_infos: HashMap::new(),
            tensor_data_offset: 0,
        }
    }

    #[test]
    fn recommended_sampling_reads_llama_cpp_keys_of_any_number_type() {
        let ct = content(vec![
            ("general.sampling.temp", Value::F32(0.6)),
            ("general.sampling.top_k", Value::I32(20)),
            ("general.sampling.top_p", Value::F64(0.9)),
            ("general.sampling.min_p", Value::F32(0.0)),
            ("general.sampling.penalty_repeat", Value::F32(1.1)),
            ("general.sampling.penalty_last_n", Value::I32(-1)),
            ("general.name", Value::String("m".into())),
        ]);
        assert_eq!(
            recommended_sampling(&ct),
            PartialSampling {
                temperature: Some(0.6),
                top_k: Some(20),
                top_p: Some(0.9),
                min_p: Some(0.0),
                repeat_penalty: Some(1.1),
                repeat_last_n: Some(usize::MAX),
            }
        );
    }

    #[test]
    fn recommended_sampling_ignores_absent_wrong_and_out_of_range_values() {
        assert!(recommended_sampling(&content(vec![])).is_empty());
        let ct = content(vec![
            ("general.sampling.temp", Value::String("hot".into())),
            ("general.sampling.top_k", Value::I32(-3)),
            ("general.sampling.top_p", Value::F32(2.0)),
            ("general.sampling.min_p", Value::Bool(true)),
            ("general.sampling.penalty_repeat", Value::F32(-1.0)),
            ("general.sampling.penalty_last_n", Value::F32(2.5)),
        ]);
        assert!(recommended_sampling(&ct).is_empty());
    }
}
