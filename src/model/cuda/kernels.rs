//! Loading lade's PTX and launching its kernels with the argument lists of `kernels.cu`.

use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::{
    result, sys, CudaContext, CudaFunction, CudaSlice, CudaStream, CudaView, DevicePtr,
    LaunchConfig,
};
use candle_core::cuda_backend::cudarc::nvrtc::Ptx;

use super::gpu_err;
use crate::Result;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/kernels.ptx"));

/// Keys per attention split (`CHUNK` in kernels.cu).
pub const CHUNK: usize = 256;
/// Outputs at least this wide (the LM head) may take two column tiles per warp.
const WIDE_N: usize = 16384;
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
    /// `silu(row[2i]) * row[2i + 1]` of rows twice as wide (gate and up interleaved).
    SiluMul = 2,
}

pub struct Kernels {
    embed: CudaFunction,
    matmul: CudaFunction,
    /// The tensor-core matmul (one n8 column tile per block) and the same with the RoPE +
    /// KV-cache epilogue of the qkv projection: [4, 8, 16 warps] per block.
    mma_matmul: [CudaFunction; 3],
    mma_matmul_rope: [CudaFunction; 3],
    /// 8 warps, two n8 column tiles per warp (same arithmetic as 8 warps, one tile): the LM
    /// head's thousands of column tiles in half the blocks.
    mma_matmul_2w8: CudaFunction,
    /// One 16-row tile per block and 2, 4 or 8 n8 column tiles per warp, [8, 16 warps][nt 2, 4,
    /// 8] (same arithmetic as one tile per warp at that warp count), without and with the RoPE
    /// epilogue: for steps whose rows fit one tile, where staging the rows in every block of
    /// 8 columns would re-read them hundreds of times.
    mma_matmul_wide: [[CudaFunction; 3]; 2],
    mma_matmul_rope_wide: [[CudaFunction; 3]; 2],
    /// Column tiles per warp by step rows for steps of one 16-row tile per block
    /// (`LADE_CUDA_NT`, e.g. `1:1,16:4,64:8`: up to 1 row 1, up to 16 rows 4, up to 64 rows
    /// 8). Schedule only.
    nt_by_rows: Vec<(usize, usize)>,
    /// Warps per tensor-core block: 4, 8 or 16 (`LADE_CUDA_MMA_WARPS`), or 0 = mixed (the
    /// default: 16 for inner dimensions of 1024 and more, else 8). Fixed per inner dimension
    /// for the process, since it sets the reduction order.
    mma_warps: usize,
    /// Column tiles per warp for outputs of at least [`WIDE_N`] columns (`LADE_CUDA_WIDE_NT`,
    /// 1 or 2 (default); 2 only with 8 warps). Schedule only.
    wide_nt: usize,
    /// Dynamic shared memory one block may use (the device's opt-in limit).
    smem_optin: usize,
    /// Use the tensor-core matmul where the shape allows (`LADE_CUDA_MATMUL=fp32` turns it
    /// off, for comparison).
    tensor_cores: bool,
    rope_kv: CudaFunction,
    attn_partial: CudaFunction,
    /// The same attention, loading keys of earlier steps before the qkv kernel has finished
    /// (more registers: for steps of at most `attn_preload_rows` rows,
    /// `LADE_CUDA_ATTN_PRELOAD_ROWS`, 32 by default; both compute the same values).
    attn_partial_pre: CudaFunction,
    attn_preload_rows: usize,
    /// The attention with 2, 3 or 4 heads of one kv head per block (they share every key and
    /// value load; the same values as one head per block), for steps of more rows than
    /// `attn_group_rows`. `LADE_CUDA_ATTN_GROUP=0` keeps one head per block.
    attn_partial_group: [CudaFunction; 3],
    attn_group: bool,
    /// Both at once (early key loads, heads of a kv head per block).
    attn_partial_pre_group: [CudaFunction; 3],
    /// Steps of more rows than this put the heads of a kv head in one block
    /// (`LADE_CUDA_ATTN_GROUP_ROWS`, 8 by default).
    attn_group_rows: usize,
    argmax_rows: CudaFunction,
    keep_rows: CudaFunction,
    /// Launch each kernel of a step with programmatic dependent launch (sm_90+), so that it
    /// starts, and loads its weights, while the previous kernel finishes
    /// (`wait_previous_kernel` in kernels.cu). `LADE_CUDA_PDL=0` turns it off, for comparison.
    pdl: bool,
    /// Stage a tensor-core block's input rows over all its threads, where no row reduction
    /// needs one warp per row, for steps of at most this many rows (`LADE_CUDA_FLAT_STAGE`,
    /// 64 by default, 0 = never; same values). Measured on the H100 (docs/benchmarks.md): a
    /// plain step 0.945 -> 0.92 ms, 16 rows 1.226 -> 1.21 ms.
    flat_stage_rows: usize,
    /// Let the gate/up matmul apply silu(gate) * up in its epilogue (`LADE_CUDA_FUSE_SILU=0`
    /// leaves it to the down projection's prologue; same values).
    fuse_silu: bool,
    /// Rows per tensor-core block for steps of up to 64 rows (`LADE_CUDA_BLOCK_ROWS`, 16 by
    /// default; schedule only).
    small_block_rows: usize,
}

