// Variants of the Hopper matmul (src/model/cuda/gemm_wgmma.cu) for kernel development: other
// column tiles and pipeline depths. Compiled for compute_90a by build.rs and loaded by the dev
// harness only on a device of compute capability 9.0; `tests/gpu_kernels.rs` checks each bit
// for bit against the production kernel and against the CPU twin, and times them
// (dev/cuda/README.md).
#define WGMMA_NO_PRODUCTION
#include "../../src/model/cuda/gemm_wgmma.cu"

// One row (16-row tile): 64 or 128 columns, pipelines of 4, 6 and 8 stages.
WGMMA_ENTRY(1, 128, 4, 8)
WGMMA_ENTRY(1, 128, 6, 8)
WGMMA_ENTRY(1, 128, 8, 8)
WGMMA_ENTRY(1, 64, 8, 4)
// Up to 128 rows, a shallower pipeline.
WGMMA_ENTRY(8, 128, 3, 8)
