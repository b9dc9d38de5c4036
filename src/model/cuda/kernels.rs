//! Loading lade's PTX and launching its kernels with the argument lists of `kernels.cu` and
//! `gemm.cu`.

use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::{
    result, sys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, CudaView, DevicePtr,
    LaunchConfig,
};
use candle_core::cuda_backend::cudarc::nvrtc::Ptx;

use super::gpu_err;
use super::weight_tiles::{GemmWeights, WeightLayout, ROW_MULTIPLE};
use crate::Result;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/kernels.ptx"));
/// The matmul on Hopper's warpgroup instruction (gemm_wgmma.cu, compute_90a), loaded on
/// devices of compute capability 9.0 only.
const WGMMA_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/gemm_wgmma.ptx"));

/// Keys per attention split (`CHUNK` in kernels.cu).
pub const CHUNK: usize = 128;
/// k-tile of the matmul (`GEMM_BK` in gemm.cu): splits of K are whole k-tiles.
pub const GEMM_BK: usize = 64;

/// A block shape of the matmul: 16 `mt` rows x `bn` columns, `stages` pipeline stages of `ks`
/// k-tiles, `wm` x `wn` warps; the entry point `gemm_p{P}_m{mt}_n{bn}_s{stages}_w{wm}x{wn}_k{ks}`
/// of gemm.cu (mma.sync), or, with `wgmma`, `wgmma_p{P}_...` of gemm_wgmma.cu (Hopper's
/// warpgroup instruction, `wm` = 1). Schedule only: a row's arithmetic is the same in every
/// tile and in both instructions. A wgmma tile with `loaders` > 0 is warp-specialized
/// (`gemm_ws_impl`: that many warps more only request k-tiles; the name ends in `_ld{loaders}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmTile {
    pub mt: usize,
    pub bn: usize,
    pub stages: usize,
    pub wm: usize,
    pub wn: usize,
    pub ks: usize,
    pub wgmma: bool,
    pub loaders: usize,
}

impl GemmTile {
    const fn new(mt: usize, bn: usize, stages: usize, wm: usize, wn: usize, ks: usize) -> Self {
        GemmTile {
            mt,
            bn,
            stages,
            wm,
            wn,
            ks,
            wgmma: false,
            loaders: 0,
        }
    }

    /// A tile of the wgmma matmul: `wn` warps (`bn` / 64 warpgroups), one k-tile a stage.
    const fn wgmma(mt: usize, bn: usize, stages: usize, wn: usize) -> Self {
        GemmTile {
            wgmma: true,
            ..GemmTile::new(mt, bn, stages, 1, wn, 1)
        }
    }

    /// The kernel's name for `planes` activation planes.
    pub fn name(&self, planes: usize) -> String {
        let t = self;
        let loaders = if t.loaders > 0 {
            format!("_ld{}", t.loaders)
        } else {
            String::new()
        };
        format!(
            "{}_p{planes}_m{}_n{}_s{}_w{}x{}_k{}{loaders}",
            if t.wgmma { "wgmma" } else { "gemm" },
            t.mt,
            t.bn,
            t.stages,
            t.wm,
            t.wn,
            t.ks
        )
    }

    /// Reads a kernel name back: (planes, tile).
    pub fn parse(name: &str) -> Option<(usize, GemmTile)> {
        let (wgmma, rest) = match name.strip_prefix("wgmma_p") {
            Some(rest) => (true, rest),
            None => (false, name.strip_prefix("gemm_p")?),
        };
        let mut parts = rest.split('_');
        let mut field = |pre: &str| -> Option<usize> {
            let part = parts.next()?;
            part.strip_prefix(pre).unwrap_or(part).parse().ok()
        };
        let planes = field("")?;
        let (mt, bn, stages) = (field("m")?, field("n")?, field("s")?);
        let (wm, wn) = parts.next()?.strip_prefix('w')?.split_once('x')?;
        let ks = parts.next()?.strip_prefix('k')?.parse().ok()?;
        let loaders = match parts.next() {
            Some(part) if wgmma => part.strip_prefix("ld")?.parse().ok()?,
            Some(_) => return None,
            None => 0,
        };
        let tile = GemmTile {
            wgmma,
            loaders,
            ..GemmTile::new(mt, bn, stages, wm.parse().ok()?, wn.parse().ok()?, ks)
        };
        parts.next().is_none().then_some((planes, tile))
    }

    pub fn rows(&self) -> usize {
        16 * self.mt
    }

    /// Row blocks x column tiles of an (m, n) matmul on this tile.
    fn row_column_blocks(&self, m: usize, n: usize) -> usize {
        m.div_ceil(self.rows()).max(1) * n.div_ceil(self.bn)
    }

    pub fn threads(&self) -> usize {
        32 * (self.wm * self.wn + self.loaders)
    }

    /// Dynamic shared memory of a block with `planes` activation planes (a wgmma kernel puts
    /// its tiles on 1024-byte boundaries, which takes up to 1024 bytes more).
    pub fn smem(&self, planes: usize) -> usize {
        let stages = self.stages * self.ks * (self.bn + planes * self.rows()) * GEMM_BK * 2;
        stages + if self.wgmma { 1024 } else { 0 }
    }
}

/// A row range's entry in a tile table: the most rows it serves, its tile, and optionally
/// another tile that runs instead where [`AltTile`] says. Schedule only.
#[derive(Clone, Copy, Debug)]
struct TileEntry {
    most_rows: usize,
    tile: GemmTile,
    alt: Option<AltTile>,
}

impl TileEntry {
    const fn new(most_rows: usize, tile: GemmTile) -> Self {
        TileEntry {
            most_rows,
            tile,
            alt: None,
        }
    }

    const fn with(self, alt: AltTile) -> Self {
        TileEntry {
            alt: Some(alt),
            ..self
        }
    }

    /// Every tile of the entry: its own, then its other one.
    fn tiles(&self) -> impl Iterator<Item = GemmTile> {
        std::iter::once(self.tile).chain(self.alt.map(|a| a.tile()))
    }
}

/// A table entry's other tile and where it runs instead of the entry's own, at the tiles'
/// occupancies (blocks a multiprocessor holds, asked of the driver at load).
#[derive(Clone, Copy, Debug)]
enum AltTile {
    /// Wherever every block of its launch is resident at once and the launch has no fewer
    /// blocks than the own tile's: a deeper pipeline, whose blocks keep more of their weights
    /// in flight (fewer of them fit a multiprocessor, which a launch that fits in one wave does
    /// not miss), or a shorter tile, whose launch has more blocks, each with fewer rows and
    /// registers (a narrow projection's many-row step fills more of the device).
    OneWave(GemmTile),
    /// Wherever it fills the waves of its launch better ([`fullest_waves`]): both tiles, each
    /// with its splits summed in one block, in two, or one a split, and the launch whose last
    /// wave of resident blocks is fullest runs. For tiles one row tall, whose blocks stream the
    /// weights: a launch of 1.1 waves runs about as long as one of 2.
    FillsWaves(GemmTile),
}

impl AltTile {
    const fn tile(&self) -> GemmTile {
        match *self {
            AltTile::OneWave(t) | AltTile::FillsWaves(t) => t,
        }
    }
}

