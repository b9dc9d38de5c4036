// The matmul of every projection: out[m, n] = sum_k A[m, k] * W[n, k], on the tensor cores.
//
// A: the step's activation rows in f16, P planes (P = 1: f16(v); P = 2: hi = f16(v) and
// lo = f16(v - hi), about 22 bits of v), row-major (M, K), plane p at A + p * a_plane. The
// producers write it: `norm_rows` (rmsnorm), the attention, and this kernel's silu epilogue.
// W: f16 (N, K) row-major. Accumulation in f32 (mma.sync m16n8k16).
//
// Batch invariance: output element (m, n) is the sum, in a fixed order, of the products of A
// row m and W row n: the K range is cut into S splits of whole 64-wide k-tiles (S fixed by K,
// N and the device, never by M); inside a split the k-tiles, their four k16 steps and the P
// planes are accumulated in increasing order into one accumulator, and an mma's output element
// depends only on its own row and column. The S split sums are then added in split order
// (s = 0, 1, ...): by a block that computed every split itself (G = S splits per block, the
// running total in registers), or, when the splits are spread over several blocks (each G
// consecutive splits, each split's sum to the workspace), by whichever block of the column
// tile finishes last. The rows per block (16 MT), the columns per block (BN), the splits per
// block (G), the pipeline depth, the warp layout and the order in which blocks run are
// schedule only.
//
// Block: a tile of 16 MT rows x BN columns, WM x WN warps, each warp MT / WM m16 tiles x
// BN / WN columns. k-tiles are staged through shared memory by cp.async, KS k-tiles a stage,
// STAGES deep (deeper for fewer rows: more weight bytes in flight); each row of a staged
// k-tile is 64 halves (8 chunks of 16 bytes), chunk c of row r stored at chunk c ^ (r & 7) so
// that the ldmatrix reads of 8 rows hit 8 different bank groups. The weights of the first stages are requested before
// the wait for the previous kernel (they are never written by a step). The row blocks of a
// column tile and split are neighbours in the launch order (the grid's x axis), so that a step
// of more rows than one block takes reads each weight tile from memory once.
//
// Epilogue (mode), on the finished sums v of a column pair (n, n + 1):
//   0 store       out[m, n..n+2] = v (+ bias)
//   1 accumulate  out[m, n..n+2] += v                               (the residual stream)
//   2 silu        A-format planes a_out[m, n / 2] = silu(v0) * v1   (gate and up interleaved)
//   3 rope        v (+ bias); q and k pairs rotated at the row's position (interleaved pairs,
//                 GGUF layout); out[m, ..] = the rotated row; k, v also to the cache at L + m
//                 (cache layout per layer (nkv, cap, hd)).
// ws: S * M * N floats of split sums (unused when G = S); cnt: one counter per (row block,
// column tile), zero between launches (the finishing block resets it).

#define GEMM_BK 64

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    const int n = valid ? 16 : 0;  // 0: fill the 16 bytes with zeros, read nothing
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(gmem), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N));
}

__device__ __forceinline__ void ldsm_x4(unsigned (&r)[4], const void* p) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
}

__device__ __forceinline__ void mma16816(float (&c)[4], const unsigned (&a)[4], unsigned b0,
                                         unsigned b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ unsigned short f2h(float v) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    return h;
}

// Writes v to element idx of the A-format planes (P = 1 or 2).
__device__ __forceinline__ void store_a(unsigned short* a, size_t plane, int P, size_t idx,
                                        float v) {
    const unsigned short hi = f2h(v);
    a[idx] = hi;
    if (P == 2) {
        float hf;
        asm("cvt.f32.f16 %0, %1;" : "=f"(hf) : "h"(hi));
        a[plane + idx] = f2h(v - hf);
    }
}

// Offset (in halves) of chunk c of row r in a staged tile.
__device__ __forceinline__ int tile_off(int r, int c) { return r * GEMM_BK + ((c ^ (r & 7)) << 3); }

