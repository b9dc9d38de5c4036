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
// grid (ceil(QB G / ATT_QT), nkv, S), block 256, dynamic shared memory `attn_smem(HD)`.

#define ATT_QT 32   // query vectors per block
#define ATT_KS 64   // keys (or values) staged at a time: CHUNK / ATT_KS = 2 groups
#define ATT_THREADS 256

template <int HD>
struct AttSmem {
    static constexpr int KLD = HD + 4;  // padded row of a staged key or value
    static constexpr int Q = 0;
    static constexpr int BUF = Q + ATT_QT * HD;  // two staging buffers of ATT_KS rows
    static constexpr int SC = BUF + 2 * ATT_KS * KLD;
    static constexpr int FLOATS = SC + ATT_QT * CHUNK;
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

template <int HD>
__device__ __forceinline__ void attn_tile(const float* qkv, const int* io, int QB,
                                          const float* kc, const float* vc, float* part,
                                          int* done, unsigned short* out, size_t out_plane, int P,
                                          int nh, int nkv, int cap, int S, float scale) {
    using SM = AttSmem<HD>;
    constexpr int KLD = SM::KLD;
    constexpr int H4 = HD / 4;
    static_assert(CHUNK == 2 * ATT_KS, "two staged groups per chunk");
    extern __shared__ __align__(16) float sm[];
    float* qs = sm + SM::Q;
    float* buf[2] = {sm + SM::BUF, sm + SM::BUF + ATT_KS * KLD};
    float* sc = sm + SM::SC;
    __shared__ int vrow[ATT_QT], vhead[ATT_QT], vn[ATT_QT];
    __shared__ const int* vlist[ATT_QT];
    __shared__ int last;

    const int G = nh / nkv;
    const int kvh = blockIdx.y, s = blockIdx.z;
    const int v0 = blockIdx.x * ATT_QT;
    const int nv = min(ATT_QT, QB * G - v0);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int L = io[0] - io[3];  // the cache before the step (earlier pieces are in-step keys)
    const int start = s * CHUNK;
    if (tid < ATT_QT) {
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
        constexpr int PERV = ATT_QT / VS;
        if (j < L) {
            // A cache key, shared by every vector: each float4 of it is read once for all.
            const float* kr = ks + jj * KLD;
            float dd[PERV][4];
#pragma unroll
            for (int u = 0; u < PERV; ++u) dd[u][0] = dd[u][1] = dd[u][2] = dd[u][3] = 0.f;
            const int nu = (nv - vg + VS - 1) / VS;  // vectors of this thread
#pragma unroll 2
            for (int d4 = 0; d4 < H4; ++d4) {
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
        } else {
            // An in-step key: each vector's own chain (the same arithmetic as above).
            for (int v = vg; v < nv; v += VS) {
                float score = -INFINITY;
                if (j < vn[v]) {
                    const float* kr = kbase + (size_t)key_pos(v, j) * HD;
                    const float* q = qs + v * HD;
                    float d0 = 0.f, d1 = 0.f, d2 = 0.f, d3 = 0.f;
#pragma unroll 8
                    for (int d4 = 0; d4 < H4; ++d4) {
                        const float4 k4 = *(const float4*)(kr + 4 * d4);
                        const float4 q4 = *(const float4*)(q + 4 * d4);
                        d0 = fmaf(q4.x, k4.x, d0);
                        d1 = fmaf(q4.y, k4.y, d1);
                        d2 = fmaf(q4.z, k4.z, d2);
                        d3 = fmaf(q4.w, k4.w, d3);
                    }
                    score = ((d0 + d1) + (d2 + d3)) * scale;
                }
                sc[v * CHUNK + kb + jj] = score;
            }
        }
        __syncthreads();  // every thread is done with this group's keys
        att_stage<HD>(buf[grp], vbase, start + kb, L);
    }
    // Per vector: max, exponentials, their sum (warp w takes vectors w, w + 8, ...).
    for (int v = warp; v < nv; v += ATT_THREADS / 32) {
        float* row = sc + v * CHUNK;
        float m = -INFINITY;
        for (int j = lane; j < CHUNK; j += 32) m = fmaxf(m, row[j]);
        m = warp_max(m);
        float l = 0.f;
        for (int j = lane; j < CHUNK; j += 32) {
            const float p = start + j < vn[v] ? expf(row[j] - m) : 0.f;
            row[j] = p;
            l += p;
        }
        l = warp_sum(l);
        if (lane == 0) {
            float* dst = part + (((size_t)vrow[v] * nh + vhead[v]) * S + s) * (HD + 4);
            dst[0] = m;
            dst[1] = l;  // [2], [3]: padding, so that a[] is 16-byte aligned
        }
    }
    // Weighted values: thread (vg, d4) owns float4 column d4 of vectors vg, vg + VG, ....
    constexpr int VG = ATT_THREADS / H4;
    constexpr int PER = (ATT_QT + VG - 1) / VG;
    const int d4 = tid % H4, vg = tid / H4;
    float4 acc[PER];
#pragma unroll
    for (int u = 0; u < PER; ++u) acc[u] = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
    for (int grp = 0; grp < 2; ++grp) {
        if (grp == 0) cp_async_wait<1>(); else cp_async_wait<0>();
        __syncthreads();  // this group's values are in, and every vector's weights are final
        const float* vs = buf[grp];
        const int j0 = start + grp * ATT_KS;
        for (int jj = 0; jj < ATT_KS; ++jj) {
            const int j = j0 + jj;
#pragma unroll
            for (int u = 0; u < PER; ++u) {
                const int v = vg + u * VG;
                if (v < nv && j < vn[v]) {
                    const float w = sc[v * CHUNK + grp * ATT_KS + jj];
                    const float4 x = j < L ? *(const float4*)(vs + jj * KLD + 4 * d4)
                                           : *((const float4*)(vbase + (size_t)key_pos(v, j) * HD) + d4);
                    acc[u].x = fmaf(w, x.x, acc[u].x);
                    acc[u].y = fmaf(w, x.y, acc[u].y);
                    acc[u].z = fmaf(w, x.z, acc[u].z);
                    acc[u].w = fmaf(w, x.w, acc[u].w);
                }
            }
        }
    }
#pragma unroll
    for (int u = 0; u < PER; ++u) {
        const int v = vg + u * VG;
        if (v < nv && start < vn[v])
            *(float4*)(part + (((size_t)vrow[v] * nh + vhead[v]) * S + s) * (HD + 4) + 4 + 4 * d4) =
                acc[u];
    }

    // The last block of the tile (over its splits) merges (threadFenceReduction pattern).
    __threadfence();
    __syncthreads();
    int* cnt = done + blockIdx.x * nkv + kvh;
    if (tid == 0) last = atomicAdd(cnt, 1) == ns_tile - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    if (tid == 0) *cnt = 0;
    for (int t = tid; t < nv * HD; t += ATT_THREADS) {
        const int v = t / HD, d = t - v * HD;
        const int ns = (vn[v] + CHUNK - 1) / CHUNK;
        // Other blocks' partials are read through L2 (__ldcg), never a stale L1 line.
        const float* base = part + ((size_t)vrow[v] * nh + vhead[v]) * S * (HD + 4);
        float mall = -INFINITY;
        for (int s2 = 0; s2 < ns; ++s2) mall = fmaxf(mall, __ldcg(base + s2 * (HD + 4)));
        float l = 0.f, a = 0.f;
        for (int s2 = 0; s2 < ns; ++s2) {
            const float* p2 = base + s2 * (HD + 4);
            const float e = expf(__ldcg(p2) - mall);
            l = fmaf(__ldcg(p2 + 1), e, l);
            a = fmaf(__ldcg(p2 + 4 + d), e, a);
        }
        store_a(out, out_plane, P, (size_t)vrow[v] * nh * HD + vhead[v] * HD + d, a / l);
    }
}

#define ATTN_ENTRY(hd)                                                                          \
    extern "C" __global__ void __launch_bounds__(ATT_THREADS)                                   \
        attention_hd##hd(const float* qkv, const int* io, int QB, const float* kc,              \
                         const float* vc, float* part, int* done, unsigned short* out,          \
                         size_t out_plane, int P, int nh, int nkv, int cap, int S,              \
                         float scale) {                                                         \
        attn_tile<hd>(qkv, io, QB, kc, vc, part, done, out, out_plane, P, nh, nkv, cap, S,      \
                      scale);                                                                   \
    }
ATTN_ENTRY(64)
ATTN_ENTRY(128)
