//! The layout Hopper's matmul (gemm_wgmma.cu) reads its weights in: each block's k-tile of
//! weights is one contiguous 8 KB run per 64 weight rows, already in the order the block stages
//! it, so that one bulk copy (`cp.async.bulk`) brings it into shared memory.
//!
//! A (N, K) f16 matrix, row-major, becomes tiles of 64 weight rows x 64 k (one k-tile,
//! `GEMM_BK`):
//!
//! ```text
//!   tile (nb, kt) = rows 64 nb .. 64 nb + 63, k 64 kt .. 64 kt + 63, at halves (nb KT + kt) 4096
//!   inside a tile:  row r, chunk c (halves 8 c .. 8 c + 7 of the k-tile) at r 64 + (c ^ (r & 7)) 8
//!
//!   K ->  kt = 0        kt = 1        ...  kt = KT-1
//!   nb=0 [tile 0     ][tile 1     ]  ...  [tile KT-1    ]   one column tile's k-tiles are
//!   nb=1 [tile KT    ][tile KT+1  ]  ...  [tile 2 KT - 1]   consecutive: a split's weights are
//!   ...                                                      one run of memory
//! ```
//!
//! The chunk order inside a tile is the 128-byte swizzle of a K-major wgmma operand (and the
//! stage layout of gemm.cu's `tile_off`). Rows are padded with zeros to a multiple of
//! [`ROW_MULTIPLE`] (the widest block's columns) and k to a multiple of 64: a padded weight meets
//! a zero activation (the kernels zero-fill the activations past K) or lands in a column no
//! epilogue writes, so the sums are those of the unpadded matrix, bit for bit.

use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaStream};

use rayon::prelude::*;

use super::gpu_err;
use super::kernels::{GemmTile, GEMM_BK};
use crate::{LadeError, Result};

/// How a matmul's weights lie in device memory: what its kernel reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightLayout {
    /// (N, K) row-major: gemm.cu's mma.sync kernels.
    RowMajor,
    /// The tiles described above: gemm_wgmma.cu's kernels.
    Tiled,
}

impl WeightLayout {
    /// The layout `tile`'s kernel reads.
    pub fn of(tile: &GemmTile) -> Self {
        if tile.wgmma {
            WeightLayout::Tiled
        } else {
            WeightLayout::RowMajor
        }
    }
}

/// A projection's (n, k) f16 weights on the device, in the layout its kernels read.
pub struct GemmWeights {
    pub data: CudaSlice<u16>,
    pub layout: WeightLayout,
    pub n: usize,
    pub k: usize,
}

impl GemmWeights {
    /// Uploads `w`, an (n, k) row-major matrix of f16 bits, in `layout`.
    pub fn upload(
        s: &Arc<CudaStream>,
        w: &[u16],
        n: usize,
        k: usize,
        layout: WeightLayout,
    ) -> Result<Self> {
        if w.len() != n * k {
            return Err(LadeError::Gpu(format!(
                "a {n} x {k} projection with {} weights",
                w.len()
            )));
        }
        let data = match layout {
            WeightLayout::RowMajor => s.clone_htod(w),
            WeightLayout::Tiled => s.clone_htod(&tile_weights(w, n, k)),
        }
        .map_err(gpu_err)?;
        Ok(GemmWeights { data, layout, n, k })
    }

    /// A second copy on the device (the dev harness times launches over several).
    pub fn duplicate(&self, s: &Arc<CudaStream>) -> Result<Self> {
        let mut data = s.alloc_zeros::<u16>(self.data.len()).map_err(gpu_err)?;
        s.memcpy_dtod(&self.data, &mut data).map_err(gpu_err)?;
        Ok(GemmWeights { data, ..*self })
    }
}

/// Weight rows of a tile.
const TILE_ROWS: usize = 64;
/// The tiled matrix's rows are a multiple of this: the widest block a kernel reading the layout
/// may have (`Kernels::gemm_on` refuses a wider one).
pub const ROW_MULTIPLE: usize = 128;
const TILE: usize = TILE_ROWS * GEMM_BK;

/// Halves of an (n, k) matrix in the tiled layout.
fn tiled_len(n: usize, k: usize) -> usize {
    n.div_ceil(ROW_MULTIPLE) * ROW_MULTIPLE * k.div_ceil(GEMM_BK) * GEMM_BK
}

/// `w`, an (n, k) row-major matrix of f16 bits (w.len() == n k), in the tiled layout.
fn tile_weights(w: &[u16], n: usize, k: usize) -> Vec<u16> {
    let mut out = vec![0u16; tiled_len(n, k)];
    // One column tile (64 rows, every k-tile) is one contiguous run of the output.
    let run = k.div_ceil(GEMM_BK) * TILE;
    out.par_chunks_mut(run).enumerate().for_each(|(nb, dst)| {
        for r in 0..TILE_ROWS {
            let row = nb * TILE_ROWS + r;
            if row >= n {
                break;
            }
            let src = &w[row * k..(row + 1) * k];
            for (ci, chunk) in src.chunks(8).enumerate() {
                let (kt, c) = (ci / 8, ci % 8);
                let at = kt * TILE + r * GEMM_BK + ((c ^ (r & 7)) << 3);
                dst[at..at + chunk.len()].copy_from_slice(chunk);
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Element (row, col) of the tiled matrix, read by the layout's description: the tile,
    /// then the row in it, then the swizzled chunk.
    fn tiled_at(t: &[u16], k: usize, row: usize, col: usize) -> u16 {
        let kt_count = k.div_ceil(GEMM_BK);
        let (nb, r) = (row / TILE_ROWS, row % TILE_ROWS);
        let (kt, kk) = (col / GEMM_BK, col % GEMM_BK);
        let (c, e) = (kk / 8, kk % 8);
        let swizzled = c ^ (r % 8);
        t[(nb * kt_count + kt) * TILE + r * GEMM_BK + swizzled * 8 + e]
    }

    #[test]
    fn every_weight_lands_where_the_stage_reads_it_and_the_padding_is_zero() {
        for &(n, k) in &[
            (1, 8),
            (64, 64),
            (130, 72),
            (960, 576),
            (200, 136),
            (128, 4864),
        ] {
            // Distinct non-zero values, so that a misplaced or dropped weight shows.
            let w: Vec<u16> = (0..n * k).map(|i| (i % 65521 + 1) as u16).collect();
            let t = tile_weights(&w, n, k);
            let (np, kp) = (
                n.div_ceil(ROW_MULTIPLE) * ROW_MULTIPLE,
                k.div_ceil(GEMM_BK) * GEMM_BK,
            );
            assert_eq!(t.len(), np * kp, "{n} x {k}");
            let mut seen = 0usize;
            for row in 0..np {
                for col in 0..kp {
                    let v = tiled_at(&t, k, row, col);
                    if row < n && col < k {
                        assert_eq!(v, w[row * k + col], "{n} x {k}: ({row}, {col})");
                        seen += 1;
                    } else {
                        assert_eq!(v, 0, "{n} x {k}: padding ({row}, {col})");
                    }
                }
            }
            assert_eq!(seen, n * k);
        }
    }
}
