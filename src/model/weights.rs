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
            return Ok(Linear::Dense(dequantize(&t)?.to_dtype(dtype)?));
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
            return Ok(Linear::Dense(dequantize(&t)?));
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
            Linear::Quantized(QMatMul::QTensor(t))
                if x.device().is_cpu()
                    && x.dim(0)? == 1
                    && single_row_kernel_differs(t.dtype()) =>
            {
                // Computed as the first of two equal rows, so that a row's result does not
                // depend on how many rows share the pass.
                let y = QMatMul::QTensor(t.clone()).forward(&Tensor::cat(&[x, x], 0)?)?;
                Ok(y.narrow(0, 0, 1)?)
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

/// Whether candle's CPU matmul for `dtype` takes a different kernel for a single row than for
/// several (x86: Q6K keeps single rows on the compact weights and repacks for more), whose
/// rounding differs: lossless lookahead needs a row's result to be the same in a one-row plain
/// step and in a many-row lookahead step (`projections_are_batch_invariant` checks every
/// format).
fn single_row_kernel_differs(dtype: GgmlDType) -> bool {
    cfg!(target_arch = "x86_64") && dtype == GgmlDType::Q6K
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

/// Row order that turns a q or k projection whose heads rotate in the half-split ("NeoX")
/// layout — dimension `i` of a head pairs with `i + head_dim/2`, as in Hugging Face checkpoints
/// and Qwen2 GGUF files — into the interleaved layout of lade's RoPE, where `2i` pairs with
/// `2i + 1`: row `h * head_dim + 2i + j` of the result is row `h * head_dim + j * head_dim/2 + i`
/// of the original (`j` ∈ {0, 1}). Applying one order to the rows of q and of k (and of their
/// biases) leaves every q·k product unchanged and makes interleaved RoPE on the permuted rows
/// equal half-split RoPE on the original ones.
pub fn interleaved_rotary_order(heads: usize, head_dim: usize) -> Vec<usize> {
    let half = head_dim / 2;
    (0..heads)
        .flat_map(|h| (0..half).flat_map(move |i| [h * head_dim + i, h * head_dim + half + i]))
        .collect()
}

/// The rows of a dense (rows, ...) tensor, or entries of a vector, taken in `order`.
pub fn permute_rows(t: &Tensor, order: &[usize]) -> Result<Tensor> {
    if t.dim(0)? != order.len() {
        return Err(LadeError::Unsupported(format!(
            "cannot reorder {} rows with an order of {}",
            t.dim(0)?,
            order.len()
        )));
    }
    let idx: Vec<u32> = order.iter().map(|&r| r as u32).collect();
    Ok(t.index_select(&Tensor::new(idx.as_slice(), t.device())?, 0)?)
}

/// The rows of a (rows, cols) quantized tensor taken in `order`, exactly: each row's raw
/// blocks are moved as they are (a row of a GGML tensor is a whole number of blocks), nothing
/// is dequantized or re-quantized.
pub fn permute_qtensor_rows(t: &QTensor, order: &[usize]) -> Result<QTensor> {
    let dims = t.shape().dims().to_vec();
    let dtype = t.dtype();
    let bad = |m: String| Err(LadeError::Unsupported(m));
    if dims.len() != 2 || dims[0] != order.len() {
        return bad(format!(
            "cannot reorder the rows of a {dims:?} tensor with an order of {}",
            order.len()
        ));
    }
    if dims[1] % dtype.block_size() != 0 {
        return bad(format!(
            "rows of {} values are not whole {dtype:?} blocks",
            dims[1]
        ));
    }
    let row_bytes = dims[1] / dtype.block_size() * dtype.type_size();
    let data = t.data()?;
    if data.len() != row_bytes * dims[0] {
        return bad(format!(
            "{dtype:?} tensor {dims:?} holds {} bytes, expected {}",
            data.len(),
            row_bytes * dims[0]
        ));
    }
    let mut bytes = Vec::with_capacity(data.len());
    for &r in order {
        if r >= dims[0] {
            return bad(format!("row {r} is outside a tensor of {} rows", dims[0]));
        }
        bytes.extend_from_slice(&data[r * row_bytes..(r + 1) * row_bytes]);
    }
    let storage = QStorage::from_data(Cow::Owned(bytes), &t.device(), dtype)?;
    Ok(QTensor::new(storage, (dims[0], dims[1]))?)
}

/// Values per parallel task of [`dequantize`] and [`f16_bits`].
const CONVERT_CHUNK: usize = 1 << 16;

/// `t` as an f32 tensor on its device: a float tensor in host memory (f32, f16, bf16: a 7B
/// model's weights are 6.7 billion of them) converted from its stored bytes in parallel chunks,
/// anything else by candle (the same values: every f16 and bf16 value is exact in f32).
pub fn dequantize(t: &QTensor) -> Result<Tensor> {
    use half::slice::HalfFloatSliceExt;
    use rayon::prelude::*;
    let device = t.device();
    let dtype = t.dtype();
    let width = match dtype {
        GgmlDType::F32 => 4,
        GgmlDType::F16 | GgmlDType::BF16 => 2,
        _ => return Ok(t.dequantize(&device)?),
    };
    if !device.is_cpu() {
        return Ok(t.dequantize(&device)?);
    }
    let n = t.shape().elem_count();
    let bytes = t.data()?;
    if bytes.len() != n * width {
        return Err(LadeError::Unsupported(format!(
            "a {dtype:?} tensor of {n} values holds {} bytes",
            bytes.len()
        )));
    }
    let mut out = vec![0f32; n];
    out.par_chunks_mut(CONVERT_CHUNK)
        .zip(bytes.par_chunks(CONVERT_CHUNK * width))
        .for_each(|(o, b)| {
            if width == 4 {
                for (o, b) in o.iter_mut().zip(b.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
                return;
            }
            let mut bits = [0u16; CONVERT_CHUNK];
            let bits = &mut bits[..o.len()];
            for (h, b) in bits.iter_mut().zip(b.chunks_exact(2)) {
                *h = u16::from_le_bytes([b[0], b[1]]);
            }
            if dtype == GgmlDType::F16 {
                half::slice::HalfBitsSliceExt::reinterpret_cast::<half::f16>(&*bits)
                    .convert_to_f32_slice(o);
            } else {
                half::slice::HalfBitsSliceExt::reinterpret_cast::<half::bf16>(&*bits)
                    .convert_to_f32_slice(o);
            }
        });
    Ok(Tensor::from_vec(out, t.shape().clone(), &device)?)
}

/// Row-major f16 bits of a tensor of any float dtype on any device (what the GPU path uploads).
/// An f32 or f16 tensor in host memory is converted straight from its storage, in parallel
/// chunks (round to nearest, ties to even, as `to_dtype(F16)`), without the intermediate copies
/// of the generic path: for a 7B model that is 6.7 billion values.
pub fn f16_bits(t: &Tensor) -> Result<Vec<u16>> {
    use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
    use rayon::prelude::*;
    let t = t.to_device(&candle_core::Device::Cpu)?.contiguous()?;
    let n = t.elem_count();
    let (storage, layout) = t.storage_and_layout();
    let start = layout.start_offset();
    let mut out = vec![0u16; n];
    match (&*storage, t.dtype()) {
        (candle_core::Storage::Cpu(cpu), DType::F32) => {
            let src = &cpu.as_slice::<f32>()?[start..start + n];
            out.par_chunks_mut(CONVERT_CHUNK)
                .zip(src.par_chunks(CONVERT_CHUNK))
                .for_each(|(o, s)| {
                    o.reinterpret_cast_mut::<half::f16>()
                        .convert_from_f32_slice(s)
                });
        }
        (candle_core::Storage::Cpu(cpu), DType::F16) => {
            let src = &cpu.as_slice::<half::f16>()?[start..start + n];
            out.copy_from_slice(src.reinterpret_cast());
        }
        _ => {
            drop(storage);
            let v = t
                .to_dtype(DType::F16)?
                .flatten_all()?
                .to_vec1::<half::f16>()?;
            out.copy_from_slice(v.reinterpret_cast());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rope::RopeTable;
    use candle_core::Device;

    fn values(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 + seed) * 0.731).sin()).collect()
    }

    #[test]
    fn dequantize_equals_candles_for_float_tensors() {
        let dev = Device::Cpu;
        // More values than one parallel chunk, not a multiple of it; specials included.
        let mut v: Vec<f32> = values(3 * 70_001, 0.25).iter().map(|x| x * 6.0e4).collect();
        v.extend([
            0.0,
            -0.0,
            1.0e-9,
            f32::INFINITY,
            f32::NEG_INFINITY,
            65_520.0,
        ]);
        let rows = v.len() / 3;
        let t = Tensor::from_vec(v, (rows, 3), &dev).unwrap();
        for dtype in [
            GgmlDType::F32,
            GgmlDType::F16,
            GgmlDType::BF16,
            GgmlDType::Q8_0,
        ] {
            let t = if dtype == GgmlDType::Q8_0 {
                t.narrow(0, 0, 64).unwrap().reshape((6, 32)).unwrap()
            } else {
                t.clone()
            };
            let q = QTensor::quantize(&t, dtype).unwrap();
            let want: Vec<f32> = q
                .dequantize(&dev)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let got = dequantize(&q).unwrap();
            assert_eq!(got.dims(), t.dims(), "{dtype:?}");
            let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
            let same = got
                .iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same && got.len() == want.len(), "{dtype:?}");
        }
    }

    #[test]
    fn f16_bits_equal_candles_conversion_for_every_float_dtype_and_layout() {
        // Values at and between f16's steps (ties round to even), tiny, huge and special.
        let mut v: Vec<f32> = values(70_001, 0.5).iter().map(|x| x * 3.0e4).collect();
        v.extend([
            0.0,
            -0.0,
            1.0 + 1.0 / 2048.0,
            1.0 + 3.0 / 2048.0,
            6.0e-8,
            1.0e-9,
            70_000.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ]);
        let n = v.len();
        let t = Tensor::from_vec(v, n, &Device::Cpu).unwrap();
        let oracle = |t: &Tensor| -> Vec<u16> {
            t.to_dtype(DType::F16)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<half::f16>()
                .unwrap()
                .into_iter()
                .map(half::f16::to_bits)
                .collect()
        };
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let td = t.to_dtype(dtype).unwrap();
            assert_eq!(f16_bits(&td).unwrap(), oracle(&td), "{dtype:?}");
            // A view that starts inside its storage, and a transposed (non-contiguous) one.
            let tail = td.narrow(0, 7, n - 7).unwrap();
            assert_eq!(
                f16_bits(&tail).unwrap(),
                oracle(&tail),
                "{dtype:?} narrowed"
            );
            let m = td
                .narrow(0, 0, 1000 * 70)
                .unwrap()
                .reshape((1000, 70))
                .unwrap();
            let tr = m.t().unwrap();
            assert_eq!(f16_bits(&tr).unwrap(), oracle(&tr), "{dtype:?} transposed");
        }
    }

    /// Half-split ("NeoX") RoPE by hand: dimension `i` of each head pairs with `i + d/2`.
    fn neox_by_hand(x: &[f32], heads: usize, hd: usize, pos: f64, theta: f64) -> Vec<f32> {
        let half = hd / 2;
        let mut y = x.to_vec();
        for h in 0..heads {
            for i in 0..half {
                let angle = pos / theta.powf(2.0 * i as f64 / hd as f64);
                let (a, b) = (x[h * hd + i] as f64, x[h * hd + half + i] as f64);
                y[h * hd + i] = (a * angle.cos() - b * angle.sin()) as f32;
                y[h * hd + half + i] = (a * angle.sin() + b * angle.cos()) as f32;
            }
        }
        y
    }

    #[test]
    fn interleaved_rows_turn_half_split_rope_into_lade_rope() -> Result<()> {
        let dev = Device::Cpu;
        let (heads, hd, theta) = (3usize, 8usize, 1e6f64);
        let order = interleaved_rotary_order(heads, hd);
        // A permutation of every row, within each head.
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..heads * hd).collect::<Vec<_>>());
        assert!(order
            .chunks(hd)
            .enumerate()
            .all(|(h, c)| c.iter().all(|&r| r / hd == h)));

        let table = RopeTable::new(hd, theta, 1.0, None, 64, &dev)?;
        let x = values(heads * hd, 1.0);
        let permuted = permute_rows(&Tensor::new(x.as_slice(), &dev)?, &order)?;
        for pos in [0u32, 1, 7, 63] {
            let (cos, sin) = table.gather(&Tensor::new(&[pos], &dev)?, DType::F32)?;
            let ours: Vec<f32> =
                RopeTable::apply(&permuted.reshape((1, heads, 1, hd))?, &cos, &sin)?
                    .flatten_all()?
                    .to_vec1()?;
            let want = neox_by_hand(&x, heads, hd, pos as f64, theta);
            for (new, &old) in order.iter().enumerate() {
                assert!(
                    (ours[new] - want[old]).abs() < 1e-5,
                    "pos {pos}: row {new} (was {old}): {} vs {}",
                    ours[new],
                    want[old]
                );
            }
        }
        Ok(())
    }

    /// Each output row of a projection must not depend on how many rows are computed with it
    /// (lossless lookahead compares a row of a many-row step with a one-row plain step), for
    /// every format a GGUF file may hold, at row counts on both sides of the kernels' tiles.
    #[test]
    fn projections_are_batch_invariant() -> Result<()> {
        let dev = Device::Cpu;
        let (out, inp) = (64usize, 512usize);
        let w = Tensor::from_vec(values(out * inp, 5.0), (out, inp), &dev)?;
        let rows = 40usize;
        let x = Tensor::from_vec(values(rows * inp, 11.0), (rows, inp), &dev)?;
        for dtype in [
            GgmlDType::Q4K,
            GgmlDType::Q5K,
            GgmlDType::Q6K,
            GgmlDType::Q8_0,
            GgmlDType::Q5_0,
            GgmlDType::Q4_0,
        ] {
            let lin = Linear::from_qtensor(
                Arc::new(QTensor::quantize(&w, dtype)?),
                WeightFormat::Native,
            )?;
            let alone: Vec<Vec<f32>> = (0..rows)
                .map(|r| Ok(lin.forward(&x.narrow(0, r, 1)?)?.flatten_all()?.to_vec1()?))
                .collect::<Result<_>>()?;
            for m in [2usize, 3, 4, 5, 8, 9, 31, 32, 33, 40] {
                let y: Vec<Vec<f32>> = lin.forward(&x.narrow(0, 0, m)?)?.to_vec2()?;
                for (r, row) in y.iter().enumerate() {
                    assert_eq!(row, &alone[r], "{dtype:?}: row {r} of {m}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn quantized_rows_are_reordered_exactly() -> Result<()> {
        let dev = Device::Cpu;
        let (rows, cols) = (16usize, 512usize);
        let w = Tensor::from_vec(values(rows * cols, 3.0), (rows, cols), &dev)?;
        let order = interleaved_rotary_order(2, 8);
        for dtype in [
            GgmlDType::Q4K,
            GgmlDType::Q6K,
            GgmlDType::Q5_0,
            GgmlDType::Q8_0,
            GgmlDType::F16,
        ] {
            let q = QTensor::quantize(&w, dtype)?;
            let moved = permute_qtensor_rows(&q, &order)?;
            assert_eq!(moved.dtype(), dtype);
            let got: Vec<f32> = moved.dequantize(&dev)?.flatten_all()?.to_vec1()?;
            let want: Vec<f32> = permute_rows(&q.dequantize(&dev)?, &order)?
                .flatten_all()?
                .to_vec1()?;
            assert_eq!(got, want, "{dtype:?}");
        }
        // Orders that do not fit are errors, not panics.
        let q = QTensor::quantize(&w, GgmlDType::Q8_0)?;
        assert!(permute_qtensor_rows(&q, &[0, 1]).is_err());
        assert!(permute_qtensor_rows(&q, &[rows; 16]).is_err());
        assert!(permute_rows(&w, &[0]).is_err());
        Ok(())
    }
}
