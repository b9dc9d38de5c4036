//! Loading lade's PTX and launching its kernels with the argument lists of `kernels.cu` and
//! `gemm.cu`.

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
pub const CHUNK: usize = 128;
/// k-tile of the matmul (`GEMM_BK` in gemm.cu): splits of K are whole k-tiles.
const GEMM_BK: usize = 64;
/// The matmul's block shapes (16-row tiles per block, columns per block, pipeline stages): the
/// entry points `gemm_p{P}_m{MT}_n{BN}_s{STAGES}` of gemm.cu, in this order. Schedule only: a
/// row's arithmetic is the same in every one.
const GEMM_SHAPES: [(usize, usize, usize); 4] = [(1, 64, 6), (2, 64, 6), (4, 64, 4), (8, 128, 3)];

/// Which [`GEMM_SHAPES`] entry runs a matmul of `m` rows: for a few rows, a deep pipeline (more
/// weight bytes in flight); for many, taller and wider tiles (each weight tile read once for up
/// to 128 rows, the activation tiles re-read less). Narrower column tiles for a few rows (16 or
/// 32, more blocks for small models) measured slower on the H200 for the default model.
fn gemm_shape_index(m: usize) -> usize {
    match m {
        0..=16 => 0,
        17..=32 => 1,
        33..=64 => 2,
        _ => 3,
    }
}

/// f16 planes per activation value in the matmul's input (A format): 1 = f16(v); 2 = hi and
/// lo halves (about 22 bits of v, twice the tensor-core work).
pub const ACT_PLANES: usize = 1;

/// Splits of the K range of a (k, n) matmul on a device of `sms` multiprocessors: enough
/// blocks for about one and a half per multiprocessor at 64 columns a block, with each split at
/// least 8 k-tiles and at most 16 splits. It depends on the shape and the device only, never
/// on the rows of a step, since it sets the order in which a row's products are added.
pub fn gemm_splits(k: usize, n: usize, sms: usize) -> usize {
    let tiles = n.div_ceil(64).max(1);
    let max_s = (k.div_ceil(GEMM_BK) / 8).clamp(1, 16);
    (3 * sms).div_ceil(2 * tiles).clamp(1, max_s)
}

/// Counters one matmul launch may use (one per row block and column tile), for `m` rows and
/// `n` columns at most.
pub fn gemm_counters(m: usize, n: usize) -> usize {
    GEMM_SHAPES
        .iter()
        .map(|&(mt, bn, _)| m.div_ceil(16 * mt) * n.div_ceil(bn))
        .max()
        .unwrap_or(0)
}

pub struct Kernels {
    embed: CudaFunction,
    /// `gemm_p{ACT_PLANES}_m{MT}_n{BN}_s{STAGES}` for each of [`GEMM_SHAPES`].
    gemm: Vec<CudaFunction>,
    norm_rows: CudaFunction,
    /// Multiprocessors of the device (sets the matmul's K splits).
    sms: usize,
    /// attention_hd64, attention_hd128
    attention: [CudaFunction; 2],
    argmax_rows: CudaFunction,
    keep_rows: CudaFunction,
    /// Launch each kernel of a step with programmatic dependent launch (sm_90+), so that it
    /// starts, and loads its weights, while the previous kernel finishes
    /// (`wait_previous_kernel` in kernels.cu).
    pdl: bool,
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
    /// the qkv epilogue takes them.
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

/// Widest row `norm_rows` normalises (it holds the row in shared memory).
pub const MAX_NORM_WIDTH: usize = 16384;

/// Query vectors per attention block (`ATT_QT` in attention.cu).
const ATT_QT: usize = 32;
/// Keys staged at a time by the attention, in two buffers (`ATT_KS` in attention.cu).
const ATT_KS: usize = 64;

/// Dynamic shared memory of an attention block for head dim `hd` (`AttSmem` in attention.cu).
fn attn_smem(hd: usize) -> usize {
    4 * (ATT_QT * hd + 2 * ATT_KS * (hd + 4) + ATT_QT * CHUNK)
}

/// Dynamic shared memory of a matmul block of `mt` 16-row tiles, `bn` columns and `stages`
/// pipeline stages.
fn gemm_smem((mt, bn, stages): (usize, usize, usize)) -> usize {
    stages * (bn + ACT_PLANES * 16 * mt) * GEMM_BK * 2
}

/// Where a matmul's finished sums go (the `mode` of gemm.cu's epilogue).
pub enum GemmOut<'a> {
    /// `out[m, n] = v (+ bias)`, rows `ldo` floats apart.
    Store { out: &'a CudaSlice<f32>, ldo: usize },
    /// `out[m, n] += v` (the residual stream).
    Accumulate { out: &'a CudaSlice<f32>, ldo: usize },
    /// Gate and up interleaved (weight rows 2i, 2i + 1): `silu(gate) * up` in A format, n / 2
    /// columns, the next matmul's input.
    SiluPairs {
        a_out: &'a CudaSlice<u16>,
        plane: usize,
    },
    /// The qkv projection: `out` rows [q | k | v] (+ bias), q and k rotated at each row's
    /// position, k and v also written to the cache.
    Rope {
        out: &'a CudaSlice<f32>,
        rope: &'a RopeArgs<'a>,
    },
}

/// One matmul launch: `out[m, n] = sum_k A[m, k] * w[n, k]`, A in A format (`ACT_PLANES`
/// planes of `a_plane` halves).
pub struct GemmArgs<'a> {
    pub a: &'a CudaSlice<u16>,
    pub a_plane: usize,
    pub w: &'a CudaSlice<u16>,
    pub bias: Option<&'a CudaSlice<f32>>,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub out: GemmOut<'a>,
}

/// A step's matmul scratch: split sums and the finishing counters (zero between launches).
pub struct GemmScratch<'a> {
    pub ws: &'a CudaSlice<f32>,
    pub cnt: &'a CudaSlice<i32>,
}

