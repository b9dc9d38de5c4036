//! The GPU path: a [`Llama`]'s weights in f16 on one CUDA device, run by lade's own
//! batch-invariant kernels (`kernels.cu`), one CUDA graph per step shape.
//!
//! Why own kernels: a row's result must not depend on how many rows share the batch, or greedy
//! lookahead would drift from plain greedy at near-ties (cuBLAS and candle's quantized kernels
//! pick different reduction orders for different batch sizes). Why graphs: a 135M-parameter
//! model on an H100 is launch-bound (~200 kernels per step), and replaying a captured graph
//! removes most of the per-launch cost. The graph stays valid as the sequence grows because
//! the kernels read the cache length and the step's rows from device memory.

pub mod dev;
mod kernels;
mod session;
mod weight_tiles;

use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Tensor};

pub use kernels::ACT_PLANES;
pub use session::CudaSession;

use super::config::ModelConfig;
use super::llama::Llama;
use super::weights::{dequantize, f16_bits, Linear};
use crate::{LadeError, Result};
use kernels::Kernels;
use weight_tiles::GemmWeights;

pub(crate) fn gpu_err(e: impl std::fmt::Display) -> LadeError {
    LadeError::Gpu(e.to_string())
}

/// Number of CUDA devices visible (0 when the driver is missing or reports none).
pub fn device_count() -> usize {
    CudaContext::device_count()
        .map(|n| n.max(0) as usize)
        .unwrap_or(0)
}

/// Weights of one transformer block on the device.
struct BlockWeights {
    attn_norm: CudaSlice<f32>, // (hidden,)
    wqkv: GemmWeights,         // f16 ((heads + 2 kv_heads) * head_dim, hidden)
    wo: GemmWeights,           // f16 (hidden, heads * head_dim)
    ffn_norm: CudaSlice<f32>,  // (hidden,)
    w_gate_up: GemmWeights,    // f16 (2 * ffn, hidden), rows gate_0, up_0, gate_1, up_1, ..
    w_down: GemmWeights,       // f16 (hidden, ffn)
    /// Bias of the qkv projection, ((heads + 2 kv_heads) * head_dim,), where the model has one.
    bqkv: Option<CudaSlice<f32>>,
}

/// A model resident on one GPU, shared by every [`CudaSession`] decoding with it.
pub struct CudaLlama {
    pub config: ModelConfig,
    pub device_name: String,
    ordinal: usize,
    stream: Arc<CudaStream>,
    kernels: Kernels,
    embedding: CudaSlice<u16>, // f16 (vocab, hidden)
    blocks: Vec<BlockWeights>,
    final_norm: CudaSlice<f32>, // (hidden,)
    lm_head: GemmWeights,       // f16 (vocab, hidden)
    cos: CudaSlice<f32>,        // (max_positions, head_dim / 2)
    sin: CudaSlice<f32>,        // (max_positions, head_dim / 2)
    max_positions: usize,
    weight_bytes: usize,
}

impl std::fmt::Debug for CudaLlama {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaLlama")
            .field("device", &self.device_name)
            .field("ordinal", &self.ordinal)
            .finish_non_exhaustive()
    }
}

/// Row-major f16 bits of a projection's (out, in) weight matrix.
fn linear_f16(l: &Linear) -> Result<Vec<u16>> {
    match l {
        Linear::Dense(w) => f16_bits(w),
        Linear::Quantized(QMatMul::QTensor(q)) => f16_bits(&dequantize(q)?),
        Linear::Quantized(QMatMul::Tensor(w)) | Linear::Quantized(QMatMul::TensorF16(w)) => {
            f16_bits(w)
        }
        Linear::Stacked(parts) => {
            let mut out = Vec::new();
            for p in parts {
                out.extend(linear_f16(p)?);
            }
            Ok(out)
        }
    }
}

/// Rows [gate_0 .. gate_{f-1}, up_0 .. up_{f-1}] of a (2f, cols) matrix reordered to
/// [gate_0, up_0, gate_1, up_1, ..]: the FFN's gate and up outputs of one unit become adjacent
/// columns, so the matmul's epilogue can apply silu(gate) * up itself (`GemmOut::SiluPairs`).
fn interleave_halves(w: Vec<u16>, cols: usize) -> Vec<u16> {
    let f = w.len() / cols / 2;
    let (gate, up) = w.split_at(f * cols);
    gate.chunks_exact(cols)
        .zip(up.chunks_exact(cols))
        .flat_map(|(g, u)| g.iter().chain(u).copied())
        .collect()
}

