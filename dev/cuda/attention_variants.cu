// Attention variants for kernel development (the production kernel: src/model/cuda/attention.cu).
// The production path never loads them; `lade::model::cuda::dev` launches them and
// tests/gpu_kernels.rs checks each against a CPU twin and for rows that do not depend on their
// step, and times them (dev/cuda/README.md).
//
// attention_grouped_hd{64,128}: the production kernel with the values summed in 16-key groups
// (a[d] = A_0[d] + ... + A_7[d]), formed in parallel when a block has few vectors: one row of a
// step without GQA has one vector per block, whose 128-key chain of additions becomes 16 plus 8.
//
// attention_scalar_weights_hd{64,128}: the production kernel's additions with its weights read
// one at a time and its softmax taken one vector after another.
#define GEMM_NO_PRODUCTION
#include "../../src/model/cuda/kernels.cu"

#define ATT_VG 16   // keys per value group
#define ATT_VPAR 8  // up to this many vectors a block, the value groups are formed in parallel

// The chunk's weighted values in groups: a[d] = A_0[d] + A_1[d] + ... + A_7[d] in that order,
// A_g summing p_j v_j[d] over the visible keys of the chunk's 16-key group g in increasing j
// (each group from zero). Every value is in shared memory or (in-step) requested before use.
struct AttValuesGrouped {
    template <int HD, typename KeyPos, typename PartA>
    static __device__ __forceinline__ void sum(const float* sc, float* const* buf, float* scratch,
                                               const float* vbase, const int* vn, KeyPos key_pos,
                                               PartA part_a, int nv, int L, int start, int nmax) {
        constexpr int KLD = AttSmem<HD>::KLD;
        constexpr int H4 = HD / 4;
        const int tid = threadIdx.x;
        auto value_group = [&](int v, int g, int d4) -> float4 {
            const int jg = start + g * ATT_VG;
            const float* vs = buf[g / (ATT_KS / ATT_VG)] + (g % (ATT_KS / ATT_VG)) * ATT_VG * KLD;
            const float* w = sc + v * CHUNK + g * ATT_VG;
            float4 a = make_float4(0.f, 0.f, 0.f, 0.f);
            constexpr int BATCH = 8;  // values requested before the first of them is used
#pragma unroll
            for (int t0 = 0; t0 < ATT_VG; t0 += BATCH) {
                float4 x[BATCH];
#pragma unroll
                for (int t = 0; t < BATCH; ++t) {
                    const int j = jg + t0 + t;
                    if (j < L)
                        x[t] = *(const float4*)(vs + (t0 + t) * KLD + 4 * d4);
                    else if (j < vn[v])
                        x[t] = *((const float4*)(vbase + (size_t)key_pos(v, j) * HD) + d4);
                }
#pragma unroll
                for (int t = 0; t < BATCH; ++t) {
                    if (jg + t0 + t < vn[v]) {
                        fma4(a, w[t0 + t], x[t]);
                    }
                }
            }
            return a;
        };
        auto add4 = [](float4 a, float4 b) {
            return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
        };
        constexpr int NG = CHUNK / ATT_VG;  // groups of a chunk
        if (nv <= ATT_VPAR) {
            // Few vectors: thread (vsub, g, d4) forms A_g of vector vb + vsub; the groups' sums
            // go through `scratch` and are added in group order.
            constexpr int VPAR = ATT_THREADS / (NG * H4);  // vectors at a time
            const int d4 = tid % H4, g = (tid / H4) % NG, vsub = tid / (H4 * NG);
            float4* red = (float4*)scratch;  // (VPAR, NG, H4)
            for (int vb = 0; vb < nv; vb += VPAR) {
                const int v = vb + vsub;
                if (v < nv)
                    red[(vsub * NG + g) * H4 + d4] =
                        start < vn[v] ? value_group(v, g, d4) : make_float4(0.f, 0.f, 0.f, 0.f);
                __syncthreads();
                if (g == 0 && v < nv && start < vn[v]) {
                    float4 a = red[(vsub * NG) * H4 + d4];
#pragma unroll
                    for (int g2 = 1; g2 < NG; ++g2) a = add4(a, red[(vsub * NG + g2) * H4 + d4]);
                    part_a(v)[d4] = a;
                }
                __syncthreads();
            }
        } else {
            // Many vectors: thread (vg, d4) forms every group of vectors vg, vg + VG, ... in turn.
            constexpr int VG = ATT_THREADS / H4;
            const int d4 = tid % H4, vg = tid / H4;
            for (int v = vg; v < nv; v += VG) {
                if (start >= vn[v]) continue;
                float4 a = value_group(v, 0, d4);
                for (int g = 1; g < NG; ++g) a = add4(a, value_group(v, g, d4));
                part_a(v)[d4] = a;
            }
        }
    }
};