/// A kernel's arguments as the driver reads them: one 8-byte slot per argument, the value in
/// its first bytes (the driver reads as many bytes as the parameter's type has).
#[derive(Default)]
struct Args(Vec<[u8; 8]>);

impl Args {
    fn push(&mut self, bytes: &[u8]) -> &mut Self {
        let mut slot = [0u8; 8];
        slot[..bytes.len()].copy_from_slice(bytes);
        self.0.push(slot);
        self
    }
    fn ptr<T>(&mut self, s: &CudaStream, buf: &impl DevicePtr<T>) -> &mut Self {
        let (ptr, _record) = buf.device_ptr(s);
        self.push(&ptr.to_ne_bytes())
    }
    fn null(&mut self) -> &mut Self {
        self.push(&0u64.to_ne_bytes())
    }
    fn i32(&mut self, v: usize) -> &mut Self {
        self.push(&(v as i32).to_ne_bytes())
    }
    fn f32(&mut self, v: f32) -> &mut Self {
        self.push(&v.to_ne_bytes())
    }
    fn u64(&mut self, v: usize) -> &mut Self {
        self.push(&(v as u64).to_ne_bytes())
    }
    /// The RoPE + cache-write parameters (`io, QB, cos, sin, kc, vc, nh, nkv, hd, cap`), as
    /// `rope_kv` and the qkv epilogue take them.
    fn rope(&mut self, s: &CudaStream, io: &CudaSlice<i32>, r: &RopeArgs<'_>) -> &mut Self {
        self.ptr(s, io)
            .i32(r.qb)
            .ptr(s, r.cos)
            .ptr(s, r.sin)
            .ptr(s, r.kc)
            .ptr(s, r.vc)
            .i32(r.heads.0)
            .i32(r.heads.1)
            .i32(r.heads.2)
            .i32(r.cap)
    }
}

/// How a launch relates to the kernel before it on the stream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    /// Starts after everything before it has finished (the first kernel of a step, and
    /// kernels launched between steps).
    Full,
    /// May start while the previous kernel finishes (when the kernels allow it, see `pdl`).
    Overlap,
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
    /// The weight rows are gate and up interleaved (unit i: rows 2i, 2i + 1). Where
    /// [`Kernels::fuses_silu`] holds, `out` gets `silu(gate) * up`, n / 2 columns; elsewhere it
    /// gets the n interleaved columns, for a [`Prologue::SiluMul`] consumer.
    pub silu_pairs: bool,
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

