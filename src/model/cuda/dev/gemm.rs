//! The matmul's dev harness: the production kernels (wgmma on a device of compute capability
//! 9.0, mma.sync elsewhere), the other instruction's production kernels where it has them, and
//! every variant of `dev/cuda/gemm_variants.cu` (and, on compute capability 9.0, of
//! `dev/cuda/gemm_wgmma.cu`) launched on given inputs at any shape and schedule, and timed on
//! random ones. The production path never loads the variants; `tests/gpu_kernels.rs` checks
//! each bit for bit against the production kernel and against a CPU twin, and its ignored
//! `time_gemm_variants` prints the timings (dev/cuda/README.md).

use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::{
    sys, CudaFunction, CudaModule, CudaSlice, CudaStream,
};
use candle_core::cuda_backend::cudarc::nvrtc::Ptx;

use super::{entry_names, median_launch_us, Loaded};
use crate::model::cuda::gpu_err;
use crate::model::cuda::kernels::{
    allow_smem, GemmArgs, GemmOut, GemmSchedule, GemmScratch, Kernels, ACT_PLANES,
};
use crate::model::cuda::weight_tiles::{GemmWeights, WeightLayout};
use crate::{LadeError, Result};

pub use crate::model::cuda::kernels::{GemmTile, GEMM_BK};

const VARIANTS_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/gemm_variants.ptx"));
/// dev/cuda/gemm_wgmma.cu, for devices of compute capability 9.0 only.
const WGMMA_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/gemm_wgmma_variants.ptx"));

/// Most rows, columns x splits (workspace) and counters the harness's scratch holds.
const MAX_ROWS: usize = 128;
const MAX_WS: usize = 16 * MAX_ROWS * 65536;
const MAX_COUNTERS: usize = 1 << 20;

/// An epilogue of the matmul besides the plain store (the qkv projection's RoPE and cache write
/// run in the model tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmEpilogue {
    /// `out = v + bias[n]`.
    Bias,
    /// `out += v` (the residual stream).
    Accumulate,
    /// `silu(gate) * up` of the column pairs (2i, 2i + 1), in f16: m x n / 2 values.
    SiluPairs,
}

/// One matmul kernel: the production one of a tile, or a variant.
pub struct GemmKernel {
    pub name: String,
    pub planes: usize,
    pub tile: GemmTile,
    pub production: bool,
    func: CudaFunction,
}

/// A matmul problem on the device: `planes` f16 planes of (m, k) activations and `copies`
/// copies of the (n, k) f16 weights (timing rotates through them so that the weights come from
/// memory, not from the L2 cache).
pub struct GemmProblem {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub planes: usize,
    a: CudaSlice<u16>,
    /// The weight copies in each layout a loaded kernel reads (row-major for gemm.cu's, tiled
    /// for gemm_wgmma.cu's).
    w: Vec<Vec<GemmWeights>>,
    out: CudaSlice<f32>,
}

impl GemmProblem {
    pub fn weight_bytes(&self) -> usize {
        2 * self.n * self.k
    }
}

pub struct GemmHarness {
    stream: Arc<CudaStream>,
    kernels: Kernels,
    _variants: Vec<Arc<CudaModule>>,
    all: Vec<GemmKernel>,
    ws: CudaSlice<f32>,
    cnt: CudaSlice<i32>,
    io: CudaSlice<i32>,
}

