// Attention of a step's rows over the KV cache and their in-step chains (flash-decoding:
// split over keys in fixed chunks, merged in split order).
//
// Row i sees n_i keys: the L cache keys (j < L: cache position j), then its in-step chain
// (j >= L: cache position L + list_i[j - L], or L + (j - L) for a causal row). L is the cache
// before the step: io[0] - io[3], where io[3] rows of the same step (earlier pieces of a step
// longer than one pass) are already in the cache and reached through the lists. Keys are
// numbered by j, and split s holds j in [s CHUNK, (s + 1) CHUNK): a row's keys, their order
// and their chunks are those the same token would see decoded alone after its chain, so its
// result is bit-identical to plain decoding's.
//
// A block computes one chunk for QT query vectors of one kv head: vector v = i * G + g is row i
// with query head kvh * G + g (G = heads per kv head), so the rows of a step and the heads of a
// group share every load of a cache key and value (staged in shared memory); in-step keys are
// read per row. Each vector's arithmetic depends on its own row only:
//   score_j = ((d0 + d1) + (d2 + d3)) * scale, d_e summing q[d] k_j[d] over d = e mod 4 in
//             increasing d;
//   m = max_j score_j (exact in any order); p_j = exp(score_j - m);
//   l = sum of p_j: lane t of a warp sums j = t, t + 32, ... in order, then the xor tree;
//   a[d] = sum_j p_j v_j[d] in increasing j.
// part[(i, h, s)] = (m, l, 2 floats of padding, a[hd]); the last block of the tile to finish merges every vector's
// splits in split order: out = (sum_s a_s e_s) / (sum_s l_s e_s), e_s = exp(m_s - max_s m_s),
// written in A format (the o projection's input). done[tile, kvh] counts finished blocks,
// zero between launches (the merging block resets it).
//
// The schedule (none of it changes an addition's order). With more than one tile of vectors,
// splits run last first (the one with the in-step keys, chained through the step's lists,
// takes longest). The chunk's cache keys are requested in two groups of ATT_KS before the wait
// for the qkv kernel; as soon as a group's keys are scored its buffer takes the group's values.
// Scores: thread (jj, vg) scores cache key jj against vectors vg, vg + 4, ..., reading each
// float4 of the key once for all of them (warps without a vector skip it); the in-step
// (vector, key) pairs that load are spread over every thread of the block, a pair past its
// vector's keys scoring -inf without a load. Warp w takes the max, exponentials and sum of
// vectors w, w + 8, ..., all at once (`AttSoftmaxInterleaved`). Values (`AttValuesInOrder`):
// thread (vg, d4) owns float4 column d4 of vectors vg, vg + VG, ..., cache values from the
// staging buffers with each vector's weights read four keys at a time, in-step values requested
// a few keys at a time before the first of them is used. Merge: one thread per vector reads
// each split's (m, l) once, then thread (vector, c4) sums float4 c4 of a[], the splits'
// partials requested 8 at a time.
//
// grid (ceil(QB G / QT), nkv, S), block 256 (two blocks an SM), dynamic shared memory
// `attn_smem(HD, QT)`.

#define ATT_QT 32   // query vectors per block: the most (the production entries take 8, 16 or 32)
#define ATT_KS 64   // keys (or values) staged at a time: CHUNK / ATT_KS = 2 groups
#define ATT_THREADS 256

template <int HD, int QT = ATT_QT>
struct AttSmem {
    static constexpr int KLD = HD + 4;  // padded row of a staged key or value
    static constexpr int Q = 0;
    static constexpr int BUF = Q + QT * HD;  // two staging buffers of ATT_KS rows
    static constexpr int SC = BUF + 2 * ATT_KS * KLD;
    static constexpr int FLOATS = SC + QT * CHUNK;
};