/// Column tiles per warp by step rows, for steps whose rows fit one 16-row tile per block
/// (`LADE_CUDA_NT` overrides it): (up to this many rows, n8 tiles per warp). Two tiles at
/// every row count up to 64 were measured best on the H100 (docs/benchmarks.md): a plain step
/// 1.04 -> 0.92 ms, 42 rows 2.39 -> 1.82 ms; 4 and 8 tiles gain at 24-32 rows only.
const DEFAULT_NT_BY_ROWS: [(usize, usize); 1] = [(64, 2)];

/// `LADE_CUDA_NT`: `rows:nt` pairs, comma separated, nt in 1, 2, 4, 8 (None if malformed).
fn parse_nt_by_rows(spec: &str) -> Option<Vec<(usize, usize)>> {
    spec.split(',')
        .map(|pair| {
            let (rows, nt) = pair.trim().split_once(':')?;
            let nt: usize = nt.trim().parse().ok()?;
            [1, 2, 4, 8]
                .contains(&nt)
                .then_some((rows.trim().parse().ok()?, nt))
        })
        .collect()
}

/// The first rule whose row bound covers `m` (1 when none does).
fn nt_for_rows(rules: &[(usize, usize)], m: usize) -> usize {
    rules
        .iter()
        .find(|&&(rows, _)| m <= rows)
        .map_or(1, |&(_, nt)| nt)
}