ATTN_KERNEL(attention_grouped_hd64, 64, AttValuesGrouped, AttSoftmaxInterleaved)
ATTN_KERNEL(attention_grouped_hd128, 128, AttValuesGrouped, AttSoftmaxInterleaved)

// The softmax one vector after another: warp w takes vector w, then w + 8, ..., each with the
// additions of AttSoftmaxInterleaved.
struct AttSoftmaxOneByOne {
    template <int HD>
    static __device__ __forceinline__ void run(float* sc, float* part, const int* vrow,
                                               const int* vhead, const int* vn, int nv, int nh,
                                               int S, int s, int start) {
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
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
                dst[1] = l;
            }
        }
    }
};

// The production kernel's additions, scheduled more simply: the weights read one at a time and
// the softmax one vector after another. tests/gpu_kernels.rs checks that it gives the
// production kernel's results bit for bit (the production schedule changes no addition).
ATTN_KERNEL(attention_scalar_weights_hd64, 64, AttValuesInOrderBy<1>, AttSoftmaxOneByOne)
ATTN_KERNEL(attention_scalar_weights_hd128, 128, AttValuesInOrderBy<1>, AttSoftmaxOneByOne)

// attention_split_values_hd{64,128}: the production kernel with the values summed on the
// tensor cores where that can be shared. A value group's arithmetic is chosen by its distance
// from the vector's last key (a function of the vector's own key count n, which a token has
// alike in its lookahead step and decoded alone after its chain): the last 32 to 47 keys,
// j >= att_f32_from(n), are f32 FMAs in increasing j as in production; the 16-key groups before
// them go through `mma.sync` m16n8k16 (f32 sums of f16 halves: each weight and value split into
// hi = f16(x) and lo = f16(x - hi), a product taken as hi·hi into one sum and hi·lo + lo·hi
// into a second, the two added after the chunk's last group). A group wholly in the cache is
// one instruction for the 16 vectors of a tile (a vector whose group it is not has a zero row
// of weights, which leaves its sums as they are); a group holding in-step keys (a chain longer
// than 32 keys) is taken vector by vector, its values gathered by key position and every other
// row of weights zero. An instruction's output element depends only on its own row and column
// of the operands, so a vector's sums are the same wherever its keys sit.

#define ATT_F32_KEYS 32  // a vector's last 32 to 47 keys are f32 FMAs
#define ATT_TG 16        // keys of a tensor-core value group (the instruction's k)

__device__ __forceinline__ int att_f32_from(int n) {
    return n >= ATT_F32_KEYS ? ((n - ATT_F32_KEYS) & ~(ATT_TG - 1)) : 0;
}

// x ~ hi + lo (about 22 bits): hi = f16(x), lo = f16(x - hi).
__device__ __forceinline__ void att_split(float x, unsigned& hi, unsigned& lo) {
    unsigned short h, l;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x));
    const float r = x - h2f(h);
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(l) : "f"(r));
    hi = h;
    lo = l;
}

// Two consecutive k of one operand row into a register of halves each (the lower k low).
__device__ __forceinline__ void att_split2(float x0, float x1, unsigned& hi, unsigned& lo) {
    unsigned h0, l0, h1, l1;
    att_split(x0, h0, l0);
    att_split(x1, h1, l1);
    hi = h0 | (h1 << 16);
    lo = l0 | (l1 << 16);
}

__device__ __forceinline__ void att_mma(float (&c)[4], const uint4& a, unsigned b0, unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b0), "r"(b1));
}