// Requests (cp.async) the keys or values j0 .. j0 + ATT_KS - 1 that lie in the cache (j < L)
// into `dst`, as one group.
template <int HD>
__device__ __forceinline__ void att_stage(float* dst, const float* base, int j0, int L) {
    constexpr int KLD = AttSmem<HD>::KLD;
    constexpr int H4 = HD / 4;
#pragma unroll
    for (int it = 0; it < ATT_KS * H4 / ATT_THREADS; ++it) {
        const int t = threadIdx.x + it * ATT_THREADS;
        const int jj = t / H4, d4 = t - jj * H4;
        const int j = j0 + jj;
        if (j < L) cp_async16(dst + jj * KLD + 4 * d4, base + (size_t)j * HD + 4 * d4, true);
    }
    cp_async_commit();
}

// The score of an in-step key (`k`, in global memory) against the query `q` (shared memory):
// ((d0 + d1) + (d2 + d3)) * scale, d_e summing q[d] k[d] over d = e mod 4 in increasing d, the
// arithmetic of the staged cache keys' scores.
template <int HD>
__device__ __forceinline__ float att_score_in_step(const float* q, const float* k, float scale) {
    float d0 = 0.f, d1 = 0.f, d2 = 0.f, d3 = 0.f;
#pragma unroll 16
    for (int d4 = 0; d4 < HD / 4; ++d4) {
        const float4 k4 = *(const float4*)(k + 4 * d4);
        const float4 q4 = *(const float4*)(q + 4 * d4);
        d0 = fmaf(q4.x, k4.x, d0);
        d1 = fmaf(q4.y, k4.y, d1);
        d2 = fmaf(q4.z, k4.z, d2);
        d3 = fmaf(q4.w, k4.w, d3);
    }
    return ((d0 + d1) + (d2 + d3)) * scale;
}

// acc += w x, lane by lane (one fmaf each: the value sums' step).
__device__ __forceinline__ void fma4(float4& acc, float w, const float4& x) {
    acc.x = fmaf(w, x.x, acc.x);
    acc.y = fmaf(w, x.y, acc.y);
    acc.z = fmaf(w, x.z, acc.z);
    acc.w = fmaf(w, x.w, acc.w);
}

