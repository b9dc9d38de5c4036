// lade's CUDA kernels for small-batch decoding of LLaMA-family models.
//
// Every kernel computes each query row with a reduction order that depends only on that row's
// inputs (never on how many rows share the batch): a matmul sums over K in an order fixed by
// its shape (gemm.cu), and attention walks a row's visible keys in fixed chunks. So a row
// computed inside a lookahead step is bit-identical to the same row computed alone, and greedy
// lookahead equals plain greedy on the GPU too. Explicit fmaf() leaves the compiler no
// contraction choices.
//
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

// x[i, :] = embedding[token_i, :]; grid QB, block 256.
extern "C" __global__ void embed(const int* io, int QB, const unsigned short* emb, float* x,
                                 int H) {
    int i = blockIdx.x;
    int tok = io_tokens(io, QB)[i];
    wait_previous_kernel();
    for (int d = threadIdx.x; d < H; d += blockDim.x)
        x[(size_t)i * H + d] = h2f(emb[(size_t)tok * H + d]);
}
#include "gemm.cu"

#include "attention.cu"

// Argmax of each logit row (lowest id on ties; NaN never wins; 0 if nothing beats -inf).
// grid RB, block 1024. Each thread visits its ids in increasing order (so it keeps the first of
// equal values) with several loads in flight; the block's reduction prefers the lower id.
#define ARGMAX_UNROLL 4
__device__ __forceinline__ void argmax_take(float v, int k, float& best, int& idx) {
    if (v > best) {
        best = v;
        idx = k;
    }
}

extern "C" __global__ void argmax_rows(const float* logits, int V, int* out) {
    __shared__ float bv[1024];
    __shared__ int bi[1024];
    wait_previous_kernel();
    const float* row = logits + (size_t)blockIdx.x * V;
    float best = -INFINITY;
    int idx = 0x7fffffff;
    const int T = blockDim.x;
    if ((V & 3) == 0) {  // rows are 16-byte aligned: float4 loads
        const float4* r4 = (const float4*)row;
        const int V4 = V >> 2;
        for (int k0 = threadIdx.x; k0 < V4; k0 += ARGMAX_UNROLL * T) {
            float4 x[ARGMAX_UNROLL];
#pragma unroll
            for (int u = 0; u < ARGMAX_UNROLL; ++u) {
                const int k = k0 + u * T;
                x[u] = k < V4 ? r4[k] : make_float4(-INFINITY, -INFINITY, -INFINITY, -INFINITY);
            }
#pragma unroll
            for (int u = 0; u < ARGMAX_UNROLL; ++u) {
                const int k = 4 * (k0 + u * T);
                argmax_take(x[u].x, k, best, idx);
                argmax_take(x[u].y, k + 1, best, idx);
                argmax_take(x[u].z, k + 2, best, idx);
                argmax_take(x[u].w, k + 3, best, idx);
            }
        }
    } else {
        for (int k0 = threadIdx.x; k0 < V; k0 += ARGMAX_UNROLL * T) {
            float x[ARGMAX_UNROLL];
#pragma unroll
            for (int u = 0; u < ARGMAX_UNROLL; ++u) {
                const int k = k0 + u * T;
                x[u] = k < V ? row[k] : -INFINITY;
            }
#pragma unroll
            for (int u = 0; u < ARGMAX_UNROLL; ++u) argmax_take(x[u], k0 + u * T, best, idx);
        }
    }
    bv[threadIdx.x] = best;
    bi[threadIdx.x] = idx;
    __syncthreads();
    for (int st = blockDim.x / 2; st > 0; st >>= 1) {
        if (threadIdx.x < st) {
            float v2 = bv[threadIdx.x + st];
            int i2 = bi[threadIdx.x + st];
            if (v2 > bv[threadIdx.x] || (v2 == bv[threadIdx.x] && i2 < bi[threadIdx.x])) {
                bv[threadIdx.x] = v2;
                bi[threadIdx.x] = i2;
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = bi[0] == 0x7fffffff ? 0 : bi[0];
}

// Keeps, of the cache rows at start.., those at offsets rows[0..count] (increasing), moved to
// start..start+count, in every layer's K and V. grid (layers * 2 * nkv), block hd. Each thread
// owns one dimension and walks the rows in order, so overlapping moves are safe.
extern "C" __global__ void keep_rows(float* kc, float* vc, size_t layer_stride, int nkv, int cap,
                                     int hd, int start, const int* rows, int count) {
    wait_previous_kernel();
    const int b = blockIdx.x;
    const int h = b % nkv;
    const int kv = (b / nkv) % 2;
    const int layer = b / (2 * nkv);
    float* base = (kv ? vc : kc) + layer * layer_stride + (size_t)h * cap * hd;
    const int d = threadIdx.x;
    for (int t = 0; t < count; ++t) {
        int src = start + rows[t], dst = start + t;
        base[(size_t)dst * hd + d] = base[(size_t)src * hd + d];
    }
}
