// Definitions every kernel file shares: the step inputs, f16 conversion, warp reductions and
// programmatic dependent launch. Included by kernels.cu (the production kernels) and
// gemm_wgmma.cu (the matmul on Hopper's warpgroup instruction, a module of its own).
#pragma once

// Step inputs live in one int32 buffer `io` (one host->device copy per step), for a bucket of
// QB query rows and RB logit rows (src/model/step_io.rs writes it):
//   io[0]                      cache length L before the step
//   io[3]                      rows of the same step already in the cache (a step longer
//                              than one pass runs as pieces; 0 otherwise)
//   io[4 .. 4+QB]              token ids
//   io[4+QB .. 4+2QB]          positions
//   io[4+2QB .. 4+3QB]         visible in-step rows per query row: -1 = causal (rows 0..=i)
//   io[4+3QB .. 4+4QB]         where in io each row's list of visible in-step rows starts
//   io[4+4QB .. 4+4QB+RB]      logit rows
//   then the lists (increasing row indices), any length
// The cache length is read from device memory, so a captured CUDA graph stays valid while the
// sequence grows.

#define CHUNK 128

__device__ __forceinline__ float h2f(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ const int* io_tokens(const int* io, int QB) { return io + 4; }
__device__ __forceinline__ const int* io_pos(const int* io, int QB) { return io + 4 + QB; }
__device__ __forceinline__ const int* io_vn(const int* io, int QB) { return io + 4 + 2 * QB; }
__device__ __forceinline__ const int* io_vl(const int* io, int QB, int i) {
    return io + io[4 + 3 * QB + i];
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Programmatic dependent launch (sm_90+; the host sets the launch attribute). A kernel may
// start while the previous one still runs; before this call it may only read what no earlier
// kernel of the step writes (weights, the step's io block, cache rows of earlier steps) and
// must write nothing. The call waits until the previous kernel has finished and its writes are
// visible, then lets the next kernel start its own prologue. Every block calls it before it
// exits, so "previous kernel finished" is transitive: when kernel k passes it, every kernel
// before k has finished too. Without the attribute (or below sm_90) it is a no-op.
__device__ __forceinline__ void wait_previous_kernel() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// The same wait, but the next kernel may start (and request its weights) at once, while this
// one still waits: for a short kernel between two matmuls (the rmsnorm), so that the next
// matmul's blocks are resident and requesting weights when it finishes instead of being
// launched only then. Still transitive: the next kernel's own wait returns only once this
// kernel has finished, which is after this wait. The next kernel must use
// `wait_previous_kernel` (so that the one after it starts only once it has passed its wait),
// and, as always, read nothing before its wait that an earlier kernel of the step writes.
__device__ __forceinline__ void start_next_kernel_then_wait() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