/// Rows per tensor-core block for `m` rows (schedule only: a row's result is the same for every
/// choice). Small blocks (16 or 32 rows) keep many blocks in flight and the per-block staging
/// short; larger ones cut the weight re-reads of long prefills.
fn mma_block_rows(bm_max: usize, small: usize, m: usize) -> usize {
    let want = match m {
        0..=64 => small,
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
            mma_matmul: [
                f("mma_matmul_1")?,
                f("mma_matmul_1w8")?,
                f("mma_matmul_1w16")?,
            ],
            mma_matmul_rope: [
                f("mma_matmul_rope")?,
                f("mma_matmul_rope_w8")?,
                f("mma_matmul_rope_w16")?,
            ],
            mma_matmul_2w8: f("mma_matmul_2w8")?,
            mma_matmul_wide: [
                [
                    f("mma_matmul_2w8_t1")?,
                    f("mma_matmul_4w8_t1")?,
                    f("mma_matmul_8w8_t1")?,
                ],
                [
                    f("mma_matmul_2w16_t1")?,
                    f("mma_matmul_4w16_t1")?,
                    f("mma_matmul_8w16_t1")?,
                ],
            ],
            mma_matmul_rope_wide: [
                [
                    f("mma_matmul_rope_2w8_t1")?,
                    f("mma_matmul_rope_4w8_t1")?,
                    f("mma_matmul_rope_8w8_t1")?,
                ],
                [
                    f("mma_matmul_rope_2w16_t1")?,
                    f("mma_matmul_rope_4w16_t1")?,
                    f("mma_matmul_rope_8w16_t1")?,
                ],
            ],
            nt_by_rows: std::env::var("LADE_CUDA_NT")
                .ok()
                .and_then(|v| parse_nt_by_rows(&v))
                .unwrap_or_else(|| DEFAULT_NT_BY_ROWS.to_vec()),
            mma_warps: match std::env::var("LADE_CUDA_MMA_WARPS").as_deref() {
                Ok("4") => 4,
                Ok("8") => 8,
                Ok("16") => 16,
                _ => 0,
            },
            wide_nt: match std::env::var("LADE_CUDA_WIDE_NT").as_deref() {
                Ok("1") => 1,
                _ => 2,
            },
            smem_optin,
            tensor_cores,
            rope_kv: f("rope_kv")?,
            attn_partial: f("attn_partial")?,
            attn_partial_pre: f("attn_partial_pre")?,
            attn_partial_group: [
                f("attn_partial_g2")?,
                f("attn_partial_g3")?,
                f("attn_partial_g4")?,
            ],
            attn_group: std::env::var("LADE_CUDA_ATTN_GROUP").map_or(true, |v| v != "0"),
            attn_partial_pre_group: [
                f("attn_partial_pre_g2")?,
                f("attn_partial_pre_g3")?,
                f("attn_partial_pre_g4")?,
            ],
            attn_group_rows: std::env::var("LADE_CUDA_ATTN_GROUP_ROWS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(8),
            attn_preload_rows: std::env::var("LADE_CUDA_ATTN_PRELOAD_ROWS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(32),
            argmax_rows: f("argmax_rows")?,
            keep_rows: f("keep_rows")?,
            pdl: ctx
                .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
                .map_err(gpu_err)?
                >= 9
                && std::env::var("LADE_CUDA_PDL").map_or(true, |v| v != "0"),
            fuse_silu: std::env::var("LADE_CUDA_FUSE_SILU").map_or(true, |v| v != "0"),
            flat_stage_rows: std::env::var("LADE_CUDA_FLAT_STAGE")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(64),
            small_block_rows: std::env::var("LADE_CUDA_BLOCK_ROWS")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .map_or(16, |r| r.div_ceil(16).clamp(1, 4) * 16),
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
        for func in k
            .mma_matmul
            .iter()
            .chain(&k.mma_matmul_rope)
            .chain([&k.mma_matmul_2w8])
            .chain(k.mma_matmul_wide.iter().flatten())
            .chain(k.mma_matmul_rope_wide.iter().flatten())
        {
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

    /// Whether kernels of a step overlap their predecessor (programmatic dependent launch).
    pub fn overlaps(&self) -> bool {
        self.pdl
    }

    /// Launches `func` on `s` with `args`.
    ///
    /// # Safety
    /// `args` must match the kernel's parameters in number, order and type, and the kernel
    /// must stay within the buffers it is given for this configuration (each caller states
    /// why). With `Order::Overlap` the kernel must call `wait_previous_kernel` before it reads
    /// anything an earlier kernel writes and before it writes anything.
    unsafe fn launch(
        &self,
        s: &CudaStream,
        func: &CudaFunction,
        cfg: LaunchConfig,
        args: &mut Args,
        order: Order,
    ) -> Result<()> {
        s.context().bind_to_thread().map_err(gpu_err)?;
        let mut params: Vec<*mut std::ffi::c_void> = args
            .0
            .iter_mut()
            .map(|slot| slot.as_mut_ptr().cast())
            .collect();
        // SAFETY: an all-zero attribute is CU_LAUNCH_ATTRIBUTE_IGNORE with a zero value.
        let mut attr: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
        attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
        attr.value.programmaticStreamSerializationAllowed = 1;
        let overlap = self.pdl && order == Order::Overlap;
        let config = sys::CUlaunchConfig {
            gridDimX: cfg.grid_dim.0,
            gridDimY: cfg.grid_dim.1,
            gridDimZ: cfg.grid_dim.2,
            blockDimX: cfg.block_dim.0,
            blockDimY: cfg.block_dim.1,
            blockDimZ: cfg.block_dim.2,
            sharedMemBytes: cfg.shared_mem_bytes,
            hStream: s.cu_stream(),
            attrs: if overlap {
                &mut attr
            } else {
                std::ptr::null_mut()
            },
            numAttrs: u32::from(overlap),
        };
        // SAFETY: `config`, `attr` and `params` (pointers into `args`) outlive the call, which
        // copies them; the caller guarantees the arguments match the kernel.
        unsafe {
            sys::cuLaunchKernelEx(
                &config,
                func.cu_function(),
                params.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        }
        .result()
        .map_err(gpu_err)
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

    /// Whether a matmul of inner dimension `k` with [`MatmulArgs::silu_pairs`] writes
    /// `silu(gate) * up` itself (the tensor-core kernel's epilogue) rather than the interleaved
    /// gate and up columns (the FP32-FMA kernel).
    pub fn fuses_silu(&self, k: usize) -> bool {
        self.fuse_silu && self.mma_rows_max(k) >= 16
    }

    /// Warps per tensor-core block for inner dimension `k`.
    fn warps(&self, k: usize) -> usize {
        match self.mma_warps {
            0 if k >= 1024 => 16,
            0 => 8,
            w => w,
        }
    }

    /// Rows one tensor-core block can stage for inner dimension `k` (0: the shape does not fit
    /// or tensor cores are off).
    fn mma_rows_max(&self, k: usize) -> usize {
        // (The warps reduce their partials in the staging buffer: it must hold 8 floats per warp
        // and column tile, per row.)
        if !self.tensor_cores || k % 32 != 0 || k == 0 || self.warps(k) * 16 > 2 * mma_lda(k) {
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
        let mut a = Args::default();
        a.ptr(s, io).i32(qb).ptr(s, emb).ptr(s, x).i32(hidden);
        // SAFETY: the arguments match `embed` in kernels.cu in number and type; `x` holds
        // qb * hidden floats and every token id in `io` is below the vocabulary (checked by
        // `Batch::validate`; padding rows use id 0). First kernel of a step: full order.
        unsafe {
            self.launch(
                s,
                &self.embed,
                cfg((qb as u32, 1, 1), 256, 0),
                &mut a,
                Order::Full,
            )
        }
    }

    /// `out (+)= prologue(x) wᵀ` on the tensor-core kernel when it takes the shape, else on
    /// the FP32-FMA kernel (the choice depends on `k` only).
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
        // Columns per warp: one when few rows (more blocks in flight), up to four when many
        // (each block stages its input rows once for more columns). Results do not depend on
        // it, nor on how rows are split over blocks.
        let cpw: usize = match a.m {
            0..=16 => 1,
            17..=48 => 2,
            _ => 4,
        };
        let mut args = self.matmul_args(s, io, a);
        args.i32(r).i32(cpw);
        let grid = (
            a.n.div_ceil(8 * cpw) as u32,
            a.m.div_ceil(r).max(1) as u32,
            1,
        );
        // SAFETY: the arguments match `matmul` in kernels.cu; `x` has m rows of `ldx` floats
        // (2k wide for SiluMul), `w` is (n, k), `out` is (m, n) (this kernel
        // never fuses the silu: `silu_pairs` leaves the n columns), `g` has k entries when used,
        // row indices in `io` are below the rows of `x`; shared memory is r * k floats, within
        // the limit raised in `load`. The kernel waits for its predecessor first thing.
        unsafe {
            self.launch(
                s,
                &self.matmul,
                cfg(grid, 256, smem),
                &mut args,
                Order::Overlap,
            )
        }
    }

    /// The parameters both matmul kernels start with: x, ldx, rowsel, has_rowsel, w, g, eps,
    /// out, M, N, K, prologue, accumulate.
    fn matmul_args(&self, s: &CudaStream, io: &CudaSlice<i32>, a: &MatmulArgs<'_>) -> Args {
        let mut args = Args::default();
        args.ptr(s, a.x).i32(a.ldx);
        match a.rowsel_off {
            Some(off) => args.ptr(s, &io.slice(off..)).i32(1),
            None => args.null().i32(0),
        };
        args.ptr(s, a.w)
            .ptr(s, a.g)
            .f32(a.eps)
            .ptr(s, a.out)
            .i32(a.m)
            .i32(a.n)
            .i32(a.k)
            .i32(a.prologue as usize)
            .i32(usize::from(a.accumulate));
        args
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
            return self.rope_kv(s, a.out, io, r);
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
        let bm = mma_block_rows(bm_max, self.small_block_rows, a.m);
        let warps = self.warps(a.k);
        let mut nt = if rope.is_none() && a.n >= WIDE_N && warps == 8 {
            self.wide_nt
        } else {
            1
        };
        if bm == 16 && warps != 4 {
            nt = nt.max(nt_for_rows(&self.nt_by_rows, a.m));
        }
        // Staged rows (hi and lo), then the warp partials, in the same buffer.
        let words = |nt: usize| (2 * bm * lda).max(warps * bm * 8 * nt);
        if 4 * words(nt) > self.smem_optin.saturating_sub(4 * 64) {
            nt = 1;
        }
        let smem = (4 * words(nt)) as u32;
        let mut args = self.matmul_args(s, io, a);
        args.i32(bm)
            .i32(lda)
            .i32(usize::from(a.m <= self.flat_stage_rows))
            .i32(usize::from(a.silu_pairs && self.fuse_silu));
        if let Some(r) = rope {
            args.rope(s, io, r);
        }
        let variant = match warps {
            4 => 0,
            8 => 1,
            _ => 2,
        };
        let wide_index = |nt: usize| match nt {
            2 => 0,
            4 => 1,
            _ => 2,
        };
        let func = match (rope.is_some(), nt, bm) {
            (true, 1, _) => &self.mma_matmul_rope[variant],
            (false, 1, _) => &self.mma_matmul[variant],
            (false, 2, b) if b > 16 => &self.mma_matmul_2w8,
            (true, nt, _) => &self.mma_matmul_rope_wide[variant - 1][wide_index(nt)],
            (false, nt, _) => &self.mma_matmul_wide[variant - 1][wide_index(nt)],
        };
        // `nt` n8 column tiles per block; rows per block and `nt` are schedule only.
        let grid = (
            a.n.div_ceil(8 * nt) as u32,
            a.m.div_ceil(bm).max(1) as u32,
            1,
        );
        // SAFETY: the arguments match `mma_matmul_1` (or `mma_matmul_rope`, which appends the
        // epilogue's) in kernels.cu; `x` has m rows of `ldx` floats (2k wide for SiluMul), `w`
        // is (n, k) with k % 32 == 0 (16-byte aligned rows), `out` is (m, n)
        // ((m, n / 2) with `silu_pairs`, n even), `g` has k entries
        // when used, row indices in `io` are below the rows of `x`; shared memory is
        // max(2 * bm * lda, warps * bm * 8 * nt) words (staged rows, then warp partials),
        // within the limit set in `load` (checked above), and bm <= 64 rows (16 for the wide
        // entries, whose `nt` is 2, 4 or 8). With the epilogue: `out` rows are [q | k | v] of (nh + 2 nkv) * hd = n floats,
        // positions in `io` are below the rope tables (checked by `Batch::validate`), and
        // L + qb <= cap (the session reserves a padded step of slack after its capacity).
        // Before its wait the kernel only loads weights.
        unsafe {
            self.launch(
                s,
                func,
                cfg(grid, 32 * warps as u32, smem),
                &mut args,
                Order::Overlap,
            )
        }
    }

    fn rope_kv(
        &self,
        s: &Arc<CudaStream>,
        qkv: &CudaSlice<f32>,
        io: &CudaSlice<i32>,
        r: &RopeArgs<'_>,
    ) -> Result<()> {
        let mut a = Args::default();
        a.ptr(s, qkv).rope(s, io, r);
        // SAFETY: arguments match `rope_kv`; positions in `io` are below the table length
        // (checked by `Batch::validate`), and L + qb <= cap (the session reserves qb rows of
        // slack after its capacity). Before its wait the kernel only reads `io`.
        unsafe {
            self.launch(
                s,
                &self.rope_kv,
                cfg((r.qb as u32, 1, 1), 128, 0),
                &mut a,
                Order::Overlap,
            )
        }
    }

    /// Attention of the step's rows over the cache and their in-step chains, split-K over
    /// chunks of [`CHUNK`] keys and merged in the same launch. `done` holds qb * heads zeros.
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
        done: &CudaSlice<i32>,
        out: &CudaSlice<f32>,
        heads: (usize, usize, usize),
        cap: usize,
        splits: usize,
        dense_mask: Option<&CudaSlice<u8>>,
    ) -> Result<()> {
        let scale = 1.0f32 / (heads.2 as f32).sqrt();
        let mut a = Args::default();
        a.ptr(s, qkv)
            .ptr(s, io)
            .i32(qb)
            .ptr(s, kc)
            .ptr(s, vc)
            .ptr(s, part)
            .ptr(s, done)
            .ptr(s, out)
            .i32(heads.0)
            .i32(heads.1)
            .i32(heads.2)
            .i32(cap)
            .i32(splits)
            .f32(scale);
        match dense_mask {
            Some(m) => a.ptr(s, m),
            None => a.null(),
        };
        // SAFETY: arguments match `attn_partial` (the mask pointer is a device pointer or 0);
        // `part` holds qb * nh * splits * (hd + 2) floats and splits * CHUNK covers every row's
        // visible keys (L + qb <= splits * CHUNK); `done` holds qb * nh counters, zero between
        // launches; `out` holds qb * nh * hd floats; a dense mask holds qb * (L + qb) bytes.
        // `hg` divides the heads of a kv head, so a block's heads share one kv head. Before
        // its wait the kernel reads only `io`, the mask and cache rows below L, which earlier
        // steps wrote.
        // Heads per block: one for small steps (more blocks in flight), else the largest of
        // 4, 3, 2 dividing the heads of a kv head; early key loads up to `attn_preload_rows`
        // (past that the grid needs the occupancy more).
        let per_kv = heads.0 / heads.1.max(1);
        let hg = if qb <= self.attn_group_rows || !self.attn_group {
            1
        } else {
            [4, 3, 2].into_iter().find(|g| per_kv % g == 0).unwrap_or(1)
        };
        let pre = qb <= self.attn_preload_rows;
        let func = match (hg, pre) {
            (1, true) => &self.attn_partial_pre,
            (1, false) => &self.attn_partial,
            (g, true) => &self.attn_partial_pre_group[g - 2],
            (g, false) => &self.attn_partial_group[g - 2],
        };
        unsafe {
            self.launch(
                s,
                func,
                cfg(
                    (qb as u32, (heads.0 / hg) as u32, splits as u32),
                    CHUNK as u32,
                    0,
                ),
                &mut a,
                Order::Overlap,
            )
        }
    }

    pub fn argmax_rows(
        &self,
        s: &Arc<CudaStream>,
        logits: &CudaSlice<f32>,
        rows: usize,
        vocab: usize,
        out: &CudaSlice<i32>,
    ) -> Result<()> {
        let mut a = Args::default();
        a.ptr(s, logits).i32(vocab).ptr(s, out);
        // SAFETY: arguments match `argmax_rows`; `logits` is (rows, vocab), `out` has rows ints.
        // The kernel waits for its predecessor first thing.
        unsafe {
            self.launch(
                s,
                &self.argmax_rows,
                cfg((rows as u32, 1, 1), 1024, 0),
                &mut a,
                Order::Overlap,
            )
        }
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
        let mut a = Args::default();
        a.ptr(s, kc)
            .ptr(s, vc)
            .u64(layer_stride)
            .i32(nkv)
            .i32(cap)
            .i32(hd)
            .i32(start)
            .ptr(s, rows)
            .i32(count);
        // SAFETY: arguments match `keep_rows`; start + rows[t] < cap for every t (checked by
        // the session against its length). Runs between steps: full order.
        unsafe {
            self.launch(
                s,
                &self.keep_rows,
                cfg(((layers * 2 * nkv) as u32, 1, 1), hd as u32, 0),
                &mut a,
                Order::Full,
            )
        }
    }
}
