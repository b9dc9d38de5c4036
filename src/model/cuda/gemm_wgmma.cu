// The matmul on Hopper's warpgroup tensor-core instruction (wgmma, sm_90a): gemm.cu's splits,
// k-tile order and epilogue, another instruction. The production matmul on devices of compute
// capability 9.0 (H100, H200); other devices run gemm.cu's mma.sync kernels. Compiled for
// compute_90a by build.rs as a module of its own. Both instructions give the same results bit
// for bit (`tests/gpu_kernels.rs` checks every kernel of both against the production one and
// against a CPU twin), so a step's tokens do not depend on which of them ran.
//
// Operands swapped (out^T = W A^T): the wgmma M dimension is 64 weight rows per warpgroup (its
// A operand, read from shared memory), the N dimension the block's 16 MT activation rows (its
// B operand, N = 16 MT: 16 for up to 16 rows of a step, up to 128), so that a one-row step
// multiplies 16 rows, not 64. Both operands are staged exactly as gemm.cu stages them (rows of
// 64 halves, chunk c of row r at c ^ (r & 7)), which is the 128-byte swizzle of a K-major
// operand when a tile starts on a 1024-byte boundary; the four k16 steps of a k-tile advance
// the descriptors' start by 32 bytes. One block: BN / 64 warpgroups, each its 64 weight rows
// of the block's BN; every warpgroup multiplies all of the block's activation rows.
//
// The weights come in the tiled layout of weight_tiles.rs: each 64 weight rows of a k-tile are
// one contiguous 8 KB run, already in the stage's chunk order, so that one thread requests a
// stage's weights with BN / 64 bulk copies (`cp.async.bulk`, completing on the stage's
// mbarrier) instead of every thread requesting 16-byte chunks. The activations (written by the
// step's previous kernel, row-major) are requested in chunks (cp.async) as in gemm.cu.
//
// Additions: per split, the k-tiles in increasing order, the four k16 steps of each in order,
// one wgmma (accumulate) each into f32 accumulators zeroed at the split's start; splits added
// in split order (in registers, or through the workspace by the finisher of gemm.cu): the
// sequence of gemm.cu's mma.sync m16n8k16.
#include "common.cuh"
#define GEMM_NO_PRODUCTION
#include "gemm.cu"

// 64-bit shared-memory matrix descriptor of a K-major operand tile at `p` (1024-byte aligned
// up to the k16 step's offset) in the 128-byte swizzle: start address / 16 (bits 0-13),
// leading byte offset unused for this layout (1, bits 16-29), stride byte offset 1024 / 16
// (bits 32-45: eight rows of 128 bytes to the next eight), swizzle mode 1 = 128 bytes (bits
// 62-63).
__device__ __forceinline__ unsigned long long wgmma_desc(const void* p) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(p);
    return (unsigned long long)((s & 0x3FFFF) >> 4) | (1ull << 16) | ((1024ull >> 4) << 32) |
           (1ull << 62);
}

__device__ __forceinline__ void wgmma_fence() {
    asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}
// Keeps the compiler from moving accesses of `v` across a wgmma wait.
__device__ __forceinline__ void wgmma_keep(float& v) { asm volatile("" : "+f"(v)::"memory"); }
// Orders this thread's earlier shared-memory writes (cp.async) before later reads by the
// tensor cores (the async proxy).
__device__ __forceinline__ void fence_async_shared() {
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}

// d (64 x NT, f32, the fragment layout of wgmma) += A (64 x 16 at descriptor a) B^T (NT x 16
// at descriptor b).
template <int NT>
__device__ __forceinline__ void wgmma_k16(float (&d)[NT / 2], unsigned long long a,
                                          unsigned long long b);
// Eight accumulators from d[i] on, as operands of the asm below.
#define WGMMA_ACC8(i)                                                                           \
    "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]),  \
        "+f"(d[i + 6]), "+f"(d[i + 7])

