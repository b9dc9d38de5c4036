//! Projection weights: kept quantized (candle's QMatMul kernels) or dense in f32/f16/bf16.

use std::sync::Arc;

use std::borrow::Cow;

use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{DType, Module, Tensor};
use serde::Serialize;

use crate::{LadeError, Result};

/// How projection weights are held in memory (`--dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum WeightFormat {
    /// Per device: on CPU keep quantized weights, but re-quantize formats without a SIMD kernel
    /// in candle (Q4_1, Q5_0, Q5_1) to Q8_0; dense checkpoints stay f32.
    Auto,
    /// Keep every tensor exactly as stored in the file.
    Native,
    /// Re-quantize every projection to Q8_0.
    Q8_0,
    /// Dequantize everything to f32.
    F32,
    /// Dequantize everything to f16.
    F16,
    /// Dequantize everything to bf16.
    Bf16,
}

impl WeightFormat {
    pub fn dense_dtype(self) -> Option<DType> {
        match self {
            WeightFormat::F32 => Some(DType::F32),
            WeightFormat::F16 => Some(DType::F16),
            WeightFormat::Bf16 => Some(DType::BF16),
            _ => None,
        }
    }
}

/// A `y = x Wᵀ` projection, `W`: (out, in).
#[derive(Debug, Clone)]
pub enum Linear {
    Quantized(QMatMul),
    Dense(Tensor),
    /// Projections of different formats stacked along the output: outputs are concatenated.
    Stacked(Vec<Linear>),
}

