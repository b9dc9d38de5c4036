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
//
// attention_qt8_b3_hd{64,128}: the production kernel at 8 query vectors a block with registers
// for three blocks an SM; the same additions.
//
// The production entries this file includes (attention_qt{8,16,32}_hd{64,128}) are timed here
// one by one, each at its fixed height, beside the production choice among them.
#define GEMM_NO_PRODUCTION
#include "../../src/model/cuda/kernels.cu"

#define ATT_VG 16   // keys per value group
#define ATT_VPAR 8  // up to this many vectors a block, the value groups are formed in parallel

// The chunk's weighted values in groups: a[d] = A_0[d] + A_1[d] + ... + A_7[d] in that order,
// A_g summing p_j v_j[d] over the visible keys of the chunk's 16-key group g in increasing j
// (each group from zero). Every value is in shared memory or (in-step) requested before use.
struct AttValuesGrouped {
    template <int HD, int QT, typename KeyPos, typename PartA>
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
    template <int HD, int QT>
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

// The production kernel at 8 query vectors a block with registers for three blocks an SM (its
// shared memory allows three): a schedule only (every vector's additions are its own), so
// tests/gpu_kernels.rs checks that it gives the production results bit for bit.
ATTN_KERNEL_QT(attention_qt8_b3_hd64, 64, 8, 3, AttValuesInOrder, AttSoftmaxInterleaved)
ATTN_KERNEL_QT(attention_qt8_b3_hd128, 128, 8, 3, AttValuesInOrder, AttSoftmaxInterleaved)