template <>
__device__ __forceinline__ void wgmma_k16<16>(float (&d)[8], unsigned long long a,
                                              unsigned long long b) {
    asm volatile(
        "wgmma.mma_async.sync.aligned.m64n16k16.f32.f16.f16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7"
        "}, %8, %9, 1, 1, 1, 0, 0;"
        :
        WGMMA_ACC8(0)
        : "l"(a), "l"(b));
}
template <>
__device__ __forceinline__ void wgmma_k16<32>(float (&d)[16], unsigned long long a,
                                              unsigned long long b) {
    asm volatile(
        "wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
        "}, %16, %17, 1, 1, 1, 0, 0;"
        :
        WGMMA_ACC8(0), WGMMA_ACC8(8)
        : "l"(a), "l"(b));
}
template <>
__device__ __forceinline__ void wgmma_k16<64>(float (&d)[32], unsigned long long a,
                                              unsigned long long b) {
    asm volatile(
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
        "}, %32, %33, 1, 1, 1, 0, 0;"
        :
        WGMMA_ACC8(0), WGMMA_ACC8(8), WGMMA_ACC8(16), WGMMA_ACC8(24)
        : "l"(a), "l"(b));
}
template <>
__device__ __forceinline__ void wgmma_k16<128>(float (&d)[64], unsigned long long a,
                                              unsigned long long b) {
    asm volatile(
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
        "}, %64, %65, 1, 1, 1, 0, 0;"
        :
        WGMMA_ACC8(0), WGMMA_ACC8(8), WGMMA_ACC8(16), WGMMA_ACC8(24),
        WGMMA_ACC8(32), WGMMA_ACC8(40), WGMMA_ACC8(48), WGMMA_ACC8(56)
        : "l"(a), "l"(b));
}

// mbarriers (shared memory, one phase bit each): a stage's arrivals (its weights' bulk copies,
// counted in bytes, and, in the warp-specialized schedule, the loaders' activation requests).
__device__ __forceinline__ unsigned smem_u32(const void* p) {
    return (unsigned)__cvta_generic_to_shared(p);
}
__device__ __forceinline__ void mbar_init(unsigned long long* b, int count) {
    asm volatile("mbarrier.init.shared.b64 [%0], %1;" ::"r"(smem_u32(b)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(unsigned long long* b) {
    asm volatile("{\n\t.reg .b64 st;\n\tmbarrier.arrive.shared.b64 st, [%0];\n\t}" ::"r"(
                     smem_u32(b))
                 : "memory");
}
// Arrives on b once every cp.async this thread has issued so far has landed (the barrier's
// count includes this arrival: noinc).
__device__ __forceinline__ void cp_async_arrive(unsigned long long* b) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared.b64 [%0];" ::"r"(smem_u32(b)) : "memory");
}
// Waits until the phase of parity `parity` of b has completed.
__device__ __forceinline__ void mbar_wait(unsigned long long* b, unsigned parity) {
    asm volatile(
        "{\n\t.reg .pred p;\n\tWAIT:\n\t"
        "mbarrier.try_wait.parity.shared.b64 p, [%0], %1;\n\t"
        "@!p bra WAIT;\n\t}" ::"r"(smem_u32(b)),
        "r"(parity)
        : "memory");
}

// Arrives on b and adds `bytes` to the transfers its phase waits for.
__device__ __forceinline__ void mbar_expect_tx(unsigned long long* b, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(b)),
                 "r"(bytes)
                 : "memory");
}
// One bulk copy of `bytes` (a multiple of 16, both ends 16-byte aligned) from global memory into
// this block's shared memory, counted on b when it lands, its lines in L2 under the cache policy
// `policy` (from `createpolicy`).
__device__ __forceinline__ void bulk_copy(void* dst, const void* src, unsigned bytes,
                                          unsigned long long* b, unsigned long long policy) {
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint"
        " [%0], [%1], %2, [%3], %4;" ::"r"(smem_u32(dst)),
        "l"(src), "r"(bytes), "r"(smem_u32(b)), "l"(policy)
        : "memory");
}
// The stages' mbarriers initialised by one thread (`count` arrivals a phase), made visible to
// the bulk copies; a barrier must follow before other threads use them.
template <int STAGES>
__device__ __forceinline__ void mbar_init_stages(unsigned long long (&b)[STAGES], int count) {
#pragma unroll
    for (int st = 0; st < STAGES; ++st) mbar_init(&b[st], count);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}

// A block's weights in the tiled layout (weight_tiles.rs): its BN / 64 column tiles' runs of
// k-tiles, from the block's first k-tile on.
template <int BN>
struct WgWeightTiles {
    const unsigned short* base;  // column tile n0 / 64, k-tile kt0
    size_t tile_stride;          // halves from one 64-row column tile to the next (KT 4096)
    unsigned long long policy;   // L2: evict first