fn tensor_f32(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

impl CudaLlama {
    /// Copies `model` (loaded on the CPU, any weight format) to GPU `ordinal` as f16 weights.
    /// `progress` is called with the bytes of each block uploaded.
    pub fn upload(model: &Llama, ordinal: usize, progress: &mut dyn FnMut(u64)) -> Result<Self> {
        let available = device_count();
        if ordinal >= available {
            return Err(LadeError::InvalidArgument(format!(
                "cuda:{ordinal} requested but {available} CUDA device(s) are visible"
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(gpu_err)?;
        // SAFETY: cudarc's cross-stream event tracking (which would also record events inside
        // graph capture) has nothing to synchronise here: the weights are written only on the
        // model's stream, which is synchronised at the end of `upload` before any session
        // exists, and are read-only afterwards; every session allocates, uses and frees its
        // own buffers on its own stream only.
        unsafe { ctx.disable_event_tracking() };
        let device_name = ctx.name().map_err(gpu_err)?;
        // Graph capture needs a stream of its own (the legacy default stream cannot capture).
        let stream = ctx.new_stream().map_err(gpu_err)?;
        let kernels = Kernels::load(&ctx)?;
        let up16 = |v: Vec<u16>| stream.clone_htod(&v).map_err(gpu_err);
        let up32 = |v: Vec<f32>| stream.clone_htod(&v).map_err(gpu_err);
        // A projection's (n, k) weights, in the layout the device's matmul reads.
        let layout = kernels.weight_layout();
        let upw = |v: Vec<u16>, k: usize| GemmWeights::upload(&stream, &v, v.len() / k, k, layout);
        let c = &model.config;
        let attn_width = c.num_heads * c.head_dim;
        let embedding = up16(f16_bits(&model.embedding)?)?;
        let mut blocks = Vec::with_capacity(model.blocks.len());
        for b in &model.blocks {
            blocks.push(BlockWeights {
                attn_norm: up32(tensor_f32(&b.attn_norm)?)?,
                wqkv: upw(linear_f16(&b.wqkv)?, c.hidden_size)?,
                wo: upw(linear_f16(&b.wo)?, attn_width)?,
                ffn_norm: up32(tensor_f32(&b.ffn_norm)?)?,
                w_gate_up: upw(
                    interleave_halves(linear_f16(&b.w_gate_up)?, c.hidden_size),
                    c.hidden_size,
                )?,
                w_down: upw(linear_f16(&b.w_down)?, c.intermediate_size)?,
                bqkv: match &b.b_qkv {
                    Some(bias) => Some(up32(tensor_f32(bias)?)?),
                    None => None,
                },
            });
            progress(Self::f16_block_bytes(&model.config) as u64);
        }
        let (cos, sin) = model.rope.tables();
        let model = CudaLlama {
            config: c.clone(),
            device_name,
            ordinal,
            kernels,
            embedding,
            blocks,
            final_norm: up32(tensor_f32(&model.final_norm)?)?,
            lm_head: upw(linear_f16(&model.lm_head)?, c.hidden_size)?,
            cos: up32(tensor_f32(cos)?)?,
            sin: up32(tensor_f32(sin)?)?,
            max_positions: model.rope.max_positions(),
            weight_bytes: Self::f16_bytes(c),
            stream,
        };
        model.check_limits()?;
        model.stream.synchronize().map_err(gpu_err)?;
        Ok(model)
    }

    /// Shapes the kernels were written for.
    fn check_limits(&self) -> Result<()> {
        let c = &self.config;
        let bad = |m: String| Err(LadeError::Unsupported(m));
        if c.head_dim != 64 && c.head_dim != 128 {
            return bad(format!(
                "head_dim {} (the GPU attention takes 64 or 128)",
                c.head_dim
            ));
        }
        if c.num_heads % c.num_kv_heads != 0 {
            return bad("heads not a multiple of kv heads".into());
        }
        if c.hidden_size > kernels::MAX_NORM_WIDTH {
            return bad(format!(
                "hidden size {} (the GPU kernels take at most {})",
                c.hidden_size,
                kernels::MAX_NORM_WIDTH
            ));
        }
        for (k, n) in self.matmul_shapes() {
            if k % 8 != 0 || n % 2 != 0 {
                return bad(format!(
                    "a {n} x {k} projection (the GPU matmul takes inner dimensions that are \
                     multiples of 8 and an even number of outputs)"
                ));
            }
        }
        Ok(())
    }

    /// (inner dimension, outputs) of every matmul of a step: qkv, o, gate/up, down, LM head.
    pub(crate) fn matmul_shapes(&self) -> [(usize, usize); 5] {
        let c = &self.config;
        let (h, f) = (c.hidden_size, c.intermediate_size);
        let attn_w = c.num_heads * c.head_dim;
        [
            (h, attn_w + 2 * c.num_kv_heads * c.head_dim),
            (attn_w, h),
            (h, 2 * f),
            (f, h),
            (h, c.vocab_size),
        ]
    }

    /// Bytes of one block's projections in f16.
    fn f16_block_bytes(c: &ModelConfig) -> usize {
        let (h, f) = (c.hidden_size, c.intermediate_size);
        let qkv = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim;
        2 * (qkv * h + h * c.num_heads * c.head_dim + 2 * f * h + h * f)
    }

    /// Bytes of every projection and the LM head in f16: what one forward pass reads.
    pub fn f16_bytes(c: &ModelConfig) -> usize {
        c.num_layers * Self::f16_block_bytes(c) + 2 * c.vocab_size * c.hidden_size
    }

    /// Bytes of weights read by one forward pass (every projection and the LM head, f16).
    pub fn weight_bytes(&self) -> usize {
        self.weight_bytes
    }

    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// Peak DRAM bandwidth in bytes/s from the device's memory clock and bus width (`None` if
    /// the driver does not report them).
    pub fn memory_bandwidth(&self) -> Option<f64> {
        use candle_core::cuda_backend::cudarc::driver::sys::CUdevice_attribute as A;
        let ctx = self.stream.context();
        let clock_khz = ctx
            .attribute(A::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE)
            .ok()?;
        let bus_bits = ctx
            .attribute(A::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH)
            .ok()?;
        (clock_khz > 0 && bus_bits > 0)
            .then(|| 2.0 * f64::from(clock_khz) * 1e3 * f64::from(bus_bits) / 8.0)
    }
}