// The chunk's weighted values, a[d] = sum_j p_j v_j[d] in increasing j, for every vector of the
// block, written to part_a(v) (float4s). Called by every thread once the chunk's cache values
// are in shared memory and every weight sc[v * CHUNK + j - start] is final. Thread (vg, d4) owns
// float4 column d4 of vectors vg, vg + VG, ...; cache values come from the staging buffers
// (the weights of KW keys read at once), in-step values (at `key_pos(v, j)`) are requested
// IN_BATCH keys at a time. `attn_tile` takes the value step as a parameter
// (dev/cuda/attention_variants.cu has one that sums in another order, using `scratch`: the
// queries' space, free by then).
template <int KW>
struct AttValuesInOrderBy {
    template <int HD, int QT, typename KeyPos, typename PartA>
    static __device__ __forceinline__ void sum(const float* sc, float* const* buf, float* scratch,
                                               const float* vbase, const int* vn, KeyPos key_pos,
                                               PartA part_a, int nv, int L, int start, int nmax) {
        constexpr int KLD = AttSmem<HD>::KLD;
        constexpr int H4 = HD / 4;
        constexpr int VG = ATT_THREADS / H4;
        constexpr int PER = (QT + VG - 1) / VG;
        const int tid = threadIdx.x, d4 = tid % H4, vg = tid / H4;
        float4 acc[PER];
#pragma unroll
        for (int u = 0; u < PER; ++u) acc[u] = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
        for (int grp = 0; grp < 2; ++grp) {
            const float* vs = buf[grp];
            const int j0 = start + grp * ATT_KS;
            // Keys jj < jc are cache keys (staged), seen by every vector (vn > L): KW at a
            // time, each vector's KW weights read at once, then the rest one by one.
            const int jc = min(max(L - j0, 0), ATT_KS);
            int jj = 0;
#pragma unroll 2
            for (; jj + KW <= jc; jj += KW) {
                float w[PER][KW];
#pragma unroll
                for (int u = 0; u < PER; ++u) {
                    const int v = vg + u * VG;
                    const float* ws = sc + v * CHUNK + grp * ATT_KS + jj;
                    if (v >= nv) continue;
                    if constexpr (KW == 4) {
                        const float4 t = *(const float4*)ws;
                        w[u][0] = t.x;
                        w[u][1] = t.y;
                        w[u][2] = t.z;
                        w[u][3] = t.w;
                    } else {
#pragma unroll
                        for (int q = 0; q < KW; ++q) w[u][q] = ws[q];
                    }
                }
#pragma unroll
                for (int q = 0; q < KW; ++q) {
                    const float4 x = *(const float4*)(vs + (jj + q) * KLD + 4 * d4);
#pragma unroll
                    for (int u = 0; u < PER; ++u) {
                        const int v = vg + u * VG;
                        if (v < nv) fma4(acc[u], w[u][q], x);
                    }
                }
            }
            for (; jj < jc; ++jj) {
#pragma unroll
                for (int u = 0; u < PER; ++u) {
                    const int v = vg + u * VG;
                    if (v < nv) {
                        const float w = sc[v * CHUNK + grp * ATT_KS + jj];
                        const float4 x = *(const float4*)(vs + jj * KLD + 4 * d4);
                        fma4(acc[u], w, x);
                    }
                }
            }
            constexpr int IN_BATCH = 4;
            for (int jb = jc; jb < ATT_KS && j0 + jb < nmax; jb += IN_BATCH) {
                float4 x[PER][IN_BATCH];
                bool ok[PER][IN_BATCH];
#pragma unroll
                for (int u = 0; u < PER; ++u) {
                    const int v = vg + u * VG;
#pragma unroll
                    for (int q = 0; q < IN_BATCH; ++q) {
                        const int j = j0 + jb + q;
                        ok[u][q] = jb + q < ATT_KS && v < nv && j < vn[v];
                        if (ok[u][q])
                            x[u][q] = *((const float4*)(vbase + (size_t)key_pos(v, j) * HD) + d4);
                    }
                }
#pragma unroll
                for (int u = 0; u < PER; ++u) {
                    const int v = vg + u * VG;
#pragma unroll
                    for (int q = 0; q < IN_BATCH; ++q) {
                        if (ok[u][q])
                            fma4(acc[u], sc[v * CHUNK + grp * ATT_KS + jb + q], x[u][q]);
                    }
                }
            }
        }
#pragma unroll
        for (int u = 0; u < PER; ++u) {
            const int v = vg + u * VG;
            if (v < nv && start < vn[v]) part_a(v)[d4] = acc[u];
        }
    }
};

// The production value step: four weights a float4 (a quarter of the shared-memory reads of
// weights one at a time, AttValuesInOrderBy<1>: the same additions).
using AttValuesInOrder = AttValuesInOrderBy<4>;