    __device__ __forceinline__ WgWeightTiles(const unsigned short* Wt, int K, int n0, int kt0) {
        const size_t kts = (size_t)(K + GEMM_BK - 1) / GEMM_BK;
        tile_stride = kts * 64 * GEMM_BK;
        base = Wt + (size_t)(n0 / 64) * tile_stride + (size_t)kt0 * 64 * GEMM_BK;
        // A step reads each weight once, so its lines are the first L2 gives up: the activation
        // rows (re-read by every column block), the split totals and the cache stay.
        asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
    }
    // The block's k-tile kt (from its first) into the stage at sw, counted on b (one thread).
    __device__ __forceinline__ void request(unsigned short* sw, int kt, unsigned long long* b) const {
        mbar_expect_tx(b, BN * GEMM_BK * 2);
#pragma unroll
        for (int j = 0; j < BN / 64; ++j)
            bulk_copy(sw + j * 64 * GEMM_BK, base + j * tile_stride + (size_t)kt * 64 * GEMM_BK,
                      64 * GEMM_BK * 2, b, policy);
    }
};

// The activation requests of one thread: its 16-byte chunks of a stage's ROWS activation rows,
// the chunks `gemm_load_a` of gemm.cu requests at KS = 1 and P = 1 (chunk idx = thread + i
// THREADS: row idx / 8, chunk idx % 8), with each chunk's source row, validity and place in the
// stage worked out once instead of at every k-tile: only the k offset moves from one k-tile to
// the next.
template <int ROWS, int THREADS>
struct WgActLoads {
    static constexpr int AC = (ROWS * 8 + THREADS - 1) / THREADS;  // chunks a thread, at most
    const unsigned short* a_row[AC];
    int a_at[AC];   // halves into the stage (the swizzled place)
    int a_k[AC];    // the chunk's k offset in a k-tile (8 c)
    bool a_ok[AC];  // a row of the matrix (not past M)
    const unsigned short* A;
    int K;

    __device__ __forceinline__ WgActLoads(const unsigned short* A_, int M, int K_, int m0)
        : A(A_), K(K_) {
#pragma unroll
        for (int i = 0; i < AC; ++i) {
            const int idx = threadIdx.x + i * THREADS, r = idx / 8, c = idx % 8;
            a_ok[i] = idx < ROWS * 8 && m0 + r < M;
            a_k[i] = 8 * c;
            a_row[i] = A + (size_t)(a_ok[i] ? m0 + r : 0) * K + 8 * c;
            a_at[i] = idx < ROWS * 8 ? tile_off(r, c) : -1;
        }
    }
    // k-tile kt's activations into the stage's activation part at sa.
    __device__ __forceinline__ void activations(unsigned short* sa, int kt) const {
#pragma unroll
        for (int i = 0; i < AC; ++i) {
            if (a_at[i] < 0) continue;
            const bool ok = a_ok[i] && kt * GEMM_BK + a_k[i] < K;
            cp_async16(sa + a_at[i], ok ? a_row[i] + kt * GEMM_BK : A, ok);
        }
    }
};

// The epilogue of a block's finished tile, its sums staged in shared memory at t (rows BN + 4
// floats apart).
template <int ROWS, int BN, int THREADS>
__device__ __forceinline__ void gemm_finish_staged(const float* t, int M, int N, int m0, int n0,
                                                   const GemmEpilogue& e) {
    gemm_finish_pairs<1, ROWS, BN, THREADS>(M, N, m0, n0, e, [&](int m, int n) {
        return *(const float2*)(t + (m - m0) * (BN + 4) + (n - n0));
    });
}

// A warpgroup's accumulators of a block's tile and the running total of its splits: d[4 i + 2 h
// + c] holds weight row 16 wl + g + 8 h of the warpgroup's 64 (wl: warp in the warpgroup, g =
// lane / 4) and activation row 8 i + 2 t4 + c (t4 = lane % 4): the wgmma accumulator layout,
// operands swapped.
template <int NT>
struct WgAccumulators {
    float d[NT / 2], tot[NT / 2];
    int n_g, t4;  // the column of h = 0 (n0 + 64 wg + 16 wl + g); lane % 4

    __device__ __forceinline__ WgAccumulators(int n_warp, int lane)
        : n_g(n_warp + (lane >> 2)), t4(lane & 3) {
#pragma unroll
        for (int i = 0; i < NT / 2; ++i) d[i] = tot[i] = 0.f;
    }

