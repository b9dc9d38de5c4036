// lade's CUDA kernels for small-batch decoding of LLaMA-family models.
//
// Every kernel computes each query row with a reduction order that depends only on that row's
// inputs (never on how many rows share the batch): a matmul sums over K in an order fixed by
// its shape (gemm.cu), and attention walks a row's visible keys in fixed chunks. So a row
// computed inside a lookahead step is bit-identical to the same row computed alone, and greedy
// lookahead equals plain greedy on the GPU too. Explicit fmaf() leaves the compiler no
// contraction choices.

#include "common.cuh"

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