/// The matmul's block shapes on mma.sync (gemm.cu, any device lade runs on), by the most rows
/// each serves: 128 columns a block (fewer, longer weight rows per block), one 16-row tile with
/// a 4-deep pipeline for up to 16 rows, taller tiles for more (each weight tile read once for
/// up to 128 rows, the activation tiles re-read less). Chosen with the dev harness's timings at
/// the LLaMA-2-7B and 70B shapes on an H200 (dev/cuda/README.md); every variant gives the same
/// results.
const MMA_TILES: [TileEntry; 4] = [
    TileEntry::new(16, GemmTile::new(1, 128, 4, 1, 4, 1)),
    TileEntry::new(32, GemmTile::new(2, 128, 4, 2, 4, 1)),
    TileEntry::new(64, GemmTile::new(4, 128, 4, 2, 4, 1)),
    TileEntry::new(usize::MAX, GemmTile::new(8, 128, 3, 4, 2, 1)),
];

/// The block shapes on Hopper's wgmma (gemm_wgmma.cu, the production matmul on devices of
/// compute capability 9.0), by the most rows each serves. Steps of up to 16 rows, which stream
/// the weights, run 64 columns (one warpgroup), twice the blocks of 128-column tiles at the same
/// K splits, with 6 stages (three blocks a multiprocessor) or 8 (two, each with more weights in
/// flight), whichever, with its splits in one block, two, or one a split, fills the waves of its
/// launch best (a launch of 1.1 waves takes about as long as one of 2; in the dev harness the
/// rule took the 1- and 16-row matmuls of the LLaMA-2-7B, Llama-3-8B, 1B and 70B projections
/// from 1868 to 1796 µs summed, the fastest of those layouts summing to 1763). Up to 32 rows a
/// 32-row tile, more a 64-row tile (two row blocks for up to 128 rows, launched side by side so
/// that the second reads the weights from the L2 cache: a 128-row tile's registers hold one
/// block a multiprocessor, and it ran slower than two 64-row blocks at every 7B projection),
/// both 128 columns (two warpgroups) and 4 stages; the 32-row tile with 6 stages where that
/// launch fits in one wave (the 7B qkv, `o` and `down` projections, 3–9 % faster at 32 rows),
/// and the 4-stage 32-row tile for 33 to 128 rows where its launch fits in one wave with at
/// least as many blocks (the fastest kernels the dev harness found for the 135M and 1B
/// projections at 64 and 128 rows, and for the 7B `o` and `down` at 64 rows, were 32-row tiles,
/// 7–48 % faster than the 64-row tile). Chosen with the dev harness's timings at the
/// LLaMA-2-7B, Llama-3-8B, 1B, 70B and 135M projections on an H100 (dev/cuda/README.md); all
/// give the same results bit for bit.
const WGMMA_TILES: [TileEntry; 3] = [
    TileEntry::new(16, GemmTile::wgmma(1, 64, 6, 4))
        .with(AltTile::FillsWaves(GemmTile::wgmma(1, 64, 8, 4))),
    TileEntry::new(32, GemmTile::wgmma(2, 128, 4, 8))
        .with(AltTile::OneWave(GemmTile::wgmma(2, 128, 6, 8))),
    TileEntry::new(usize::MAX, GemmTile::wgmma(4, 128, 4, 8))
        .with(AltTile::OneWave(GemmTile::wgmma(2, 128, 4, 8))),
];

/// Which entry of a tile table runs a matmul of `m` rows.
fn gemm_tile_index(tiles: &[TileEntry], m: usize) -> usize {
    tiles
        .iter()
        .position(|e| m <= e.most_rows)
        .unwrap_or(tiles.len() - 1)
}

/// f16 planes per activation value in the matmul's input (A format): 1 = f16(v); 2 = hi and
/// lo halves (about 22 bits of v, twice the tensor-core work).
pub const ACT_PLANES: usize = 1;

/// The largest grid dimension y or z of a CUDA launch.
const MAX_GRID_YZ: usize = 65535;

/// Splits of the K range of a (k, n) matmul on a device of `sms` multiprocessors: about three
/// blocks per multiprocessor for a one-row step at 128 columns a block, but at most 4 splits
/// (more cost a many-row step more in split sums than they give a one-row step; measured with
/// the dev harness at the 7B and 70B shapes) unless that leaves a one-row step fewer blocks at
/// 128 columns than the device has multiprocessors (a 2048-wide projection has 16 column tiles:
/// 4 splits make 64 blocks on 132 multiprocessors): then up to one block per multiprocessor,
/// at most 8 (more slowed many-row steps of narrow projections). At least 4 k-tiles a split
/// (small models' matmuls still spread over a few dozen blocks). It depends on the shape and
/// the device only, never on the rows of a step, since it sets the order in which a row's
/// products are added.
pub fn gemm_splits(k: usize, n: usize, sms: usize) -> usize {
    let column_tiles = n.div_ceil(128).max(1);
    let cap = (sms / column_tiles).clamp(4, 8);
    let most = (k.div_ceil(GEMM_BK) / 4).clamp(1, cap);
    ((3 * sms + column_tiles / 2) / column_tiles).clamp(1, most)
}

/// Blocks along the split axis of a launch of `tile` with `splits` splits: one per split (each
/// writes its sum to the workspace; the last to finish adds them), or one for all of them. A
/// one-row-tall tile spreads its splits (its blocks stream the weights: the more in flight the
/// better), unless its table entry chooses the layout by how full the launch's waves are
/// ([`AltTile::FillsWaves`], as the Hopper table's does). A taller one sums them itself, saving
/// the workspace traffic of many rows and the finishing blocks, as long as the launch's
/// `row_column_blocks` blocks (column tiles times row blocks) reach at least half of the
/// device's `sms` multiprocessors; a narrower launch spreads
/// them. Chosen with the dev harness's timings at the LLaMA-2-7B projections on an H100 (at 32
/// to 128 rows, 96 blocks or more summed their splits faster, 64 or fewer slower:
/// dev/cuda/README.md); schedule only.
fn gemm_split_blocks(
    tile: &GemmTile,
    splits: usize,
    row_column_blocks: usize,
    sms: usize,
) -> usize {
    if tile.mt > 1 && 2 * row_column_blocks >= sms {
        1
    } else {
        splits
    }
}

/// The schedule of an (m, n) matmul on `tile` with `splits` K splits, on a device of `sms`
/// multiprocessors: the blocks along the split axis by [`gemm_split_blocks`].
fn schedule_on(tile: GemmTile, m: usize, n: usize, splits: usize, sms: usize) -> GemmSchedule {
    GemmSchedule {
        tile,
        splits,
        split_blocks: gemm_split_blocks(&tile, splits, tile.row_column_blocks(m, n), sms),
    }
}

/// The schedule of an (m, n) matmul with `splits` K splits on a table entry whose tile is `own`
/// and whose other tile, if any, holds `resident` blocks a multiprocessor (`own_resident` for
/// `own`): the other tile where [`AltTile`] says, else `own`.
fn entry_schedule(
    (own, own_resident): (GemmTile, usize),
    alt: Option<(AltTile, usize)>,
    m: usize,
    n: usize,
    splits: usize,
    sms: usize,
) -> GemmSchedule {
    match alt {
        Some((AltTile::OneWave(tile), resident)) => {
            let schedule = schedule_on(own, m, n, splits, sms);
            let alt = schedule_on(tile, m, n, splits, sms);
            let blocks = alt.blocks(m, n);
            if blocks <= resident * sms && blocks >= schedule.blocks(m, n) {
                alt
            } else {
                schedule
            }
        }
        Some((AltTile::FillsWaves(tile), resident)) => {
            fullest_waves([(own, own_resident), (tile, resident)], m, n, splits, sms)
        }
        None => schedule_on(own, m, n, splits, sms),
    }
}