    // d += this warpgroup's products of one staged k-tile (its 64 weight rows from
    // stage + 64 wg rows, the activation rows from stage + W_STAGE), k16 steps in order;
    // committed, not waited for.
    template <int W_STAGE>
    __device__ __forceinline__ void multiply(const unsigned short* stage, int wg) {
        const unsigned long long da = wgmma_desc(stage + wg * 64 * GEMM_BK);
        const unsigned long long db = wgmma_desc(stage + W_STAGE);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < GEMM_BK / 16; ++kk) wgmma_k16<NT>(d, da + 2 * kk, db + 2 * kk);
        wgmma_commit();
    }

    // Split s_cur's sums are final (its multiplications waited for): into the running total
    // (split order), or to the workspace; d restarts at zero for the next split.
    __device__ __forceinline__ void end_split(bool whole, int s_cur, float* ws, int M, int N,
                                              int m0) {
#pragma unroll
        for (int i = 0; i < NT / 2; ++i) wgmma_keep(d[i]);
#pragma unroll
        for (int i = 0; i < NT / 8; ++i) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
#pragma unroll
                for (int c = 0; c < 2; ++c) {
                    float& a = d[4 * i + 2 * h + c];
                    if (whole) {
                        tot[4 * i + 2 * h + c] = s_cur == 0 ? a : tot[4 * i + 2 * h + c] + a;
                    } else {
                        const int n = n_g + 8 * h, m = m0 + 8 * i + 2 * t4 + c;
                        if (m < M && n < N) ws[((size_t)s_cur * M + m) * N + n] = a;
                    }
                    a = 0.f;
                }
            }
        }
    }

    // Every split added in registers: the block's sums to its tile in shared memory (row r of
    // the block at t + r ld, column n - n0), for `gemm_finish_staged`.
    __device__ __forceinline__ void stage(float* t, int ld, int n0) const {
#pragma unroll
        for (int i = 0; i < NT / 8; ++i) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
#pragma unroll
                for (int c = 0; c < 2; ++c)
                    t[(8 * i + 2 * t4 + c) * ld + n_g - n0 + 8 * h] = tot[4 * i + 2 * h + c];
            }
        }
    }
};

// The ends of a block's splits among its k-tiles (numbered from the block's first, bs.kt0).
struct WgSplitEnds {
    BlockSplits bs;
    int s_cur, end;

    __device__ __forceinline__ explicit WgSplitEnds(const BlockSplits& bs_)
        : bs(bs_), s_cur(bs_.s_begin) {
        end = at(s_cur + 1);
    }
    __device__ __forceinline__ int at(int sp) const { return bs.start(sp) - bs.kt0; }
    // After the block's k-tile kt: a split that ends there goes to the running total or the
    // workspace, once its multiplications are done.
    template <int NT>
    __device__ __forceinline__ void after(int kt, WgAccumulators<NT>& acc, bool whole, float* ws,
                                          int M, int N, int m0) {
        if (kt + 1 != end) return;
        wgmma_wait<0>();
        acc.end_split(whole, s_cur, ws, M, N, m0);
        ++s_cur;
        end = at(s_cur + 1);
    }
};

// A block's tile on wgmma: BN / 64 warpgroups, 16 MT activation rows (= wgmma N), STAGES
// stages of one k-tile each (the weights, then the activations), which also hold the finished
// tile for the staged epilogue.
template <int MT, int BN, int STAGES>
struct WgTile {
    static constexpr int WG = BN / 64;                   // warpgroups
    static constexpr int NT = 16 * MT;                   // activation rows of a block = wgmma N
    static constexpr int ROWS = NT;
    static constexpr int W_STAGE = BN * GEMM_BK;         // halves of a stage's weights
    static constexpr int STAGE = W_STAGE + ROWS * GEMM_BK;
    static_assert(BN % 64 == 0 && (NT == 16 || NT == 32 || NT == 64 || NT == 128), "tile");
    static_assert(ROWS * (BN + 4) * 4 <= STAGES * STAGE * 2, "the stages hold the finished tile");