// Requests `cnt` (<= KS) consecutive k-tiles from k-tile kt on into a stage: sub-tile q of the
// weights at sw + q BN 64, of activation plane p at sa + (q P + p) ROWS 64. Consecutive threads
// take consecutive 16-byte chunks of one row across the sub-tiles (longer runs of a weight row).
template <int MT, int P, int THREADS, int KS>
__device__ __forceinline__ void gemm_load_a(unsigned short* sa, const unsigned short* A,
                                            size_t a_plane, int M, int K, int m0, int kt,
                                            int cnt) {
    constexpr int ROWS = 16 * MT;
    constexpr int PER_ROW = 8 * KS;  // 16-byte chunks of a row in a stage
    for (int idx = threadIdx.x; idx < P * ROWS * PER_ROW; idx += THREADS) {
        const int p = idx / (ROWS * PER_ROW), rem = idx % (ROWS * PER_ROW);
        const int r = rem / PER_ROW, cq = rem % PER_ROW;
        const int q = cq >> 3, c = cq & 7;
        if (q >= cnt) continue;
        const int m = m0 + r, k = (kt + q) * GEMM_BK + 8 * c;
        const bool ok = m < M && k < K;
        const unsigned short* src = ok ? A + p * a_plane + (size_t)m * K + k : A;
        cp_async16(sa + (q * P + p) * ROWS * GEMM_BK + tile_off(r, c), src, ok);
    }
}

template <int BN, int THREADS, int KS>
__device__ __forceinline__ void gemm_load_w(unsigned short* sw, const unsigned short* W, int N,
                                            int K, int n0, int kt, int cnt) {
    constexpr int PER_ROW = 8 * KS;
#pragma unroll
    for (int it = 0; it < BN * PER_ROW / THREADS; ++it) {
        const int idx = threadIdx.x + it * THREADS;
        const int r = idx / PER_ROW, cq = idx % PER_ROW;
        const int q = cq >> 3, c = cq & 7;
        if (q >= cnt) continue;
        const int n = n0 + r, k = (kt + q) * GEMM_BK + 8 * c;
        const bool ok = n < N && k < K;
        cp_async16(sw + q * BN * GEMM_BK + tile_off(r, c), ok ? W + (size_t)n * K + k : W, ok);
    }
}

struct GemmEpilogue {
    int mode;
    float* out;
    int ldo;
    const float* bias;
    unsigned short* a_out;
    size_t a_out_plane;
    // rope (mode 3)
    const int* io;
    int QB;
    const float* cos_t;
    const float* sin_t;
    float* kc;
    float* vc;
    int nh, nkv, hd, cap;
};

// What a column pair's epilogue reads besides its sums (requested for a batch of pairs before
// any of them is written, so that a thread's loads are in flight together): the bias (when the
// epilogue adds one), and in mode 1 out's values, in mode 3 the cache length and, for a q or k
// pair, the cosine and sine of its angle.
struct GemmPairIn {
    float b0, b1;
    float x0, x1;  // mode 1: out[m, n..n+2]; mode 3: cos, sin
    int L;         // mode 3
};

// Whether column n of the qkv projection (mode 3) is a q or k column, rotated by RoPE (the v
// columns are not).
__device__ __forceinline__ bool gemm_rotated(const GemmEpilogue& e, int n) {
    return n < (e.nh + e.nkv) * e.hd;
}

__device__ __forceinline__ GemmPairIn gemm_pair_in(const GemmEpilogue& e, int m, int n) {
    GemmPairIn in{0.f, 0.f, 0.f, 0.f, 0};
    if (e.bias && e.mode != 2) {
        in.b0 = e.bias[n];
        in.b1 = e.bias[n + 1];
    }
    if (e.mode == 1) {
        const float* o = e.out + (size_t)m * e.ldo + n;
        in.x0 = o[0];
        in.x1 = o[1];
    } else if (e.mode == 3) {
        in.L = e.io[0];
        if (gemm_rotated(e, n)) {
            const int half = e.hd / 2, j = (n % e.hd) / 2;
            const int pos = io_pos(e.io, e.QB)[m];
            in.x0 = e.cos_t[(size_t)pos * half + j];
            in.x1 = e.sin_t[(size_t)pos * half + j];
        }
    }
    return in;
}

