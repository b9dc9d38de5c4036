//! A streaming GGUF (version 3) writer: the header (metadata and tensor directory) goes out
//! first, then each tensor's data in directory order, in pieces of any size, so a file of any
//! size is written without holding its tensors in memory.
//!
//! Layout, as `candle_core::quantized::gguf_file` and llama.cpp read it (little-endian):
//! magic `GGUF`, version (u32 3), tensor count (u64), metadata count (u64); each metadata
//! entry as key (u64 length + UTF-8), value type (u32) and value; each tensor as name,
//! dimension count (u32), dimensions innermost first (u64 each), ggml type (u32) and data
//! offset (u64, from the start of the data section). The data section starts at the next
//! multiple of `general.alignment` (written by [`GgufWriter::new`]) and every tensor's data
//! starts at a multiple of it too.

use std::io::Write;

use candle_core::quantized::gguf_file::{Value, ValueType};
use candle_core::quantized::GgmlDType;

use crate::{LadeError, Result};

/// Alignment of the data section and of every tensor in it (`general.alignment`).
pub const ALIGNMENT: u64 = 32;

const MAGIC: u32 = 0x4655_4747; // "GGUF", little-endian
const VERSION: u32 = 3;

/// One tensor of the directory: its name, dimensions (outermost first, as
/// `candle_core::Shape` has them: a `(rows, cols)` matrix is `[rows, cols]`) and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    pub name: String,
    pub dims: Vec<usize>,
    pub dtype: GgmlDType,
}

impl TensorEntry {
    pub fn new(name: impl Into<String>, dims: &[usize], dtype: GgmlDType) -> Self {
        Self {
            name: name.into(),
            dims: dims.to_vec(),
            dtype,
        }
    }

    pub fn elem_count(&self) -> u64 {
        self.dims.iter().map(|&d| d as u64).product()
    }

    /// Bytes of this tensor's data (without the padding after it).
    pub fn data_len(&self) -> u64 {
        let block = self.dtype.block_size() as u64;
        self.elem_count() / block * self.dtype.type_size() as u64
    }

    fn check(&self) -> Result<()> {
        let block = self.dtype.block_size() as u64;
        let inner = self.dims.last().copied().unwrap_or(0) as u64;
        if self.dims.is_empty() || self.dims.len() > 4 || inner % block != 0 {
            return Err(LadeError::InvalidArgument(format!(
                "tensor {} of dimensions {:?} cannot be stored as {:?}",
                self.name, self.dims, self.dtype
            )));
        }
        Ok(())
    }
}

fn padded(len: u64) -> u64 {
    len.div_ceil(ALIGNMENT) * ALIGNMENT
}

/// Writes a GGUF file to `out`: [`GgufWriter::new`] writes the header, [`GgufWriter::write_data`]
/// appends tensor data (tensor after tensor, in the directory's order), [`GgufWriter::finish`]
/// checks that every tensor got all its bytes.
pub struct GgufWriter<W: Write> {
    out: W,
    tensors: Vec<TensorEntry>,
    /// Index of the tensor whose data comes next.
    current: usize,
    /// Bytes of the current tensor already written.
    written: u64,
    /// Bytes written to `out`.
    position: u64,
}

impl<W: Write> GgufWriter<W> {
    /// Writes the header: `metadata` (in this order, with `general.alignment` added unless
    /// present) and the directory of `tensors`, then pads to the data section.
    pub fn new(out: W, metadata: &[(String, Value)], tensors: Vec<TensorEntry>) -> Result<Self> {
        for t in &tensors {
            t.check()?;
        }
        let mut w = Self {
            out,
            tensors,
            current: 0,
            written: 0,
            position: 0,
        };
        let has_alignment = metadata.iter().any(|(k, _)| k == "general.alignment");
        let mut header = Vec::new();
        put_u32(&mut header, MAGIC);
        put_u32(&mut header, VERSION);
        put_u64(&mut header, w.tensors.len() as u64);
        put_u64(
            &mut header,
            metadata.len() as u64 + u64::from(!has_alignment),
        );
        if !has_alignment {
            put_string(&mut header, "general.alignment");
            put_u32(&mut header, ValueType::U32.to_u32_tag());
            put_u32(&mut header, ALIGNMENT as u32);
        }
        for (key, value) in metadata {
            put_string(&mut header, key);
            put_u32(&mut header, value.value_type().to_u32_tag());
            put_value(&mut header, key, value)?;
        }
        let mut offset = 0u64;
        for t in &w.tensors {
            put_string(&mut header, &t.name);
            put_u32(&mut header, t.dims.len() as u32);
            for &d in t.dims.iter().rev() {
                put_u64(&mut header, d as u64);
            }
            put_u32(&mut header, ggml_type_id(t.dtype));
            put_u64(&mut header, offset);
            offset += padded(t.data_len());
        }
        header.resize(padded(header.len() as u64) as usize, 0);
        w.emit(&header)?;
        w.skip_empty()?;
        Ok(w)
    }

