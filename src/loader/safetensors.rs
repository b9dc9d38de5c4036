//! Hugging Face layout: a directory with `config.json`, `*.safetensors` (sharded or not) and
//! `tokenizer.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use serde_json::Value;

use super::progress::LoadProgress;
use super::LoadOptions;
use crate::model::llama::{Block, LlamaParts};
use crate::model::weights::{check_dims, interleaved_rotary_order, permute_rows, Linear};
use crate::model::{Llama, ModelConfig};
use crate::sampling::PartialSampling;
use crate::{LadeError, Result};

/// Hyper-parameters from a Hugging Face `config.json`.
pub fn config_from_json(json: &Value) -> Result<ModelConfig> {
    let get = |k: &str| json.get(k).and_then(Value::as_u64).map(|v| v as usize);
    let need = |k: &str| {
        get(k).ok_or_else(|| LadeError::Unsupported(format!("config.json lacks integer `{k}`")))
    };
    let model_type = json
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or("llama")
        .to_string();
    crate::model::config::check_architecture(&model_type, "model_type")?;
    let hidden = need("hidden_size")?;
    let heads = need("num_attention_heads")?;
    let linear = match json.get("rope_scaling") {
        Some(rs)
            if rs
                .get("type")
                .or(rs.get("rope_type"))
                .and_then(Value::as_str)
                == Some("linear") =>
        {
            rs.get("factor").and_then(Value::as_f64).unwrap_or(1.0)
        }
        _ => 1.0,
    };
    let config = ModelConfig {
        architecture: model_type.clone(),
        vocab_size: need("vocab_size")?,
        hidden_size: hidden,
        intermediate_size: need("intermediate_size")?,
        num_layers: need("num_hidden_layers")?,
        num_heads: heads,
        num_kv_heads: get("num_key_value_heads").unwrap_or(heads),
        head_dim: get("head_dim").unwrap_or(hidden / heads.max(1)),
        rms_norm_eps: json
            .get("rms_norm_eps")
            .and_then(Value::as_f64)
            .unwrap_or(1e-6),
        rope_theta: json
            .get("rope_theta")
            .and_then(Value::as_f64)
            .unwrap_or(10_000.0),
        rope_linear_factor: linear,
        max_position_embeddings: get("max_position_embeddings").unwrap_or(4096),
        qkv_bias: crate::model::config::has_qkv_bias(&model_type),
    };
    config.validate()?;
    Ok(config)
}

/// The sampling settings a Hugging Face `generation_config.json` recommends: `temperature`,
/// `top_k`, `top_p`, `min_p` and `repetition_penalty` (which transformers applies over the
/// whole text), where present and in range. As vLLM reads the file, `do_sample` is not
/// consulted.
pub fn recommended_sampling(generation_config: &Value) -> PartialSampling {
    let num = |k: &str| generation_config.get(k).and_then(Value::as_f64);
    let repeat_penalty = num("repetition_penalty").map(|x| x as f32);
    PartialSampling {
        temperature: num("temperature").map(|x| x as f32),
        top_k: generation_config
            .get("top_k")
            .and_then(Value::as_u64)
            .map(|k| usize::try_from(k).unwrap_or(usize::MAX)),
        top_p: num("top_p").map(|x| x as f32),
        min_p: num("min_p").map(|x| x as f32),
        repeat_penalty,
        repeat_last_n: repeat_penalty.map(|_| usize::MAX),
    }
    .valid_only()
}