/// Of `tiles` (each with the blocks a multiprocessor holds), each with its `splits` summed in
/// one block, in two, or one block a split (the counts that divide `splits`), the schedule
/// whose launch fills its waves of resident blocks best: blocks over the resident blocks of as
/// many waves as it takes (1 when the last wave is full). Ties go to fewer split blocks (less
/// workspace traffic), then to the earlier tile. Schedule only: the splits are the shape's.
fn fullest_waves(
    tiles: [(GemmTile, usize); 2],
    m: usize,
    n: usize,
    splits: usize,
    sms: usize,
) -> GemmSchedule {
    // (schedule, blocks, resident blocks of its waves)
    let mut best: Option<(GemmSchedule, usize, usize)> = None;
    for (tile, resident) in tiles {
        let slots = resident.max(1) * sms;
        for split_blocks in [1, 2, splits] {
            if splits % split_blocks != 0 {
                continue;
            }
            let schedule = GemmSchedule {
                tile,
                splits,
                split_blocks,
            };
            let blocks = schedule.blocks(m, n);
            let room = blocks.div_ceil(slots) * slots;
            let better = match best {
                None => true,
                Some((b, b_blocks, b_room)) => {
                    let (fill, b_fill) = (blocks * b_room, b_blocks * room);
                    fill > b_fill || (fill == b_fill && split_blocks < b.split_blocks)
                }
            };
            if better {
                best = Some((schedule, blocks, room));
            }
        }
    }
    best.expect("at least one tile").0
}

/// The schedule of an (m, n) matmul with `splits` K splits from a tile table: the table's entry
/// for `m` rows by [`entry_schedule`], `resident(tile)` being how many blocks of a tile a
/// multiprocessor holds.
fn table_schedule(
    table: &[TileEntry],
    m: usize,
    n: usize,
    splits: usize,
    sms: usize,
    resident: impl Fn(GemmTile) -> usize,
) -> GemmSchedule {
    let entry = table[gemm_tile_index(table, m)];
    let alt = entry.alt.map(|a| (a, resident(a.tile())));
    entry_schedule((entry.tile, resident(entry.tile)), alt, m, n, splits, sms)
}

/// Counters one matmul launch may use (one per row block and column tile), for `m` rows and
/// `n` columns at most.
pub fn gemm_counters(m: usize, n: usize) -> usize {
    MMA_TILES
        .iter()
        .chain(&WGMMA_TILES)
        .flat_map(TileEntry::tiles)
        .map(|t| t.row_column_blocks(m, n))
        .max()
        .unwrap_or(0)
}

/// A production matmul kernel: its tile, the kernel for `ACT_PLANES` planes, and how many of
/// its blocks one multiprocessor holds at once (the driver's occupancy for its block and shared
/// memory).
#[derive(Clone)]
pub(super) struct TileKernel {
    pub tile: GemmTile,
    pub func: CudaFunction,
    pub resident: usize,
}

impl TileKernel {
    fn load(module: &Arc<CudaModule>, tile: GemmTile, optin: usize) -> Result<Self> {
        let func = module
            .load_function(&tile.name(ACT_PLANES))
            .map_err(gpu_err)?;
        let smem = tile.smem(ACT_PLANES);
        allow_smem(&func, smem, optin)?;
        let resident = func
            .occupancy_max_active_blocks_per_multiprocessor(tile.threads() as u32, smem, None)
            .map_err(gpu_err)? as usize;
        Ok(TileKernel {
            tile,
            func,
            resident: resident.max(1),
        })
    }
}

pub struct Kernels {
    embed: CudaFunction,
    /// The production matmul's tiles: [`WGMMA_TILES`] on a device of compute capability 9.0,
    /// [`MMA_TILES`] elsewhere.
    gemm_tiles: &'static [TileEntry],
    /// The kernel of every distinct tile of `gemm_tiles` (its entries' own and other tiles).
    gemm: Vec<TileKernel>,
    /// The kernel of every tile of [`MMA_TILES`] (the production matmul where `gemm_tiles` is
    /// [`MMA_TILES`]; for the dev harness's checks where it is not).
    mma: Vec<TileKernel>,
    norm_rows: CudaFunction,
    /// Multiprocessors of the device (sets the matmul's K splits).
    sms: usize,
    /// The attention's tiles: head dim 64, then 128; each at [`ATT_QTS`] vectors a block.
    attention: [[AttentionTile; ATT_QTS.len()]; 2],
    argmax_rows: CudaFunction,
    keep_rows: CudaFunction,
    /// Launch each kernel of a step with programmatic dependent launch (sm_90+), so that it
    /// starts, and loads its weights, while the previous kernel finishes
    /// (`wait_previous_kernel` in kernels.cu).
    pdl: bool,
}

/// A kernel's arguments as the driver reads them: one 8-byte slot per argument, the value in
/// its first bytes (the driver reads as many bytes as the parameter's type has).
#[derive(Default)]
struct Args(Vec<[u8; 8]>);

impl Args {
    fn push(&mut self, bytes: &[u8]) -> &mut Self {
        let mut slot = [0u8; 8];
        slot[..bytes.len()].copy_from_slice(bytes);
        self.0.push(slot);
        self
    }
    fn ptr<T>(&mut self, s: &CudaStream, buf: &impl DevicePtr<T>) -> &mut Self {
        let (ptr, _record) = buf.device_ptr(s);
        self.push(&ptr.to_ne_bytes())
    }
    fn null(&mut self) -> &mut Self {
        self.push(&0u64.to_ne_bytes())
    }
    fn i32(&mut self, v: usize) -> &mut Self {
        self.push(&(v as i32).to_ne_bytes())
    }
    fn f32(&mut self, v: f32) -> &mut Self {
        self.push(&v.to_ne_bytes())
    }
    fn u64(&mut self, v: usize) -> &mut Self {
        self.push(&(v as u64).to_ne_bytes())
    }
    /// The RoPE + cache-write parameters (`io, QB, cos, sin, kc, vc, nh, nkv, hd, cap`), as
    /// the qkv epilogue takes them.
    fn rope(&mut self, s: &CudaStream, io: &CudaSlice<i32>, r: &RopeArgs<'_>) -> &mut Self {
        self.ptr(s, io)
            .i32(r.qb)
            .ptr(s, r.cos)
            .ptr(s, r.sin)
            .ptr(s, r.kc)
            .ptr(s, r.vc)
            .i32(r.heads.0)
            .i32(r.heads.1)
            .i32(r.heads.2)
            .i32(r.cap)
    }
}

/// How a launch relates to the kernel before it on the stream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    /// Starts after everything before it has finished (the first kernel of a step, and
    /// kernels launched between steps).
    Full,
    /// May start while the previous kernel finishes (when the kernels allow it, see `pdl`).
    Overlap,
}

