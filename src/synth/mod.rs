//! Random-weight GGUF files of any LLaMA or Qwen2 shape, for measuring speed at sizes whose
//! real weights are not at hand (`lade synth-model`, docs/random-weight-models.md).
//!
//! Matrices are F16, uniform with standard deviation `1/sqrt(fan_in)`, so every projection
//! roughly keeps the RMS of its input; the embedding has standard deviation 1 and the norms are
//! 1 plus a little noise. Activations stay finite over any number of layers and the logits stay
//! spread out, so decoding behaves like a real model's, token for token, except that its text
//! means nothing.
//!
//! The file is streamed: header first, then each tensor generated piece by piece (in parallel,
//! from a counter-based generator, so the bytes depend on the seed only) and written, into
//! `OUT.partial`, renamed to `OUT` once complete.

pub mod random;
pub mod shape;
pub mod vocab;

use std::fs::File;
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::GgmlDType;

use crate::loader::gguf_write::{self, GgufWriter, TensorEntry};
use crate::{LadeError, Result};
use random::{TensorStream, Uniform};
pub use shape::{named_shapes, shape_names, Arch, ModelShape};

/// Bytes generated and written at a time.
const BLOCK_BYTES: usize = 16 << 20;

/// Where the file's tokenizer comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerSource {
    /// A byte-level BPE of 256 byte tokens, a few merges and ChatML specials, padded.
    Builtin,
    /// The `tokenizer.*` metadata of this GGUF file, padded.
    CopyFrom(PathBuf),
}

/// What to write.
#[derive(Debug, Clone)]
pub struct SynthSpec {
    pub shape: ModelShape,
    pub seed: u64,
    pub tokenizer: TokenizerSource,
}

/// One tensor of the file and how its values are drawn.
struct Planned {
    entry: TensorEntry,
    dist: Uniform,
}

/// A header and directory, ready to write.
pub struct Plan {
    metadata: Vec<(String, Value)>,
    tensors: Vec<Planned>,
    seed: u64,
    params: u64,
}

impl Plan {
    /// Checks the shape and assembles metadata and directory (reads `--tokenizer-from`'s
    /// header, nothing else).
    pub fn new(spec: &SynthSpec) -> Result<Self> {
        let s = &spec.shape;
        let tokenizer = match &spec.tokenizer {
            TokenizerSource::Builtin => {
                s.validate(vocab::BUILTIN_TOKENS)?;
                vocab::builtin(s.vocab)?
            }
            TokenizerSource::CopyFrom(path) => {
                s.validate(1)?;
                vocab::copied_from(path, s.vocab)?
            }
        };
        let mut metadata = model_metadata(s);
        metadata.extend(tokenizer);
        Ok(Self {
            metadata,
            tensors: tensors(s),
            seed: spec.seed,
            params: s.param_count(),
        })
    }

    /// The directory, in file order.
    pub fn tensors(&self) -> impl Iterator<Item = &TensorEntry> {
        self.tensors.iter().map(|t| &t.entry)
    }

    /// Size of the file in bytes.
    pub fn file_len(&self) -> Result<u64> {
        let entries: Vec<TensorEntry> = self.tensors().cloned().collect();
        gguf_write::file_len(&self.metadata, &entries)
    }