// The epilogue of a column pair (m, n), (m, n + 1) with finished sums v0, v1 and its reads `in`.
template <int P>
__device__ __forceinline__ void gemm_pair_out(const GemmEpilogue& e, int m, int n, int N,
                                              float v0, float v1, const GemmPairIn& in) {
    if (e.bias && e.mode != 2) {
        v0 += in.b0;
        v1 += in.b1;
    }
    switch (e.mode) {
        case 0: {
            float* o = e.out + (size_t)m * e.ldo + n;
            o[0] = v0;
            o[1] = v1;
            break;
        }
        case 1: {
            float* o = e.out + (size_t)m * e.ldo + n;
            o[0] = in.x0 + v0;
            o[1] = in.x1 + v1;
            break;
        }
        case 2: {
            const float act = v0 / (1.f + expf(-v0)) * v1;
            store_a(e.a_out, e.a_out_plane, P, (size_t)m * (N / 2) + n / 2, act);
            break;
        }
        default: {
            if (gemm_rotated(e, n)) {
                const float c = in.x0, s = in.x1;
                const float a = v0, b = v1;
                v0 = fmaf(a, c, -(b * s));
                v1 = fmaf(a, s, b * c);
            }
            float* o = e.out + (size_t)m * e.ldo + n;
            o[0] = v0;
            o[1] = v1;
            if (n >= e.nh * e.hd) {
                const int t = n - e.nh * e.hd;
                const bool is_v = t >= e.nkv * e.hd;
                const int tt = is_v ? t - e.nkv * e.hd : t;
                const int h = tt / e.hd, d = tt - h * e.hd;
                float* dst = (is_v ? e.vc : e.kc) + ((size_t)h * e.cap + in.L + m) * e.hd + d;
                dst[0] = v0;
                dst[1] = v1;
            }
            break;
        }
    }
}

template <int P>
__device__ __forceinline__ void gemm_finish(const GemmEpilogue& e, int m, int n, int N, float v0,
                                            float v1) {
    gemm_pair_out<P>(e, m, n, N, v0, v1, gemm_pair_in(e, m, n));
}

// The epilogue of a block's finished tile (ROWS rows from m0, BN columns from n0): thread idx
// takes column pair idx % (BN / 2) of row idx / (BN / 2), so that consecutive threads write
// consecutive columns; `sums(m, n)` gives the pair's finished sums (a float2). In a tile taller
// than 16 rows a thread reads the sums and epilogue inputs of GEMM_FINISH_BATCH pairs before it
// writes any of them, so that its loads wait for memory together rather than one pair after
// another (a 16-row tile, whose threads have at most a few pairs, does one at a time: batching
// slowed the one-row steps of small models by 3-4 %).
#define GEMM_FINISH_BATCH 4
template <int P, int ROWS, int BN, int THREADS, typename Sums>
__device__ __forceinline__ void gemm_finish_pairs(int M, int N, int m0, int n0,
                                                  const GemmEpilogue& e, Sums sums) {
    constexpr int U = ROWS > 16 ? GEMM_FINISH_BATCH : 1;
    const int pairs = min(ROWS, M - m0) * (BN / 2);  // those of the tile's rows in the matrix
    for (int i0 = threadIdx.x; i0 < pairs; i0 += U * THREADS) {
        int mm[U], nn[U];
        bool ok[U];
        float2 v[U];
        GemmPairIn in[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int idx = i0 + u * THREADS;
            const int r = idx / (BN / 2), cp = idx - r * (BN / 2);
            mm[u] = m0 + r;
            nn[u] = n0 + 2 * cp;
            ok[u] = idx < pairs && nn[u] < N;
            if (ok[u]) {
                v[u] = sums(mm[u], nn[u]);
                in[u] = gemm_pair_in(e, mm[u], nn[u]);
            }
        }
#pragma unroll
        for (int u = 0; u < U; ++u)
            if (ok[u]) gemm_pair_out<P>(e, mm[u], nn[u], N, v[u].x, v[u].y, in[u]);
    }
}

// The splits' sums of a block's tile (16 MT rows from m0, BN columns from n0), each written to the
// workspace by one block of the column tile: the last of those blocks to finish adds them in
// split order and finishes the tile; the others return.
template <int P, int ROWS, int BN, int THREADS>
__device__ __forceinline__ void gemm_finish_splits(const float* ws, int* cnt, int M, int N, int S,
                                                   int m0, int n0, const GemmEpilogue& e) {
    const int tid = threadIdx.x;
    __shared__ int last;
    __threadfence();
    __syncthreads();
    {
        int* c = cnt + blockIdx.z * gridDim.x + blockIdx.x;
        if (tid == 0) last = atomicAdd(c, 1) == (int)gridDim.y - 1;
        __syncthreads();
        if (!last) return;
        if (tid == 0) *c = 0;
        __threadfence();
    }
    gemm_finish_pairs<P, ROWS, BN, THREADS>(M, N, m0, n0, e, [&](int m, int n) {
        // Eight split sums requested at a time (independent loads in flight), then added in
        // split order.
        const float2* src = (const float2*)(ws + (size_t)m * N + n);
        const size_t stride = (size_t)M * N / 2;  // float2s from one split's sums to the next
        float2 v = __ldcg(src);
        for (int s0 = 1; s0 < S; s0 += 8) {
            float2 p2[8];
#pragma unroll
            for (int u = 0; u < 8; ++u)
                if (s0 + u < S) p2[u] = __ldcg(src + (s0 + u) * stride);
#pragma unroll
            for (int u = 0; u < 8; ++u) {
                if (s0 + u < S) {
                    v.x += p2[u].x;
                    v.y += p2[u].y;
                }
            }
        }
        return v;
    });
}