fn cfg(grid: (u32, u32, u32), block: u32, smem: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: grid,
        block_dim: (block, 1, 1),
        shared_mem_bytes: smem,
    }
}

/// Widest row `norm_rows` normalises (it holds the row in shared memory).
pub const MAX_NORM_WIDTH: usize = 16384;

/// Query vectors per block of the production attention kernel (`attention_qt<n>_hd<d>` in
/// attention.cu), fewest first; the last is the most a block takes (`ATT_QT` there).
pub(super) const ATT_QTS: [usize; 3] = [8, 16, 32];
/// The most query vectors an attention block takes.
pub(super) const ATT_QT: usize = ATT_QTS[ATT_QTS.len() - 1];
/// Keys staged at a time by the attention, in two buffers (`ATT_KS` in attention.cu).
const ATT_KS: usize = 64;
/// Threads of an attention block (`ATT_THREADS` in attention.cu).
const ATT_THREADS: u32 = 256;

/// Dynamic shared memory of an attention block of `qt` query vectors for head dim `hd`
/// (`AttSmem` in attention.cu).
pub(super) fn attn_smem(hd: usize, qt: usize) -> usize {
    4 * (qt * hd + 2 * ATT_KS * (hd + 4) + qt * CHUNK)
}

/// The production attention kernel of one head dim at `qt` query vectors a block, and how many
/// of its blocks a multiprocessor holds at once (the driver's occupancy).
pub(super) struct AttentionTile {
    pub qt: usize,
    pub func: CudaFunction,
    pub resident: usize,
}

impl AttentionTile {
    fn load(module: &Arc<CudaModule>, hd: usize, qt: usize, optin: usize) -> Result<Self> {
        let func = module
            .load_function(&format!("attention_qt{qt}_hd{hd}"))
            .map_err(gpu_err)?;
        let smem = attn_smem(hd, qt);
        allow_smem(&func, smem, optin)?;
        let resident = func
            .occupancy_max_active_blocks_per_multiprocessor(ATT_THREADS, smem, None)
            .map_err(gpu_err)? as usize;
        Ok(AttentionTile {
            qt,
            func,
            resident: resident.max(1),
        })
    }
}

/// Which of `tiles` ((vectors a block, blocks a multiprocessor holds), fewest vectors first)
/// takes an attention launch of `vectors` query vectors a key/value head (the step's rows times
/// the heads of a group) over `groups` key/value heads and `splits` key chunks (an index into
/// `tiles`; 0 if it is empty): the one of fewest vectors whose blocks are all resident on the
/// `sms` multiprocessors at once or are no more than the tallest tile's. A block stages its
/// chunk's keys and values once for all its vectors, so a shorter tile pays where it adds blocks
/// to a launch that already fills the device; where it adds none (a vector or a few a group) or
/// the device has room for them, its smaller blocks and more of them finish sooner. Every
/// vector's additions are its own, so the choice changes no result.
pub(super) fn attention_tile(
    tiles: &[(usize, usize)],
    vectors: usize,
    groups: usize,
    splits: usize,
    sms: usize,
) -> usize {
    let blocks = |qt: usize| vectors.div_ceil(qt.max(1)) * groups * splits;
    let Some(&(tallest, _)) = tiles.last() else {
        return 0;
    };
    tiles
        .iter()
        .position(|&(qt, resident)| blocks(qt) <= (resident * sms).max(blocks(tallest)))
        .unwrap_or(tiles.len() - 1)
}

/// How one matmul launch is cut: the block shape, the K splits (fixed by the shape of the
/// matmul: they set the order of the additions) and the blocks along the split axis
/// (`split_blocks` = 1: each block adds up every split itself; `splits`: one block per split).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmSchedule {
    pub tile: GemmTile,
    pub splits: usize,
    pub split_blocks: usize,
}

impl GemmSchedule {
    /// Blocks of the launch for an (m, n) matmul: row blocks x split blocks x column tiles.
    pub fn blocks(&self, m: usize, n: usize) -> usize {
        self.tile.row_column_blocks(m, n) * self.split_blocks
    }
}

/// Where a matmul's finished sums go (the `mode` of gemm.cu's epilogue).
pub enum GemmOut<'a> {
    /// `out[m, n] = v (+ bias)`, rows `ldo` floats apart.
    Store { out: &'a CudaSlice<f32>, ldo: usize },
    /// `out[m, n] += v` (the residual stream).
    Accumulate { out: &'a CudaSlice<f32>, ldo: usize },
    /// Gate and up interleaved (weight rows 2i, 2i + 1): `silu(gate) * up` in A format, n / 2
    /// columns, the next matmul's input.
    SiluPairs {
        a_out: &'a CudaSlice<u16>,
        plane: usize,
    },
    /// The qkv projection: `out` rows [q | k | v] (+ bias), q and k rotated at each row's
    /// position, k and v also written to the cache.
    Rope {
        out: &'a CudaSlice<f32>,
        rope: &'a RopeArgs<'a>,
    },
}

/// One matmul launch: `out[m, n] = sum_k A[m, k] * w[n, k]`, A in A format (`ACT_PLANES`
/// planes of `a_plane` halves).
pub struct GemmArgs<'a> {
    pub a: &'a CudaSlice<u16>,
    /// f16 planes in `a`: `ACT_PLANES` on the production path.
    pub planes: usize,
    pub a_plane: usize,
    pub w: &'a GemmWeights,
    pub bias: Option<&'a CudaSlice<f32>>,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub out: GemmOut<'a>,
}

/// One attention launch over a step of `qb` rows (see attention.cu).
pub struct AttentionArgs<'a> {
    /// The qkv projection's rows: (qb, (heads + 2 kv heads) * head dim).
    pub qkv: &'a CudaSlice<f32>,
    pub io: &'a CudaSlice<i32>,
    pub qb: usize,
    /// This layer's caches: (kv heads, cap, head dim).
    pub kc: CudaView<'a, f32>,
    pub vc: CudaView<'a, f32>,
    /// Split partials: qb * heads * splits * (head dim + 4) floats.
    pub part: &'a CudaSlice<f32>,
    /// At least qb * heads counters, zero between launches.
    pub done: &'a CudaSlice<i32>,
    /// The output in A format: `ACT_PLANES` planes of `out_plane` halves.
    pub out: &'a CudaSlice<u16>,
    pub out_plane: usize,
    /// (heads, kv heads, head dim).
    pub heads: (usize, usize, usize),
    pub cap: usize,
    /// Key chunks of [`CHUNK`]: cover every row's visible keys.
    pub splits: usize,
}

/// A step's matmul scratch: split sums and the finishing counters (zero between launches).
pub struct GemmScratch<'a> {
    pub ws: &'a CudaSlice<f32>,
    pub cnt: &'a CudaSlice<i32>,
}

/// The qkv projection's RoPE + cache-write epilogue.
pub struct RopeArgs<'a> {
    pub qb: usize,
    pub cos: &'a CudaSlice<f32>,
    pub sin: &'a CudaSlice<f32>,
    pub kc: &'a CudaView<'a, f32>,
    pub vc: &'a CudaView<'a, f32>,
    /// (heads, kv heads, head dim)
    pub heads: (usize, usize, usize),
    pub cap: usize,
}