// The three products of hi/lo halves: hh += Ahi Bhi, cr += Ahi Blo + Alo Bhi.
__device__ __forceinline__ void att_mma3(float (&hh)[4], float (&cr)[4], const uint4& ahi,
                                         const uint4& alo, float b0, float b1, float b2,
                                         float b3) {
    unsigned bh0, bl0, bh1, bl1;
    att_split2(b0, b1, bh0, bl0);
    att_split2(b2, b3, bh1, bl1);
    att_mma(hh, ahi, bh0, bh1);
    att_mma(cr, ahi, bl0, bl1);
    att_mma(cr, alo, bh0, bh1);
}

struct AttValuesSplit {
    template <int HD, typename KeyPos, typename PartA>
    static __device__ __forceinline__ void sum(const float* sc, float* const* buf, float* scratch,
                                               const float* vbase, const int* vn, KeyPos key_pos,
                                               PartA part_a, int nv, int L, int start, int nmax) {
        constexpr int KLD = AttSmem<HD>::KLD;
        constexpr int H4 = HD / 4;
        constexpr int WARPS = ATT_THREADS / 32;
        constexpr int MT = ATT_QT / 16;     // 16-vector tiles of a block
        constexpr int NG = CHUNK / ATT_TG;  // value groups of a chunk
        constexpr int NTW = HD / 8 / (WARPS / MT);  // 8-column tiles a warp
        constexpr int FRAG_U4 = MT * NG * 32;       // the weights' fragments, hi (and lo)
        static_assert(NTW >= 1 && ATT_QT % 16 == 0, "tiles");
        // The weights as the instruction's A fragments, hi then lo: fragment (tile, group, lane)
        // holds the lane's four registers. In the queries' space when it is large enough.
        uint4* frag;
        if constexpr (ATT_QT * HD * 4 >= 2 * FRAG_U4 * 16) {
            frag = (uint4*)scratch;
        } else {
            __shared__ uint4 frag_store[2 * FRAG_U4];
            frag = frag_store;
        }
        const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
        const int gr = lane >> 2, t = lane & 3;
        const float* vals = buf[0];  // the chunk's staged values, key jj at row jj (buf[1] follows)

        // 1. Fragments. Item (tile, group, g, t) of a warp: the warp takes one g of one tile
        // and every (group, t), so that its loads are one vector row's consecutive weights.
        for (int it = tid; it < FRAG_U4; it += ATT_THREADS) {
            const int w = it >> 5, l = it & 31;  // w: (tile, g); l: (group, t)
            const int mt = w / 8, g8 = w % 8, gi = l >> 2, tt = l & 3;
            const int va = mt * 16 + g8, vb = va + 8;
            const int g0 = start + gi * ATT_TG;
            const bool ua = va < nv && g0 < att_f32_from(vn[va]);
            const bool ub = vb < nv && g0 < att_f32_from(vn[vb]);
            const float2 z = make_float2(0.f, 0.f);
            const float* wa = sc + va * CHUNK + gi * ATT_TG + 2 * tt;
            const float* wb = sc + vb * CHUNK + gi * ATT_TG + 2 * tt;
            const float2 a0 = ua ? *(const float2*)wa : z, a2 = ua ? *(const float2*)(wa + 8) : z;
            const float2 a1 = ub ? *(const float2*)wb : z, a3 = ub ? *(const float2*)(wb + 8) : z;
            uint4 hi, lo;
            att_split2(a0.x, a0.y, hi.x, lo.x);
            att_split2(a1.x, a1.y, hi.y, lo.y);
            att_split2(a2.x, a2.y, hi.z, lo.z);
            att_split2(a3.x, a3.y, hi.w, lo.w);
            const int f = (mt * NG + gi) * 32 + g8 * 4 + tt;
            frag[f] = hi;
            frag[FRAG_U4 + f] = lo;
        }
        __syncthreads();

        // 2. The groups before every vector's f32 keys, on the tensor cores. Warp w: tile
        // w % MT, column tiles (w / MT) NTW ...; lane (g, t) holds rows g, g + 8, columns 2t, 2t + 1.
        const int mt = warp % MT, nt0 = (warp / MT) * NTW;
        const int va = mt * 16 + gr, vb = va + 8;
        int gend = 0;  // past the tile's last tensor-core group (warp-uniform)
        for (int r = 0; r < 16; ++r) {
            const int v = mt * 16 + r;
            if (v < nv) gend = max(gend, att_f32_from(vn[v]));
        }
        float hh[NTW][4], cr[NTW][4];
#pragma unroll
        for (int n = 0; n < NTW; ++n)
#pragma unroll
            for (int c = 0; c < 4; ++c) hh[n][c] = cr[n][c] = 0.f;
        for (int gi = 0; gi < NG && start + gi * ATT_TG < gend; ++gi) {
            const int g0 = start + gi * ATT_TG;
            const int f = (mt * NG + gi) * 32 + lane;
            const uint4 ahi = frag[f], alo = frag[FRAG_U4 + f];
            if (g0 + ATT_TG <= L) {
                // Cached: one instruction for the tile, values from the staging buffer.
                const float* vs = vals + gi * ATT_TG * KLD;
#pragma unroll
                for (int n = 0; n < NTW; ++n) {
                    const int d = (nt0 + n) * 8 + gr;
                    att_mma3(hh[n], cr[n], ahi, alo, vs[(2 * t) * KLD + d], vs[(2 * t + 1) * KLD + d],
                             vs[(2 * t + 8) * KLD + d], vs[(2 * t + 9) * KLD + d]);
                }
            } else {
                // In-step keys: vector by vector, the other rows zero.
                for (int r = 0; r < 16; ++r) {
                    const int v = mt * 16 + r;
                    if (v >= nv || g0 >= att_f32_from(vn[v])) continue;
                    const bool lo_row = (r & 7) == gr;  // this lane holds row r
                    const bool ka = lo_row && r < 8, kb = lo_row && r >= 8;
                    const uint4 h1 = make_uint4(ka ? ahi.x : 0u, kb ? ahi.y : 0u, ka ? ahi.z : 0u,
                                                kb ? ahi.w : 0u);
                    const uint4 l1 = make_uint4(ka ? alo.x : 0u, kb ? alo.y : 0u, ka ? alo.z : 0u,
                                                kb ? alo.w : 0u);
                    const float* p0 = vbase + (size_t)key_pos(v, g0 + 2 * t) * HD;
                    const float* p1 = vbase + (size_t)key_pos(v, g0 + 2 * t + 1) * HD;
                    const float* p2 = vbase + (size_t)key_pos(v, g0 + 2 * t + 8) * HD;
                    const float* p3 = vbase + (size_t)key_pos(v, g0 + 2 * t + 9) * HD;
#pragma unroll
                    for (int n = 0; n < NTW; ++n) {
                        const int d = (nt0 + n) * 8 + gr;
                        att_mma3(hh[n], cr[n], h1, l1, p0[d], p1[d], p2[d], p3[d]);
                    }
                }
            }
        }
        __syncthreads();  // every fragment read: the queries' space takes the tensor-core sums
#pragma unroll
        for (int n = 0; n < NTW; ++n) {
            const int d = (nt0 + n) * 8 + 2 * t;
            if (va < nv)
                *(float2*)(scratch + va * HD + d) =
                    make_float2(hh[n][0] + cr[n][0], hh[n][1] + cr[n][1]);
            if (vb < nv)
                *(float2*)(scratch + vb * HD + d) =
                    make_float2(hh[n][2] + cr[n][2], hh[n][3] + cr[n][3]);
        }
        __syncthreads();

        // 3. The f32 keys in increasing j, from the tensor-core sums: thread (vg, d4) owns
        // float4 column d4 of vectors vg, vg + VG, ...; values requested BATCH keys at a time.
        constexpr int VG = ATT_THREADS / H4;
        constexpr int PER = (ATT_QT + VG - 1) / VG;
        constexpr int BATCH = 4;
        const int d4 = tid % H4, vg = tid / H4;
        float4 acc[PER];
        int j0[PER], j1[PER];
        int kmax = 0;
#pragma unroll
        for (int u = 0; u < PER; ++u) {
            const int v = vg + u * VG;
            const bool on = v < nv && start < vn[v];
            j0[u] = on ? max(att_f32_from(vn[v]), start) : 0;
            j1[u] = on ? min(vn[v], start + CHUNK) : 0;
            acc[u] = on ? *(const float4*)(scratch + v * HD + 4 * d4) : make_float4(0.f, 0.f, 0.f, 0.f);
            kmax = max(kmax, j1[u] - j0[u]);
        }
        for (int k = 0; k < kmax; k += BATCH) {
            float4 x[PER][BATCH];
#pragma unroll
            for (int u = 0; u < PER; ++u) {
                const int v = vg + u * VG;
#pragma unroll
                for (int q = 0; q < BATCH; ++q) {
                    const int j = j0[u] + k + q;
                    if (j < j1[u]) {
                        const int jj = j - start;
                        x[u][q] = j < L ? *(const float4*)(vals + jj * KLD + 4 * d4)
                                        : *((const float4*)(vbase + (size_t)key_pos(v, j) * HD) + d4);
                    }
                }
            }
#pragma unroll
            for (int u = 0; u < PER; ++u) {
                const int v = vg + u * VG;
#pragma unroll
                for (int q = 0; q < BATCH; ++q) {
                    const int j = j0[u] + k + q;
                    if (j < j1[u]) fma4(acc[u], sc[v * CHUNK + j - start], x[u][q]);
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

ATTN_KERNEL(attention_split_values_hd64, 64, AttValuesSplit, AttSoftmaxInterleaved)
ATTN_KERNEL(attention_split_values_hd128, 128, AttValuesSplit, AttSoftmaxInterleaved)

// attention_split_hd{64,128}: the scores split the same way as the values of
// attention_split_values. Key j of vector v (n keys) is scored on the tensor cores when
// j < att_f32_from(n) (q and k split into hi/lo halves, three products, 16 dimensions an
// instruction in increasing order; score = (hi·hi sum + cross sum) · scale), in f32 FMAs as in
// production otherwise. A cached 8-key tile is one instruction for 16 vectors; an in-step key
// before the f32 keys (a chain longer than 32 keys) is scored in its vector's own instruction,
// its key gathered by position. The queries sit in shared memory with float j of row v at
// j ^ (8 (v mod 4)), so that the instruction's operand loads (rows g, columns 2t) meet no bank
// twice.
__device__ __forceinline__ int att_qsw(int v) { return 8 * (v & 3); }

template <int HD>
__device__ __forceinline__ void attn_tile_split(const float* qkv, const int* io, int QB,
                                                const float* kc, const float* vc, float* part,
                                                int* done, unsigned short* out, size_t out_plane,
                                                int P, int nh, int nkv, int cap, int S,
                                                float scale) {
    using SM = AttSmem<HD>;
    constexpr int KLD = SM::KLD;
    constexpr int H4 = HD / 4;
    extern __shared__ __align__(16) float sm[];
    float* qs = sm + SM::Q;
    float* buf[2] = {sm + SM::BUF, sm + SM::BUF + ATT_KS * KLD};
    float* sc = sm + SM::SC;
    __shared__ int vrow[ATT_QT], vhead[ATT_QT], vn[ATT_QT], vf[ATT_QT];
    __shared__ const int* vlist[ATT_QT];

    const int G = nh / nkv;
    const int kvh = blockIdx.y, s = blockIdx.z;
    const int v0 = blockIdx.x * ATT_QT;
    const int nv = min(ATT_QT, QB * G - v0);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int gr = lane >> 2, t = lane & 3;
    const int L = io[0] - io[3];
    const int start = s * CHUNK;
    if (tid < ATT_QT) {
        const int v = v0 + tid;
        const int i = v / G;
        vrow[tid] = i;
        vhead[tid] = kvh * G + (v - i * G);
        const int c = tid < nv ? io_vn(io, QB)[i] : 0;
        vn[tid] = tid < nv ? L + (c < 0 ? i + 1 : c) : 0;
        vf[tid] = att_f32_from(vn[tid]);
        vlist[tid] = c < 0 ? nullptr : io_vl(io, QB, min(i, QB - 1));
    }
    __syncthreads();
    int nmax = 0;
    for (int v = 0; v < nv; ++v) nmax = max(nmax, vn[v]);
    const int ns_tile = (nmax + CHUNK - 1) / CHUNK;
    const float* kbase = kc + (size_t)kvh * cap * HD;
    const float* vbase = vc + (size_t)kvh * cap * HD;
    if (start >= nmax) {
        wait_previous_kernel();
        return;
    }
    att_stage<HD>(buf[0], kbase, start, L);
    att_stage<HD>(buf[1], kbase, start + ATT_KS, L);
    wait_previous_kernel();

    const int ld = (nh + 2 * nkv) * HD;
    for (int x = tid; x < nv * H4; x += ATT_THREADS) {
        const int v = x / H4, d4 = x - v * H4;
        *(float4*)(qs + v * HD + ((4 * d4) ^ att_qsw(v))) =
            *((const float4*)(qkv + (size_t)vrow[v] * ld + vhead[v] * HD) + d4);
    }
    auto key_pos = [&](int v, int j) -> int {
        if (j < L) return j;
        return L + (vlist[v] ? vlist[v][j - L] : j - L);
    };
    // This lane's A fragment (rows va, vb of tile mt) of the queries, dimensions 16 ks ...
    auto q_frag = [&](int mt, int ks, uint4& hi, uint4& lo) {
        const int va = mt * 16 + gr, vb = va + 8;
        const int d = 16 * ks + 2 * t;
        const float2 a0 = *(const float2*)(qs + va * HD + (d ^ att_qsw(va)));
        const float2 a1 = *(const float2*)(qs + vb * HD + (d ^ att_qsw(vb)));
        const float2 a2 = *(const float2*)(qs + va * HD + ((d + 8) ^ att_qsw(va)));
        const float2 a3 = *(const float2*)(qs + vb * HD + ((d + 8) ^ att_qsw(vb)));
        att_split2(a0.x, a0.y, hi.x, lo.x);
        att_split2(a1.x, a1.y, hi.y, lo.y);
        att_split2(a2.x, a2.y, hi.z, lo.z);
        att_split2(a3.x, a3.y, hi.w, lo.w);
    };
    // Writes a finished tile's scores (keys j0 + 2t, j0 + 2t + 1 of rows va, vb) where `keep`.
    auto put = [&](int mt, int j0, const float (&hh)[4], const float (&cr)[4], auto keep) {
        const int va = mt * 16 + gr, vb = va + 8;
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            const int v = c < 2 ? va : vb, j = j0 + 2 * t + (c & 1);
            if (v < nv && keep(v, j)) sc[v * CHUNK + j - start] = (hh[c] + cr[c]) * scale;
        }
    };

#pragma unroll
    for (int grp = 0; grp < 2; ++grp) {
        cp_async_wait<1>();
        __syncthreads();
        const float* ks_ = buf[grp];
        const int jg = start + grp * ATT_KS;
        // (a) Cached 8-key tiles on the tensor cores: warp w takes tile w % 2 of vectors and
        // key tiles w / 2, w / 2 + 4.
        {
            const int mt = warp & 1;
            int fmax = 0;
            for (int r = 0; r < 16; ++r)
                if (mt * 16 + r < nv) fmax = max(fmax, vf[mt * 16 + r]);
            const int kt0 = warp >> 1, kt1 = kt0 + 4;
            const bool on0 = jg + 8 * kt0 < min(L, fmax), on1 = jg + 8 * kt1 < min(L, fmax);
            if (on0 || on1) {
                float hh[2][4] = {}, cr[2][4] = {};
#pragma unroll 2
                for (int kq = 0; kq < HD / 16; ++kq) {
                    uint4 ahi, alo;
                    q_frag(mt, kq, ahi, alo);
#pragma unroll
                    for (int u = 0; u < 2; ++u) {
                        if (!(u == 0 ? on0 : on1)) continue;
                        const float* kr = ks_ + (8 * (u == 0 ? kt0 : kt1) + gr) * KLD + 16 * kq + 2 * t;
                        const float2 b0 = *(const float2*)kr, b1 = *(const float2*)(kr + 8);
                        att_mma3(hh[u], cr[u], ahi, alo, b0.x, b0.y, b1.x, b1.y);
                    }
                }
#pragma unroll
                for (int u = 0; u < 2; ++u) {
                    if (!(u == 0 ? on0 : on1)) continue;
                    put(mt, jg + 8 * (u == 0 ? kt0 : kt1), hh[u], cr[u],
                        [&](int v, int j) { return j < L && j < vf[v]; });
                }
            }
        }
        // (b) In-step keys before a vector's f32 keys: vector by vector, warp w taking key
        // tile w of the group, the keys gathered by position.
        for (int v = 0; v < nv; ++v) {
            const int lo = max(L, jg + 8 * warp), hi = min(vf[v], jg + 8 * warp + 8);
            if (lo >= hi) continue;
            const int mt = v / 16;
            const int j = jg + 8 * warp + gr;  // this lane's key (column gr)
            const bool have = j >= lo && j < hi;
            const float* kr = kbase + (size_t)(have ? key_pos(v, j) : 0) * HD + 2 * t;
            float hh[4] = {}, cr[4] = {};
#pragma unroll 2
            for (int kq = 0; kq < HD / 16; ++kq) {
                uint4 ahi, alo;
                q_frag(mt, kq, ahi, alo);
                float2 b0 = make_float2(0.f, 0.f), b1 = b0;
                if (have) {
                    b0 = *(const float2*)(kr + 16 * kq);
                    b1 = *(const float2*)(kr + 16 * kq + 8);
                }
                att_mma3(hh, cr, ahi, alo, b0.x, b0.y, b1.x, b1.y);
            }
            put(mt, jg + 8 * warp, hh, cr,
                [&](int v2, int j2) { return v2 == v && j2 >= lo && j2 < hi; });
        }
        // (c) Every vector's f32 keys of the group (and -inf past its keys), the (vector, key)
        // pairs spread over the block: ((d0 + d1) + (d2 + d3)) · scale as in production.
        for (int pr = tid; pr < nv * ATT_KS; pr += ATT_THREADS) {
            const int v = pr / ATT_KS, jx = pr - v * ATT_KS;
            const int jk = jg + jx;
            if (jk < vf[v]) continue;
            float score = -INFINITY;
            if (jk < vn[v]) {
                const float* kr = jk < L ? ks_ + jx * KLD : kbase + (size_t)key_pos(v, jk) * HD;
                const float* q = qs + v * HD;
                const int sw = att_qsw(v);
                float d0 = 0.f, d1 = 0.f, d2 = 0.f, d3 = 0.f;
#pragma unroll 16
                for (int d4 = 0; d4 < H4; ++d4) {
                    const float4 k4 = *(const float4*)(kr + 4 * d4);
                    const float4 q4 = *(const float4*)(q + ((4 * d4) ^ sw));
                    d0 = fmaf(q4.x, k4.x, d0);
                    d1 = fmaf(q4.y, k4.y, d1);
                    d2 = fmaf(q4.z, k4.z, d2);
                    d3 = fmaf(q4.w, k4.w, d3);
                }
                score = ((d0 + d1) + (d2 + d3)) * scale;
            }
            sc[v * CHUNK + grp * ATT_KS + jx] = score;
        }
        __syncthreads();
        att_stage<HD>(buf[grp], vbase, jg, L);
    }
    AttSoftmaxInterleaved::run<HD>(sc, part, vrow, vhead, vn, nv, nh, S, s, start);
    cp_async_wait<0>();
    __syncthreads();
    auto part_a = [&](int v) {
        return (float4*)(part + (((size_t)vrow[v] * nh + vhead[v]) * S + s) * (HD + 4) + 4);
    };
    AttValuesSplit::sum<HD>(sc, buf, qs, vbase, vn, key_pos, part_a, nv, L, start, nmax);
    attn_merge<HD>(part, done, out, out_plane, P, nh, nkv, S, vrow, vhead, vn, nv, ns_tile);
}

#define ATTN_SPLIT_ENTRY(hd)                                                                   \
    extern "C" __global__ void __launch_bounds__(ATT_THREADS, 2) attention_split_hd##hd(       \
        const float* qkv, const int* io, int QB, const float* kc, const float* vc, float* part, \
        int* done, unsigned short* out, size_t out_plane, int P, int nh, int nkv, int cap,      \
        int S, float scale) {                                                                  \
        attn_tile_split<hd>(qkv, io, QB, kc, vc, part, done, out, out_plane, P, nh, nkv, cap,  \
                            S, scale);                                                         \
    }
ATTN_SPLIT_ENTRY(64)
ATTN_SPLIT_ENTRY(128)
