//! One sequence on the GPU: its KV cache, step buffers and captured step graphs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::{sys, CudaEvent, CudaGraph, CudaSlice, CudaStream};

use super::kernels::{
    gemm_counters, AttentionArgs, GemmArgs, GemmOut, GemmScratch, RopeArgs, ACT_PLANES, CHUNK,
};
use super::weight_tiles::GemmWeights;
use super::{gpu_err, CudaLlama};
use crate::model::step_io::{bucket, StepIo};
use crate::model::{AttentionMask, Batch, CausalLm, Logits};
use crate::{LadeError, Result};

/// Rows and logit rows the step buffers are made for at least (`LADE_CUDA_MIN_STEP_ROWS`, 64 by
/// default; 1 = exactly what the steps so far needed).
fn min_step_rows() -> usize {
    std::env::var("LADE_CUDA_MIN_STEP_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
        .clamp(1, MAX_ROWS)
}

/// Largest row bucket one forward pass runs; longer steps (a prefill, a large lookahead tree)
/// run as consecutive passes of at most this many rows.
pub const MAX_ROWS: usize = 512;

/// Device buffers of one step shape (rows `qc`, logit rows `rc`, attention splits `sc`).
struct Buffers {
    qc: usize,
    rc: usize,
    io: CudaSlice<i32>, // at least StepIo::len(qc, rc) (more for the pieces of a long step)
    x: CudaSlice<f32>,  // (qc, hidden) residual stream
    qkv: CudaSlice<f32>, // (qc, (heads + 2 kv_heads) * head_dim)
    /// A-format matmul inputs (ACT_PLANES planes of `act_plane` halves): rmsnorm(x) rows
    /// (qc or rc, hidden) and the attention's output (qc, heads * head_dim).
    act: CudaSlice<u16>,
    act_plane: usize,
    /// A-format silu(gate) * up, (qc, ffn), ACT_PLANES planes of `ffn_plane` halves.
    ffn_act: CudaSlice<u16>,
    ffn_plane: usize,
    /// Matmul split sums (splits, rows, n) and finishing counters (zero between launches).
    ws: CudaSlice<f32>,
    cnt: CudaSlice<i32>,
    part: CudaSlice<f32>, // (qc, heads, splits, head_dim + 4) flash-decoding partials
    done: CudaSlice<i32>, // (qc, heads) finished splits, zero between launches
    logits: CudaSlice<f32>, // (rc, vocab)
    argmax: CudaSlice<i32>, // (rc,)
}

/// A captured step. CUDA graph executables may be launched from any thread of the process
/// (the driver call binds the context); a session launches its graphs only through `&mut
/// self`, so no two threads use one at the same time.
struct StepGraph(CudaGraph);
// SAFETY: see above; the graph's handles are plain driver objects owned by this value.
unsafe impl Send for StepGraph {}

/// A sequence decoded on the GPU with a [`CudaLlama`].
pub struct CudaSession {
    model: Arc<CudaLlama>,
    /// This session's own stream (every kernel, copy and graph of the session runs on it).
    stream: Arc<CudaStream>,
    kc: CudaSlice<f32>, // (layers, kv_heads, cap_alloc, head_dim)
    vc: CudaSlice<f32>, // (layers, kv_heads, cap_alloc, head_dim)
    len: usize,
    capacity: usize,
    /// Rows allocated per layer and head: the capacity plus room for a padded step.
    cap_alloc: usize,
    bufs: Option<Buffers>,
    keep_idx: CudaSlice<i32>,
    graphs: HashMap<(usize, usize, usize), StepGraph>,
    use_graphs: bool,
    /// Kernels left out of every step (a profiler's tool: see `omit_kernels`).
    omitted: Vec<&'static str>,
}

/// Per-kernel times of one eagerly launched step, in launch order, summed over layers.
pub type StepProfile = Vec<(&'static str, f64)>;

/// Key chunks of [`CHUNK`] the attention of a step of `qb` (padded) rows after `cached`
/// positions splits its keys into: every row's visible keys.
fn attention_splits(cached: usize, qb: usize) -> usize {
    (cached + qb).div_ceil(CHUNK)
}

impl CudaSession {
    /// A session for `context` positions (clamped to the model's trained context).
    /// `use_graphs`: replay captured CUDA graphs (false = launch every kernel each step).
    pub fn new(model: Arc<CudaLlama>, context: usize, use_graphs: bool) -> Result<Self> {
        let c = &model.config;
        let capacity = context.min(model.max_positions).max(1);
        let cap_alloc = capacity + MAX_ROWS;
        let n = c.num_layers * c.num_kv_heads * cap_alloc * c.head_dim;
        // A stream of its own: sessions on one GPU (server requests, replicas of a device
        // group) run and capture graphs independently; the weights they share are read-only
        // and were uploaded (and synchronised) before any session exists.
        let stream = model.stream.context().new_stream().map_err(gpu_err)?;
        let s = &stream;
        let kc = s.alloc_zeros::<f32>(n).map_err(gpu_err)?;
        let vc = s.alloc_zeros::<f32>(n).map_err(gpu_err)?;
        let keep_idx = s.alloc_zeros::<i32>(64).map_err(gpu_err)?;
        Ok(Self {
            model,
            stream,
            kc,
            vc,
            len: 0,
            capacity,
            cap_alloc,
            bufs: None,
            keep_idx,
            graphs: HashMap::new(),
            use_graphs,
            omitted: Vec::new(),
        })
    }

    /// Whether each kernel of a step starts while its predecessor finishes (programmatic
    /// dependent launch; for reports).
    pub fn kernels_overlap(&self) -> bool {
        self.model.kernels.overlaps()
    }

    /// The matmul kernel of each projection (qkv, o, gate/up, down, LM head) in a step of
    /// `rows` rows, and their K splits, for reports.
    pub fn matmul_schedule(&self, rows: usize) -> (Vec<String>, Vec<usize>) {
        let k = &self.model.kernels;
        self.model
            .matmul_shapes()
            .iter()
            .map(|&(kk, n)| (k.gemm_name(rows, n, kk), k.splits(kk, n)))
            .unzip()
    }

    /// Query vectors a block of the attention in a step of `rows` rows after `past` cached
    /// positions, for reports.
    pub fn attention_vectors_a_block(&self, rows: usize, past: usize) -> Result<usize> {
        let c = &self.model.config;
        let qb = bucket(rows);
        self.model.kernels.attention_vectors_a_block(
            (c.num_heads, c.num_kv_heads, c.head_dim),
            qb,
            attention_splits(past, qb),
        )
    }

    fn layer_stride(&self) -> usize {
        let c = &self.model.config;
        c.num_kv_heads * self.cap_alloc * c.head_dim
    }

    fn max_splits(&self) -> usize {
        self.cap_alloc.div_ceil(CHUNK)
    }

    /// Makes sure the buffers hold a step of `qb` rows and `rb` logit rows whose packed inputs
    /// take `io_len` ints. Growing them moves them, so every captured graph is dropped; they
    /// are therefore made for at least [`min_step_rows`] rows and logit rows from the start (a
    /// lookahead generation's steps grow from 1 to 32 logit rows, which would otherwise drop
    /// the graphs at each size).
    fn ensure_buffers(&mut self, qb: usize, rb: usize, io_len: usize) -> Result<()> {
        if let Some(b) = &self.bufs {
            if b.qc >= qb && b.rc >= rb && b.io.len() >= io_len {
                return Ok(());
            }
        }
        let (qc, rc, io_len) = match &self.bufs {
            Some(b) => (b.qc.max(qb), b.rc.max(rb), b.io.len().max(io_len)),
            None => (qb, rb, io_len),
        };
        let least = min_step_rows();
        let (qc, rc) = (qc.max(least), rc.max(least));
        self.graphs.clear();
        self.bufs = None;
        let c = &self.model.config;
        let s = &self.stream;
        let a = |n: usize| s.alloc_zeros::<f32>(n).map_err(gpu_err);
        let qkv_w = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim;
        let rows = qc.max(rc);
        let act_plane = rows * c.hidden_size.max(c.num_heads * c.head_dim);
        let ffn_plane = qc * c.intermediate_size;
        let h16 = |n: usize| s.alloc_zeros::<u16>(n).map_err(gpu_err);
        // (k, n) of every matmul of a step
        let shapes = self.model.matmul_shapes();
        let k = &self.model.kernels;
        let ws_len = shapes
            .iter()
            .map(|&(kk, n)| k.splits(kk, n) * rows * n)
            .max()
            .unwrap_or(0);
        let max_n = shapes.iter().map(|&(_, n)| n).max().unwrap_or(0);
        self.bufs = Some(Buffers {
            qc,
            rc,
            io: s
                .alloc_zeros::<i32>(StepIo::len(qc, rc).max(io_len))
                .map_err(gpu_err)?,
            x: a(qc * c.hidden_size)?,
            qkv: a(qc * qkv_w)?,
            act: h16(ACT_PLANES * act_plane)?,
            act_plane,
            ffn_act: h16(ACT_PLANES * ffn_plane)?,
            ffn_plane,
            ws: a(ws_len)?,
            cnt: s
                .alloc_zeros::<i32>(gemm_counters(rows, max_n))
                .map_err(gpu_err)?,
            part: a(qc * c.num_heads * self.max_splits() * (c.head_dim + 4))?,
            done: s.alloc_zeros::<i32>(qc * c.num_heads).map_err(gpu_err)?,
            logits: a(rc * c.vocab_size)?,
            argmax: s.alloc_zeros::<i32>(rc).map_err(gpu_err)?,
        });
        Ok(())
    }

    /// Enqueues every kernel of one step of shape (`qb`, `rb`, `splits`); `mark(name)` is
    /// called after each kernel (a profiler records an event there).
    fn enqueue(
        &self,
        qb: usize,
        rb: usize,
        splits: usize,
        mark: &dyn Fn(&'static str) -> Result<()>,
    ) -> Result<()> {
        let m = &self.model;
        let c = &m.config;
        let k = &m.kernels;
        let s = &self.stream;
        let b = self
            .bufs
            .as_ref()
            .expect("buffers allocated before enqueue");
        let (h, f) = (c.hidden_size, c.intermediate_size);
        let heads = (c.num_heads, c.num_kv_heads, c.head_dim);
        let qkv_w = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim;
        let attn_w = c.num_heads * c.head_dim;
        let eps = c.rms_norm_eps as f32;
        let ls = self.layer_stride();
        let scratch = GemmScratch {
            ws: &b.ws,
            cnt: &b.cnt,
        };
        // out = a wᵀ (+ bias) for m rows, a in A format
        let gemm = |a: &CudaSlice<u16>,
                    a_plane: usize,
                    w: &GemmWeights,
                    bias: Option<&CudaSlice<f32>>,
                    m: usize,
                    n: usize,
                    kk: usize,
                    out: GemmOut<'_>| {
            k.gemm(
                s,
                &b.io,
                &scratch,
                &GemmArgs {
                    planes: ACT_PLANES,
                    a,
                    a_plane,
                    w,
                    bias,
                    m,
                    n,
                    k: kk,
                    out,
                },
            )
        };
        // Each kernel, unless the profiler left it out (`omit_kernels`), then its mark.
        let op = |name: &'static str, launch: &dyn Fn() -> Result<()>| -> Result<()> {
            if !self.omitted.contains(&name) {
                launch()?;
            }
            mark(name)
        };
        let norm = |g, m, rowsel| {
            k.norm_rows(s, &b.io, &b.x, h, rowsel, g, eps, h, m, &b.act, b.act_plane)
        };
        op("embed", &|| k.embed(s, &b.io, qb, &m.embedding, &b.x, h))?;
        for (l, w) in m.blocks.iter().enumerate() {
            let kc = self.kc.slice(l * ls..(l + 1) * ls);
            let vc = self.vc.slice(l * ls..(l + 1) * ls);
            op("attn norm", &|| norm(&w.attn_norm, qb, None))?;
            // qkv = rope(rmsnorm(x) Wqkvᵀ (+ b)): (qb, qkv_w); k, v also to the cache at L..L+qb
            let rope = RopeArgs {
                qb,
                cos: &m.cos,
                sin: &m.sin,
                kc: &kc,
                vc: &vc,
                heads,
                cap: self.cap_alloc,
            };
            op("qkv: matmul + rope + kv write", &|| {
                let rope = GemmOut::Rope {
                    out: &b.qkv,
                    rope: &rope,
                };
                let bias = w.bqkv.as_ref();
                gemm(&b.act, b.act_plane, &w.wqkv, bias, qb, qkv_w, h, rope)
            })?;
            // act = attention: (qb, heads * head_dim)
            op("attention", &|| {
                k.attention(
                    s,
                    &AttentionArgs {
                        qkv: &b.qkv,
                        io: &b.io,
                        qb,
                        kc: kc.slice(..),
                        vc: vc.slice(..),
                        part: &b.part,
                        done: &b.done,
                        out: &b.act,
                        out_plane: b.act_plane,
                        heads,
                        cap: self.cap_alloc,
                        splits,
                    },
                )
            })?;
            // x += act Woᵀ
            op("o: matmul + residual", &|| {
                gemm(
                    &b.act,
                    b.act_plane,
                    &w.wo,
                    None,
                    qb,
                    h,
                    attn_w,
                    GemmOut::Accumulate { out: &b.x, ldo: h },
                )
            })?;
            op("ffn norm", &|| norm(&w.ffn_norm, qb, None))?;
            // ffn_act = silu(gate) * up of rmsnorm(x) W_gate_upᵀ (rows interleaved: gate, up
            // per unit): (qb, ffn)
            op("gate/up: matmul + silu*up", &|| {
                gemm(
                    &b.act,
                    b.act_plane,
                    &w.w_gate_up,
                    None,
                    qb,
                    2 * f,
                    h,
                    GemmOut::SiluPairs {
                        a_out: &b.ffn_act,
                        plane: b.ffn_plane,
                    },
                )
            })?;
            // x += ffn_act W_downᵀ
            op("down: matmul + residual", &|| {
                gemm(
                    &b.ffn_act,
                    b.ffn_plane,
                    &w.w_down,
                    None,
                    qb,
                    h,
                    f,
                    GemmOut::Accumulate { out: &b.x, ldo: h },
                )
            })?;
        }
        if rb > 0 {
            op("final norm", &|| {
                norm(&m.final_norm, rb, Some(StepIo::logit_rows_off(qb)))
            })?;
            op("lm head: matmul", &|| {
                let logits = GemmOut::Store {
                    out: &b.logits,
                    ldo: c.vocab_size,
                };
                gemm(
                    &b.act,
                    b.act_plane,
                    &m.lm_head,
                    None,
                    rb,
                    c.vocab_size,
                    h,
                    logits,
                )
            })?;
            op("argmax", &|| {
                k.argmax_rows(s, &b.logits, rb, c.vocab_size, &b.argmax)
            })?;
        }
        Ok(())
    }

    /// Copies the step's inputs to the device.
    fn upload(&mut self, io: &StepIo) -> Result<()> {
        self.ensure_buffers(io.qb, io.rb, io.data.len())?;
        let s = self.stream.clone();
        let b = self.bufs.as_mut().expect("buffers allocated");
        let mut dst = b.io.slice_mut(0..io.data.len());
        s.memcpy_htod(&io.data, &mut dst).map_err(gpu_err)?;
        Ok(())
    }

    /// Runs one packed step: replays (capturing on first use) or launches its kernels.
    fn run(&mut self, io: &StepIo) -> Result<()> {
        self.upload(io)?;
        let splits = attention_splits(self.len, io.qb);
        let s = self.stream.clone();
        let no_marks = |_: &'static str| Ok(());
        if !self.use_graphs {
            return self.enqueue(io.qb, io.rb, splits, &no_marks);
        }
        let key = (io.qb, io.rb, splits);
        if !self.graphs.contains_key(&key) {
            s.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
                .map_err(gpu_err)?;
            let recorded = self.enqueue(io.qb, io.rb, splits, &no_marks);
            let captured = s.end_capture(
                sys::CUgraphInstantiate_flags::CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH,
            );
            recorded?;
            let graph = captured
                .map_err(gpu_err)?
                .ok_or_else(|| LadeError::Gpu("stream capture produced no graph".into()))?;
            self.graphs.insert(key, StepGraph(graph));
        }
        self.graphs[&key].0.launch().map_err(gpu_err)
    }

    /// Leaves the kernels of these names (as [`CudaSession::profile_step`] names them) out of
    /// every later step, or none again for an empty list: what a kernel costs inside a replayed
    /// step is the step's time less the time of the same step without it. While any kernel is
    /// left out the steps' results mean nothing. Drops the captured graphs.
    pub fn omit_kernels(&mut self, names: &[&'static str]) {
        self.omitted = names.to_vec();
        self.graphs.clear();
    }

    /// Launches the kernels of `batch` eagerly with a timing event after each one and returns
    /// their times (ms, summed over layers, in launch order). The cache is left as it was.
    pub fn profile_step(&mut self, batch: &Batch<'_>) -> Result<StepProfile> {
        let q = batch.tokens.len();
        batch.validate(
            self.len,
            self.model.config.vocab_size,
            self.model.max_positions,
        )?;
        if self.len + q > self.capacity {
            return Err(LadeError::InvalidArgument(format!(
                "a profiled step of {q} rows does not fit after {} cached positions",
                self.len
            )));
        }
        if bucket(q) > MAX_ROWS {
            return Err(LadeError::InvalidArgument(format!(
                "a profiled step runs as one pass: at most {MAX_ROWS} rows, not {q}"
            )));
        }
        let io = StepIo::pack(batch, self.len)?;
        self.upload(&io)?;
        let splits = attention_splits(self.len, io.qb);
        let s = self.stream.clone();
        let timed = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
        let start = s.record_event(timed).map_err(gpu_err)?;
        let marks: RefCell<Vec<(&'static str, CudaEvent)>> = RefCell::new(Vec::new());
        let mark = |name: &'static str| -> Result<()> {
            let e = s.record_event(timed).map_err(gpu_err)?;
            marks.borrow_mut().push((name, e));
            Ok(())
        };
        self.enqueue(io.qb, io.rb, splits, &mark)?;
        s.synchronize().map_err(gpu_err)?;
        let mut out: StepProfile = Vec::new();
        let mut prev = &start;
        let marks = marks.into_inner();
        for (name, e) in &marks {
            let ms = f64::from(prev.elapsed_ms(e).map_err(gpu_err)?);
            match out.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 += ms,
                None => out.push((name, ms)),
            }
            prev = e;
        }
        Ok(out)
    }

    /// Validates and runs `batch`; returns the logit rows (whole, or their argmax).
    fn forward_rows(&mut self, batch: &Batch<'_>, whole: bool) -> Result<RowsOut> {
        let vocab = self.model.config.vocab_size;
        let q = batch.tokens.len();
        batch.validate(self.len, vocab, self.model.max_positions)?;
        if self.len + q > self.capacity {
            return Err(LadeError::ContextExceeded {
                needed: self.len + q,
                limit: self.capacity,
            });
        }
        if bucket(q) > MAX_ROWS {
            return self.forward_in_pieces(batch, whole);
        }
        let io = StepIo::pack(batch, self.len)?;
        self.run(&io)?;
        self.len += q;
        self.read_rows(batch.logit_rows.len(), whole)
    }

    /// The logit rows of the pass just run (whole, or their argmax).
    fn read_rows(&self, r: usize, whole: bool) -> Result<RowsOut> {
        let vocab = self.model.config.vocab_size;
        let s = &self.stream;
        let b = self.bufs.as_ref().expect("buffers allocated");
        let out = if r == 0 {
            RowsOut::Argmax(Vec::new())
        } else if whole {
            let mut host = vec![0f32; r * vocab];
            s.memcpy_dtoh(&b.logits.slice(0..r * vocab), &mut host)
                .map_err(gpu_err)?;
            RowsOut::Logits(host)
        } else {
            let mut host = vec![0i32; r];
            s.memcpy_dtoh(&b.argmax.slice(0..r), &mut host)
                .map_err(gpu_err)?;
            RowsOut::Argmax(host.into_iter().map(|t| t as u32).collect())
        };
        s.synchronize().map_err(gpu_err)?;
        Ok(out)
    }

    /// A step of more than [`MAX_ROWS`] rows, run as consecutive passes of at most that many:
    /// a causal batch as causal pieces (the rows before a piece are then simply cache), a tree
    /// in row order with each piece's rows seeing the rows of earlier pieces through their
    /// lists ([`StepIo::pack_piece`]), so that every row's keys and their order are those of
    /// one pass. The logit rows come back in the order asked.
    fn forward_in_pieces(&mut self, batch: &Batch<'_>, whole: bool) -> Result<RowsOut> {
        let past = self.len;
        let out = self.run_pieces(batch, whole);
        if out.is_err() {
            // None of the step stays (earlier pieces may have run).
            self.len = past;
        }
        out
    }

    fn run_pieces(&mut self, batch: &Batch<'_>, whole: bool) -> Result<RowsOut> {
        let vocab = self.model.config.vocab_size;
        let q = batch.tokens.len();
        let past = self.len;
        let r = batch.logit_rows.len();
        // A tree's lists of visible rows, once for the step (a causal batch needs none).
        let lists = match batch.mask {
            AttentionMask::Causal => None,
            _ => Some(StepIo::piece_lists(batch, past)?),
        };
        let mut logits = vec![0f32; if whole { r * vocab } else { 0 }];
        let mut ids = vec![0u32; if whole { 0 } else { r }];
        for start in (0..q).step_by(MAX_ROWS) {
            let end = (start + MAX_ROWS).min(q);
            // (index in the answer, row in the piece) of the logit rows of this piece
            let (slots, rows): (Vec<usize>, Vec<usize>) = batch
                .logit_rows
                .iter()
                .enumerate()
                .filter(|&(_, &row)| (start..end).contains(&row))
                .map(|(k, &row)| (k, row - start))
                .unzip();
            let io = match &lists {
                None => StepIo::pack(
                    &Batch {
                        tokens: &batch.tokens[start..end],
                        positions: &batch.positions[start..end],
                        mask: &AttentionMask::Causal,
                        logit_rows: &rows,
                    },
                    self.len,
                )?,
                Some(lists) => StepIo::pack_piece(batch, lists, past, start..end, &rows),
            };
            self.run(&io)?;
            self.len += end - start;
            match self.read_rows(rows.len(), whole)? {
                RowsOut::Logits(l) => {
                    for (&k, row) in slots.iter().zip(l.chunks_exact(vocab)) {
                        logits[k * vocab..(k + 1) * vocab].copy_from_slice(row);
                    }
                }
                RowsOut::Argmax(a) => {
                    for (&k, id) in slots.iter().zip(a) {
                        ids[k] = id;
                    }
                }
            }
        }
        Ok(if whole {
            RowsOut::Logits(logits)
        } else {
            RowsOut::Argmax(ids)
        })
    }
}

enum RowsOut {
    Logits(Vec<f32>),
    Argmax(Vec<u32>),
}

impl CausalLm for CudaSession {
    fn forward(&mut self, batch: &Batch<'_>) -> Result<Logits> {
        let vocab = self.model.config.vocab_size;
        match self.forward_rows(batch, true)? {
            RowsOut::Logits(data) => Ok(Logits::new(data, batch.logit_rows.len(), vocab)),
            RowsOut::Argmax(_) => Ok(Logits::new(Vec::new(), 0, vocab)),
        }
    }

    fn forward_argmax(&mut self, batch: &Batch<'_>) -> Result<Vec<u32>> {
        match self.forward_rows(batch, false)? {
            RowsOut::Argmax(ids) => Ok(ids),
            RowsOut::Logits(_) => unreachable!("argmax requested"),
        }
    }

    fn cache_len(&self) -> usize {
        self.len
    }

    fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    fn keep_rows(&mut self, start: usize, rows: &[usize]) -> Result<()> {
        if start > self.len {
            return Err(LadeError::InvalidArgument(format!(
                "keep_rows start {start} beyond cache length {}",
                self.len
            )));
        }
        let fresh = self.len - start;
        if rows.windows(2).any(|w| w[0] >= w[1]) || rows.last().is_some_and(|&r| r >= fresh) {
            return Err(LadeError::InvalidArgument(format!(
                "keep_rows offsets {rows:?} must be strictly increasing and below {fresh}"
            )));
        }
        if rows.iter().enumerate().any(|(i, &r)| i != r) {
            let s = self.stream.clone();
            if self.keep_idx.len() < rows.len() {
                self.keep_idx = s.alloc_zeros::<i32>(rows.len()).map_err(gpu_err)?;
            }
            let idx: Vec<i32> = rows.iter().map(|&r| r as i32).collect();
            let mut dst = self.keep_idx.slice_mut(0..idx.len());
            s.memcpy_htod(&idx, &mut dst).map_err(gpu_err)?;
            let c = &self.model.config;
            self.model.kernels.keep_rows(
                &s,
                &self.kc,
                &self.vc,
                c.num_layers,
                self.layer_stride(),
                c.num_kv_heads,
                self.cap_alloc,
                c.head_dim,
                start,
                &self.keep_idx,
                rows.len(),
            )?;
        }
        self.len = start + rows.len();
        Ok(())
    }

    fn context_size(&self) -> usize {
        self.capacity
    }

    fn vocab_size(&self) -> usize {
        self.model.config.vocab_size
    }
}
