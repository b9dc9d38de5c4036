//! Loading lade's PTX and launching its kernels with the argument lists of `kernels.cu`.

use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::{
    result, sys, CudaContext, CudaFunction, CudaSlice, CudaStream, CudaView, LaunchConfig,
    PushKernelArg,
};
use candle_core::cuda_backend::cudarc::nvrtc::Ptx;

use super::gpu_err;
use crate::Result;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/kernels.ptx"));

/// Keys per attention split (`CHUNK` in kernels.cu).
pub const CHUNK: usize = 256;
/// Largest matmul inner dimension: 4 staged rows of it must fit in shared memory.
pub const MAX_K: usize = 12288;
/// Shared memory the matmul aims to use for staged input rows, in f32 elements (96 KiB; the
/// limit is raised in `Kernels::load`). More staged rows = fewer passes over the weights.
const SMEM_TARGET_FLOATS: usize = 96 * 1024 / 4;

/// Rows of the input one matmul block stages for inner dimension `k` (a multiple of 4, at most
/// 16: more rows go to more blocks, which run in parallel).
pub fn staged_rows(k: usize) -> usize {
    ((SMEM_TARGET_FLOATS / k) / 4 * 4).clamp(4, 16)
}

/// What a matmul does to its input rows before multiplying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prologue {
    None = 0,
    /// RMS-normalise each row and scale it by a weight vector.
    RmsNorm = 1,
    /// `silu(row[..k]) * row[k..2k]` of rows twice as wide.
    SiluMul = 2,
}

pub struct Kernels {
    embed: CudaFunction,
    matmul: CudaFunction,
    /// The tensor-core matmul (one n8 column tile per block).
    mma_matmul: CudaFunction,
    /// The same with the RoPE + KV-cache epilogue of the qkv projection.
    mma_matmul_rope: CudaFunction,
    /// Dynamic shared memory one block may use (the device's opt-in limit).
    smem_optin: usize,
    /// Use the tensor-core matmul where the shape allows (`LADE_CUDA_MATMUL=fp32` turns it
    /// off, for comparison).
    tensor_cores: bool,
    rope_kv: CudaFunction,
    attn_partial: CudaFunction,
    attn_combine: CudaFunction,
    argmax_rows: CudaFunction,
    keep_rows: CudaFunction,
}

fn cfg(grid: (u32, u32, u32), block: u32, smem: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: grid,
        block_dim: (block, 1, 1),
        shared_mem_bytes: smem,
    }
}

/// One matmul launch: `out[m, n] (+)= sum_k in[m, k] * w[n, k]`.
pub struct MatmulArgs<'a> {
    pub x: &'a CudaSlice<f32>,
    pub ldx: usize,
    /// Input row m is x row `io[rowsel_off + m]` (the logit rows), else row m.
    pub rowsel_off: Option<usize>,
    pub w: &'a CudaSlice<u16>,
    pub g: &'a CudaSlice<f32>,
    pub eps: f32,
    pub out: &'a CudaSlice<f32>,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub prologue: Prologue,
    pub accumulate: bool,
}

/// u32 words per staged row of the tensor-core matmul: k/2 padded to 16 mod 32, so that the
/// rows g and g + 1 of a fragment load fall in different halves of the shared-memory banks.
fn mma_lda(k: usize) -> usize {
    let words = k / 2;
    words + (16 + 32 - words % 32) % 32
}

/// The qkv projection's RoPE + cache-write epilogue (see `rope_kv`).
pub struct RopeArgs<'a> {
    pub qb: usize,
    pub cos: &'a CudaSlice<f32>,
    pub sin: &'a CudaSlice<f32>,
    pub kc: &'a CudaView<'a, f32>,
    pub vc: &'a CudaView<'a, f32>,
    /// (heads, kv heads, head dim)
    pub heads: (usize, usize, usize),
    pub cap: usize,
}