    /// The directory, in file order.
    pub fn tensors(&self) -> &[TensorEntry] {
        &self.tensors
    }

    /// Appends `bytes` to the data of the current tensor (a piece may end one tensor and go on
    /// with the next).
    pub fn write_data(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let Some(t) = self.tensors.get(self.current) else {
                return Err(LadeError::InvalidArgument(
                    "GGUF writer: more tensor data than the directory holds".into(),
                ));
            };
            let room = t.data_len() - self.written;
            let take = room.min(bytes.len() as u64) as usize;
            let (now, rest) = bytes.split_at(take);
            self.emit(now)?;
            self.written += take as u64;
            bytes = rest;
            self.skip_empty()?;
        }
        Ok(())
    }

    /// Checks that every tensor is complete and returns the output.
    pub fn finish(mut self) -> Result<W> {
        if let Some(t) = self.tensors.get(self.current) {
            return Err(LadeError::InvalidArgument(format!(
                "GGUF writer: tensor {} got {} of its {} bytes",
                t.name,
                self.written,
                t.data_len()
            )));
        }
        self.out.flush()?;
        Ok(self.out)
    }

    /// Bytes written so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Closes the current tensor when it is complete (padding it), and any empty ones after.
    fn skip_empty(&mut self) -> Result<()> {
        while let Some(t) = self.tensors.get(self.current) {
            let len = t.data_len();
            if self.written < len {
                break;
            }
            let pad = (padded(len) - len) as usize;
            self.emit(&[0u8; ALIGNMENT as usize][..pad])?;
            self.current += 1;
            self.written = 0;
        }
        Ok(())
    }

    fn emit(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes)?;
        self.position += bytes.len() as u64;
        Ok(())
    }
}

/// Size in bytes of the GGUF file [`GgufWriter`] writes for this header and directory.
pub fn file_len(metadata: &[(String, Value)], tensors: &[TensorEntry]) -> Result<u64> {
    let header = GgufWriter::new(std::io::sink(), metadata, tensors.to_vec())?.position();
    Ok(header + tensors.iter().map(|t| padded(t.data_len())).sum::<u64>())
}

/// ggml's numbering of tensor types.
fn ggml_type_id(dtype: GgmlDType) -> u32 {
    match dtype {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q5_0 => 6,
        GgmlDType::Q5_1 => 7,
        GgmlDType::Q8_0 => 8,
        GgmlDType::Q8_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 11,
        GgmlDType::Q4K => 12,
        GgmlDType::Q5K => 13,
        GgmlDType::Q6K => 14,
        GgmlDType::Q8K => 15,
        GgmlDType::BF16 => 30,
    }
}

trait TypeTag {
    fn to_u32_tag(self) -> u32;
}

impl TypeTag for ValueType {
    /// GGUF's numbering of metadata value types.
    fn to_u32_tag(self) -> u32 {
        match self {
            ValueType::U8 => 0,
            ValueType::I8 => 1,
            ValueType::U16 => 2,
            ValueType::I16 => 3,
            ValueType::U32 => 4,
            ValueType::I32 => 5,
            ValueType::F32 => 6,
            ValueType::Bool => 7,
            ValueType::String => 8,
            ValueType::Array => 9,
            ValueType::U64 => 10,
            ValueType::I64 => 11,
            ValueType::F64 => 12,
        }
    }
}

fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put_string(buf: &mut Vec<u8>, s: &str) {
    put_u64(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// A value without its type tag (arrays carry their element type and length).
fn put_value(buf: &mut Vec<u8>, key: &str, value: &Value) -> Result<()> {
    match value {
        Value::U8(v) => buf.push(*v),
        Value::I8(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::U16(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => put_u32(buf, *v),
        Value::I32(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::U64(v) => put_u64(buf, *v),
        Value::I64(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => buf.push(u8::from(*v)),
        Value::String(s) => put_string(buf, s),
        Value::Array(items) => {
            // An empty array's element type is free; a string array is what readers of
            // token lists and merges expect.
            let ty = items.first().map_or(ValueType::String, Value::value_type);
            if items.iter().any(|v| v.value_type() != ty) {
                return Err(LadeError::InvalidArgument(format!(
                    "GGUF metadata {key}: an array mixes value types"
                )));
            }
            put_u32(buf, ty.to_u32_tag());
            put_u64(buf, items.len() as u64);
            for item in items {
                put_value(buf, key, item)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::gguf_file::Content;
    use candle_core::Device;

    #[test]
    fn round_trips_through_candles_reader() {
        let meta = vec![
            (
                "general.architecture".to_string(),
                Value::String("x".into()),
            ),
            ("a.count".to_string(), Value::U64(7)),
            ("a.eps".to_string(), Value::F32(1e-5)),
            (
                "a.list".to_string(),
                Value::Array(vec![Value::String("p".into()), Value::String("q".into())]),
            ),
            ("a.empty".to_string(), Value::Array(vec![])),
        ];
        let tensors = vec![
            TensorEntry::new("m", &[3, 5], GgmlDType::F16),
            TensorEntry::new("v", &[3], GgmlDType::F32),
        ];
        let mut w = GgufWriter::new(Vec::new(), &meta, tensors.clone()).unwrap();
        let m: Vec<u8> = (0..15u16)
            .flat_map(|i| half::f16::from_f32(f32::from(i)).to_le_bytes())
            .collect();
        let v: Vec<u8> = [1.5f32, -2.0, 4.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        // Pieces that straddle the two tensors.
        w.write_data(&m[..7]).unwrap();
        let mut rest = m[7..].to_vec();
        rest.extend_from_slice(&v[..2]);
        w.write_data(&rest).unwrap();
        w.write_data(&v[2..]).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() as u64, file_len(&meta, &tensors).unwrap());

        let mut cursor = std::io::Cursor::new(&bytes);
        let ct = Content::read(&mut cursor).unwrap();
        assert_eq!(ct.tensor_data_offset % ALIGNMENT, 0);
        assert_eq!(ct.metadata["a.count"].to_u64().unwrap(), 7);
        assert_eq!(ct.metadata["general.alignment"].to_u32().unwrap(), 32);
        assert_eq!(ct.metadata["a.list"].to_vec().unwrap().len(), 2);
        assert!(ct.metadata["a.empty"].to_vec().unwrap().is_empty());
        let mt = ct.tensor(&mut cursor, "m", &Device::Cpu).unwrap();
        assert_eq!(mt.shape().dims(), &[3, 5]);
        assert_eq!(mt.dtype(), GgmlDType::F16);
        let mv: Vec<Vec<f32>> = mt.dequantize(&Device::Cpu).unwrap().to_vec2().unwrap();
        assert_eq!(mv[2][4], 14.0);
        let vt = ct.tensor(&mut cursor, "v", &Device::Cpu).unwrap();
        let vv: Vec<f32> = vt.dequantize(&Device::Cpu).unwrap().to_vec1().unwrap();
        assert_eq!(vv, vec![1.5, -2.0, 4.0]);
        assert_eq!(ct.tensor_infos["v"].offset % ALIGNMENT, 0);
    }

    #[test]
    fn too_much_or_too_little_data_is_an_error() {
        let tensors = vec![TensorEntry::new("v", &[2], GgmlDType::F32)];
        let mut w = GgufWriter::new(Vec::new(), &[], tensors.clone()).unwrap();
        assert!(w.write_data(&[0u8; 9]).is_err());
        let mut w = GgufWriter::new(Vec::new(), &[], tensors).unwrap();
        w.write_data(&[0u8; 4]).unwrap();
        let err = w.finish().err().unwrap().to_string();
        assert!(err.contains("4 of its 8 bytes"), "{err}");
    }

    #[test]
    fn mixed_arrays_are_refused() {
        let meta = vec![(
            "k".to_string(),
            Value::Array(vec![Value::U32(1), Value::String("x".into())]),
        )];
        assert!(GgufWriter::new(Vec::new(), &meta, vec![]).is_err());
    }
}