    // Every split added in registers and every stage consumed: the warpgroups' sums go to a
    // tile in the stages (`holds`: this thread has accumulators), whose epilogue then writes
    // whole rows of columns (the accumulator layout would write 32 bytes of a row at a time).
    template <int THREADS>
    static __device__ __forceinline__ void finish_whole(const WgAccumulators<NT>& acc, bool holds,
                                                        unsigned short* smem, int M, int N,
                                                        int m0, int n0, const GemmEpilogue& e) {
        __syncthreads();
        float* tile = (float*)smem;
        if (holds) acc.stage(tile, BN + 4, n0);
        __syncthreads();
        gemm_finish_staged<ROWS, BN, THREADS>(tile, M, N, m0, n0, e);
    }
};

// The stages in the block's dynamic shared memory, on a 1024-byte boundary (the swizzle repeats
// every 8 rows of 128 bytes); the launch gives 1024 bytes more than they take.
__device__ __forceinline__ unsigned short* wg_stages() {
    extern __shared__ __align__(16) unsigned short smem_raw[];
    const unsigned at = (unsigned)__cvta_generic_to_shared(smem_raw);
    return smem_raw + ((1024 - (at & 1023)) & 1023) / 2;
}

template <int MT, int BN, int STAGES>
__device__ __forceinline__ void gemm_wg_impl(const unsigned short* __restrict__ A, size_t a_plane,
                                             const unsigned short* __restrict__ Wt, int M, int N,
                                             int K, int S, float* ws, int* cnt,
                                             const GemmEpilogue& e) {
    using Tile = WgTile<MT, BN, STAGES>;
    constexpr int THREADS = 128 * Tile::WG;
    constexpr int NT = Tile::NT, ROWS = Tile::ROWS, W_STAGE = Tile::W_STAGE, STAGE = Tile::STAGE;
    unsigned short* smem = wg_stages();
    __shared__ __align__(8) unsigned long long full[STAGES];  // a stage's weights have landed

    const int n0 = blockIdx.z * BN, m0 = blockIdx.x * ROWS;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wg = warp >> 2, wl = warp & 3;  // warpgroup; warp within it
    const BlockSplits bs(K, S);
    const int kt0 = bs.kt0, nk = bs.nk;
    const bool whole = bs.whole;

    const WgWeightTiles<BN> weights(Wt, K, n0, kt0);
    if (tid == 0) {
        mbar_init_stages(full, 1);
#pragma unroll
        for (int st = 0; st < STAGES - 1; ++st)
            if (st < nk) weights.request(smem + st * STAGE, st, &full[st]);
    }
    const WgActLoads<ROWS, THREADS> loads(A, M, K, m0);
    wait_previous_kernel();
#pragma unroll
    for (int st = 0; st < STAGES - 1; ++st) {
        if (st < nk) loads.activations(smem + st * STAGE + W_STAGE, kt0 + st);
        cp_async_commit();
    }
    __syncthreads();  // the mbarriers initialised, for every thread

    WgAccumulators<NT> acc(n0 + wg * 64 + 16 * wl, lane);
    WgSplitEnds splits(bs);

    for (int kt = 0; kt < nk; ++kt) {
        cp_async_wait<STAGES - 2>();
        fence_async_shared();
        __syncthreads();
        mbar_wait(&full[kt % STAGES], (kt / STAGES) & 1);
        acc.template multiply<W_STAGE>(smem + (kt % STAGES) * STAGE, wg);
        // The previous k-tile's multiplications are done (in this warpgroup; the barrier: in
        // all), so its stage takes the k-tile STAGES - 1 ahead.
        wgmma_wait<1>();
        __syncthreads();
        {
            const int nxt = kt + STAGES - 1;
            if (nxt < nk) {
                unsigned short* sn = smem + (nxt % STAGES) * STAGE;
                if (tid == 0) weights.request(sn, nxt, &full[nxt % STAGES]);
                loads.activations(sn + W_STAGE, kt0 + nxt);
            }
            cp_async_commit();
        }
        splits.after(kt, acc, whole, ws, M, N, m0);
    }
    wgmma_wait<0>();
    cp_async_wait<0>();

    if (whole) {
        Tile::template finish_whole<THREADS>(acc, true, smem, M, N, m0, n0, e);
        return;
    }
    gemm_finish_splits<1, ROWS, BN, THREADS>(ws, cnt, M, N, S, m0, n0, e);
}