// The chunk's softmax statistics of every vector: m = max_j score_j, p_j = exp(score_j - m)
// in place of the scores (0 past the vector's keys), l = sum of p_j (lane t of a warp sums
// j = t, t + 32, ... in order, then the xor tree), (m, l) to the vector's partial. Warp w takes
// vectors w, w + 8, ..., all of them at once (their loads, exponentials and reductions
// interleave; each vector's arithmetic is its own). `attn_tile` takes it as a parameter
// (dev/cuda/attention_variants.cu has one that takes the vectors one after another).
struct AttSoftmaxInterleaved {
    template <int HD, int QT>
    static __device__ __forceinline__ void run(float* sc, float* part, const int* vrow,
                                               const int* vhead, const int* vn, int nv, int nh,
                                               int S, int s, int start) {
        constexpr int WARPS = ATT_THREADS / 32;
        constexpr int SV = (QT + WARPS - 1) / WARPS;  // vectors a warp
        constexpr int PL = CHUNK / 32;                    // scores a lane, per vector
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        float x[SV][PL], m[SV], l[SV];
#pragma unroll
        for (int u = 0; u < SV; ++u) {
            const int v = warp + u * WARPS;
            m[u] = -INFINITY;
#pragma unroll
            for (int c = 0; c < PL; ++c) {
                x[u][c] = v < nv ? sc[v * CHUNK + lane + 32 * c] : -INFINITY;
                m[u] = fmaxf(m[u], x[u][c]);
            }
        }
#pragma unroll
        for (int u = 0; u < SV; ++u) m[u] = warp_max(m[u]);
#pragma unroll
        for (int u = 0; u < SV; ++u) {
            const int v = warp + u * WARPS;
            l[u] = 0.f;
            if (v >= nv) continue;
#pragma unroll
            for (int c = 0; c < PL; ++c) {
                const int j = lane + 32 * c;
                const float p = start + j < vn[v] ? expf(x[u][c] - m[u]) : 0.f;
                sc[v * CHUNK + j] = p;
                l[u] += p;
            }
        }
#pragma unroll
        for (int u = 0; u < SV; ++u) l[u] = warp_sum(l[u]);
        if (lane == 0) {
#pragma unroll
            for (int u = 0; u < SV; ++u) {
                const int v = warp + u * WARPS;
                if (v < nv) {
                    float* dst = part + (((size_t)vrow[v] * nh + vhead[v]) * S + s) * (HD + 4);
                    dst[0] = m[u];
                    dst[1] = l[u];  // [2], [3]: padding, so that a[] is 16-byte aligned
                }
            }
        }
    }
};