    /// Writes the file to `out`; `progress` gets the bytes of every written piece.
    pub fn write_to<W: Write + Send>(
        &self,
        out: W,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<W> {
        let entries: Vec<TensorEntry> = self.tensors().cloned().collect();
        let mut writer = GgufWriter::new(out, &self.metadata, entries)?;
        progress(writer.position());
        // Generate the next block while the previous one is written.
        let mut pending: Option<Vec<u8>> = None;
        let mut spare: Option<Vec<u8>> = None;
        for t in &self.tensors {
            let stream = TensorStream::new(self.seed, &t.entry.name, t.dist);
            let size = t.entry.dtype.type_size();
            let total = t.entry.elem_count();
            let per_block = (BLOCK_BYTES / size) as u64;
            let mut first = 0u64;
            while first < total {
                let n = per_block.min(total - first);
                let mut buf = spare.take().unwrap_or_default();
                buf.resize(n as usize * size, 0);
                let previous = pending.take();
                let (written, ()) = rayon::join(
                    || write_block(&mut writer, previous, progress),
                    || stream.fill(t.entry.dtype, first, &mut buf),
                );
                spare = written?;
                pending = Some(buf);
                first += n;
            }
        }
        write_block(&mut writer, pending, progress)?;
        writer.finish()
    }
}

fn write_block<W: Write>(
    writer: &mut GgufWriter<W>,
    block: Option<Vec<u8>>,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Option<Vec<u8>>> {
    let Some(block) = block else { return Ok(None) };
    writer.write_data(&block)?;
    progress(block.len() as u64);
    Ok(Some(block))
}

/// `general.*` and `{arch}.*` metadata.
fn model_metadata(s: &ModelShape) -> Vec<(String, Value)> {
    let arch = s.arch.gguf_name();
    let k = |key: &str| format!("{arch}.{key}");
    let u = |v: usize| Value::U32(v as u32);
    vec![
        ("general.architecture".into(), Value::String(arch.into())),
        (
            "general.name".into(),
            Value::String(format!("random-weight {}", s.name)),
        ),
        // llama.cpp's LLAMA_FTYPE_MOSTLY_F16
        ("general.file_type".into(), Value::U32(1)),
        (k("context_length"), u(s.ctx)),
        (k("embedding_length"), u(s.hidden)),
        (k("feed_forward_length"), u(s.ffn)),
        (k("block_count"), u(s.layers)),
        (k("attention.head_count"), u(s.heads)),
        (k("attention.head_count_kv"), u(s.kv_heads)),
        (k("attention.key_length"), u(s.head_dim)),
        (k("attention.value_length"), u(s.head_dim)),
        (k("attention.layer_norm_rms_epsilon"), Value::F32(s.rms_eps)),
        (k("rope.freq_base"), Value::F32(s.rope_theta)),
        (k("rope.dimension_count"), u(s.head_dim)),
        (k("vocab_size"), u(s.vocab)),
    ]
}

/// The tensors in llama.cpp's order and names, with their value distributions.
fn tensors(s: &ModelShape) -> Vec<Planned> {
    let (h, f, v) = (s.hidden, s.ffn, s.vocab);
    let (q, kv) = (s.q_dim(), s.kv_dim());
    let inv_sqrt = |fan_in: usize| Uniform::with_std(1.0 / (fan_in as f32).sqrt());
    let matrix = |name: String, rows: usize, cols: usize| Planned {
        entry: TensorEntry::new(name, &[rows, cols], GgmlDType::F16),
        dist: inv_sqrt(cols),
    };
    let vector = |name: String, len: usize, dist: Uniform| Planned {
        entry: TensorEntry::new(name, &[len], GgmlDType::F32),
        dist,
    };
    let norm = Uniform {
        center: 1.0,
        half_width: 0.05,
    };
    let bias = Uniform::with_std(0.02);

    let mut out = vec![Planned {
        entry: TensorEntry::new("token_embd.weight", &[v, h], GgmlDType::F16),
        dist: Uniform::with_std(1.0),
    }];
    for i in 0..s.layers {
        let n = |part: &str| format!("blk.{i}.{part}");
        out.push(vector(n("attn_norm.weight"), h, norm));
        out.push(matrix(n("attn_q.weight"), q, h));
        out.push(matrix(n("attn_k.weight"), kv, h));
        out.push(matrix(n("attn_v.weight"), kv, h));
        if s.arch.has_qkv_bias() {
            out.push(vector(n("attn_q.bias"), q, bias));
            out.push(vector(n("attn_k.bias"), kv, bias));
            out.push(vector(n("attn_v.bias"), kv, bias));
        }
        out.push(matrix(n("attn_output.weight"), h, q));
        out.push(vector(n("ffn_norm.weight"), h, norm));
        out.push(matrix(n("ffn_gate.weight"), f, h));
        out.push(matrix(n("ffn_up.weight"), f, h));
        out.push(matrix(n("ffn_down.weight"), h, f));
    }
    out.push(vector("output_norm.weight".into(), h, norm));
    out.push(matrix("output.weight".into(), v, h));
    out
}

/// What [`write_model`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    pub path: PathBuf,
    pub bytes: u64,
    pub params: u64,
    pub seconds: f64,
}

/// Writes the model of `plan` to `path` through `path.partial` (removed on failure, renamed to
/// `path` when complete); `progress` gets the bytes of every written piece.
pub fn write_model(
    plan: &Plan,
    path: &Path,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Written> {
    let start = std::time::Instant::now();
    let bytes = plan.file_len()?;
    let partial = partial_path(path);
    let fail = |reason: String| LadeError::WriteFailed {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::create(&partial)
        .map_err(|e| fail(format!("cannot create {}: {e}", partial.display())))?;
    let result = plan
        .write_to(BufWriter::with_capacity(1 << 20, file), progress)
        .and_then(|w| {
            let file = w.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            Ok(())
        })
        .map_err(|e| match e {
            LadeError::Io(io) if io.kind() == ErrorKind::StorageFull => fail(format!(
                "the disk is full (the file needs {bytes} bytes, {})",
                human_bytes(bytes)
            )),
            LadeError::Io(io) => fail(io.to_string()),
            other => other,
        })
        .and_then(|()| {
            std::fs::rename(&partial, path)
                .map_err(|e| fail(format!("cannot rename {} to it: {e}", partial.display())))
        });
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    Ok(Written {
        path: path.to_path_buf(),
        bytes,
        params: plan.params,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// `FILE.partial`, where [`write_model`] writes before renaming.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".partial");
    PathBuf::from(name)
}

/// `13.48 GB` (decimal units, as disks are sold).
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.1} kB", b / 1e3)
    }
}

/// `6.74 B`, `135.0 M`, `52 k` parameters.
pub fn human_count(n: u64) -> String {
    let x = n as f64;
    if x >= 1e9 {
        format!("{:.2} B", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.1} M", x / 1e6)
    } else {
        format!("{:.0} k", x / 1e3)
    }
}