/// The recommendation of `dir/generation_config.json` ([`recommended_sampling`]); none when
/// the file is absent.
pub fn recommended_sampling_of_dir(dir: &Path) -> Result<PartialSampling> {
    let path = dir.join("generation_config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(PartialSampling::default()),
        Err(e) => {
            return Err(LadeError::BadModelFile {
                path,
                reason: e.to_string(),
            })
        }
    };
    let json: Value = serde_json::from_str(&text).map_err(|e| LadeError::BadModelFile {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok(recommended_sampling(&json))
}

/// `*.safetensors` files of `dir`, sorted by name.
fn shard_paths(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    shards.sort();
    if shards.is_empty() {
        return Err(LadeError::BadModelFile {
            path: dir.to_path_buf(),
            reason: "no *.safetensors files in the directory".into(),
        });
    }
    Ok(shards)
}

/// Loads a Hugging Face LLaMA-family checkpoint directory.
pub fn load_llama(dir: &Path, opts: &LoadOptions) -> Result<Llama> {
    let bad = |reason: String| LadeError::BadModelFile {
        path: dir.join("config.json"),
        reason,
    };
    let text = std::fs::read_to_string(dir.join("config.json")).map_err(|e| bad(e.to_string()))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let config = config_from_json(&json)?;
    let tied = json
        .get("tie_word_embeddings")
        .and_then(Value::as_bool)
        .unwrap_or(false);

    let shards = shard_paths(dir)?;
    let total: u64 = shards
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let progress = LoadProgress::new(total, "loading safetensors", opts.progress);
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for shard in &shards {
        let loaded = candle_core::safetensors::load(shard, &opts.device).map_err(|e| {
            LadeError::BadModelFile {
                path: shard.clone(),
                reason: e.to_string(),
            }
        })?;
        tensors.extend(loaded);
        progress.advance(std::fs::metadata(shard).map(|m| m.len()).unwrap_or(0));
    }
    progress.finish();

    let c = &config;
    let (h, f, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
    let (qd, kvd) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
    let mut take = |name: &str, want: &[usize]| -> Result<Tensor> {
        let t = tensors
            .remove(name)
            .ok_or_else(|| LadeError::Unsupported(format!("checkpoint lacks tensor {name}")))?;
        check_dims(name, t.dims(), want)?;
        Ok(t)
    };
    let fmt = opts.format;
    // Hugging Face stores q/k rows in the half-split rotary layout; lade's RoPE interleaves.
    let q_order = interleaved_rotary_order(c.num_heads, c.head_dim);
    let k_order = interleaved_rotary_order(c.num_kv_heads, c.head_dim);
    let mut blocks = Vec::with_capacity(c.num_layers);
    for i in 0..c.num_layers {
        let p = |s: &str| format!("model.layers.{i}.{s}.weight");
        let wq = permute_rows(&take(&p("self_attn.q_proj"), &[qd, h])?, &q_order)?;
        let wk = permute_rows(&take(&p("self_attn.k_proj"), &[kvd, h])?, &k_order)?;
        let b_qkv = if c.qkv_bias {
            let b = |s: &str| format!("model.layers.{i}.self_attn.{s}.bias");
            let bq = permute_rows(&take(&b("q_proj"), &[qd])?, &q_order)?;
            let bk = permute_rows(&take(&b("k_proj"), &[kvd])?, &k_order)?;
            let bv = take(&b("v_proj"), &[kvd])?;
            Some(Tensor::cat(&[&bq, &bk, &bv], 0)?.to_dtype(DType::F32)?)
        } else {
            None
        };
        blocks.push(Block {
            attn_norm: take(&p("input_layernorm"), &[h])?.to_dtype(DType::F32)?,
            wqkv: Linear::stack_rows(vec![
                Linear::from_dense(wq, fmt)?,
                Linear::from_dense(wk, fmt)?,
                Linear::from_dense(take(&p("self_attn.v_proj"), &[kvd, h])?, fmt)?,
            ])?,
            b_qkv,
            wo: Linear::from_dense(take(&p("self_attn.o_proj"), &[h, qd])?, fmt)?,
            ffn_norm: take(&p("post_attention_layernorm"), &[h])?.to_dtype(DType::F32)?,
            w_gate_up: Linear::stack_rows(vec![
                Linear::from_dense(take(&p("mlp.gate_proj"), &[f, h])?, fmt)?,
                Linear::from_dense(take(&p("mlp.up_proj"), &[f, h])?, fmt)?,
            ])?,
            w_down: Linear::from_dense(take(&p("mlp.down_proj"), &[h, f])?, fmt)?,
        });
    }
    let embedding = take("model.embed_tokens.weight", &[v, h])?.to_dtype(DType::F32)?;
    let final_norm = take("model.norm.weight", &[h])?.to_dtype(DType::F32)?;
    let lm_head = match take("lm_head.weight", &[v, h]) {
        Ok(w) if !tied => Linear::from_dense(w, fmt)?,
        _ => Linear::from_dense(embedding.clone(), fmt)?,
    };
    Llama::assemble(
        LlamaParts {
            config,
            embedding,
            blocks,
            final_norm,
            lm_head,
            rope_freq_factors: None,
        },
        &opts.device,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recommended_sampling_of_a_generation_config() {
        let json: Value = serde_json::from_str(
            r#"{"bos_token_id": 1, "do_sample": true, "temperature": 0.7, "top_p": 0.8,
                "top_k": 20, "repetition_penalty": 1.05}"#,
        )
        .unwrap();
        assert_eq!(
            recommended_sampling(&json),
            PartialSampling {
                temperature: Some(0.7),
                top_k: Some(20),
                top_p: Some(0.8),
                min_p: None,
                repeat_penalty: Some(1.05),
                repeat_last_n: Some(usize::MAX),
            }
        );
        // Token ids only (the usual file of a base model): no recommendation.
        let ids: Value =
            serde_json::from_str(r#"{"bos_token_id": 1, "eos_token_id": [2, 3]}"#).unwrap();
        assert!(recommended_sampling(&ids).is_empty());
        let bad: Value =
            serde_json::from_str(r#"{"temperature": -1, "top_p": 0, "top_k": "x"}"#).unwrap();
        assert!(recommended_sampling(&bad).is_empty());
    }

    #[test]
    fn a_directory_without_generation_config_recommends_nothing() {
        let dir = std::env::temp_dir().join(format!("lade-gencfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(recommended_sampling_of_dir(&dir).unwrap().is_empty());
        std::fs::write(dir.join("generation_config.json"), "{not json").unwrap();
        assert!(matches!(
            recommended_sampling_of_dir(&dir),
            Err(LadeError::BadModelFile { .. })
        ));
        std::fs::write(dir.join("generation_config.json"), r#"{"min_p": 0.1}"#).unwrap();
        assert_eq!(recommended_sampling_of_dir(&dir).unwrap().min_p, Some(0.1));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
