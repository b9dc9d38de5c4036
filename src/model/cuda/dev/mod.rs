//! Dev harnesses of the GPU kernels: each production kernel (and, for the matmul, its variants
//! in `dev/cuda/`) launched on given inputs outside a model, for the checks against CPU twins
//! and the timings of `tests/gpu_kernels.rs` (dev/cuda/README.md). The production path never
//! uses them.

mod attention;
mod gemm;

use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::{sys, CudaContext, CudaModule, CudaStream};
use candle_core::cuda_backend::cudarc::nvrtc::Ptx;

use super::gpu_err;
use super::kernels::Kernels;
use crate::Result;

pub use attention::{AttentionCase, AttentionHarness, AttentionKernel, AttentionProblem};
pub use gemm::{GemmEpilogue, GemmHarness, GemmKernel, GemmProblem, GemmTile, GEMM_BK};

/// The entry points of a PTX module whose names start with `prefix`.
fn entry_names<'a>(ptx: &'a str, prefix: &'a str) -> impl Iterator<Item = &'a str> {
    ptx.lines().filter_map(move |l| {
        let rest = l.trim().strip_prefix(".visible .entry ")?;
        let name = rest.split('(').next()?.trim();
        name.starts_with(prefix).then_some(name)
    })
}

/// What a harness starts from: a stream on the device, the production kernels, a module of
/// variants and the device's shared-memory limit per block.
struct Loaded {
    stream: Arc<CudaStream>,
    kernels: Kernels,
    variants: Arc<CudaModule>,
    optin: usize,
}

impl Loaded {
    fn new(ordinal: usize, variants_ptx: &str) -> Result<Self> {
        let ctx = CudaContext::new(ordinal).map_err(gpu_err)?;
        let stream = ctx.new_stream().map_err(gpu_err)?;
        let kernels = Kernels::load(&ctx)?;
        let variants = ctx
            .load_module(Ptx::from_src(variants_ptx))
            .map_err(gpu_err)?;
        let optin = ctx
            .attribute(
                sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
            )
            .map_err(gpu_err)?
            .max(0) as usize;
        Ok(Loaded {
            stream,
            kernels,
            variants,
            optin,
        })
    }
}

/// Median microseconds of one launch over `batches` timed batches of `reps` launches each,
/// after three warm-up launches; `launch` is called with a running count (so that launches can
/// rotate through copies of their inputs).
fn median_launch_us(
    stream: &Arc<CudaStream>,
    reps: usize,
    batches: usize,
    mut launch: impl FnMut(usize) -> Result<()>,
) -> Result<f64> {
    let mut count = 0;
    let mut launches = |n: usize| -> Result<()> {
        for _ in 0..n {
            launch(count)?;
            count += 1;
        }
        Ok(())
    };
    launches(3)?;
    let event = || {
        stream
            .context()
            .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(gpu_err)
    };
    let (start, end) = (event()?, event()?);
    let mut per_launch = Vec::with_capacity(batches);
    for _ in 0..batches.max(1) {
        start.record(stream).map_err(gpu_err)?;
        launches(reps.max(1))?;
        end.record(stream).map_err(gpu_err)?;
        end.synchronize().map_err(gpu_err)?;
        let ms = start.elapsed_ms(&end).map_err(gpu_err)?;
        per_launch.push(1000.0 * f64::from(ms) / reps.max(1) as f64);
    }
    per_launch.sort_by(f64::total_cmp);
    Ok(per_launch[per_launch.len() / 2])
}