impl Linear {
    /// Builds a projection from a file tensor according to `format`.
    pub fn from_qtensor(t: Arc<QTensor>, format: WeightFormat) -> Result<Self> {
        let device = t.device();
        if let Some(dtype) = format.dense_dtype() {
            return Ok(Linear::Dense(t.dequantize(&device)?.to_dtype(dtype)?));
        }
        let stored = t.dtype();
        let is_float = matches!(stored, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
        let in_dim = t.shape().dims().last().copied().unwrap_or(0);
        let can_q8 = in_dim % GgmlDType::Q8_0.block_size() == 0;
        let requantize = match format {
            WeightFormat::Q8_0 => stored != GgmlDType::Q8_0,
            WeightFormat::Auto => {
                device.is_cpu()
                    && matches!(stored, GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1)
            }
            _ => false,
        };
        if requantize && can_q8 {
            let dense = t.dequantize(&device)?;
            let q = QTensor::quantize(&dense, GgmlDType::Q8_0)?;
            return Ok(Linear::Quantized(QMatMul::QTensor(Arc::new(q))));
        }
        if is_float {
            return Ok(Linear::Dense(t.dequantize(&device)?));
        }
        Ok(Linear::Quantized(QMatMul::QTensor(t)))
    }

    /// Wraps a dense (out, in) tensor, converted to `format`'s dtype (f32 unless dense f16/bf16
    /// was asked for; quantized formats quantize it to Q8_0).
    pub fn from_dense(w: Tensor, format: WeightFormat) -> Result<Self> {
        match format {
            WeightFormat::Q8_0 => {
                let w = w.to_dtype(DType::F32)?;
                let q = QTensor::quantize(&w, GgmlDType::Q8_0)?;
                Ok(Linear::Quantized(QMatMul::QTensor(Arc::new(q))))
            }
            _ => {
                let dtype = format.dense_dtype().unwrap_or(DType::F32);
                Ok(Linear::Dense(w.to_dtype(dtype)?))
            }
        }
    }

    /// Stacks projections that read the same input along their outputs (q|k|v, gate|up), so
    /// one matmul serves all: same-format quantized weights are concatenated block row by block
    /// row (each output row is computed exactly as before), dense ones as tensors.
    pub fn stack_rows(parts: Vec<Linear>) -> Result<Self> {
        let quantized: Vec<&Arc<QTensor>> = parts
            .iter()
            .filter_map(|p| match p {
                Linear::Quantized(QMatMul::QTensor(t)) => Some(t),
                _ => None,
            })
            .collect();
        if quantized.len() == parts.len() {
            let dtype = quantized[0].dtype();
            let dims = quantized[0].shape().dims().to_vec();
            let same = quantized
                .iter()
                .all(|t| t.dtype() == dtype && t.shape().dims()[1..] == dims[1..]);
            if same && dims.len() == 2 {
                let mut bytes = Vec::new();
                for t in &quantized {
                    bytes.extend_from_slice(&t.data()?);
                }
                let rows: usize = quantized.iter().map(|t| t.shape().dims()[0]).sum();
                let device = quantized[0].device();
                let storage = QStorage::from_data(Cow::Owned(bytes), &device, dtype)?;
                let t = QTensor::new(storage, (rows, dims[1]))?;
                return Ok(Linear::Quantized(QMatMul::QTensor(Arc::new(t))));
            }
        }
        let dense: Vec<&Tensor> = parts
            .iter()
            .filter_map(|p| match p {
                Linear::Dense(w) => Some(w),
                _ => None,
            })
            .collect();
        if dense.len() == parts.len() && dense.iter().all(|w| w.dtype() == dense[0].dtype()) {
            return Ok(Linear::Dense(Tensor::cat(&dense, 0)?));
        }
        Ok(Linear::Stacked(parts))
    }

    /// `x`: (rows, in) f32 → (rows, out) f32.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Linear::Stacked(parts) => {
                let ys = parts
                    .iter()
                    .map(|p| p.forward(x))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Tensor::cat(&ys, 1)?)
            }
            Linear::Quantized(m) => Ok(m.forward(x)?),
            Linear::Dense(w) => {
                let x = x.to_dtype(w.dtype())?;
                // candle's CPU gemm takes a different (differently rounded) path for a single
                // row; padding it to two rows keeps every row's result independent of the
                // batch size.
                let single = x.device().is_cpu() && x.dim(0)? == 1;
                let x = if single {
                    Tensor::cat(&[&x, &x], 0)?
                } else {
                    x
                };
                let y = x.matmul(&w.t()?)?.to_dtype(DType::F32)?;
                Ok(if single { y.narrow(0, 0, 1)? } else { y })
            }
        }
    }

    /// Output features.
    pub fn out_dim(&self) -> Result<usize> {
        match self {
            Linear::Quantized(QMatMul::QTensor(t)) => Ok(t.shape().dims()[0]),
            Linear::Quantized(QMatMul::Tensor(w)) | Linear::Quantized(QMatMul::TensorF16(w)) => {
                Ok(w.dim(0)?)
            }
            Linear::Dense(w) => Ok(w.dim(0)?),
            Linear::Stacked(parts) => parts.iter().map(Linear::out_dim).sum(),
        }
    }

    /// Bytes of weight data read per forward pass.
    pub fn size_in_bytes(&self) -> usize {
        match self {
            Linear::Quantized(QMatMul::QTensor(t)) => t.storage_size_in_bytes(),
            Linear::Quantized(QMatMul::Tensor(w))
            | Linear::Quantized(QMatMul::TensorF16(w))
            | Linear::Dense(w) => w.elem_count() * w.dtype().size_in_bytes(),
            Linear::Stacked(parts) => parts.iter().map(Linear::size_in_bytes).sum(),
        }
    }

    /// Human-readable storage format, for logs and stats.
    pub fn format_name(&self) -> String {
        match self {
            Linear::Quantized(QMatMul::QTensor(t)) => format!("{:?}", t.dtype()),
            Linear::Quantized(QMatMul::Tensor(w))
            | Linear::Quantized(QMatMul::TensorF16(w))
            | Linear::Dense(w) => format!("{:?}", w.dtype()),
            Linear::Stacked(parts) => parts
                .iter()
                .map(Linear::format_name)
                .collect::<Vec<_>>()
                .join("+"),
        }
    }
}

/// Rejects shapes that do not match the config, with the tensor's name.
pub fn check_dims(name: &str, got: &[usize], want: &[usize]) -> Result<()> {
    if got != want {
        return Err(LadeError::Unsupported(format!(
            "tensor {name} has shape {got:?}, expected {want:?}"
        )));
    }
    Ok(())
}