/// Lets launches of `func` request `bytes` of dynamic shared memory, or says that this device
/// (`optin` bytes per block at most) cannot run it.
pub(super) fn allow_smem(func: &CudaFunction, bytes: usize, optin: usize) -> Result<()> {
    if bytes > optin {
        return Err(crate::LadeError::Gpu(format!(
            "a kernel needs {bytes} bytes of shared memory per block; this device allows {optin}"
        )));
    }
    // SAFETY: a live function handle (its module is kept alive by its owner); the attribute
    // only raises the dynamic shared memory a launch may request.
    unsafe {
        result::function::set_function_attribute(
            func.cu_function(),
            sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            bytes as i32,
        )
    }
    .map_err(gpu_err)
}

impl Kernels {
    pub fn load(ctx: &Arc<CudaContext>) -> Result<Self> {
        let module = ctx.load_module(Ptx::from_src(PTX)).map_err(gpu_err)?;
        let f = |name: &str| module.load_function(name).map_err(gpu_err);
        let attr = |a| ctx.attribute(a).map_err(gpu_err).map(|v| v.max(0) as usize);
        let smem_optin =
            attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?;
        let sms = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?.max(1);
        let major = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
        let minor = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
        // Each distinct tile of a table once (a tile may serve one entry and be another's
        // other tile).
        let load_tiles = |module: &Arc<CudaModule>, table: &[TileEntry]| {
            let mut kernels: Vec<TileKernel> = Vec::new();
            for tile in table.iter().flat_map(TileEntry::tiles) {
                if !kernels.iter().any(|k| k.tile == tile) {
                    kernels.push(TileKernel::load(module, tile, smem_optin)?);
                }
            }
            Ok::<_, crate::LadeError>(kernels)
        };
        let mma = load_tiles(&module, &MMA_TILES)?;
        let attention_tiles = |hd| {
            ATT_QTS
                .iter()
                .map(|&qt| AttentionTile::load(&module, hd, qt, smem_optin))
                .collect::<Result<Vec<_>>>()?
                .try_into()
                .map_err(|_| crate::LadeError::Gpu("the attention's tiles".into()))
        };
        // wgmma exists on compute capability 9.0 only (PTX of the "a" target runs nowhere
        // else).
        let (gemm_tiles, gemm): (&'static [TileEntry], _) = if (major, minor) == (9, 0) {
            let wgmma = ctx.load_module(Ptx::from_src(WGMMA_PTX)).map_err(gpu_err)?;
            (&WGMMA_TILES, load_tiles(&wgmma, &WGMMA_TILES)?)
        } else {
            (&MMA_TILES, mma.clone())
        };
        let k = Kernels {
            embed: f("embed")?,
            gemm_tiles,
            gemm,
            mma,
            norm_rows: f("norm_rows")?,
            sms,
            attention: [attention_tiles(64)?, attention_tiles(128)?],
            argmax_rows: f("argmax_rows")?,
            keep_rows: f("keep_rows")?,
            pdl: major >= 9,
        };
        allow_smem(&k.norm_rows, 4 * MAX_NORM_WIDTH, smem_optin)?;
        Ok(k)
    }

    /// Whether kernels of a step overlap their predecessor (programmatic dependent launch).
    pub fn overlaps(&self) -> bool {
        self.pdl
    }