/// The qkv projection's RoPE + cache-write epilogue.
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

impl Kernels {
    pub fn load(ctx: &Arc<CudaContext>) -> Result<Self> {
        let module = ctx.load_module(Ptx::from_src(PTX)).map_err(gpu_err)?;
        let f = |name: &str| module.load_function(name).map_err(gpu_err);
        let attr = |a| ctx.attribute(a).map_err(gpu_err).map(|v| v.max(0) as usize);
        let smem_optin =
            attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?;
        let sms = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?.max(1);
        let major = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
        let gemm = GEMM_SHAPES
            .iter()
            .map(|&(mt, bn, st)| f(&format!("gemm_p{ACT_PLANES}_m{mt}_n{bn}_s{st}")))
            .collect::<Result<Vec<_>>>()?;
        let k = Kernels {
            embed: f("embed")?,
            gemm,
            norm_rows: f("norm_rows")?,
            sms,
            attention: [f("attention_hd64")?, f("attention_hd128")?],
            argmax_rows: f("argmax_rows")?,
            keep_rows: f("keep_rows")?,
            pdl: major >= 9,
        };
        let needs = k
            .gemm
            .iter()
            .zip(GEMM_SHAPES.map(gemm_smem))
            .chain(k.attention.iter().zip([attn_smem(64), attn_smem(128)]))
            .chain([(&k.norm_rows, 4 * MAX_NORM_WIDTH)]);
        for (func, bytes) in needs {
            if bytes > smem_optin {
                return Err(crate::LadeError::Gpu(format!(
                    "a kernel needs {bytes} bytes of shared memory per block; this device \
                     allows {smem_optin}"
                )));
            }
            // SAFETY: a live function handle of `module`, kept alive by `k`; the attribute only
            // raises the dynamic shared memory a launch may request.
            unsafe {
                result::function::set_function_attribute(
                    func.cu_function(),
                    sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    bytes as i32,
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

    /// The matmul kernel a step of `m` rows runs (for reports).
    pub fn gemm_name(&self, m: usize) -> String {
        let (mt, bn, st) = GEMM_SHAPES[gemm_shape_index(m)];
        format!("gemm_p{ACT_PLANES}_m{mt}_n{bn}_s{st}")
    }

    /// K splits of a (k, n) matmul on this device.
    pub fn splits(&self, k: usize, n: usize) -> usize {
        gemm_splits(k, n, self.sms)
    }

    /// `out = A wᵀ` with its epilogue (see gemm.cu).
    pub fn gemm(
        &self,
        s: &Arc<CudaStream>,
        io: &CudaSlice<i32>,
        scratch: &GemmScratch<'_>,
        g: &GemmArgs<'_>,
    ) -> Result<()> {
        let splits = self.splits(g.k, g.n);
        let shape = gemm_shape_index(g.m);
        let (mt, bn, st) = GEMM_SHAPES[shape];
        let mut a = Args::default();
        a.ptr(s, g.a)
            .u64(g.a_plane)
            .ptr(s, g.w)
            .i32(g.m)
            .i32(g.n)
            .i32(g.k)
            .i32(splits)
            .ptr(s, scratch.ws)
            .ptr(s, scratch.cnt);
        let (mode, out, ldo, a_out, rope) = match &g.out {
            GemmOut::Store { out, ldo } => (0, Some(*out), *ldo, None, None),
            GemmOut::Accumulate { out, ldo } => (1, Some(*out), *ldo, None, None),
            GemmOut::SiluPairs { a_out, plane } => (2, None, 0, Some((*a_out, *plane)), None),
            GemmOut::Rope { out, rope } => (3, Some(*out), g.n, None, Some(*rope)),
        };
        a.i32(mode);
        match out {
            Some(o) => a.ptr(s, o),
            None => a.null(),
        };
        a.i32(ldo);
        match g.bias {
            Some(b) => a.ptr(s, b),
            None => a.null(),
        };
        match a_out {
            Some((o, plane)) => a.ptr(s, o).u64(plane),
            None => a.null().u64(0),
        };
        match rope {
            Some(r) => a.rope(s, io, r),
            None => a
                .ptr(s, io)
                .i32(0)
                .null()
                .null()
                .null()
                .null()
                .i32(0)
                .i32(0)
                .i32(0)
                .i32(0),
        };
        let grid = (
            g.n.div_ceil(bn) as u32,
            splits as u32,
            g.m.div_ceil(16 * mt).max(1) as u32,
        );
        let threads = 32 * (bn / 16) * if mt >= 2 { 2 } else { 1 };
        // SAFETY: the arguments match `gemm_p*` in gemm.cu; `a` holds ACT_PLANES planes of
        // `a_plane` >= m * k halves, `w` is (n, k) with k % 8 == 0 (checked at load), n is even;
        // `ws` holds splits * m * n floats and `cnt` the row blocks x column tiles counters,
        // zero between launches (the session sizes both with `gemm_counters` and the largest
        // split count); `out` is (m, ldo) floats with ldo >= n for Store/Accumulate/Rope,
        // `a_out` holds planes of `plane` >= m * n / 2 halves for SiluPairs; `bias` has n
        // floats. Rope: `out` rows are [q | k | v] of (nh + 2 nkv) * hd = n floats, positions
        // in `io` are below the rope tables (checked by `Batch::validate`), L + m <= cap (the
        // session keeps a padded step of slack). Shared memory is within the limit set in
        // `load`. Before its wait the kernel only loads weights.
        unsafe {
            self.launch(
                s,
                &self.gemm[shape],
                cfg(grid, threads as u32, gemm_smem((mt, bn, st)) as u32),
                &mut a,
                Order::Overlap,
            )
        }
    }

    /// A-format rows of `rmsnorm(x[row]) * g` for `m` rows (`rowsel_off`: row i is x row
    /// `io[rowsel_off + i]`).
    #[allow(clippy::too_many_arguments)]
    pub fn norm_rows(
        &self,
        s: &Arc<CudaStream>,
        io: &CudaSlice<i32>,
        x: &CudaSlice<f32>,
        ldx: usize,
        rowsel_off: Option<usize>,
        g: &CudaSlice<f32>,
        eps: f32,
        k: usize,
        m: usize,
        a_out: &CudaSlice<u16>,
        plane: usize,
    ) -> Result<()> {
        let mut a = Args::default();
        a.ptr(s, x)
            .i32(ldx)
            .ptr(s, io)
            .push(&rowsel_off.map_or(-1i32, |o| o as i32).to_ne_bytes())
            .ptr(s, g)
            .f32(eps)
            .i32(k)
            .ptr(s, a_out)
            .u64(plane)
            .i32(ACT_PLANES);
        // SAFETY: arguments match `norm_rows`; `x` has the rows `io` selects (below its
        // length, checked by `Batch::validate`) or m rows of `ldx` >= k floats (k % 4 == 0,
        // checked at load), `g` k floats, `a_out` ACT_PLANES planes of `plane` >= m * k halves;
        // shared memory is the row, k floats, within the limit set in `load`. The kernel waits
        // first thing.
        unsafe {
            self.launch(
                s,
                &self.norm_rows,
                cfg((m as u32, 1, 1), 256, (4 * k) as u32),
                &mut a,
                Order::Overlap,
            )
        }
    }

    /// Attention of the step's rows over the cache and their in-step chains, split over
    /// chunks of [`CHUNK`] keys and merged in the same launch (see attention.cu). `done` holds
    /// at least qb * heads zeros.
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
        out: &CudaSlice<u16>,
        out_plane: usize,
        heads: (usize, usize, usize),
        cap: usize,
        splits: usize,
    ) -> Result<()> {
        let (nh, nkv, hd) = heads;
        let func = match hd {
            64 => &self.attention[0],
            128 => &self.attention[1],
            _ => {
                return Err(crate::LadeError::Unsupported(format!(
                    "head_dim {hd} (the GPU attention takes 64 or 128)"
                )))
            }
        };
        let scale = 1.0f32 / (hd as f32).sqrt();
        let mut a = Args::default();
        a.ptr(s, qkv)
            .ptr(s, io)
            .i32(qb)
            .ptr(s, kc)
            .ptr(s, vc)
            .ptr(s, part)
            .ptr(s, done)
            .ptr(s, out)
            .u64(out_plane)
            .i32(ACT_PLANES)
            .i32(nh)
            .i32(nkv)
            .i32(cap)
            .i32(splits)
            .f32(scale);
        let tiles = (qb * (nh / nkv)).div_ceil(ATT_QT);
        // SAFETY: arguments match `attention_hd{64,128}` in attention.cu; `qkv` holds qb rows of
        // (nh + 2 nkv) * hd floats; `part` holds qb * nh * splits * (hd + 4) floats and splits
        // * CHUNK covers every row's visible keys (L + qb <= splits * CHUNK); `done` holds
        // tiles * nkv <= qb * nh counters, zero between launches; `out` holds ACT_PLANES
        // planes of `out_plane` >= qb * nh * hd halves; every in-step list entry in `io` is
        // below qb (written by `StepIo::pack`). Shared memory is within the limit set in
        // `load`. Before its wait the kernel reads only `io` and cache rows below L, which
        // earlier steps wrote.
        unsafe {
            self.launch(
                s,
                func,
                cfg(
                    (tiles as u32, nkv as u32, splits as u32),
                    256,
                    attn_smem(hd) as u32,
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
