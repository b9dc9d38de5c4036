// Variants of the Hopper matmul (src/model/cuda/gemm_wgmma.cu) for kernel development: other
// column tiles and pipeline depths. Compiled for compute_90a by build.rs and loaded by the dev
// harness only on a device of compute capability 9.0; `tests/gpu_kernels.rs` checks each bit
// for bit against the production kernel and against the CPU twin, and times them
// (dev/cuda/README.md).
#define WGMMA_NO_PRODUCTION
#include "../../src/model/cuda/gemm_wgmma.cu"

// One row (16-row tile): 128 columns, pipelines of 4, 6 and 8 stages.
WGMMA_ENTRY(1, 128, 4, 8)
WGMMA_ENTRY(1, 128, 6, 8)
WGMMA_ENTRY(1, 128, 8, 8)
// 128-row tiles (one block a multiprocessor: its registers), pipelines of 3 to 6 stages, and
// a deeper pipeline for 64 rows.
WGMMA_ENTRY(8, 128, 3, 8)
WGMMA_ENTRY(8, 128, 4, 8)
WGMMA_ENTRY(8, 128, 5, 8)
WGMMA_ENTRY(8, 128, 6, 8)
WGMMA_ENTRY(4, 128, 6, 8)
// 32 and 64 rows at 64 columns (one warpgroup): twice the column blocks of a narrow projection.
WGMMA_ENTRY(2, 64, 4, 4)
WGMMA_ENTRY(4, 64, 4, 4)
// Warp-specialized (loader warps and mbarriers instead of two block barriers a k-tile).
WGMMA_WS_ENTRY(1, 64, 6, 4, 2)
WGMMA_WS_ENTRY(1, 64, 8, 4, 2)
WGMMA_WS_ENTRY(2, 128, 4, 8, 2)
WGMMA_WS_ENTRY(4, 128, 4, 8, 2)
WGMMA_WS_ENTRY(8, 128, 4, 8, 2)
WGMMA_WS_ENTRY(8, 128, 5, 8, 2)
WGMMA_WS_ENTRY(8, 128, 6, 8, 2)