/// Rows per tensor-core block for `m` rows (schedule only: a row's result is the same for every
/// choice). Small blocks (16 or 32 rows) keep many blocks in flight and the per-block staging
/// short; larger ones cut the weight re-reads of long prefills.
fn mma_block_rows(bm_max: usize, m: usize) -> usize {
    let want = match m {
        0..=64 => 16,
        65..=256 => 32,
        _ => 64,
    };
    bm_max.min(want).min(m.div_ceil(16).max(1) * 16)
}

impl Kernels {
    pub fn load(ctx: &Arc<CudaContext>) -> Result<Self> {
        let module = ctx.load_module(Ptx::from_src(PTX)).map_err(gpu_err)?;
        let f = |name: &str| module.load_function(name).map_err(gpu_err);
        let smem_optin = ctx
            .attribute(
                sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
            )
            .map_err(gpu_err)?
            .max(0) as usize;
        let tensor_cores = std::env::var("LADE_CUDA_MATMUL").map_or(true, |v| v != "fp32");
        let k = Kernels {
            embed: f("embed")?,
            matmul: f("matmul")?,
            mma_matmul: f("mma_matmul_1")?,
            mma_matmul_rope: f("mma_matmul_rope")?,
            smem_optin,
            tensor_cores,
            rope_kv: f("rope_kv")?,
            attn_partial: f("attn_partial")?,
            attn_combine: f("attn_combine")?,
            argmax_rows: f("argmax_rows")?,
            keep_rows: f("keep_rows")?,
        };
        // Large inner dimensions stage 4 rows above the default 48 KiB of shared memory.
        let bytes = (4 * MAX_K * 4) as i32;
        // SAFETY: `matmul` is a live function handle of `module`, which `k.matmul` keeps alive;
        // the attribute only raises the dynamic shared memory a launch may request.
        unsafe {
            result::function::set_function_attribute(
                k.matmul.cu_function(),
                sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                bytes,
            )
        }
        .map_err(gpu_err)?;
        // The tensor-core matmul stages whole rows (hi and lo halves) in shared memory.
        let static_smem = 4 * 64; // inv_rms
        let dynamic = smem_optin.saturating_sub(static_smem) as i32;
        for func in [&k.mma_matmul, &k.mma_matmul_rope] {
            // SAFETY: as above, a live function handle of `module`, kept alive by `k`.
            unsafe {
                result::function::set_function_attribute(
                    func.cu_function(),
                    sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    dynamic,
                )
            }
            .map_err(gpu_err)?;
        }
        Ok(k)
    }

