// Matmul variants for kernel development: other block shapes, warp layouts and pipeline depths
// of gemm.cu's one kernel, and the hi/lo activation split (P = 2). The production path never
// loads them. `lade::model::cuda::dev` launches them; tests/gpu_kernels.rs checks every one
// bit for bit against the production kernel (same splits: the same additions in the same
// order) and against a CPU twin, and times them (see dev/cuda/README.md).
#define GEMM_NO_PRODUCTION
#include "../../src/model/cuda/kernels.cu"

// One row: narrower column tiles, other warp counts, other pipeline depths.
GEMM_ENTRY(1, 1, 64, 4, 1, 4, 1)
GEMM_ENTRY(1, 1, 64, 6, 1, 4, 1)
GEMM_ENTRY(1, 1, 64, 8, 1, 4, 1)
GEMM_ENTRY(1, 1, 64, 6, 1, 2, 1)
GEMM_ENTRY(1, 1, 128, 4, 1, 8, 1)
// One row, 128 columns, deeper pipelines: more weight bytes in flight where a launch has one
// block per multiprocessor (the o and down projections).
GEMM_ENTRY(1, 1, 128, 6, 1, 4, 1)
GEMM_ENTRY(1, 1, 128, 8, 1, 4, 1)
GEMM_ENTRY(1, 1, 128, 8, 1, 8, 1)
// One row, several k-tiles a stage (longer runs of each weight row per request).
GEMM_ENTRY(1, 1, 128, 2, 1, 4, 2)
GEMM_ENTRY(1, 1, 128, 3, 1, 4, 2)
GEMM_ENTRY(1, 1, 64, 3, 1, 4, 4)
GEMM_ENTRY(1, 1, 64, 4, 1, 4, 2)
GEMM_ENTRY(1, 1, 128, 2, 1, 4, 4)
// 32 to 64 rows.
GEMM_ENTRY(2, 1, 64, 6, 2, 4, 1)
GEMM_ENTRY(4, 1, 64, 4, 2, 4, 1)
GEMM_ENTRY(4, 1, 128, 3, 2, 8, 1)
GEMM_ENTRY(4, 1, 64, 6, 2, 2, 1)
// Up to 128 rows: other warp tiles and pipeline depths (64 x 64 warp tiles spill registers).
GEMM_ENTRY(8, 1, 128, 3, 2, 8, 1)
GEMM_ENTRY(8, 1, 128, 3, 2, 4, 1)
GEMM_ENTRY(8, 1, 128, 4, 2, 4, 1)
GEMM_ENTRY(8, 1, 64, 4, 2, 2, 1)
GEMM_ENTRY(8, 1, 128, 2, 4, 2, 2)
// The hi/lo split of the activations (two f16 planes, twice the tensor-core work).
GEMM_ENTRY(1, 2, 128, 4, 1, 4, 1)
GEMM_ENTRY(2, 2, 128, 4, 2, 4, 1)
GEMM_ENTRY(4, 2, 128, 4, 2, 4, 1)
GEMM_ENTRY(8, 2, 128, 3, 4, 2, 1)