template <int HD, int QT, typename Values, typename Softmax>
__device__ __forceinline__ void attn_tile(const float* qkv, const int* io, int QB,
                                          const float* kc, const float* vc, float* part,
                                          int* done, unsigned short* out, size_t out_plane, int P,
                                          int nh, int nkv, int cap, int S, float scale) {
    using SM = AttSmem<HD, QT>;
    constexpr int KLD = SM::KLD;
    constexpr int H4 = HD / 4;
    static_assert(CHUNK == 2 * ATT_KS, "two staged groups per chunk");
    static_assert(QT <= 32 && (QT & (QT - 1)) == 0 && QT % (ATT_THREADS / ATT_KS) == 0,
                  "one warp scans the vectors' in-step pair counts (`pair0`), a binary search "
                  "finds a pair's vector, and the score threads take QT / 4 vectors each");
    extern __shared__ __align__(16) float sm[];
    float* qs = sm + SM::Q;
    float* buf[2] = {sm + SM::BUF, sm + SM::BUF + ATT_KS * KLD};
    float* sc = sm + SM::SC;
    __shared__ int vrow[QT], vhead[QT], vn[QT];
    __shared__ const int* vlist[QT];
    __shared__ int last;
    __shared__ int pair0[QT + 1];  // prefix sums of the vectors' in-step pairs of a group

    const int G = nh / nkv;
    // With more than one tile of vectors, splits run in reverse order of blockIdx.z: the last
    // split, which holds the in-step keys (their loads chained through the step's lists),
    // starts first, and the cache-only splits fill the device around it instead of after it.
    // With one tile (at most QT vectors: rows times heads per kv head) the cache-only
    // splits start first, so that their keys are requested first while the qkv kernel runs.
    const int kvh = blockIdx.y, s = gridDim.x > 1 ? S - 1 - blockIdx.z : blockIdx.z;
    const int v0 = blockIdx.x * QT;
    const int nv = min(QT, QB * G - v0);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int L = io[0] - io[3];  // the cache before the step (earlier pieces are in-step keys)
    const int start = s * CHUNK;
    if (tid < QT) {
        const int v = v0 + tid;
        const int i = v / G;
        vrow[tid] = i;
        vhead[tid] = kvh * G + (v - i * G);
        const int c = tid < nv ? io_vn(io, QB)[i] : 0;
        vn[tid] = tid < nv ? L + (c < 0 ? i + 1 : c) : 0;
        vlist[tid] = c < 0 ? nullptr : io_vl(io, QB, min(i, QB - 1));
    }
    __syncthreads();
    // Splits this tile uses: those of its row with the most keys.
    int nmax = 0;
    for (int v = 0; v < nv; ++v) nmax = max(nmax, vn[v]);
    const int ns_tile = (nmax + CHUNK - 1) / CHUNK;
    const float* kbase = kc + (size_t)kvh * cap * HD;
    const float* vbase = vc + (size_t)kvh * cap * HD;
    if (start >= nmax) {
        wait_previous_kernel();
        return;
    }
    // The chunk's cache keys were written by earlier steps: request them before the wait for
    // the qkv kernel.
    att_stage<HD>(buf[0], kbase, start, L);
    att_stage<HD>(buf[1], kbase, start + ATT_KS, L);
    wait_previous_kernel();

    const int ld = (nh + 2 * nkv) * HD;
    for (int t = tid; t < nv * H4; t += ATT_THREADS) {
        const int v = t / H4, d4 = t - v * H4;
        *(float4*)(qs + v * HD + 4 * d4) =
            *((const float4*)(qkv + (size_t)vrow[v] * ld + vhead[v] * HD) + d4);
    }
    // Position in the cache of key j of vector v (j >= L: its in-step chain).
    auto key_pos = [&](int v, int j) -> int {
        if (j < L) return j;
        return L + (vlist[v] ? vlist[v][j - L] : j - L);
    };

    // Scores, one staged group at a time: thread (jj, vg) scores key jj against vectors vg,
    // vg + 4, .... As soon as a group's keys are scored, its buffer takes the values.
#pragma unroll
    for (int grp = 0; grp < 2; ++grp) {
        cp_async_wait<1>();  // this group's keys are in (the next group may still be pending)
        __syncthreads();
        const float* ks = buf[grp];
        const int kb = grp * ATT_KS;
        const int jj = tid % ATT_KS, vg = tid / ATT_KS;
        const int j = start + kb + jj;
        constexpr int VS = ATT_THREADS / ATT_KS;  // vectors vg, vg + VS, ...
        constexpr int PERV = QT / VS;
        if (j < L) {
            // A cache key, shared by every vector: each float4 of it is read once for all.
            const float* kr = ks + jj * KLD;
            float dd[PERV][4];
#pragma unroll
            for (int u = 0; u < PERV; ++u) dd[u][0] = dd[u][1] = dd[u][2] = dd[u][3] = 0.f;
            const int nu = (nv - vg + VS - 1) / VS;  // vectors of this thread (warp-uniform)
#pragma unroll 2
            for (int d4 = 0; d4 < H4 && nu > 0; ++d4) {
                const float4 k4 = *(const float4*)(kr + 4 * d4);
#pragma unroll
                for (int u = 0; u < PERV; ++u) {
                    if (u < nu) {
                        const float4 q4 = *(const float4*)(qs + (vg + u * VS) * HD + 4 * d4);
                        dd[u][0] = fmaf(q4.x, k4.x, dd[u][0]);
                        dd[u][1] = fmaf(q4.y, k4.y, dd[u][1]);
                        dd[u][2] = fmaf(q4.z, k4.z, dd[u][2]);
                        dd[u][3] = fmaf(q4.w, k4.w, dd[u][3]);
                    }
                }
            }
#pragma unroll
            for (int u = 0; u < PERV; ++u) {
                const int v = vg + u * VS;
                if (v < nv)
                    sc[v * CHUNK + kb + jj] =
                        j < vn[v] ? ((dd[u][0] + dd[u][1]) + (dd[u][2] + dd[u][3])) * scale
                                  : -INFINITY;
            }
        }
        // In-step keys of the group (j >= L): each vector's own chain, the same arithmetic as
        // above (`att_score_in_step`). A vector's in-step keys in the group are jx = jin ..
        // jin + c_v - 1 (c_v of them, fewer than nin where its chain ends in the group); a
        // pair past them scores -inf without a load. When every (vector, key) pair has a
        // thread, thread pr takes pair pr; otherwise the pairs that load are spread over every
        // thread of the block, numbered through the prefix sums of c_v (`pair0`), so that a
        // sparse tree of chains costs one round of loads, not one per vector.
        const int jin = min(max(L - (start + kb), 0), ATT_KS);  // the group's first in-step key
        const int nin = ATT_KS - jin;
        const int j0in = start + kb + jin;  // key number of the group's first in-step key
        auto score_pair = [&](int v, int jx) {
            const float* kr = kbase + (size_t)key_pos(v, start + kb + jx) * HD;
            sc[v * CHUNK + kb + jx] = att_score_in_step<HD>(qs + v * HD, kr, scale);
        };
        if (nv * nin <= ATT_THREADS) {
            if (tid < nv * nin) {
                const int v = tid / nin, jx = jin + (tid - v * nin);
                if (start + kb + jx < vn[v])
                    score_pair(v, jx);
                else
                    sc[v * CHUNK + kb + jx] = -INFINITY;
            }
        } else {
            if (warp == 0) {
                // pair0[v] = sum of c_u over u < v (an inclusive warp scan, shifted by one).
                const int c = lane < nv ? min(max(vn[lane] - j0in, 0), nin) : 0;
                int incl = c;
#pragma unroll
                for (int o = 1; o < 32; o <<= 1) {
                    const int t = __shfl_up_sync(0xffffffffu, incl, o);
                    if (lane >= o) incl += t;
                }
                if (lane < QT) pair0[lane + 1] = incl;
                if (lane == 0) pair0[0] = 0;
            }
            for (int v = warp; v < nv; v += ATT_THREADS / 32)
                for (int jx = jin + lane; jx < ATT_KS; jx += 32)
                    if (start + kb + jx >= vn[v]) sc[v * CHUNK + kb + jx] = -INFINITY;
            __syncthreads();
            for (int pr = tid; pr < pair0[QT]; pr += ATT_THREADS) {
                int v = 0;  // the vector whose pairs hold pr: pair0[v] <= pr < pair0[v + 1]
#pragma unroll
                for (int half = QT / 2; half > 0; half >>= 1)
                    if (pair0[v + half] <= pr) v += half;
                score_pair(v, jin + (pr - pair0[v]));
            }
        }
        __syncthreads();  // every thread is done with this group's keys
        att_stage<HD>(buf[grp], vbase, start + kb, L);
    }
    // Per vector: max, exponentials, their sum.
    Softmax::template run<HD, QT>(sc, part, vrow, vhead, vn, nv, nh, S, s, start);
    // Weighted values: every cache value from shared memory, in-step values requested before use.
    cp_async_wait<0>();
    __syncthreads();  // every staged value is in, and every vector's weights are final
    auto part_a = [&](int v) {
        return (float4*)(part + (((size_t)vrow[v] * nh + vhead[v]) * S + s) * (HD + 4) + 4);
    };
    Values::template sum<HD, QT>(sc, buf, qs, vbase, vn, key_pos, part_a, nv, L, start, nmax);

    // The last block of the tile (over its splits) merges (threadFenceReduction pattern).
    __threadfence();
    __syncthreads();
    int* cnt = done + blockIdx.x * nkv + kvh;
    if (tid == 0) last = atomicAdd(cnt, 1) == ns_tile - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    if (tid == 0) *cnt = 0;
    // Per vector (one thread each): the largest split maximum and l = sum_s l_s e_s in split
    // order. Other blocks' partials are read through L2 (__ldcg), never a stale L1 line.
    __shared__ float vmax[QT], vsum[QT];
    auto split_part = [&](int v, int s2) {
        return part + (((size_t)vrow[v] * nh + vhead[v]) * S + s2) * (HD + 4);
    };
    constexpr int MB = 8;  // split partials requested at a time
    if (tid < nv) {
        const int v = tid, ns = (vn[v] + CHUNK - 1) / CHUNK;
        float mall = -INFINITY;
        for (int s2 = 0; s2 < ns; ++s2) mall = fmaxf(mall, __ldcg(split_part(v, s2)));
        float l = 0.f;
        for (int s0 = 0; s0 < ns; s0 += MB) {
            float2 ml[MB];
#pragma unroll
            for (int u = 0; u < MB; ++u)
                if (s0 + u < ns) ml[u] = __ldcg((const float2*)split_part(v, s0 + u));
#pragma unroll
            for (int u = 0; u < MB; ++u)
                if (s0 + u < ns) l = fmaf(ml[u].y, expf(ml[u].x - mall), l);
        }
        vmax[v] = mall;
        vsum[v] = l;
    }
    __syncthreads();
    // Per (vector, float4 of the head): a = sum_s a_s e_s in split order, out = a / l.
    for (int t = tid; t < nv * H4; t += ATT_THREADS) {
        const int v = t / H4, c4 = t - v * H4;
        const int ns = (vn[v] + CHUNK - 1) / CHUNK;
        const float mall = vmax[v];
        float4 a = make_float4(0.f, 0.f, 0.f, 0.f);
        for (int s0 = 0; s0 < ns; s0 += MB) {
            float m2[MB];
            float4 a2[MB];
#pragma unroll
            for (int u = 0; u < MB; ++u) {
                if (s0 + u < ns) {
                    const float* p2 = split_part(v, s0 + u);
                    m2[u] = __ldcg(p2);
                    a2[u] = __ldcg((const float4*)(p2 + 4) + c4);
                }
            }
#pragma unroll
            for (int u = 0; u < MB; ++u) {
                if (s0 + u < ns) {
                    const float e = expf(m2[u] - mall);
                    a.x = fmaf(a2[u].x, e, a.x);
                    a.y = fmaf(a2[u].y, e, a.y);
                    a.z = fmaf(a2[u].z, e, a.z);
                    a.w = fmaf(a2[u].w, e, a.w);
                }
            }
        }
        const float l = vsum[v];
        const size_t o = (size_t)vrow[v] * nh * HD + vhead[v] * HD + 4 * c4;
        store_a(out, out_plane, P, o, a.x / l);
        store_a(out, out_plane, P, o + 1, a.y / l);
        store_a(out, out_plane, P, o + 2, a.z / l);
        store_a(out, out_plane, P, o + 3, a.w / l);
    }
}