    /// Which matmul kernel a shape runs on (fixed per inner dimension `k`, never per row
    /// count, so that a row's arithmetic does not depend on the batch).
    pub fn matmul_kind(&self, k: usize) -> &'static str {
        if self.mma_rows_max(k) >= 16 {
            "mma-f16x2"
        } else {
            "fp32-fma"
        }
    }

    /// Rows one tensor-core block can stage for inner dimension `k` (0: the shape does not fit
    /// or tensor cores are off).
    fn mma_rows_max(&self, k: usize) -> usize {
        if !self.tensor_cores || k % 32 != 0 || k == 0 {
            return 0;
        }
        let dynamic = self.smem_optin.saturating_sub(4 * 64);
        (dynamic / (8 * mma_lda(k)) / 16 * 16).min(64)
    }

    pub fn embed(
        &self,
        s: &Arc<CudaStream>,
        io: &CudaSlice<i32>,
        qb: usize,
        emb: &CudaSlice<u16>,
        x: &CudaSlice<f32>,
        hidden: usize,
    ) -> Result<()> {
        let (qb_i, h) = (qb as i32, hidden as i32);
        let mut l = s.launch_builder(&self.embed);
        l.arg(io).arg(&qb_i).arg(emb).arg(x).arg(&h);
        // SAFETY: the arguments match `embed` in kernels.cu in number and type; `x` holds
        // qb * hidden floats and every token id in `io` is below the vocabulary (checked by
        // `Batch::validate`; padding rows use id 0).
        unsafe { l.launch(cfg((qb as u32, 1, 1), 256, 0)) }.map_err(gpu_err)?;
        Ok(())
    }

    pub fn matmul(
        &self,
        s: &Arc<CudaStream>,
        io: &CudaSlice<i32>,
        a: &MatmulArgs<'_>,
    ) -> Result<()> {
        let bm_max = self.mma_rows_max(a.k);
        if bm_max >= 16 {
            return self.mma_matmul(s, io, a, bm_max, None);
        }
        let r = staged_rows(a.k);
        let smem = (r * a.k * 4) as u32;
        let rowsel: CudaView<'_, i32> = match a.rowsel_off {
            Some(off) => io.slice(off..),
            None => io.slice(0..0),
        };
        let has_rowsel = a.rowsel_off.is_some() as i32;
        let (ldx, m, n, k) = (a.ldx as i32, a.m as i32, a.n as i32, a.k as i32);
        let (pro, acc, r_i) = (a.prologue as i32, a.accumulate as i32, r as i32);
        // Columns per warp: one when few rows (more blocks in flight), up to four when many
        // (each block stages its input rows once for more columns). Results do not depend on
        // it, nor on how rows are split over blocks.
        let cpw: usize = match a.m {
            0..=16 => 1,
            17..=48 => 2,
            _ => 4,
        };
        let cpw_i = cpw as i32;
        let mut l = s.launch_builder(&self.matmul);
        l.arg(a.x)
            .arg(&ldx)
            .arg(&rowsel)
            .arg(&has_rowsel)
            .arg(a.w)
            .arg(a.g)
            .arg(&a.eps)
            .arg(a.out)
            .arg(&m)
            .arg(&n)
            .arg(&k)
            .arg(&pro)
            .arg(&acc)
            .arg(&r_i)
            .arg(&cpw_i);
        let grid = (
            a.n.div_ceil(8 * cpw) as u32,
            a.m.div_ceil(r).max(1) as u32,
            1,
        );
        // SAFETY: the arguments match `matmul` in kernels.cu; `x` has m rows of `ldx` floats
        // (2k wide for SiluMul), `w` is (n, k), `out` is (m, n), `g` has k entries when used,
        // row indices in `io` are below the rows of `x`; shared memory is r * k floats, within
        // the limit raised in `load`.
        unsafe { l.launch(cfg(grid, 256, smem)) }.map_err(gpu_err)?;
        Ok(())
    }

    /// The qkv projection followed by RoPE and the cache write, in one launch when the
    /// tensor-core matmul takes the shape; otherwise two (`matmul`, then `rope_kv`).
    pub fn matmul_rope(
        &self,
        s: &Arc<CudaStream>,
        io: &CudaSlice<i32>,
        a: &MatmulArgs<'_>,
        r: &RopeArgs<'_>,
    ) -> Result<()> {
        let bm_max = self.mma_rows_max(a.k);
        if bm_max < 16 || a.rowsel_off.is_some() || a.accumulate {
            self.matmul(s, io, a)?;
            return self.rope_kv(s, a.out, io, r.qb, r.cos, r.sin, r.kc, r.vc, r.heads, r.cap);
        }
        self.mma_matmul(s, io, a, bm_max, Some(r))
    }

    /// The tensor-core matmul (see `mma_matmul_impl` in kernels.cu), with the RoPE + cache
    /// epilogue when `rope` is given.
    fn mma_matmul(
        &self,
        s: &Arc<CudaStream>,
        io: &CudaSlice<i32>,
        a: &MatmulArgs<'_>,
        bm_max: usize,
        rope: Option<&RopeArgs<'_>>,
    ) -> Result<()> {
        let lda = mma_lda(a.k);
        let bm = mma_block_rows(bm_max, a.m);
        let smem = (2 * bm * lda * 4) as u32;
        let rowsel: CudaView<'_, i32> = match a.rowsel_off {
            Some(off) => io.slice(off..),
            None => io.slice(0..0),
        };
        let has_rowsel = a.rowsel_off.is_some() as i32;
        let (ldx, m, n, k) = (a.ldx as i32, a.m as i32, a.n as i32, a.k as i32);
        let (pro, acc) = (a.prologue as i32, a.accumulate as i32);
        let (bm_i, lda_i) = (bm as i32, lda as i32);
        let (qb_i, cap_i, nh, nkv, hd) = rope.map_or((0, 0, 0, 0, 0), |r| {
            (
                r.qb as i32,
                r.cap as i32,
                r.heads.0 as i32,
                r.heads.1 as i32,
                r.heads.2 as i32,
            )
        });
        let func = if rope.is_some() {
            &self.mma_matmul_rope
        } else {
            &self.mma_matmul
        };
        let mut l = s.launch_builder(func);
        l.arg(a.x)
            .arg(&ldx)
            .arg(&rowsel)
            .arg(&has_rowsel)
            .arg(a.w)
            .arg(a.g)
            .arg(&a.eps)
            .arg(a.out)
            .arg(&m)
            .arg(&n)
            .arg(&k)
            .arg(&pro)
            .arg(&acc)
            .arg(&bm_i)
            .arg(&lda_i);
        if let Some(r) = rope {
            l.arg(io)
                .arg(&qb_i)
                .arg(r.cos)
                .arg(r.sin)
                .arg(r.kc)
                .arg(r.vc)
                .arg(&nh)
                .arg(&nkv)
                .arg(&hd)
                .arg(&cap_i);
        }
        // One n8 column tile per block; rows per block are schedule only.
        let grid = (a.n.div_ceil(8) as u32, a.m.div_ceil(bm).max(1) as u32, 1);
        // SAFETY: the arguments match `mma_matmul_1` (or `mma_matmul_rope`, which appends the
        // epilogue's) in kernels.cu; `x` has m rows of `ldx` floats (2k wide for SiluMul), `w`
        // is (n, k) with k % 32 == 0 (16-byte aligned rows), `out` is (m, n), `g` has k entries
        // when used, row indices in `io` are below the rows of `x`; shared memory is
        // 2 * bm * lda words, within the limit set in `load` (`mma_rows_max`), and bm <= 64
        // rows. With the epilogue: `out` rows are [q | k | v] of (nh + 2 nkv) * hd = n floats,
        // positions in `io` are below the rope tables (checked by `Batch::validate`), and
        // L + qb <= cap (the session reserves a padded step of slack after its capacity).
        unsafe { l.launch(cfg(grid, 128, smem)) }.map_err(gpu_err)?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn rope_kv(
        &self,
        s: &Arc<CudaStream>,
        qkv: &CudaSlice<f32>,
        io: &CudaSlice<i32>,
        qb: usize,
        cos: &CudaSlice<f32>,
        sin: &CudaSlice<f32>,
        kc: &CudaView<'_, f32>,
        vc: &CudaView<'_, f32>,
        heads: (usize, usize, usize),
        cap: usize,
    ) -> Result<()> {
        let (nh, nkv, hd) = (heads.0 as i32, heads.1 as i32, heads.2 as i32);
        let (qb_i, cap_i) = (qb as i32, cap as i32);
        let mut l = s.launch_builder(&self.rope_kv);
        l.arg(qkv)
            .arg(io)
            .arg(&qb_i)
            .arg(cos)
            .arg(sin)
            .arg(kc)
            .arg(vc)
            .arg(&nh)
            .arg(&nkv)
            .arg(&hd)
            .arg(&cap_i);
        // SAFETY: arguments match `rope_kv`; positions in `io` are below the table length
        // (checked by `Batch::validate`), and L + qb <= cap (the session reserves qb rows of
        // slack after its capacity).
        unsafe { l.launch(cfg((qb as u32, 1, 1), 128, 0)) }.map_err(gpu_err)?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &self,
        s: &Arc<CudaStream>,
        qkv: &CudaSlice<f32>,
        io: &CudaSlice<i32>,
        qb: usize,
        kc: &CudaView<'_, f32>,
        vc: &CudaView<'_, f32>,
        part: &CudaSlice<f32>,
        out: &CudaSlice<f32>,
        heads: (usize, usize, usize),
        cap: usize,
        splits: usize,
        dense_mask: Option<&CudaSlice<u8>>,
        mark: &dyn Fn(&'static str) -> Result<()>,
    ) -> Result<()> {
        let (nh, nkv, hd) = (heads.0 as i32, heads.1 as i32, heads.2 as i32);
        let (qb_i, cap_i, s_i) = (qb as i32, cap as i32, splits as i32);
        let scale = 1.0f32 / (heads.2 as f32).sqrt();
        let null_mask: u64 = 0;
        let dense = dense_mask.is_some() as i32;
        let mut l = s.launch_builder(&self.attn_partial);
        l.arg(qkv)
            .arg(io)
            .arg(&qb_i)
            .arg(kc)
            .arg(vc)
            .arg(part)
            .arg(&nh)
            .arg(&nkv)
            .arg(&hd)
            .arg(&cap_i)
            .arg(&s_i)
            .arg(&scale);
        match dense_mask {
            Some(m) => l.arg(m),
            None => l.arg(&null_mask),
        };
        // SAFETY: arguments match `attn_partial` (the mask pointer is a device pointer or 0);
        // `part` holds qb * nh * splits * (hd + 2) floats and splits * CHUNK covers every row's
        // visible keys (L + qb <= splits * CHUNK); a dense mask holds qb * (L + qb) bytes.
        unsafe {
            l.launch(cfg(
                (qb as u32, heads.0 as u32, splits as u32),
                CHUNK as u32,
                0,
            ))
        }
        .map_err(gpu_err)?;
        mark("attention: partial")?;
        let mut l = s.launch_builder(&self.attn_combine);
        l.arg(part)
            .arg(io)
            .arg(&qb_i)
            .arg(out)
            .arg(&nh)
            .arg(&hd)
            .arg(&s_i)
            .arg(&dense);
        // SAFETY: arguments match `attn_combine`; `out` holds qb * nh * hd floats.
        unsafe { l.launch(cfg((qb as u32, heads.0 as u32, 1), heads.2 as u32, 0)) }
            .map_err(gpu_err)?;
        Ok(())
    }

    pub fn argmax_rows(
        &self,
        s: &Arc<CudaStream>,
        logits: &CudaSlice<f32>,
        rows: usize,
        vocab: usize,
        out: &CudaSlice<i32>,
    ) -> Result<()> {
        let v = vocab as i32;
        let mut l = s.launch_builder(&self.argmax_rows);
        l.arg(logits).arg(&v).arg(out);
        // SAFETY: arguments match `argmax_rows`; `logits` is (rows, vocab), `out` has rows ints.
        unsafe { l.launch(cfg((rows as u32, 1, 1), 1024, 0)) }.map_err(gpu_err)?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn keep_rows(
        &self,
        s: &Arc<CudaStream>,
        kc: &CudaSlice<f32>,
        vc: &CudaSlice<f32>,
        layers: usize,
        layer_stride: usize,
        nkv: usize,
        cap: usize,
        hd: usize,
        start: usize,
        rows: &CudaSlice<i32>,
        count: usize,
    ) -> Result<()> {
        let (nkv_i, cap_i, hd_i, start_i, count_i) = (
            nkv as i32,
            cap as i32,
            hd as i32,
            start as i32,
            count as i32,
        );
        let stride = layer_stride as u64;
        let mut l = s.launch_builder(&self.keep_rows);
        l.arg(kc)
            .arg(vc)
            .arg(&stride)
            .arg(&nkv_i)
            .arg(&cap_i)
            .arg(&hd_i)
            .arg(&start_i)
            .arg(rows)
            .arg(&count_i);
        // SAFETY: arguments match `keep_rows`; start + rows[t] < cap for every t (checked by
        // the session against its length).
        unsafe { l.launch(cfg(((layers * 2 * nkv) as u32, 1, 1), hd as u32, 0)) }
            .map_err(gpu_err)?;
        Ok(())
    }
}
