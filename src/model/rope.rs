//! Rotary position embedding tables, indexed by an explicit position per token.
//!
//! Weights are kept in the GGUF ("interleaved pairs") layout: dimensions `(2i, 2i+1)` of a head
//! rotate together by angle `pos * theta^(-2i/d)`. Hugging Face checkpoints are permuted into
//! that layout at load time, so one RoPE kernel (`candle_nn::rotary_emb::rope_i`) serves both.

use candle_core::{DType, Device, Tensor};

/// Precomputed `cos`/`sin` of every (position, frequency) pair.
#[derive(Debug, Clone)]
pub struct RopeTable {
    cos: Tensor, // (max_positions, head_dim / 2) f32
    sin: Tensor, // (max_positions, head_dim / 2) f32
    max_positions: usize,
}

impl RopeTable {
    /// `freq_factors` (Llama-3 style `rope_freqs`) divide the per-dimension frequencies.
    pub fn new(
        head_dim: usize,
        theta: f64,
        linear_factor: f64,
        freq_factors: Option<&[f32]>,
        max_positions: usize,
        device: &Device,
    ) -> crate::Result<Self> {
        let half = head_dim / 2;
        let inv_freq: Vec<f64> = (0..half)
            .map(|i| {
                let f = 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64);
                let factor = freq_factors
                    .and_then(|ff| ff.get(i))
                    .copied()
                    .unwrap_or(1.0) as f64;
                f / factor / linear_factor
            })
            .collect();
        let mut cos = Vec::with_capacity(max_positions * half);
        let mut sin = Vec::with_capacity(max_positions * half);
        for pos in 0..max_positions {
            for f in &inv_freq {
                let angle = pos as f64 * f;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Ok(Self {
            cos: Tensor::from_vec(cos, (max_positions, half), device)?,
            sin: Tensor::from_vec(sin, (max_positions, half), device)?,
            max_positions,
        })
    }

    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// The whole tables: cos, sin, each (max_positions, head_dim / 2) f32.
    pub fn tables(&self) -> (&Tensor, &Tensor) {
        (&self.cos, &self.sin)
    }

    /// `positions`: (q,) u32 → cos, sin: (q, head_dim / 2) in `dtype`.
    pub fn gather(&self, positions: &Tensor, dtype: DType) -> crate::Result<(Tensor, Tensor)> {
        let cos = self.cos.index_select(positions, 0)?.to_dtype(dtype)?;
        let sin = self.sin.index_select(positions, 0)?.to_dtype(dtype)?;
        Ok((cos, sin))
    }

    /// Rotates `x`: (1, heads, q, head_dim) by the given per-token tables.
    pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> crate::Result<Tensor> {
        Ok(candle_nn::rotary_emb::rope_i(&x.contiguous()?, cos, sin)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rotating by explicit positions must equal a hand-computed rotation of each pair,
    /// whatever order the positions come in (RoPE from a position id per token).
    #[test]
    fn rope_matches_hand_rotation_at_arbitrary_positions() -> crate::Result<()> {
        let dev = Device::Cpu;
        let (hd, theta) = (8usize, 10_000f64);
        let table = RopeTable::new(hd, theta, 1.0, None, 64, &dev)?;
        let positions = [5u32, 0, 63, 5, 17];
        let q = positions.len();
        let data: Vec<f32> = (0..q * hd).map(|i| (i as f32 * 0.37).sin()).collect();
        let x = Tensor::from_vec(data.clone(), (1, 1, q, hd), &dev)?;
        let pos = Tensor::new(&positions[..], &dev)?;
        let (cos, sin) = table.gather(&pos, DType::F32)?;
        let y: Vec<f32> = RopeTable::apply(&x, &cos, &sin)?.flatten_all()?.to_vec1()?;
        for (t, &p) in positions.iter().enumerate() {
            for i in 0..hd / 2 {
                let angle = p as f64 / theta.powf(2.0 * i as f64 / hd as f64);
                let (a, b) = (data[t * hd + 2 * i] as f64, data[t * hd + 2 * i + 1] as f64);
                let ea = a * angle.cos() - b * angle.sin();
                let eb = a * angle.sin() + b * angle.cos();
                assert!(
                    (y[t * hd + 2 * i] as f64 - ea).abs() < 1e-5,
                    "token {t} pair {i}"
                );
                assert!(
                    (y[t * hd + 2 * i + 1] as f64 - eb).abs() < 1e-5,
                    "token {t} pair {i}"
                );
            }
        }
        // A token rotated alone equals the same token rotated inside a batch.
        let alone = Tensor::from_vec(data[2 * hd..3 * hd].to_vec(), (1, 1, 1, hd), &dev)?;
        let (c1, s1) = table.gather(&Tensor::new(&[63u32], &dev)?, DType::F32)?;
        let y1: Vec<f32> = RopeTable::apply(&alone, &c1, &s1)?
            .flatten_all()?
            .to_vec1()?;
        assert_eq!(&y1[..], &y[2 * hd..3 * hd]);
        Ok(())
    }
}