// The splits of a block (split s of the S holds the k-tiles [s T / S, (s + 1) T / S) of the K
// range; this block the splits [s_begin, s_end), G = ceil(S / gridDim.y) of them, and their
// k-tiles from kt0, nk of them). `whole`: the block adds up every split itself (one block
// along y).
struct BlockSplits {
    int T, S, s_begin, s_end, kt0, nk;
    bool whole;

    __device__ __forceinline__ BlockSplits(int K, int S_) : S(S_) {
        T = (K + GEMM_BK - 1) / GEMM_BK;
        const int G = (S + (int)gridDim.y - 1) / (int)gridDim.y;
        s_begin = blockIdx.y * G;
        s_end = min(S, s_begin + G);
        whole = gridDim.y == 1;
        kt0 = start(s_begin);
        nk = start(s_end) - kt0;
    }
    // The first k-tile of split sp.
    __device__ __forceinline__ int start(int sp) const { return (int)((long long)sp * T / S); }
};

template <int MT, int P, int BN, int STAGES, int WM, int WN, int KS>
__device__ __forceinline__ void gemm_impl(const unsigned short* __restrict__ A, size_t a_plane,
                                          const unsigned short* __restrict__ W, int M, int N,
                                          int K, int S, float* ws, int* cnt,
                                          const GemmEpilogue& e) {
    constexpr int THREADS = 32 * WM * WN;
    constexpr int MTW = MT / WM;          // m16 tiles per warp
    constexpr int NTW = BN / (8 * WN);    // n8 tiles per warp
    static_assert(MT % WM == 0 && NTW % 2 == 0 && NTW >= 2, "warp tile");
    constexpr int ROWS = 16 * MT;
    constexpr int W_STAGE = KS * BN * GEMM_BK;  // KS k-tiles of weights, then of activations
    constexpr int STAGE = W_STAGE + KS * P * ROWS * GEMM_BK;
    extern __shared__ __align__(16) unsigned short smem[];

    const int n0 = blockIdx.z * BN, m0 = blockIdx.x * ROWS;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp / WN, wn = warp % WN;
    const BlockSplits bs(K, S);
    const int s_begin = bs.s_begin, kt0 = bs.kt0, nk = bs.nk;
    const bool whole = bs.whole;

    const int nst = (nk + KS - 1) / KS;  // pipeline stages of KS k-tiles (the last may be short)
    auto stage_tiles = [&](int st) { return min(KS, nk - st * KS); };

    // Weights of the first stages before the wait (nothing in a step writes them).
#pragma unroll
    for (int st = 0; st < STAGES - 1; ++st) {
        if (st < nst)
            gemm_load_w<BN, THREADS, KS>(smem + st * STAGE, W, N, K, n0, kt0 + st * KS,
                                     stage_tiles(st));
        cp_async_commit();
    }
    wait_previous_kernel();
#pragma unroll
    for (int st = 0; st < STAGES - 1; ++st) {
        if (st < nst)
            gemm_load_a<MT, P, THREADS, KS>(smem + st * STAGE + W_STAGE, A, a_plane, M, K, m0,
                                        kt0 + st * KS, stage_tiles(st));
        cp_async_commit();
    }

    float acc[MTW][NTW][4], tot[MTW][NTW][4];
#pragma unroll
    for (int i = 0; i < MTW; ++i)
#pragma unroll
        for (int j = 0; j < NTW; ++j)
#pragma unroll
            for (int c = 0; c < 4; ++c) acc[i][j][c] = tot[i][j][c] = 0.f;
    const int g = lane >> 2, t4 = lane & 3;
    int s_cur = s_begin, split_end = bs.start(s_begin + 1) - kt0;

    for (int st = 0; st < nst; ++st) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        {
            const int nxt = st + STAGES - 1;
            if (nxt < nst) {
                unsigned short* sn = smem + (nxt % STAGES) * STAGE;
                gemm_load_w<BN, THREADS, KS>(sn, W, N, K, n0, kt0 + nxt * KS, stage_tiles(nxt));
                gemm_load_a<MT, P, THREADS, KS>(sn + W_STAGE, A, a_plane, M, K, m0, kt0 + nxt * KS,
                                            stage_tiles(nxt));
            }
            cp_async_commit();
        }
#pragma unroll
        for (int q = 0; q < KS; ++q) {
            const int kt = st * KS + q;
            if (kt >= nk) break;
            const unsigned short* sw = smem + (st % STAGES) * STAGE + q * BN * GEMM_BK;
            const unsigned short* sa = smem + (st % STAGES) * STAGE + W_STAGE + q * P * ROWS * GEMM_BK;
#pragma unroll
            for (int kk = 0; kk < GEMM_BK / 16; ++kk) {
                unsigned b[NTW][2];
#pragma unroll
                for (int np = 0; np < NTW / 2; ++np) {
                    unsigned r[4];
                    const int row = wn * (NTW * 8) + np * 16 + (lane & 7) + ((lane >> 4) << 3);
                    ldsm_x4(r, sw + tile_off(row, 2 * kk + ((lane >> 3) & 1)));
                    b[2 * np][0] = r[0];
                    b[2 * np][1] = r[1];
                    b[2 * np + 1][0] = r[2];
                    b[2 * np + 1][1] = r[3];
                }
#pragma unroll
                for (int p = 0; p < P; ++p) {
#pragma unroll
                    for (int mi = 0; mi < MTW; ++mi) {
                        unsigned a[4];
                        const int row = (wm * MTW + mi) * 16 + (lane & 7) + (((lane >> 3) & 1) << 3);
                        ldsm_x4(a, sa + p * ROWS * GEMM_BK + tile_off(row, 2 * kk + (lane >> 4)));
#pragma unroll
                        for (int ni = 0; ni < NTW; ++ni) mma16816(acc[mi][ni], a, b[ni][0], b[ni][1]);
                    }
                }
            }
            if (kt + 1 == split_end) {
                // Split s_cur is summed: into the running total (added in split order) or to the
                // workspace; the accumulators start again from zero.
#pragma unroll
                for (int mi = 0; mi < MTW; ++mi) {
#pragma unroll
                    for (int ni = 0; ni < NTW; ++ni) {
                        if (whole) {
#pragma unroll
                            for (int c = 0; c < 4; ++c)
                                tot[mi][ni][c] = s_cur == 0 ? acc[mi][ni][c] : tot[mi][ni][c] + acc[mi][ni][c];
                        } else {
                            const int n = n0 + wn * (NTW * 8) + ni * 8 + 2 * t4;
#pragma unroll
                            for (int hf = 0; hf < 2; ++hf) {
                                const int m = m0 + (wm * MTW + mi) * 16 + g + 8 * hf;
                                if (m < M && n < N)
                                    *(float2*)(ws + ((size_t)s_cur * M + m) * N + n) =
                                        make_float2(acc[mi][ni][2 * hf], acc[mi][ni][2 * hf + 1]);
                            }
                        }
#pragma unroll
                        for (int c = 0; c < 4; ++c) acc[mi][ni][c] = 0.f;
                    }
                }
                ++s_cur;
                split_end = bs.start(s_cur + 1) - kt0;
            }
        }
    }
    cp_async_wait<0>();

    if (whole) {
        // Every split added here, in split order: the values the workspace path would add.
#pragma unroll
        for (int mi = 0; mi < MTW; ++mi) {
#pragma unroll
            for (int ni = 0; ni < NTW; ++ni) {
                const int n = n0 + wn * (NTW * 8) + ni * 8 + 2 * t4;
#pragma unroll
                for (int hf = 0; hf < 2; ++hf) {
                    const int m = m0 + (wm * MTW + mi) * 16 + g + 8 * hf;
                    if (m < M && n < N)
                        gemm_finish<P>(e, m, n, N, tot[mi][ni][2 * hf], tot[mi][ni][2 * hf + 1]);
                }
            }
        }
        return;
    }
    gemm_finish_splits<P, ROWS, BN, THREADS>(ws, cnt, M, N, S, m0, n0, e);
}