// The activation requests of a loader thread (LT loader threads, a multiple of 64): chunk
// c = lt % 8 of rows lt / 8 + i LT / 8 of a stage's ROWS activation rows, the sources and places
// of gemm.cu's loaders, worked out from one per-thread base.
template <int ROWS, int LT>
struct WsActLoads {
    static_assert(LT % 64 == 0, "a loader thread's rows keep their swizzle (r & 7)");
    static constexpr int RS = LT / 8;  // rows between a thread's chunks
    const unsigned short* a;  // activation row m0 + lt / 8 at chunk c
    const unsigned short* A;
    int at;      // the swizzled place of the thread's first chunk (row lt / 8)
    int row;     // that row of the stage (lt / 8)
    int a_rows;  // rows left in the matrix from the thread's first row
    int kc, K;   // the chunk's k offset in a k-tile (8 c)

    __device__ __forceinline__ WsActLoads(const unsigned short* A_, int M, int K_, int m0, int lt)
        : A(A_), K(K_) {
        const int r = lt / 8, c = lt % 8;
        row = r;
        kc = 8 * c;
        a_rows = M - m0 - r;
        a = A + (size_t)(a_rows > 0 ? m0 + r : 0) * K + kc;
        at = tile_off(r, c);
    }
    __device__ __forceinline__ void activations(unsigned short* sa, int kt) const {
        const bool kok = kt * GEMM_BK + kc < K;
#pragma unroll
        for (int i = 0; i < (ROWS + RS - 1) / RS; ++i) {
            if ((ROWS % RS) != 0 && row + i * RS >= ROWS) continue;
            const bool ok = kok && i * RS < a_rows;
            cp_async16(sa + at + i * RS * GEMM_BK, ok ? a + (size_t)i * RS * K + kt * GEMM_BK : A,
                       ok);
        }
    }
};

// The same multiplications in the same order as gemm_wg_impl, warp-specialized: LW loader warps
// request every k-tile (the weights by one bulk copy per 64 rows, the activations by cp.async,
// each stage's arrivals and bytes counted on its `full` mbarrier) while the
// BN / 64 warpgroups multiply, each warp releasing a stage (its `empty` mbarrier) as soon as its
// multiplications are done: no block-wide barrier per k-tile, and a stage is refilled as soon as
// every warp has left it.
template <int MT, int BN, int STAGES, int LW>
__device__ __forceinline__ void gemm_ws_impl(const unsigned short* __restrict__ A,
                                             const unsigned short* __restrict__ Wt, int M, int N,
                                             int K, int S, float* ws, int* cnt,
                                             const GemmEpilogue& e) {
    using Tile = WgTile<MT, BN, STAGES>;
    constexpr int CONSUMERS = 128 * Tile::WG;
    constexpr int LT = 32 * LW;
    constexpr int NT = Tile::NT, ROWS = Tile::ROWS, W_STAGE = Tile::W_STAGE, STAGE = Tile::STAGE;
    unsigned short* smem = wg_stages();
    __shared__ __align__(8) unsigned long long full[STAGES], empty[STAGES];

    const int n0 = blockIdx.z * BN, m0 = blockIdx.x * ROWS;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const BlockSplits bs(K, S);
    const int kt0 = bs.kt0, nk = bs.nk;
    const bool whole = bs.whole;
    if (tid == 0) {
        mbar_init_stages(full, LT + 1);  // every loader thread, and the weights' byte count
        mbar_init_stages(empty, CONSUMERS / 32);
    }
    __syncthreads();

    const int wg = warp >> 2, wl = warp & 3;  // (consumers)
    WgAccumulators<NT> acc(n0 + wg * 64 + 16 * wl, lane);
    if (tid >= CONSUMERS) {
        // Loaders. The first stages' weights before the wait for the previous kernel.
        const int lt = tid - CONSUMERS;
        const WgWeightTiles<BN> weights(Wt, K, n0, kt0);
        const WsActLoads<ROWS, LT> loads(A, M, K, m0, lt);
        const int pre = min(STAGES, nk);
        if (lt == 0)
            for (int kt = 0; kt < pre; ++kt) weights.request(smem + kt * STAGE, kt, &full[kt]);
        wait_previous_kernel();
        for (int kt = 0; kt < pre; ++kt) {
            loads.activations(smem + kt * STAGE + W_STAGE, kt0 + kt);
            cp_async_arrive(&full[kt]);
        }
        for (int kt = STAGES; kt < nk; ++kt) {
            const int st = kt % STAGES;
            mbar_wait(&empty[st], (kt / STAGES - 1) & 1);
            unsigned short* sn = smem + st * STAGE;
            if (lt == 0) weights.request(sn, kt, &full[st]);
            loads.activations(sn + W_STAGE, kt0 + kt);
            cp_async_arrive(&full[st]);
        }
        cp_async_wait<0>();
    } else {
        wait_previous_kernel();
        WgSplitEnds splits(bs);
        for (int kt = 0; kt < nk; ++kt) {
            const int st = kt % STAGES;
            mbar_wait(&full[st], (kt / STAGES) & 1);
            fence_async_shared();  // the loaders' cp.async writes, seen by the tensor cores
            acc.template multiply<W_STAGE>(smem + st * STAGE, wg);
            // The previous k-tile's multiplications are done: its stage is free.
            wgmma_wait<1>();
            if (kt > 0) {
                __syncwarp();
                if (lane == 0) mbar_arrive(&empty[(kt - 1) % STAGES]);
            }
            splits.after(kt, acc, whole, ws, M, N, m0);
        }
        wgmma_wait<0>();
    }
    if (whole) {
        Tile::template finish_whole<CONSUMERS + LT>(acc, tid < CONSUMERS, smem, M, N, m0, n0, e);
        return;
    }
    gemm_finish_splits<1, ROWS, BN, CONSUMERS + LT>(ws, cnt, M, N, S, m0, n0, e);
}