impl GemmHarness {
    pub fn new(ordinal: usize) -> Result<Self> {
        let Loaded {
            stream,
            kernels,
            variants,
            optin,
        } = Loaded::new(ordinal, VARIANTS_PTX)?;
        // The production kernels, then mma.sync's where wgmma is production (their shared
        // memory already allowed by `Kernels::load`), then every variant.
        let production = kernels.production_gemms().map(|g| (g, true));
        let others = kernels.other_gemms().map(|g| (g, false));
        let mut all: Vec<GemmKernel> = production
            .chain(others)
            .map(|((tile, func), production)| GemmKernel {
                name: tile.name(ACT_PLANES),
                planes: ACT_PLANES,
                tile,
                production,
                func: func.clone(),
            })
            .collect();
        let mut modules = vec![(variants, VARIANTS_PTX, "gemm_p")];
        let ctx = stream.context();
        let capability = |a| ctx.attribute(a).map_err(gpu_err);
        use sys::CUdevice_attribute::*;
        if (
            capability(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            capability(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        ) == (9, 0)
        {
            let wgmma = ctx.load_module(Ptx::from_src(WGMMA_PTX)).map_err(gpu_err)?;
            modules.push((wgmma, WGMMA_PTX, "wgmma_p"));
        }
        for (module, ptx, prefix) in &modules {
            for name in entry_names(ptx, prefix) {
                let Some((planes, tile)) = GemmTile::parse(name) else {
                    return Err(LadeError::Gpu(format!(
                        "matmul variant {name}: not a kernel name"
                    )));
                };
                let func = module.load_function(name).map_err(gpu_err)?;
                allow_smem(&func, tile.smem(planes), optin)?;
                all.push(GemmKernel {
                    name: name.to_string(),
                    planes,
                    tile,
                    production: false,
                    func,
                });
            }
        }
        Ok(GemmHarness {
            ws: stream.alloc_zeros::<f32>(MAX_WS).map_err(gpu_err)?,
            cnt: stream.alloc_zeros::<i32>(MAX_COUNTERS).map_err(gpu_err)?,
            io: stream.alloc_zeros::<i32>(8).map_err(gpu_err)?,
            stream,
            kernels,
            _variants: modules.into_iter().map(|(m, _, _)| m).collect(),
            all,
        })
    }

    /// Every kernel: the production ones first.
    pub fn kernels(&self) -> Vec<&GemmKernel> {
        let mut v: Vec<&GemmKernel> = self.all.iter().collect();
        v.sort_by_key(|k| (!k.production, k.name.clone()));
        v
    }

    /// The production kernel and schedule of an (m, n, k) matmul.
    pub fn production(&self, m: usize, n: usize, k: usize) -> (&GemmKernel, GemmSchedule) {
        let (tile, schedule) = self.kernels.gemm_choice(m, n, k);
        let name = tile.tile.name(ACT_PLANES);
        let kernel = self
            .all
            .iter()
            .find(|x| x.name == name)
            .expect("every production tile is loaded");
        (kernel, schedule)
    }

    /// The schedule of `kernel` for an (m, n, k) matmul: the production split count (or
    /// `splits`), and the production rule for the blocks along the split axis.
    pub fn schedule(
        &self,
        kernel: &GemmKernel,
        m: usize,
        n: usize,
        k: usize,
        splits: Option<usize>,
    ) -> GemmSchedule {
        let splits = splits.unwrap_or_else(|| self.kernels.splits(k, n));
        self.kernels.gemm_schedule(kernel.tile, m, n, splits)
    }

    pub fn sms(&self) -> usize {
        self.kernels.sms()
    }

    /// Uploads a problem: `a` holds `planes` planes of m * k halves, `w` n * k halves.
    pub fn problem(
        &self,
        (m, n, k): (usize, usize, usize),
        planes: usize,
        a: &[u16],
        w: &[u16],
        copies: usize,
    ) -> Result<GemmProblem> {
        if m == 0 || m > MAX_ROWS || k % 8 != 0 || n % 2 != 0 || n > MAX_WS / (16 * MAX_ROWS) {
            return Err(LadeError::Gpu(format!(
                "the harness takes 1..={MAX_ROWS} rows, K % 8 == 0 and an even N <= {}; \
                 got {m} x {n} x {k}",
                MAX_WS / (16 * MAX_ROWS)
            )));
        }
        if a.len() != planes * m * k || w.len() != n * k {
            return Err(LadeError::Gpu("matmul inputs of the wrong length".into()));
        }
        let s = &self.stream;
        let mut layouts: Vec<WeightLayout> = Vec::new();
        for layout in self.all.iter().map(|x| WeightLayout::of(&x.tile)) {
            if !layouts.contains(&layout) {
                layouts.push(layout);
            }
        }
        let mut ws = Vec::new();
        for layout in layouts {
            let mut copies_of = vec![GemmWeights::upload(s, w, n, k, layout)?];
            for _ in 1..copies {
                let copy = copies_of[0].duplicate(s)?;
                copies_of.push(copy);
            }
            ws.push(copies_of);
        }
        Ok(GemmProblem {
            m,
            n,
            k,
            planes,
            a: s.clone_htod(a).map_err(gpu_err)?,
            w: ws,
            out: s.alloc_zeros::<f32>(m * n).map_err(gpu_err)?,
        })
    }

    fn launch(
        &self,
        kernel: &GemmKernel,
        schedule: &GemmSchedule,
        p: &GemmProblem,
        copy: usize,
    ) -> Result<()> {
        let out = GemmOut::Store {
            out: &p.out,
            ldo: p.n,
        };
        self.launch_with(kernel, schedule, p, copy, out, None)
    }

    fn launch_with(
        &self,
        kernel: &GemmKernel,
        schedule: &GemmSchedule,
        p: &GemmProblem,
        copy: usize,
        out: GemmOut<'_>,
        bias: Option<&CudaSlice<f32>>,
    ) -> Result<()> {
        if kernel.planes != p.planes || schedule.tile != kernel.tile {
            return Err(LadeError::Gpu(format!(
                "{} takes {} planes and its own tile; the problem has {} planes, the schedule \
                 the tile {:?}",
                kernel.name, kernel.planes, p.planes, schedule.tile
            )));
        }
        if schedule.splits * p.m * p.n > MAX_WS {
            return Err(LadeError::Gpu(
                "split sums beyond the harness's workspace".into(),
            ));
        }
        let args = GemmArgs {
            a: &p.a,
            planes: p.planes,
            a_plane: p.m * p.k,
            w: {
                let layout = WeightLayout::of(&kernel.tile);
                let copies =
                    p.w.iter()
                        .find(|c| c[0].layout == layout)
                        .expect("the problem holds every loaded kernel's layout");
                &copies[copy % copies.len()]
            },
            bias,
            m: p.m,
            n: p.n,
            k: p.k,
            out,
        };
        let scratch = GemmScratch {
            ws: &self.ws,
            cnt: &self.cnt,
        };
        self.kernels.gemm_on(
            &kernel.func,
            schedule,
            &self.stream,
            &self.io,
            &scratch,
            &args,
        )
    }

    /// `out = A wᵀ` (m x n floats) by `kernel` on `schedule`; the output is poisoned (NaN)
    /// before the launch, so an element the kernel does not write shows.
    pub fn run(
        &self,
        kernel: &GemmKernel,
        schedule: &GemmSchedule,
        p: &mut GemmProblem,
    ) -> Result<Vec<f32>> {
        let s = &self.stream;
        s.memcpy_htod(&vec![f32::NAN; p.m * p.n], &mut p.out)
            .map_err(gpu_err)?;
        self.launch(kernel, schedule, p, 0)?;
        let out = s.clone_dtoh(&p.out).map_err(gpu_err)?;
        s.synchronize().map_err(gpu_err)?;
        Ok(out)
    }

    /// The matmul by `kernel` on `schedule` with `epilogue`: `values` are the bias (n floats) or
    /// the output's starting values (m x n) or nothing (SiluPairs). The output (m x n floats, or
    /// m x n / 2 f16 values widened to f32) is poisoned (NaN) where the kernel writes it anew.
    pub fn run_epilogue(
        &self,
        kernel: &GemmKernel,
        schedule: &GemmSchedule,
        p: &mut GemmProblem,
        epilogue: GemmEpilogue,
        values: &[f32],
    ) -> Result<Vec<f32>> {
        let s = &self.stream;
        let (m, n) = (p.m, p.n);
        let want = match epilogue {
            GemmEpilogue::Bias => n,
            GemmEpilogue::Accumulate => m * n,
            GemmEpilogue::SiluPairs => 0,
        };
        if values.len() != want || (epilogue == GemmEpilogue::SiluPairs && kernel.planes != 1) {
            return Err(LadeError::Gpu(format!(
                "{epilogue:?} takes {want} values (got {}) and one activation plane",
                values.len()
            )));
        }
        let out = match epilogue {
            GemmEpilogue::Bias => {
                let bias = s.clone_htod(values).map_err(gpu_err)?;
                s.memcpy_htod(&vec![f32::NAN; m * n], &mut p.out)
                    .map_err(gpu_err)?;
                let store = GemmOut::Store {
                    out: &p.out,
                    ldo: n,
                };
                self.launch_with(kernel, schedule, p, 0, store, Some(&bias))?;
                s.clone_dtoh(&p.out).map_err(gpu_err)?
            }
            GemmEpilogue::Accumulate => {
                s.memcpy_htod(values, &mut p.out).map_err(gpu_err)?;
                let acc = GemmOut::Accumulate {
                    out: &p.out,
                    ldo: n,
                };
                self.launch_with(kernel, schedule, p, 0, acc, None)?;
                s.clone_dtoh(&p.out).map_err(gpu_err)?
            }
            GemmEpilogue::SiluPairs => {
                let nan = half::f16::NAN.to_bits();
                let a_out = s.clone_htod(&vec![nan; m * n / 2]).map_err(gpu_err)?;
                let pairs = GemmOut::SiluPairs {
                    a_out: &a_out,
                    plane: m * n / 2,
                };
                self.launch_with(kernel, schedule, p, 0, pairs, None)?;
                let bits = s.clone_dtoh(&a_out).map_err(gpu_err)?;
                bits.into_iter()
                    .map(|b| half::f16::from_bits(b).to_f32())
                    .collect()
            }
        };
        s.synchronize().map_err(gpu_err)?;
        Ok(out)
    }

    /// Median microseconds of one launch over `batches` timed batches of `reps` launches each
    /// (after a warm-up), the launches rotating through the problem's weight copies.
    pub fn time(
        &self,
        kernel: &GemmKernel,
        schedule: &GemmSchedule,
        p: &GemmProblem,
        reps: usize,
        batches: usize,
    ) -> Result<f64> {
        median_launch_us(&self.stream, reps, batches, |copy| {
            self.launch(kernel, schedule, p, copy)
        })
    }
}