    /// Launches `func` on `s` with `args`.
    ///
    /// # Safety
    /// `args` must match the kernel's parameters in number, order and type, and the kernel
    /// must stay within the buffers it is given for this configuration (each caller states
    /// why). With `Order::Overlap` the kernel must call `wait_previous_kernel` before it reads
    /// anything an earlier kernel writes and before it writes anything.
    unsafe fn launch(
        &self,
        s: &CudaStream,
        func: &CudaFunction,
        cfg: LaunchConfig,
        args: &mut Args,
        order: Order,
    ) -> Result<()> {
        s.context().bind_to_thread().map_err(gpu_err)?;
        let mut params: Vec<*mut std::ffi::c_void> = args
            .0
            .iter_mut()
            .map(|slot| slot.as_mut_ptr().cast())
            .collect();
        // SAFETY: an all-zero attribute is CU_LAUNCH_ATTRIBUTE_IGNORE with a zero value.
        let mut attr: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
        attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
        attr.value.programmaticStreamSerializationAllowed = 1;
        let overlap = self.pdl && order == Order::Overlap;
        let config = sys::CUlaunchConfig {
            gridDimX: cfg.grid_dim.0,
            gridDimY: cfg.grid_dim.1,
            gridDimZ: cfg.grid_dim.2,
            blockDimX: cfg.block_dim.0,
            blockDimY: cfg.block_dim.1,
            blockDimZ: cfg.block_dim.2,
            sharedMemBytes: cfg.shared_mem_bytes,
            hStream: s.cu_stream(),
            attrs: if overlap {
                &mut attr
            } else {
                std::ptr::null_mut()
            },
            numAttrs: u32::from(overlap),
        };
        // SAFETY: `config`, `attr` and `params` (pointers into `args`) outlive the call, which
        // copies them; the caller guarantees the arguments match the kernel.
        unsafe {
            sys::cuLaunchKernelEx(
                &config,
                func.cu_function(),
                params.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        }
        .result()
        .map_err(gpu_err)
    }

    pub fn embed(
        &self,
        s: &Arc<CudaStream>,
        io: &CudaSlice<i32>,
        qb: usize,
        emb: &CudaSlice<u16>,
        x: &CudaSlice<f32>,
        hidden: usize,
    ) -> Result<()> {
        let mut a = Args::default();
        a.ptr(s, io).i32(qb).ptr(s, emb).ptr(s, x).i32(hidden);
        // SAFETY: the arguments match `embed` in kernels.cu in number and type; `x` holds
        // qb * hidden floats and every token id in `io` is below the vocabulary (checked by
        // `Batch::validate`; padding rows use id 0). First kernel of a step: full order.
        unsafe {
            self.launch(
                s,
                &self.embed,
                cfg((qb as u32, 1, 1), 256, 0),
                &mut a,
                Order::Full,
            )
        }
    }

    /// The production kernel of an (m, n, k) matmul and its schedule: the tile of the table
    /// entry for `m` rows, or that entry's other tile where [`AltTile`] says (a one-wave tile
    /// needs no fewer blocks than the own tile's: a shorter tile whose launch would sum its
    /// splits itself in fewer, longer blocks is slower, the 7B `down` projection's 120-row
    /// step taking 2.4 times as long on 128 such blocks as on 256 blocks of the 64-row tile
    /// with their splits spread).
    pub(super) fn gemm_choice(&self, m: usize, n: usize, k: usize) -> (&TileKernel, GemmSchedule) {
        let schedule = table_schedule(self.gemm_tiles, m, n, self.splits(k, n), self.sms, |t| {
            self.tile_kernel(t).resident
        });
        (self.tile_kernel(schedule.tile), schedule)
    }

    /// The loaded kernel of a tile of the production table.
    fn tile_kernel(&self, tile: GemmTile) -> &TileKernel {
        self.gemm
            .iter()
            .find(|k| k.tile == tile)
            .expect("`load` loads every tile of the production table")
    }

    /// The name of the matmul kernel an (m, n, k) matmul runs (for reports).
    pub fn gemm_name(&self, m: usize, n: usize, k: usize) -> String {
        self.gemm_choice(m, n, k).0.tile.name(ACT_PLANES)
    }

    /// K splits of a (k, n) matmul on this device.
    pub fn splits(&self, k: usize, n: usize) -> usize {
        gemm_splits(k, n, self.sms)
    }

    /// The production matmul kernels: each tile of the production table with its kernel (for
    /// `ACT_PLANES` planes).
    pub(super) fn production_gemms(&self) -> impl Iterator<Item = (GemmTile, &CudaFunction)> {
        self.gemm.iter().map(|k| (k.tile, &k.func))
    }

    /// gemm.cu's mma.sync kernels where they are not the production matmul (on compute
    /// capability 9.0), each with its tile: the dev harness checks them against it.
    pub(super) fn other_gemms(&self) -> impl Iterator<Item = (GemmTile, &CudaFunction)> {
        let others = self.gemm_tiles.iter().any(|e| e.tile.wgmma);
        self.mma
            .iter()
            .map(|k| (k.tile, &k.func))
            .filter(move |_| others)
    }

    /// The layout the production matmul reads its weights in.
    pub fn weight_layout(&self) -> WeightLayout {
        WeightLayout::of(&self.gemm_tiles[0].tile)
    }

    /// Multiprocessors of the device.
    pub fn sms(&self) -> usize {
        self.sms
    }

    /// `out = A wᵀ` with its epilogue (see gemm.cu), on the production schedule.
    pub fn gemm(
        &self,
        s: &Arc<CudaStream>,
        io: &CudaSlice<i32>,
        scratch: &GemmScratch<'_>,
        g: &GemmArgs<'_>,
    ) -> Result<()> {
        let (kernel, schedule) = self.gemm_choice(g.m, g.n, g.k);
        self.gemm_on(&kernel.func, &schedule, s, io, scratch, g)
    }

    /// The schedule of an (m, n) matmul on `tile` with `splits` K splits: the blocks along the
    /// split axis by [`gemm_split_blocks`].
    pub(super) fn gemm_schedule(
        &self,
        tile: GemmTile,
        m: usize,
        n: usize,
        splits: usize,
    ) -> GemmSchedule {
        schedule_on(tile, m, n, splits, self.sms)
    }

    /// `out = A wᵀ` by `func`, the kernel of `schedule.tile` for `ACT_PLANES` planes (or of the
    /// planes `g.a` holds, for a dev variant), on that schedule.
    pub(super) fn gemm_on(
        &self,
        func: &CudaFunction,
        schedule: &GemmSchedule,
        s: &Arc<CudaStream>,
        io: &CudaSlice<i32>,
        scratch: &GemmScratch<'_>,
        g: &GemmArgs<'_>,
    ) -> Result<()> {
        let GemmSchedule {
            tile,
            splits,
            split_blocks,
        } = *schedule;
        // The tiled layout holds whole column tiles of at most ROW_MULTIPLE rows.
        let too_wide = g.w.layout == WeightLayout::Tiled && tile.bn > ROW_MULTIPLE;
        if g.w.layout != WeightLayout::of(&tile) || (g.w.n, g.w.k) != (g.n, g.k) || too_wide {
            return Err(crate::LadeError::Gpu(format!(
                "matmul weights: {:?} ({} x {}) for a kernel reading {:?} ({} x {}, {} columns \
                 a block)",
                g.w.layout,
                g.w.n,
                g.w.k,
                WeightLayout::of(&tile),
                g.n,
                g.k,
                tile.bn
            )));
        }
        let k_tiles = g.k.div_ceil(GEMM_BK);
        if splits == 0 || splits > k_tiles || split_blocks == 0 || split_blocks > splits {
            return Err(crate::LadeError::Gpu(format!(
                "matmul schedule of {splits} splits over {split_blocks} blocks for K = {}",
                g.k
            )));
        }
        let mut a = Args::default();
        a.ptr(s, g.a)
            .u64(g.a_plane)
            .ptr(s, &g.w.data)
            .i32(g.m)
            .i32(g.n)
            .i32(g.k)
            .i32(splits)
            .ptr(s, scratch.ws)
            .ptr(s, scratch.cnt);
        let (mode, out, ldo, a_out, rope) = match &g.out {
            GemmOut::Store { out, ldo } => (0, Some(*out), *ldo, None, None),
            GemmOut::Accumulate { out, ldo } => (1, Some(*out), *ldo, None, None),
            GemmOut::SiluPairs { a_out, plane } => (2, None, 0, Some((*a_out, *plane)), None),
            GemmOut::Rope { out, rope } => (3, Some(*out), g.n, None, Some(*rope)),
        };
        a.i32(mode);
        match out {
            Some(o) => a.ptr(s, o),
            None => a.null(),
        };
        a.i32(ldo);
        match g.bias {
            Some(b) => a.ptr(s, b),
            None => a.null(),
        };
        match a_out {
            Some((o, plane)) => a.ptr(s, o).u64(plane),
            None => a.null().u64(0),
        };
        match rope {
            Some(r) => a.rope(s, io, r),
            None => a
                .ptr(s, io)
                .i32(0)
                .null()
                .null()
                .null()
                .null()
                .i32(0)
                .i32(0)
                .i32(0)
                .i32(0),
        };
        // (row blocks, split blocks, column tiles): the row blocks of a column tile's split run
        // side by side, so its weights come from memory once (then from the L2 cache).
        let column_tiles = g.n.div_ceil(tile.bn);
        if column_tiles > MAX_GRID_YZ {
            return Err(crate::LadeError::Gpu(format!(
                "matmul of {} output columns: more than {MAX_GRID_YZ} column tiles of {}",
                g.n, tile.bn
            )));
        }
        let grid = (
            g.m.div_ceil(tile.rows()).max(1) as u32,
            split_blocks as u32,
            column_tiles as u32,
        );
        // SAFETY: the arguments match `gemm_p*` in gemm.cu and `wgmma_p*` in gemm_wgmma.cu
        // (one parameter list; `func` is such a kernel, of `tile` and `g.planes` (one plane for
        // wgmma), its shared memory allowed by `allow_smem`); 1 <= splits <=
        // k-tiles and 1 <= split_blocks <= splits (checked above); `a` holds g.planes planes of
        // `a_plane` >= m * k halves, `w` is (n, k) with k % 8 == 0 (checked at load), n is even,
        // in the layout the kernel reads (checked above; the tiled layout holds whole 128-row
        // column tiles and whole k-tiles, so no bulk copy reads past it);
        // `ws` holds splits * m * n floats and `cnt` the row blocks x column tiles counters,
        // zero between launches (the session sizes both with `gemm_counters` and the largest
        // split count); `out` is (m, ldo) floats with ldo >= n for Store/Accumulate/Rope,
        // `a_out` holds planes of `plane` >= m * n / 2 halves for SiluPairs; `bias` has n
        // floats. Rope: `out` rows are [q | k | v] of (nh + 2 nkv) * hd = n floats, positions
        // in `io` are below the rope tables (checked by `Batch::validate`), L + m <= cap (the
        // session keeps a padded step of slack). Shared memory is within the limit set in
        // `load`. Before its wait the kernel only loads weights.
        unsafe {
            self.launch(
                s,
                func,
                cfg(grid, tile.threads() as u32, tile.smem(g.planes) as u32),
                &mut a,
                Order::Overlap,
            )
        }
    }

    /// A-format rows of `rmsnorm(x[row]) * g` for `m` rows (`rowsel_off`: row i is x row
    /// `io[rowsel_off + i]`).
    #[allow(clippy::too_many_arguments)]
    pub fn norm_rows(
        &self,
        s: &Arc<CudaStream>,
        io: &CudaSlice<i32>,
        x: &CudaSlice<f32>,
        ldx: usize,
        rowsel_off: Option<usize>,
        g: &CudaSlice<f32>,
        eps: f32,
        k: usize,
        m: usize,
        a_out: &CudaSlice<u16>,
        plane: usize,
    ) -> Result<()> {
        let mut a = Args::default();
        a.ptr(s, x)
            .i32(ldx)
            .ptr(s, io)
            .push(&rowsel_off.map_or(-1i32, |o| o as i32).to_ne_bytes())
            .ptr(s, g)
            .f32(eps)
            .i32(k)
            .ptr(s, a_out)
            .u64(plane)
            .i32(ACT_PLANES);
        // SAFETY: arguments match `norm_rows`; `x` has the rows `io` selects (below its
        // length, checked by `Batch::validate`) or m rows of `ldx` >= k floats (k % 4 == 0,
        // checked at load), `g` k floats, `a_out` ACT_PLANES planes of `plane` >= m * k halves;
        // shared memory is the row, k floats, within the limit set in `load`. The kernel waits
        // first thing.
        unsafe {
            self.launch(
                s,
                &self.norm_rows,
                cfg((m as u32, 1, 1), 256, (4 * k) as u32),
                &mut a,
                Order::Overlap,
            )
        }
    }

    /// Attention of the step's rows over the cache and their in-step chains, split over
    /// chunks of [`CHUNK`] keys and merged in the same launch (see attention.cu).
    /// The block height is the one [`attention_tile`] picks for the launch.
    pub fn attention(&self, s: &Arc<CudaStream>, x: &AttentionArgs<'_>) -> Result<()> {
        let tile = self.attention_pick(x.heads, x.qb, x.splits)?;
        self.attention_on(&tile.func, tile.qt, s, x)
    }

    /// The attention tile a launch of `qb` rows over `splits` key chunks takes, for `heads`
    /// (heads, kv heads, head dim).
    fn attention_pick(
        &self,
        heads: (usize, usize, usize),
        qb: usize,
        splits: usize,
    ) -> Result<&AttentionTile> {
        let (nh, nkv, hd) = heads;
        let tiles = match hd {
            64 => &self.attention[0],
            128 => &self.attention[1],
            _ => {
                return Err(crate::LadeError::Unsupported(format!(
                    "head_dim {hd} (the GPU attention takes 64 or 128)"
                )))
            }
        };
        let fits = tiles.each_ref().map(|t| (t.qt, t.resident));
        Ok(&tiles[attention_tile(&fits, qb * (nh / nkv.max(1)), nkv, splits, self.sms)])
    }

    /// Query vectors a block of the attention launch of `qb` rows over `splits` key chunks
    /// (for reports).
    pub fn attention_vectors_a_block(
        &self,
        heads: (usize, usize, usize),
        qb: usize,
        splits: usize,
    ) -> Result<usize> {
        Ok(self.attention_pick(heads, qb, splits)?.qt)
    }

    /// [`Kernels::attention`] by `func`: the production kernel of the head dim, or a variant
    /// of the dev harness with the same arguments, taking `qt` query vectors a block (its
    /// shared memory `attn_smem(hd, qt)`, dev/cuda).
    pub(super) fn attention_on(
        &self,
        func: &CudaFunction,
        qt: usize,
        s: &Arc<CudaStream>,
        x: &AttentionArgs<'_>,
    ) -> Result<()> {
        let (nh, nkv, hd) = x.heads;
        let scale = 1.0f32 / (hd as f32).sqrt();
        let mut a = Args::default();
        a.ptr(s, x.qkv)
            .ptr(s, x.io)
            .i32(x.qb)
            .ptr(s, &x.kc)
            .ptr(s, &x.vc)
            .ptr(s, x.part)
            .ptr(s, x.done)
            .ptr(s, x.out)
            .u64(x.out_plane)
            .i32(ACT_PLANES)
            .i32(nh)
            .i32(nkv)
            .i32(x.cap)
            .i32(x.splits)
            .f32(scale);
        let tiles = (x.qb * (nh / nkv)).div_ceil(qt);
        // SAFETY: arguments match `attention_qt{8,16,32}_hd{64,128}` in attention.cu (and its
        // variants, which take the same arguments; `func` takes `qt` vectors a block, as its
        // caller says, and was allowed `attn_smem(hd, qt)` at load); `qkv` holds qb rows of
        // (nh + 2 nkv) * hd floats; `part` holds qb * nh * splits * (hd + 4) floats and splits
        // * CHUNK covers every row's visible keys (L + qb <= splits * CHUNK); `done` holds
        // tiles * nkv <= qb * nh counters, zero between launches; `out` holds ACT_PLANES
        // planes of `out_plane` >= qb * nh * hd halves; every in-step list entry in `io` is
        // below qb (written by `StepIo::pack`). Shared memory is within the limit set in
        // `load`. Before its wait the kernel reads only `io` and cache rows below L, which
        // earlier steps wrote.
        unsafe {
            self.launch(
                s,
                func,
                cfg(
                    (tiles as u32, nkv as u32, x.splits as u32),
                    ATT_THREADS,
                    attn_smem(hd, qt) as u32,
                ),
                &mut a,
                Order::Overlap,
            )
        }
    }

    pub fn argmax_rows(
        &self,
        s: &Arc<CudaStream>,
        logits: &CudaSlice<f32>,
        rows: usize,
        vocab: usize,
        out: &CudaSlice<i32>,
    ) -> Result<()> {
        let mut a = Args::default();
        a.ptr(s, logits).i32(vocab).ptr(s, out);
        // SAFETY: arguments match `argmax_rows`; `logits` is (rows, vocab), `out` has rows ints.
        // The kernel waits for its predecessor first thing.
        unsafe {
            self.launch(
                s,
                &self.argmax_rows,
                cfg((rows as u32, 1, 1), 1024, 0),
                &mut a,
                Order::Overlap,
            )
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn keep_rows(
        &self,
        s: &Arc<CudaStream>,
        kc: &CudaSlice<f32>,
        vc: &CudaSlice<f32>,
        layers: usize,
        layer_stride: usize,
        nkv: usize,
        cap: usize,
        hd: usize,
        start: usize,
        rows: &CudaSlice<i32>,
        count: usize,
    ) -> Result<()> {
        let mut a = Args::default();
        a.ptr(s, kc)
            .ptr(s, vc)
            .u64(layer_stride)
            .i32(nkv)
            .i32(cap)
            .i32(hd)
            .i32(start)
            .ptr(s, rows)
            .i32(count);
        // SAFETY: arguments match `keep_rows`; start + rows[t] < cap for every t (checked by
        // the session against its length). Runs between steps: full order.
        unsafe {
            self.launch(
                s,
                &self.keep_rows,
                cfg(((layers * 2 * nkv) as u32, 1, 1), hd as u32, 0),
                &mut a,
                Order::Full,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks of `tile` an H100 multiprocessor holds by shared memory (228 KB, 1 KB of it
    /// reserved a block), as the driver reports for the production tiles.
    fn h100_resident(tile: GemmTile) -> usize {
        (228 << 10) / (tile.smem(ACT_PLANES) + 1024)
    }

    /// The attention's tiles at two blocks a multiprocessor each (their register bound).
    const ATT_TWO_EACH: [(usize, usize); 3] = [(8, 2), (16, 2), (32, 2)];

    /// Vectors a block of the attention tile picked on an H100 (132 multiprocessors).
    fn att_qt(rows: usize, heads: usize, groups: usize, past: usize) -> usize {
        let splits = (past + rows).div_ceil(CHUNK);
        let vectors = rows * (heads / groups);
        ATT_TWO_EACH[attention_tile(&ATT_TWO_EACH, vectors, groups, splits, 132)].0
    }

    #[test]
    fn attention_blocks_take_fewer_vectors_only_where_the_launch_has_room_for_more_blocks() {
        // (rows, heads, kv heads, cached positions, vectors a block, why)
        let cases = [
            // A vector or a few a group: every height launches as many blocks, at any context.
            (1, 32, 32, 0, 8, "7B, one row"),
            (1, 32, 32, 512, 8, "7B, one row"),
            (1, 32, 32, 8192, 8, "7B, one row"),
            (1, 64, 8, 8192, 8, "70B, one row"),
            (8, 32, 32, 8192, 8, "7B, 8 rows"),
            // 512 cached positions (5 splits): the shortest tile whose launch fits one wave
            // of 264 resident blocks.
            (8, 32, 8, 512, 8, "8B, 8 rows: 160 blocks"),
            (8, 64, 8, 512, 16, "70B, 8 rows: 160 blocks, 320 at 8"),
            (8, 9, 3, 512, 8, "135M, 8 rows: 45 blocks"),
            (32, 9, 3, 512, 8, "135M, 32 rows: 180 blocks"),
            (64, 9, 3, 512, 16, "135M, 64 rows: 180 blocks, 360 at 8"),
            (32, 14, 2, 512, 16, "Qwen 0.5B, 32 rows: 140 blocks"),
            // Where every shorter tile's launch passes one wave, the tallest.
            (32, 32, 32, 512, 32, "7B, 32 rows: 160 blocks, 320 at 16"),
            (120, 32, 32, 512, 32, "7B, 120 rows"),
            (120, 9, 3, 512, 32, "135M, 120 rows"),
            (64, 14, 2, 512, 32, "Qwen2.5-0.5B, 64 rows"),
            // A long context fills the device with splits alone.
            (8, 32, 8, 8192, 32, "8B, 8 rows, 8192 cached"),
        ];
        for (rows, heads, groups, past, want, why) in cases {
            assert_eq!(
                att_qt(rows, heads, groups, past),
                want,
                "{why}, {past} cached"
            );
        }
        // No tiles: index 0, whatever the launch.
        assert_eq!(attention_tile(&[], 5, 2, 3, 132), 0);
    }

    /// The production choice of a Hopper matmul on an H100 (132 multiprocessors).
    fn choice(m: usize, n: usize, k: usize) -> GemmSchedule {
        let sms = 132;
        table_schedule(
            &WGMMA_TILES,
            m,
            n,
            gemm_splits(k, n, sms),
            sms,
            h100_resident,
        )
    }

    // LLaMA-2-7B, Llama-3-8B, 70B and 1B projections (n, k).
    const QKV: (usize, usize) = (12288, 4096);
    const O: (usize, usize) = (4096, 4096);
    const GATE_UP: (usize, usize) = (22016, 4096);
    const DOWN: (usize, usize) = (4096, 11008);
    const GATE_UP_8B: (usize, usize) = (28672, 4096);
    const DOWN_70B: (usize, usize) = (8192, 28672);
    const GATE_UP_1B: (usize, usize) = (16384, 2048);

    #[test]
    fn one_row_steps_run_the_layout_that_fills_its_waves_best() {
        assert_eq!(
            [
                h100_resident(WGMMA_TILES[0].tile),
                h100_resident(GemmTile::wgmma(1, 64, 8, 4))
            ],
            [3, 2]
        );
        // (projection, stages, split blocks, blocks): 6 stages hold 396 blocks at once, 8
        // stages 264.
        for ((n, k), stages, split_blocks, blocks) in [
            (QKV, 6, 2, 384),     // 192 column tiles x 2 (x 4 would fill 792 of 792 too)
            (GATE_UP, 6, 1, 344), // 344 of 396 (8 stages: 344 of 528)
            (O, 8, 4, 256),       // 256 of 264
            (DOWN, 8, 4, 256),
            (GATE_UP_8B, 8, 1, 448), // 448 of 528 (6 stages: 448 of 792)
            (DOWN_70B, 8, 2, 256),   // 256 of 264 (6 stages, 4 split blocks: 512 of 792)
            (GATE_UP_1B, 8, 1, 256), // 256 of 264, a tie with 6 stages, 3 split blocks: 768 of 792
        ] {
            for m in [1, 16] {
                let s = choice(m, n, k);
                assert_eq!(
                    (s.tile.stages, s.split_blocks, s.blocks(m, n)),
                    (stages, split_blocks, blocks),
                    "{n} x {k}, {m} rows"
                );
            }
        }
    }

    #[test]
    fn one_wave_tiles_run_only_where_their_launch_fills_one_wave_with_no_fewer_blocks() {
        // 32 rows: the 6-stage 32-row tile (one block a multiprocessor) where its launch fits
        // (qkv: 96 blocks; o, down: 32 column tiles x 4 splits), not for gate/up (172).
        for (n, k) in [QKV, O, DOWN] {
            assert_eq!(choice(32, n, k).tile.stages, 6, "{n} x {k}");
        }
        assert_eq!(choice(32, GATE_UP.0, GATE_UP.1).tile.stages, 4);
        // 64 rows: the 32-row tile where its launch fits in one wave with more blocks.
        for (n, k) in [QKV, O, DOWN] {
            assert_eq!(choice(64, n, k).tile.rows(), 32, "{n} x {k}");
        }
        assert_eq!(choice(64, GATE_UP.0, GATE_UP.1).tile.rows(), 64);
        // 120 rows: the 32-row tile's launch of `down` would sum its splits itself in 128
        // blocks, fewer than the 64-row tile's 256: the 64-row tile stays.
        let s = choice(120, DOWN.0, DOWN.1);
        assert_eq!((s.tile.rows(), s.blocks(120, DOWN.0)), (64, 256));
    }

    #[test]
    fn the_rows_never_change_the_splits() {
        // Whatever runs, the K splits are the shape's: the rows never change an addition.
        for m in [1, 8, 16, 17, 32, 33, 64, 65, 120, 128, 512] {
            for (n, k) in [QKV, O, GATE_UP, DOWN, GATE_UP_8B, DOWN_70B, GATE_UP_1B] {
                assert_eq!(choice(m, n, k).splits, gemm_splits(k, n, 132));
            }
        }
    }
}