// grid (ceil(M / (16 MT)), ceil(S / G), ceil(N / BN)) for G splits per block: the row blocks of
// a column tile's split are launched next to each other, so that they run together and read
// its weights from memory once (the later ones from the L2 cache). Block
// 32 * WM * WN, dynamic shared memory STAGES * KS * (BN + P * 16 MT) * 64 halves. K % 8 == 0,
// N even, 1 <= S <= ceil(K / 64). Named gemm_p{P}_m{MT}_n{BN}_s{STAGES}_w{WM}x{WN}_k{KS}.
#define GEMM_ENTRY(mt, p, bn, st, wm, wn, ks)                                                   \
    extern "C" __global__ void __launch_bounds__(32 * wm * wn)                                  \
        gemm_p##p##_m##mt##_n##bn##_s##st##_w##wm##x##wn##_k##ks(                               \
            const unsigned short* A, size_t a_plane, const unsigned short* W, int M, int N,     \
            int K, int S, float* ws, int* cnt, int mode, float* out, int ldo,                   \
            const float* bias, unsigned short* a_out, size_t a_out_plane, const int* io,        \
            int QB, const float* cos_t, const float* sin_t, float* kc, float* vc, int nh,       \
            int nkv, int hd, int cap) {                                                         \
        const GemmEpilogue e{mode, out, ldo, bias, a_out, a_out_plane, io, QB, cos_t,           \
                             sin_t, kc, vc, nh, nkv, hd, cap};                                  \
        gemm_impl<mt, p, bn, st, wm, wn, ks>(A, a_plane, W, M, N, K, S, ws, cnt, e);            \
    }
