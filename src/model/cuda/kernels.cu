// lade's CUDA kernels for small-batch decoding of LLaMA-family models.
//
// Every kernel computes each query row with a reduction order that depends only on that row's
// inputs (never on how many rows share the batch): the K-reduction of a matmul is split over the
// 32 lanes of a warp the same way for every row and finished by the same shuffle tree, and
// attention walks a row's visible keys in fixed chunks. So a row computed inside a lookahead
// step is bit-identical to the same row computed alone, and greedy lookahead equals plain greedy
// on the GPU too. Explicit fmaf() everywhere leaves the compiler no contraction choices.
//
// Step inputs live in one int32 buffer `io` (one host->device copy per step), for a bucket of
// QB query rows and RB logit rows:
//   io[0]                      cache length L before the step
//   io[4 .. 4+QB]              token ids
//   io[4+QB .. 4+2QB]          positions
//   io[4+2QB .. 4+3QB]         visible in-step rows per query row: -1 = causal (rows 0..=i)
//   io[4+3QB .. 4+3QB+QB*MAXV] the visible in-step rows themselves (increasing), per row
//   then RB logit rows
// The cache length is read from device memory, so a captured CUDA graph stays valid while the
// sequence grows.

#define MAXV 32
#define CHUNK 256

__device__ __forceinline__ float h2f(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ const int* io_tokens(const int* io, int QB) { return io + 4; }
__device__ __forceinline__ const int* io_pos(const int* io, int QB) { return io + 4 + QB; }
__device__ __forceinline__ const int* io_vn(const int* io, int QB) { return io + 4 + 2 * QB; }
__device__ __forceinline__ const int* io_vl(const int* io, int QB) { return io + 4 + 3 * QB; }
__device__ __forceinline__ const int* io_lrows(const int* io, int QB) {
    return io + 4 + 3 * QB + QB * MAXV;
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

// out[m, n] (= or +=) sum_k in[m, k] * w[n, k], w f16 (N, K), in/out f32.
// prologue 0: in = x[m]; 1: in = rmsnorm(x[m]) * g; 2: in[k] = silu(x[m, 2k]) * x[m, 2k + 1]
// (x rows of width 2K, gate and up interleaved). If has_rowsel, input row m is x row
// rowsel[m].
// grid (ceil(N / (8 * cpw)), ceil(M / R)), block 256 (8 warps x cpw columns), dynamic shared
// R*K floats (R % 4 == 0). Element (m, n) is always reduced the same way: lane l sums the pairs
// k = 2l + 64j in increasing j, then the xor-shuffle tree; cpw and R only change the schedule.
#define WREG 24  // weight pairs a lane keeps in registers (K <= 64 * WREG = 1536)
extern "C" __global__ void matmul(const float* x, int ldx, const int* rowsel, int has_rowsel,
                                  const unsigned short* w, const float* g, float eps,
                                  float* out, int M, int N, int K, int prologue, int accumulate,
                                  int R, int cpw) {
    extern __shared__ float xs[];
    __shared__ float inv_rms[64];
    wait_previous_kernel();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int n0 = (blockIdx.x * 8 + warp) * cpw;
    const int K2 = K / 2;
    // blockIdx.y takes rows [y * R, (y + 1) * R): row blocks run in parallel.
    const int m_end = min(M, (int)(blockIdx.y + 1) * R);
    for (int m0 = blockIdx.y * R; m0 < m_end; m0 += R) {
        const int rc = min(R, m_end - m0);
        const int rc4 = (rc + 3) & ~3;
        for (int idx = threadIdx.x; idx < rc4 * K; idx += blockDim.x) {
            int r = idx / K, k = idx - r * K;
            float v = 0.f;
            if (r < rc) {
                int src = has_rowsel ? rowsel[m0 + r] : m0 + r;
                const float* row = x + (size_t)src * ldx;
                if (prologue == 2) {
                    float gt = row[2 * k], up = row[2 * k + 1];
                    v = gt / (1.f + expf(-gt)) * up;
                } else {
                    v = row[k];
                }
            }
            xs[idx] = v;
        }
        __syncthreads();
        if (prologue == 1) {
            for (int r = warp; r < rc; r += 8) {
                float ss = 0.f;
                for (int k = lane; k < K; k += 32) ss = fmaf(xs[r * K + k], xs[r * K + k], ss);
                ss = warp_sum(ss);
                if (lane == 0) inv_rms[r] = rsqrtf(ss / (float)K + eps);
            }
            __syncthreads();
            for (int idx = threadIdx.x; idx < rc * K; idx += blockDim.x) {
                int r = idx / K, k = idx - r * K;
                xs[idx] = xs[idx] * inv_rms[r] * g[k];
            }
            __syncthreads();
        }
        for (int c = 0; c < cpw; ++c) {
            const int n = n0 + c;
            if (n >= N) break;
            const unsigned int* wr = (const unsigned int*)(w + (size_t)n * K);
            if (K2 <= 32 * WREG) {
                // The lane's weight pairs, loaded once (all loads in flight together).
                float wlo[WREG], whi[WREG];
#pragma unroll
                for (int j = 0; j < WREG; ++j) {
                    int k2 = lane + 32 * j;
                    unsigned int pair = k2 < K2 ? __ldg(wr + k2) : 0u;
                    wlo[j] = h2f((unsigned short)(pair & 0xffffu));
                    whi[j] = h2f((unsigned short)(pair >> 16));
                }
                for (int r = 0; r < rc; r += 4) {
                    float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
                    const float* x0 = xs + r * K;
#pragma unroll
                    for (int j = 0; j < WREG; ++j) {
                        int k = 2 * (lane + 32 * j);
                        if (k < K) {
                            a0 = fmaf(x0[k], wlo[j], a0);
                            a0 = fmaf(x0[k + 1], whi[j], a0);
                            a1 = fmaf(x0[K + k], wlo[j], a1);
                            a1 = fmaf(x0[K + k + 1], whi[j], a1);
                            a2 = fmaf(x0[2 * K + k], wlo[j], a2);
                            a2 = fmaf(x0[2 * K + k + 1], whi[j], a2);
                            a3 = fmaf(x0[3 * K + k], wlo[j], a3);
                            a3 = fmaf(x0[3 * K + k + 1], whi[j], a3);
                        }
                    }
                    a0 = warp_sum(a0);
                    a1 = warp_sum(a1);
                    a2 = warp_sum(a2);
                    a3 = warp_sum(a3);
                    if (lane == 0) {
                        float a[4] = {a0, a1, a2, a3};
                        for (int j = 0; j < 4 && r + j < rc; ++j) {
                            float* o = out + (size_t)(m0 + r + j) * N + n;
                            *o = accumulate ? *o + a[j] : a[j];
                        }
                    }
                }
            } else {
                for (int r = 0; r < rc; r += 4) {
                    float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
                    const float* x0 = xs + r * K;
#pragma unroll 4
                    for (int k2 = lane; k2 < K2; k2 += 32) {
                        unsigned int pair = __ldg(wr + k2);
                        float w0 = h2f((unsigned short)(pair & 0xffffu));
                        float w1 = h2f((unsigned short)(pair >> 16));
                        int k = 2 * k2;
                        a0 = fmaf(x0[k], w0, a0);
                        a0 = fmaf(x0[k + 1], w1, a0);
                        a1 = fmaf(x0[K + k], w0, a1);
                        a1 = fmaf(x0[K + k + 1], w1, a1);
                        a2 = fmaf(x0[2 * K + k], w0, a2);
                        a2 = fmaf(x0[2 * K + k + 1], w1, a2);
                        a3 = fmaf(x0[3 * K + k], w0, a3);
                        a3 = fmaf(x0[3 * K + k + 1], w1, a3);
                    }
                    a0 = warp_sum(a0);
                    a1 = warp_sum(a1);
                    a2 = warp_sum(a2);
                    a3 = warp_sum(a3);
                    if (lane == 0) {
                        float a[4] = {a0, a1, a2, a3};
                        for (int j = 0; j < 4 && r + j < rc; ++j) {
                            float* o = out + (size_t)(m0 + r + j) * N + n;
                            *o = accumulate ? *o + a[j] : a[j];
                        }
                    }
                }
            }
        }
        __syncthreads();
    }
}

// ---------------------------------------------------------------------------------------------
// Tensor-core matmul, batch-invariant: out[m, n] (= or +=) sum_k in[m, k] * w[n, k], same
// prologues and row selection as `matmul`, for K % 32 == 0.
//
// Each input value is split into two f16 halves, hi = f16(v) and lo = f16(v - hi) (about 22 bits
// of the f32 value survive), and both are multiplied by the f16 weights on the tensor cores with
// f32 accumulation (mma.sync m16n8k16). The K range is cut into k32 steps; warp s of the
// block's W warps (4 or 8) owns steps j = s, s + W, s + 2W, ... and runs, per step,
// mma(hi, k 0..15 of the step) and mma(hi, k 16..31) into its hi accumulator, mma(lo, same)
// twice into its lo accumulator; its partial is hi + lo, and the W warp partials are then added
// in warp order, ((p0 + p1) + p2) + .... That sequence depends on K and W alone: the
// rows-per-block (BM), the columns-per-warp (NT) and a row's place inside its 16-row tile
// change the schedule, never a row's arithmetic (an mma's output element depends only on its
// own row and column).
//
// k order inside a step: lane (g = lane / 4, t = lane % 4) loads the 8 consecutive halves
// k = 8t .. 8t + 7 of its weight row (one 16-byte load); halves 0..3 feed the first mma and 4..7
// the second, as the logical pairs (2t, 2t + 1) and (2t + 8, 2t + 9) of the mma's fragment
// layout. A and B use the same permutation, so each mma still sums matching products.
//
// Rows are read as float4: x and ldx (and K) must be multiples of 4 floats.
// grid (ceil(N / (8 * NT)), ceil(M / BM)), block 32 W threads, dynamic shared memory
// 2 * BM * lda words (staged rows, hi and lo; lda = K / 2 padded to 16 mod 32 words).
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ unsigned short f2h(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// v -> (hi, lo) f16 pair halves, packed two columns per word (low half = lower k).
__device__ __forceinline__ void split_pair(float v0, float v1, unsigned& hi, unsigned& lo) {
    unsigned short h0 = f2h(v0), h1 = f2h(v1);
    unsigned short l0 = f2h(v0 - h2f(h0)), l1 = f2h(v1 - h2f(h1));
    hi = (unsigned)h0 | ((unsigned)h1 << 16);
    lo = (unsigned)l0 | ((unsigned)l1 << 16);
}

__device__ __forceinline__ void mma16816(float* d, unsigned a0, unsigned a1, unsigned a2,
                                         unsigned a3, unsigned b0, unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

#define MMA_MT 4   // 16-row tiles per block at most (BM <= 64)
#define MMA_PD 12  // B registers per warp: steps prefetched per group = MMA_PD / NT

// Optional epilogue of the qkv projection: RoPE on q and k, and k, v written to the cache,
// exactly as the `rope_kv` kernel does it (same formula on the same values), one launch less.
struct RopeKv {
    const int* io;
    int QB;
    const float* cos_t;
    const float* sin_t;
    float* kc;
    float* vc;
    int nh, nkv, hd, cap;
};

template <int NT, int WARPS, int MT>
__device__ __forceinline__ void mma_matmul_impl(const float* x, int ldx, const int* rowsel,
                                                int has_rowsel, const unsigned short* w,
                                                const float* g, float eps, float* out, int M,
                                                int N, int K, int prologue, int accumulate,
                                                int BM, int lda, int flat, int silu_pairs,
                                                const RopeKv* rk) {
    extern __shared__ __align__(16) unsigned sm[];
    __shared__ float inv_rms[MT * 16];
    // Weight steps in flight per group. The wide variants (NT >= 4) keep up to 3 (a warp's
    // whole share of K = 576 at 8 warps) within 24 (8 warps) or 8 (16 warps: 128 registers a
    // thread) fragment registers per column tile count.
    constexpr int PD0 = (MMA_PD * 4 / WARPS) / NT;
    constexpr int PDW = (WARPS >= 16 ? 8 : 24) / NT;
    constexpr int PD = NT >= 4 ? (PDW > 3 ? 3 : (PDW > 0 ? PDW : 1)) : (PD0 > 0 ? PD0 : 1);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int gq = lane >> 2, tq = lane & 3;
    const int m0 = blockIdx.y * BM;
    const int rc = min(BM, M - m0);
    const int mt = (rc + 15) >> 4;
    const int rows = mt * 16;
    const int nb = blockIdx.x * 8 * NT;
    unsigned* ahi = sm;
    unsigned* alo = sm + BM * lda;
    const int steps = K >> 5;
    const int cnt = warp < steps ? (steps - warp + WARPS - 1) / WARPS : 0;

    // The first group of this warp's weight fragments, in flight while the rows are staged.
    uint4 bq[PD][NT];
#pragma unroll
    for (int p = 0; p < PD; ++p) {
#pragma unroll
        for (int c = 0; c < NT; ++c) {
            const int n = nb + 8 * c + gq;
            bq[p][c] = (p < cnt && n < N)
                           ? __ldg((const uint4*)(w + (size_t)n * K + 32 * (warp + WARPS * p) + 8 * tq))
                           : make_uint4(0u, 0u, 0u, 0u);
        }
    }
    // Everything below reads the previous kernels' output.
    wait_previous_kernel();

    // Stage the block's rows as hi/lo f16 pairs: warp w takes rows w, w + 4, ...; lane l the
    // float4s l, l + 32, ... of a row, eight loads in flight per round. RmsNorm stages x * g and
    // scales each result row by 1/rms afterwards (a per-row scalar, so the same for every
    // batch); the row's sum of squares is accumulated in this same pass in a fixed order.
    const int K4 = K >> 2;
    const bool flat_rows = (flat && prologue != 1) || prologue == 2;
    if (flat_rows) {
        // No row reduction to keep in order: the block's threads share the (row, float4) items
        // of all its rows, so a step of a row or two keeps every warp loading (with one row
        // per warp, a plain step's 16-warp block waited on warp 0 alone). `flat` = 0 keeps
        // one row per warp (same values; for measuring).
        const int items = rows * K4;
        for (int b0 = tid; b0 < items; b0 += 32 * WARPS * 8) {
            float4 va[8], vb[8];
#pragma unroll
            for (int u = 0; u < 8; ++u) {
                const int idx = b0 + 32 * WARPS * u;
                const int r = idx / K4, q = idx - r * K4;
                if (idx < items && r < rc) {
                    const float4* row4 =
                        (const float4*)(x + (size_t)(has_rowsel ? rowsel[m0 + r] : m0 + r) * ldx);
                    if (prologue == 2) {
                        va[u] = __ldg(row4 + 2 * q);
                        vb[u] = __ldg(row4 + 2 * q + 1);
                    } else {
                        va[u] = __ldg(row4 + q);
                    }
                }
            }
#pragma unroll
            for (int u = 0; u < 8; ++u) {
                const int idx = b0 + 32 * WARPS * u;
                if (idx >= items) continue;
                const int r = idx / K4, q = idx - r * K4;
                uint2 h = make_uint2(0u, 0u), l = make_uint2(0u, 0u);
                if (r < rc) {
                    float4 v = va[u];
                    if (prologue == 2) {
                        const float4 a = va[u], b = vb[u];
                        v.x = a.x / (1.f + expf(-a.x)) * a.y;
                        v.y = a.z / (1.f + expf(-a.z)) * a.w;
                        v.z = b.x / (1.f + expf(-b.x)) * b.y;
                        v.w = b.z / (1.f + expf(-b.z)) * b.w;
                    }
                    split_pair(v.x, v.y, h.x, l.x);
                    split_pair(v.z, v.w, h.y, l.y);
                }
                ((uint2*)(ahi + r * lda))[q] = h;
                ((uint2*)(alo + r * lda))[q] = l;
            }
        }
    }
    // One row per warp (prologues 0 and 1; the silu prologue always stages flat).
    for (int r = warp; !flat_rows && r < rows; r += WARPS) {
        uint2* dh = (uint2*)(ahi + r * lda);
        uint2* dl = (uint2*)(alo + r * lda);
        if (r >= rc) {
            for (int q = lane; q < K4; q += 32) {
                dh[q] = make_uint2(0u, 0u);
                dl[q] = make_uint2(0u, 0u);
            }
            continue;
        }
        const float4* row4 =
            (const float4*)(x + (size_t)(has_rowsel ? rowsel[m0 + r] : m0 + r) * ldx);
        const float4* g4 = (const float4*)g;
        float ss = 0.f;
        for (int q0 = lane; q0 < K4; q0 += 32 * 8) {
            float4 va[8], vb[8];
#pragma unroll
            for (int u = 0; u < 8; ++u) {
                const int q = q0 + 32 * u;
                if (q < K4) {
                    va[u] = __ldg(row4 + q);
                    vb[u] = prologue == 1 ? __ldg(g4 + q) : va[u];
                }
            }
#pragma unroll
            for (int u = 0; u < 8; ++u) {
                const int q = q0 + 32 * u;
                if (q < K4) {
                    float4 v = va[u];
                    if (prologue == 1) {
                        ss = fmaf(v.x, v.x, ss);
                        ss = fmaf(v.y, v.y, ss);
                        ss = fmaf(v.z, v.z, ss);
                        ss = fmaf(v.w, v.w, ss);
                        v.x *= vb[u].x;
                        v.y *= vb[u].y;
                        v.z *= vb[u].z;
                        v.w *= vb[u].w;
                    }
                    uint2 h, l;
                    split_pair(v.x, v.y, h.x, l.x);
                    split_pair(v.z, v.w, h.y, l.y);
                    dh[q] = h;
                    dl[q] = l;
                }
            }
        }
        if (prologue == 1) {
            ss = warp_sum(ss);
            if (lane == 0) inv_rms[r] = rsqrtf(ss / (float)K + eps);
        }
    }
    __syncthreads();

    // Two accumulators per tile (hi and lo products): two independent mma chains.
    float acc[MT][NT][4], accl[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int c = 0; c < NT; ++c)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][c][e] = accl[i][c][e] = 0.f;

    for (int t0 = 0; t0 < cnt; t0 += PD) {
        if (t0 > 0) {
#pragma unroll
            for (int p = 0; p < PD; ++p) {
#pragma unroll
                for (int c = 0; c < NT; ++c) {
                    const int n = nb + 8 * c + gq;
                    const int j = warp + WARPS * (t0 + p);
                    bq[p][c] = (t0 + p < cnt && n < N)
                                   ? __ldg((const uint4*)(w + (size_t)n * K + 32 * j + 8 * tq))
                                   : make_uint4(0u, 0u, 0u, 0u);
                }
            }
        }
#pragma unroll
        for (int p = 0; p < PD; ++p) {
            if (t0 + p < cnt) {
                const int j = warp + WARPS * (t0 + p);
#pragma unroll
                for (int i = 0; i < MT; ++i) {
                    if (i < mt) {
                        const int o = (16 * i + gq) * lda + 16 * j + 4 * tq;
                        const uint4 h0 = *(const uint4*)(ahi + o);
                        const uint4 h1 = *(const uint4*)(ahi + o + 8 * lda);
                        const uint4 l0 = *(const uint4*)(alo + o);
                        const uint4 l1 = *(const uint4*)(alo + o + 8 * lda);
#pragma unroll
                        for (int c = 0; c < NT; ++c) {
                            const uint4 b = bq[p][c];
                            mma16816(acc[i][c], h0.x, h1.x, h0.y, h1.y, b.x, b.y);
                            mma16816(accl[i][c], l0.x, l1.x, l0.y, l1.y, b.x, b.y);
                            mma16816(acc[i][c], h0.z, h1.z, h0.w, h1.w, b.z, b.w);
                            mma16816(accl[i][c], l0.z, l1.z, l0.w, l1.w, b.z, b.w);
                        }
                    }
                }
            }
        }
    }

    // Warp partials -> shared (the staged rows are no longer read), then summed in warp order.
    __syncthreads();
    float* red = (float*)sm;  // (WARPS, rows, 8 * NT)
    const int ncol = 8 * NT;
#pragma unroll
    for (int i = 0; i < MT; ++i) {
        if (i < mt) {
#pragma unroll
            for (int c = 0; c < NT; ++c) {
                const int r0 = 16 * i + gq, col = 8 * c + 2 * tq;
                float* dst = red + ((size_t)warp * rows + r0) * ncol + col;
                dst[0] = acc[i][c][0] + accl[i][c][0];
                dst[1] = acc[i][c][1] + accl[i][c][1];
                dst[8 * ncol] = acc[i][c][2] + accl[i][c][2];
                dst[8 * ncol + 1] = acc[i][c][3] + accl[i][c][3];
            }
        }
    }
    __syncthreads();
    const size_t plane = (size_t)rows * ncol;
    if (rk) {
        // Column pairs (2c, 2c + 1): a RoPE pair never straddles a head (hd is even).
        const int half = rk->hd / 2;
        const int qd = rk->nh * rk->hd, kd = rk->nkv * rk->hd;
        const int L = rk->io[0];
        for (int idx = tid; idx < rc * (ncol / 2); idx += blockDim.x) {
            const int r = idx / (ncol / 2), col = 2 * (idx - r * (ncol / 2));
            const int n = nb + col;
            if (n >= N) continue;
            const float* src = red + (size_t)r * ncol + col;
            float a = src[0], b = src[1];
#pragma unroll
            for (int w2 = 1; w2 < WARPS; ++w2) {
                a += src[w2 * plane];
                b += src[w2 * plane + 1];
            }
            if (prologue == 1) {
                a *= inv_rms[r];
                b *= inv_rms[r];
            }
            const int row = m0 + r;
            if (n < qd + kd) {
                const int pos = io_pos(rk->io, rk->QB)[row];
                const int j = (n % rk->hd) / 2;
                const float c = rk->cos_t[(size_t)pos * half + j];
                const float sn = rk->sin_t[(size_t)pos * half + j];
                const float a2 = fmaf(a, c, -(b * sn));
                const float b2 = fmaf(a, sn, b * c);
                a = a2;
                b = b2;
            }
            out[(size_t)row * N + n] = a;
            out[(size_t)row * N + n + 1] = b;
            if (n >= qd) {
                const int t = n - qd;
                float* cache = t < kd ? rk->kc : rk->vc;
                const int t2 = t < kd ? t : t - kd;
                const int h = t2 / rk->hd, d = t2 - h * rk->hd;
                const size_t dst = ((size_t)h * rk->cap + L + row) * rk->hd + d;
                cache[dst] = a;
                cache[dst + 1] = b;
            }
        }
        return;
    }
    if (silu_pairs) {
        // Columns (2j, 2j + 1) are gate and up of FFN unit nb / 2 + j (the weight rows are
        // interleaved at load): out row m (N / 2 wide) gets silu(gate) * up, the value the
        // down projection's prologue 2 would compute from the two stored columns.
        for (int idx = tid; idx < rc * (ncol / 2); idx += blockDim.x) {
            const int r = idx / (ncol / 2), col = 2 * (idx - r * (ncol / 2));
            const int n = nb + col;
            if (n >= N) continue;
            const float* src = red + (size_t)r * ncol + col;
            float a = src[0], b = src[1];
#pragma unroll
            for (int w2 = 1; w2 < WARPS; ++w2) {
                a += src[w2 * plane];
                b += src[w2 * plane + 1];
            }
            if (prologue == 1) {
                a *= inv_rms[r];
                b *= inv_rms[r];
            }
            out[(size_t)(m0 + r) * (N / 2) + n / 2] = a / (1.f + expf(-a)) * b;
        }
        return;
    }
    for (int idx = tid; idx < rc * ncol; idx += blockDim.x) {
        const int r = idx / ncol, col = idx - r * ncol;
        const int n = nb + col;
        if (n >= N) continue;
        const float* src = red + (size_t)r * ncol + col;
        float v = src[0];
#pragma unroll
        for (int w2 = 1; w2 < WARPS; ++w2) v += src[w2 * plane];
        if (prologue == 1) v *= inv_rms[r];
        float* o = out + (size_t)(m0 + r) * N + n;
        *o = accumulate ? *o + v : v;
    }
}

// Entry points: 4, 8 or 16 warps per block (`mma_matmul_1`, `..._w8`, `..._w16`; `2w8`: two n8
// column tiles per warp, same arithmetic as `1w8`), chosen by the host per inner dimension,
// never per row count (the warp count sets the reduction order). `{nt}w{warps}_t1`: nt n8
// column tiles per warp and one 16-row tile per block (BM = 16), for steps of a few dozen rows:
// every block stages its input rows, so wider blocks stage them for more columns at once; same
// arithmetic as the one-tile entry of that warp count. The rope variants take the parameters of
// `mma_matmul_1` (`flat`: stage rows by (row, float4) items over the whole block, see the
// staging; `silu_pairs`: write silu(gate) * up of interleaved column pairs, N / 2 wide; the
// rope variants ignore it), then those of the epilogue (the caller passes no row selection and no
// accumulate).
#define MMA_ENTRY(name, nt, warps, mt)                                                          \
    extern "C" __global__ void __launch_bounds__(32 * warps)                                    \
        name(const float* x, int ldx, const int* rowsel, int has_rowsel,                        \
             const unsigned short* w, const float* g, float eps, float* out, int M, int N, int K, \
             int prologue, int accumulate, int BM, int lda, int flat, int silu_pairs) {          \
        mma_matmul_impl<nt, warps, mt>(x, ldx, rowsel, has_rowsel, w, g, eps, out, M, N, K,     \
                                       prologue, accumulate, BM, lda, flat, silu_pairs,          \
                                       nullptr);                                                 \
    }
#define MMA_ROPE_ENTRY(name, nt, warps, mt)                                                     \
    extern "C" __global__ void __launch_bounds__(32 * warps)                                    \
        name(const float* x, int ldx, const int* rowsel, int has_rowsel,                        \
             const unsigned short* w, const float* g, float eps, float* out, int M, int N, int K, \
             int prologue, int accumulate, int BM, int lda, int flat, int silu_pairs,            \
             const int* io, int QB,                                                              \
             const float* cos_t, const float* sin_t, float* kc, float* vc, int nh, int nkv,      \
             int hd, int cap) {                                                                  \
        const RopeKv rk{io, QB, cos_t, sin_t, kc, vc, nh, nkv, hd, cap};                        \
        mma_matmul_impl<nt, warps, mt>(x, ldx, rowsel, has_rowsel, w, g, eps, out, M, N, K,     \
                                       prologue, accumulate, BM, lda, flat, 0, &rk);             \
    }
MMA_ENTRY(mma_matmul_1, 1, 4, MMA_MT)
MMA_ENTRY(mma_matmul_1w8, 1, 8, MMA_MT)
MMA_ENTRY(mma_matmul_1w16, 1, 16, MMA_MT)
MMA_ENTRY(mma_matmul_2w8, 2, 8, MMA_MT)
MMA_ROPE_ENTRY(mma_matmul_rope, 1, 4, MMA_MT)
MMA_ROPE_ENTRY(mma_matmul_rope_w8, 1, 8, MMA_MT)
MMA_ROPE_ENTRY(mma_matmul_rope_w16, 1, 16, MMA_MT)
MMA_ENTRY(mma_matmul_2w8_t1, 2, 8, 1)
MMA_ENTRY(mma_matmul_4w8_t1, 4, 8, 1)
MMA_ENTRY(mma_matmul_8w8_t1, 8, 8, 1)
MMA_ENTRY(mma_matmul_2w16_t1, 2, 16, 1)
MMA_ENTRY(mma_matmul_4w16_t1, 4, 16, 1)
MMA_ENTRY(mma_matmul_8w16_t1, 8, 16, 1)
MMA_ROPE_ENTRY(mma_matmul_rope_2w8_t1, 2, 8, 1)
MMA_ROPE_ENTRY(mma_matmul_rope_4w8_t1, 4, 8, 1)
MMA_ROPE_ENTRY(mma_matmul_rope_8w8_t1, 8, 8, 1)
MMA_ROPE_ENTRY(mma_matmul_rope_2w16_t1, 2, 16, 1)
MMA_ROPE_ENTRY(mma_matmul_rope_4w16_t1, 4, 16, 1)
MMA_ROPE_ENTRY(mma_matmul_rope_8w16_t1, 8, 16, 1)

// Rotates q and k of row i in place (interleaved pairs, GGUF layout) at its position and writes
// k, v to the cache at position L + i. qkv rows: [q (nh*hd) | k (nkv*hd) | v (nkv*hd)].
// Cache layout per layer: (nkv, cap, hd). grid QB, block 128.
extern "C" __global__ void rope_kv(float* qkv, const int* io, int QB, const float* cos_t,
                                   const float* sin_t, float* kc, float* vc, int nh, int nkv,
                                   int hd, int cap) {
    const int i = blockIdx.x;
    const int L = io[0];
    const int pos = io_pos(io, QB)[i];
    wait_previous_kernel();
    const int ld = (nh + 2 * nkv) * hd;
    float* row = qkv + (size_t)i * ld;
    const int half = hd / 2;
    for (int t = threadIdx.x; t < (nh + nkv) * half; t += blockDim.x) {
        int head = t / half, j = t - head * half;
        float* p = row + head * hd + 2 * j;
        float c = cos_t[(size_t)pos * half + j], s = sin_t[(size_t)pos * half + j];
        float a = p[0], b = p[1];
        p[0] = fmaf(a, c, -(b * s));
        p[1] = fmaf(a, s, b * c);
    }
    __syncthreads();
    for (int t = threadIdx.x; t < nkv * hd; t += blockDim.x) {
        int h = t / hd, d = t - h * hd;
        size_t dst = ((size_t)h * cap + L + i) * hd + d;
        kc[dst] = row[nh * hd + t];
        vc[dst] = row[(nh + nkv) * hd + t];
    }
}

// Position in the cache of the j-th key visible to row i (cache keys first, then the row's
// in-step chain, in increasing order).
__device__ __forceinline__ int key_pos(int j, int L, int vn, const int* vl) {
    if (j < L) return j;
    return L + (vn < 0 ? j - L : vl[j - L]);
}

// Flash-decoding attention of row i, head h, split s (visible keys [s*CHUNK, (s+1)*CHUNK)),
// with the merge of the splits done by the last split block of (i, h) to finish.
// grid (QB, nh, S), block CHUNK threads (one key each), hd <= CHUNK, hd % 4 == 0, CHUNK % hd == 0.
//
// part[(i, h, s)] = (max score, sum of exp, unnormalised output[hd]); done[(i, h)] counts the
// finished splits (zero between launches: the merging block resets it). The merge walks the
// splits in index order whichever block runs it, so out[i, h] does not depend on timing.
//
// `attn_partial_pre` loads keys of earlier steps before waiting for the qkv kernel, which only
// writes this step's keys (see PRE below); both entry points compute the same values.
//
// mask: null for the fused path above. Otherwise the materialised mask of the step, row i's
// L + QB bytes at mask + i * (L + QB) (1 = visible): the row then scores every key of the cache
// and of the step and masks the hidden ones, the way attention with a dense mask works. Kept
// only to measure what the fused path saves.
#define KPRE 16  // float4s of a key row held in registers across the wait (hd <= 64 whole)
// One float4 of a key against the HG query heads in `qs` (hd floats each): partial dot e of
// head g accumulates the products of dimensions d = 4 d4 + e.
template <int HG>
__device__ __forceinline__ void dot_step(float (&dd)[HG][4], const float* qs, int hd, int d4,
                                         float4 kv) {
#pragma unroll
    for (int g = 0; g < HG; ++g) {
        const float* q = qs + g * hd + 4 * d4;
        dd[g][0] = fmaf(q[0], kv.x, dd[g][0]);
        dd[g][1] = fmaf(q[1], kv.y, dd[g][1]);
        dd[g][2] = fmaf(q[2], kv.z, dd[g][2]);
        dd[g][3] = fmaf(q[3], kv.w, dd[g][3]);
    }
}

// HG heads of one kv head per block (grouped-query models: the heads share every key and value
// load). HG changes the schedule only: each (row, head) is computed exactly as with HG = 1.
template <bool PRE, int HG>
__device__ __forceinline__ void attn_impl(const float* qkv, const int* io, int QB,
                                          const float* kc, const float* vc, float* part,
                                          int* done, float* out, int nh, int nkv, int hd,
                                          int cap, int S, float scale,
                                          const unsigned char* mask) {
    const int i = blockIdx.x, h0 = blockIdx.y * HG, s = blockIdx.z;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int L = io[0];
    const int vn = io_vn(io, QB)[i];
    const int* vl = io_vl(io, QB) + i * MAXV;
    const int n = mask ? L + QB : L + (vn < 0 ? i + 1 : vn);
    const unsigned char* mrow = mask ? mask + (size_t)i * (L + QB) : nullptr;
    const int start = s * CHUNK;
    const int ns = (n + CHUNK - 1) / CHUNK;  // splits this row uses
    if (start >= n) {
        wait_previous_kernel();
        return;
    }
    const int kvh = h0 / (nh / nkv);
    const int h4 = hd >> 2;
    __shared__ float qs[HG * CHUNK];
    __shared__ float sc[HG][CHUNK];
    __shared__ float wred[HG][CHUNK / 32];
    __shared__ int last;
    const int ld = (nh + 2 * nkv) * hd;
    const int j = start + tid;
    const bool live = j < n && (!mrow || mrow[j]);
    const int kp = live ? (mrow ? j : key_pos(j, L, vn, vl)) : 0;
    const float4* krow = (const float4*)(kc + ((size_t)kvh * cap + kp) * hd);
    // PRE (steps of few rows, where the grid is small): a key of an earlier step is loaded into
    // registers, and its value row prefetched to L2, while the qkv kernel still runs. Many-row
    // steps skip this: their grid needs the occupancy, and their rows share keys anyway.
    const bool early = PRE && live && kp < L;
    float4 kpre[PRE ? KPRE : 1];
#pragma unroll
    for (int d4 = 0; d4 < (PRE ? KPRE : 1); ++d4)
        kpre[d4] = early && d4 < h4 ? __ldg(krow + d4) : make_float4(0.f, 0.f, 0.f, 0.f);
    if (early) {
        const char* vb = (const char*)(vc + ((size_t)kvh * cap + kp) * hd);
        for (int b = 0; b < hd * 4; b += 128) asm volatile("prefetch.global.L2 [%0];" ::"l"(vb + b));
    }
    wait_previous_kernel();

    // The HG heads h0.. are consecutive in the qkv row.
    for (int t = tid; t < HG * hd; t += CHUNK) qs[t] = qkv[(size_t)i * ld + h0 * hd + t];
    __syncthreads();
    float score[HG];
#pragma unroll
    for (int g = 0; g < HG; ++g) score[g] = -INFINITY;
    if (live) {
        // Per head, four independent partial dots (fixed split by d % 4), d increasing in
        // both loops: the same sums whichever entry point runs.
        float dd[HG][4];
#pragma unroll
        for (int g = 0; g < HG; ++g) dd[g][0] = dd[g][1] = dd[g][2] = dd[g][3] = 0.f;
        if (PRE) {
#pragma unroll
            for (int d4 = 0; d4 < (PRE ? KPRE : 1); ++d4) {
                if (d4 < h4) dot_step<HG>(dd, qs, hd, d4, early ? kpre[d4] : krow[d4]);
            }
        }
#pragma unroll 4
        for (int d4 = PRE ? KPRE : 0; d4 < h4; ++d4) dot_step<HG>(dd, qs, hd, d4, krow[d4]);
#pragma unroll
        for (int g = 0; g < HG; ++g)
            score[g] = ((dd[g][0] + dd[g][1]) + (dd[g][2] + dd[g][3])) * scale;
    }
    // Per head: block max (exact in any order), then the exponentials and their sum: each
    // warp's xor-shuffle tree, the warp sums added in warp order.
#pragma unroll
    for (int g = 0; g < HG; ++g) {
        const float m = warp_max(score[g]);
        if (lane == 0) wred[g][warp] = m;
    }
    __syncthreads();
    float mx[HG], psum[HG];
#pragma unroll
    for (int g = 0; g < HG; ++g) {
        mx[g] = wred[g][0];
        for (int w = 1; w < CHUNK / 32; ++w) mx[g] = fmaxf(mx[g], wred[g][w]);
        const float p = live ? expf(score[g] - mx[g]) : 0.f;
        sc[g][tid] = p;
        psum[g] = warp_sum(p);
    }
    __syncthreads();  // every thread has read wred (max) and written sc
#pragma unroll
    for (int g = 0; g < HG; ++g)
        if (lane == 0) wred[g][warp] = psum[g];
    __syncthreads();
    if (tid < HG && ns > 1) {
        float l = wred[tid][0];
        for (int w = 1; w < CHUNK / 32; ++w) l += wred[tid][w];
        float* dst = part + (((size_t)i * nh + h0 + tid) * S + s) * (hd + 2);
        float m2 = 0.f;
#pragma unroll
        for (int g = 0; g < HG; ++g)
            if (g == tid) m2 = mx[g];
        dst[0] = m2;
        dst[1] = l;
    }
    // Weighted sum of values: thread (grp, c) owns the float4 column c of the head and sums keys
    // grp, grp + G, ... of the chunk (G = CHUNK / (hd / 4) groups); the G group sums are then
    // added in group order.
    const int end = min(n, start + CHUNK);
    const int groups = CHUNK / h4;
    const int grp = tid / h4, c4 = tid - grp * h4;
    float4 acc[HG];
#pragma unroll
    for (int g = 0; g < HG; ++g) acc[g] = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll(HG == 1 ? 4 : 2)
    for (int jj = start + grp; jj < end; jj += groups) {
        const int pj = mrow ? jj : key_pos(jj, L, vn, vl);
        const float4 v = *(const float4*)(vc + ((size_t)kvh * cap + pj) * hd + 4 * c4);
#pragma unroll
        for (int g = 0; g < HG; ++g) {
            const float w = sc[g][jj - start];
            acc[g].x = fmaf(w, v.x, acc[g].x);
            acc[g].y = fmaf(w, v.y, acc[g].y);
            acc[g].z = fmaf(w, v.z, acc[g].z);
            acc[g].w = fmaf(w, v.w, acc[g].w);
        }
    }
    // A row whose visible keys fit one chunk has nothing to merge: its block writes the output
    // with the merge's own arithmetic for one split (mall = m, e = exp(m - m)), so the value is
    // the same bits the merge would give.
    __shared__ float4 vred[CHUNK];
#pragma unroll
    for (int g = 0; g < HG; ++g) {
        vred[tid] = acc[g];
        __syncthreads();
        if (tid < hd) {
            const int cc = tid >> 2, e = tid & 3;
            float total = 0.f;
            for (int g2 = 0; g2 < groups; ++g2) {
                const float4 t = vred[g2 * h4 + cc];
                total += e == 0 ? t.x : (e == 1 ? t.y : (e == 2 ? t.z : t.w));
            }
            if (ns == 1) {
                float l = wred[g][0];
                for (int w = 1; w < CHUNK / 32; ++w) l += wred[g][w];
                const float ex = expf(mx[g] - mx[g]);
                out[(size_t)i * nh * hd + (h0 + g) * hd + tid] =
                    fmaf(total, ex, 0.f) / fmaf(l, ex, 0.f);
            } else {
                part[(((size_t)i * nh + h0 + g) * S + s) * (hd + 2) + 2 + tid] = total;
            }
        }
        __syncthreads();
    }
    if (ns == 1) return;

    // The last split of (i, h0) to finish merges all of them for the HG heads
    // (threadFenceReduction pattern).
    __threadfence();
    __syncthreads();
    if (tid == 0) last = atomicAdd(done + i * nh + h0, 1) == ns - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    if (tid == 0) done[i * nh + h0] = 0;
    for (int t = tid; t < HG * hd; t += CHUNK) {
        const int g = t / hd, d = t - g * hd;
        // Other blocks' partials are read through L2 (__ldcg), never a stale L1 line.
        const float* base = part + ((size_t)i * nh + h0 + g) * S * (hd + 2);
        float mall = -INFINITY;
        for (int s2 = 0; s2 < ns; ++s2) mall = fmaxf(mall, __ldcg(base + s2 * (hd + 2)));
        float l = 0.f, a = 0.f;
        for (int s2 = 0; s2 < ns; ++s2) {
            const float* p2 = base + s2 * (hd + 2);
            const float e = expf(__ldcg(p2) - mall);
            l = fmaf(__ldcg(p2 + 1), e, l);
            a = fmaf(__ldcg(p2 + 2 + d), e, a);
        }
        out[(size_t)i * nh * hd + (h0 + g) * hd + d] = a / l;
    }
}

#define ATTN_ENTRY(name, pre, hg)                                                               \
    extern "C" __global__ void __launch_bounds__(CHUNK)                                         \
        name(const float* qkv, const int* io, int QB, const float* kc, const float* vc,         \
             float* part, int* done, float* out, int nh, int nkv, int hd, int cap, int S,       \
             float scale, const unsigned char* mask) {                                          \
        attn_impl<pre, hg>(qkv, io, QB, kc, vc, part, done, out, nh, nkv, hd, cap, S, scale,    \
                           mask);                                                               \
    }
// grid (QB, nh / hg, S). `_pre`: early key loads, one head per block. `_g2`..`_g4`: 2..4 heads
// of one kv head per block; `_pre_g2`..`_pre_g4`: both.
ATTN_ENTRY(attn_partial_pre, true, 1)
ATTN_ENTRY(attn_partial, false, 1)
ATTN_ENTRY(attn_partial_g2, false, 2)
ATTN_ENTRY(attn_partial_g3, false, 3)
ATTN_ENTRY(attn_partial_g4, false, 4)
ATTN_ENTRY(attn_partial_pre_g2, true, 2)
ATTN_ENTRY(attn_partial_pre_g3, true, 3)
ATTN_ENTRY(attn_partial_pre_g4, true, 4)

// Argmax of each logit row (lowest id on ties; NaN never wins; 0 if nothing beats -inf).
// grid RB, block 1024.
extern "C" __global__ void argmax_rows(const float* logits, int V, int* out) {
    __shared__ float bv[1024];
    __shared__ int bi[1024];
    wait_previous_kernel();
    const float* row = logits + (size_t)blockIdx.x * V;
    float best = -INFINITY;
    int idx = 0;
    bool found = false;
    for (int k = threadIdx.x; k < V; k += blockDim.x) {
        float v = row[k];
        if (v > best) {
            best = v;
            idx = k;
            found = true;
        }
    }
    bv[threadIdx.x] = best;
    bi[threadIdx.x] = found ? idx : 0x7fffffff;
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