// An attention entry point with `qt` query vectors a block, registers for `blocks` blocks an SM;
// `softmax` turns the chunk's scores into weights (AttSoftmaxInterleaved in production),
// `values` sums the weighted values (AttValuesInOrder in production). ATTN_KERNEL: ATT_QT
// vectors a block, at most 128 registers a thread, so that two blocks (shared memory
// `attn_smem(HD, ATT_QT)` each) share an SM.
#define ATTN_KERNEL_QT(name, hd, qt, blocks, values, softmax)                                   \
    extern "C" __global__ void __launch_bounds__(ATT_THREADS, blocks)                           \
        name(const float* qkv, const int* io, int QB, const float* kc, const float* vc,         \
             float* part, int* done, unsigned short* out, size_t out_plane, int P, int nh,      \
             int nkv, int cap, int S, float scale) {                                            \
        attn_tile<hd, qt, values, softmax>(qkv, io, QB, kc, vc, part, done, out, out_plane, P,  \
                                           nh, nkv, cap, S, scale);                             \
    }
#define ATTN_KERNEL(name, hd, values, softmax) \
    ATTN_KERNEL_QT(name, hd, ATT_QT, 2, values, softmax)
// The production kernel at 8, 16 and 32 query vectors a block (`attention_qt<QT>_hd<HD>`): one
// kernel, three tile heights; kernels.rs picks one per launch (`attention_tile`). Every vector's
// additions are its own, so the three give the same results bit for bit.
#define ATTN_ENTRY(qt, hd)                                                                     \
    ATTN_KERNEL_QT(attention_qt##qt##_hd##hd, hd, qt, 2, AttValuesInOrder, AttSoftmaxInterleaved)
ATTN_ENTRY(8, 64)
ATTN_ENTRY(16, 64)
ATTN_ENTRY(32, 64)
ATTN_ENTRY(8, 128)
ATTN_ENTRY(16, 128)
ATTN_ENTRY(32, 128)