// An entry point with the parameter list of gemm.cu's kernels, `threads` a block, calling
// `impl` (a parenthesized call of an impl on those parameters and the epilogue e).
#define WGMMA_KERNEL(name, bn, wn, threads, impl)                                               \
    extern "C" __global__ void __launch_bounds__(threads, 1)                                    \
        name(const unsigned short* A, size_t a_plane, const unsigned short* W, int M, int N,    \
             int K, int S, float* ws, int* cnt, int mode, float* out, int ldo,                  \
             const float* bias, unsigned short* a_out, size_t a_out_plane, const int* io,       \
             int QB, const float* cos_t, const float* sin_t, float* kc, float* vc, int nh,      \
             int nkv, int hd, int cap) {                                                        \
        static_assert(32 * (wn) == 128 * ((bn) / 64), "one warpgroup per 64 columns");          \
        const GemmEpilogue e{mode, out, ldo, bias, a_out, a_out_plane, io, QB, cos_t,           \
                             sin_t, kc, vc, nh, nkv, hd, cap};                                  \
        impl;                                                                                   \
    }

// Named as gemm.cu's kernels with the prefix wgmma (one activation plane, one k-tile a stage,
// BN / 16 warps in one row of the layout), launched as those with 1024 bytes more of dynamic
// shared memory.
#define WGMMA_ENTRY(mt, bn, st, wn)                                                             \
    WGMMA_KERNEL(wgmma_p1_m##mt##_n##bn##_s##st##_w1x##wn##_k1, bn, wn, 32 * (wn),              \
                 (gemm_wg_impl<mt, bn, st>(A, a_plane, W, M, N, K, S, ws, cnt, e)))

// The warp-specialized schedule (gemm_ws_impl): `lw` loader warps more, named with the suffix
// _ld{lw}.
#define WGMMA_WS_ENTRY(mt, bn, st, wn, lw)                                                      \
    WGMMA_KERNEL(wgmma_p1_m##mt##_n##bn##_s##st##_w1x##wn##_k1_ld##lw, bn, wn,                  \
                 32 * ((wn) + (lw)), (gemm_ws_impl<mt, bn, st, lw>(A, W, M, N, K, S, ws, cnt, e)))

// The tiles of WGMMA_TILES in kernels.rs (the production path on compute capability 9.0):
// 16 rows at 64 columns and 6 or 8 stages; 32 and 64 rows at 128 columns and 4 stages, 32 rows
// at 6 stages where the launch fits in one wave. Other shapes are variants in
// dev/cuda/gemm_wgmma.cu.
#ifndef WGMMA_NO_PRODUCTION
WGMMA_ENTRY(1, 64, 6, 4)
WGMMA_ENTRY(1, 64, 8, 4)
WGMMA_ENTRY(2, 128, 4, 8)
WGMMA_ENTRY(2, 128, 6, 8)
WGMMA_ENTRY(4, 128, 4, 8)
#endif