// The tiles of MMA_TILES in kernels.rs (the production path off compute capability 9.0).
// Other shapes, and P = 2 (hi/lo activations), are variants in dev/cuda/gemm_variants.cu.
#ifndef GEMM_NO_PRODUCTION
GEMM_ENTRY(1, 1, 128, 4, 1, 4, 1)
GEMM_ENTRY(2, 1, 128, 4, 2, 4, 1)
GEMM_ENTRY(4, 1, 128, 4, 2, 4, 1)
GEMM_ENTRY(8, 1, 128, 3, 4, 2, 1)
#endif

// A-format rows of rmsnorm(x[row]) * g, row = m or io[rowsel_off + m] (rowsel_off >= 0). The
// matmul after it may start at once (`start_next_kernel_then_wait`).
// grid M, block 256, dynamic shared memory K floats (the row). K % 4 == 0. The sum of squares:
// thread t sums the float4s t, t + 256, ... in order (each x*x + y*y + z*z + w*w by fmaf in
// that order), then the warp's xor tree, then the 8 warp sums in warp order.
extern "C" __global__ void __launch_bounds__(256)
    norm_rows(const float* x, int ldx, const int* io, int rowsel_off, const float* g, float eps,
              int K, unsigned short* a, size_t a_plane, int P) {
    extern __shared__ __align__(16) float xs[];
    const int m = blockIdx.x;
    const int row = rowsel_off >= 0 ? io[rowsel_off + m] : m;
    start_next_kernel_then_wait();
    const float4* xr = (const float4*)(x + (size_t)row * ldx);
    const int K4 = K / 4;
    float ss = 0.f;
#pragma unroll 8
    for (int k4 = threadIdx.x; k4 < K4; k4 += blockDim.x) {
        const float4 v = xr[k4];
        ((float4*)xs)[k4] = v;
        ss = fmaf(v.x, v.x, ss);
        ss = fmaf(v.y, v.y, ss);
        ss = fmaf(v.z, v.z, ss);
        ss = fmaf(v.w, v.w, ss);
    }
    ss = warp_sum(ss);
    __shared__ float wsum[8];
    __shared__ float inv;
    if ((threadIdx.x & 31) == 0) wsum[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x == 0) {
        float t = wsum[0];
        for (int w = 1; w < 8; ++w) t += wsum[w];
        inv = rsqrtf(t / (float)K + eps);
    }
    __syncthreads();
#pragma unroll 4
    for (int k = threadIdx.x; k < K; k += blockDim.x)
        store_a(a, a_plane, P, (size_t)m * K + k, xs[k] * inv * g[k]);
}
