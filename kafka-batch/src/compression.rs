//! Decompression of a batch's records section with a ceiling on the output, so a small
//! compressed batch cannot expand into unbounded memory (a decompression bomb).

use std::io::Read;

use bytes::{Buf, Bytes};

use crate::error::{corrupt, BatchError};
use crate::layout::Compression;

/// Largest decompressed size of one record batch.
pub const MAX_DECOMPRESSED: usize = 64 << 20;

/// The xerial framing header Kafka's Java client puts before snappy blocks.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

fn too_large() -> BatchError {
    corrupt(format!(
        "batch decompresses to more than {MAX_DECOMPRESSED} bytes"
    ))
}

/// Decompresses the records section of one batch; refuses output over [`MAX_DECOMPRESSED`].
pub fn decompress(data: &Bytes, compression: Compression) -> Result<Bytes, BatchError> {
    let input = data.clone();
    match compression {
        Compression::None => Ok(input),
        Compression::Gzip => bounded(flate2::read::MultiGzDecoder::new(input.reader()), "gzip"),
        Compression::Lz4 => bounded(
            lz4::Decoder::new(input.reader())
                .map_err(|e| corrupt(format!("bad lz4 frame: {e}")))?,
            "lz4",
        ),
        Compression::Zstd => bounded(
            zstd::stream::read::Decoder::new(input.reader())
                .map_err(|e| corrupt(format!("bad zstd frame: {e}")))?,
            "zstd",
        ),
        Compression::Snappy => snappy(input),
    }
}

fn bounded(reader: impl Read, codec: &str) -> Result<Bytes, BatchError> {
    let mut out = Vec::new();
    reader
        .take(MAX_DECOMPRESSED as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(format!("cannot decompress {codec} records: {e}")))?;
    if out.len() > MAX_DECOMPRESSED {
        return Err(too_large());
    }
    Ok(out.into())
}

/// Raw snappy, or xerial-framed blocks (`[u32 length][raw snappy block]...`).
fn snappy(mut input: Bytes) -> Result<Bytes, BatchError> {
    let mut out: Vec<u8> = Vec::new();
    let block = |compressed: &[u8], out: &mut Vec<u8>| -> Result<(), BatchError> {
        let bad = |e: snap::Error| corrupt(format!("bad snappy block: {e}"));
        let len = snap::raw::decompress_len(compressed).map_err(bad)?;
        if out.len().saturating_add(len) > MAX_DECOMPRESSED {
            return Err(too_large());
        }
        let start = out.len();
        out.resize(start + len, 0);
        snap::raw::Decoder::new()
            .decompress(compressed, &mut out[start..])
            .map_err(bad)?;
        Ok(())
    };
    if input.len() >= XERIAL_HEADER_LEN && input.starts_with(XERIAL_MAGIC) {
        input.advance(XERIAL_HEADER_LEN);
        while input.has_remaining() {
            if input.remaining() < 4 {
                return Err(corrupt("truncated snappy block length"));
            }
            let n = input.get_u32() as usize;
            if input.remaining() < n {
                return Err(corrupt("truncated snappy block"));
            }
            let b = input.split_to(n);
            block(&b, &mut out)?;
        }
    } else {
        block(&input, &mut out)?;
    }
    Ok(out.into())
}

/// Compresses a records section with `compression` (as a producer does; raw snappy, Kafka's
/// lz4 frame). For tests, benchmarks and tools: the broker itself never compresses.
pub fn compress(section: &[u8], compression: Compression) -> Result<Vec<u8>, BatchError> {
    use std::io::Write;
    let fail = |e: std::io::Error| corrupt(format!("cannot compress: {e}"));
    match compression {
        Compression::None => Ok(section.to_vec()),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(section).map_err(fail)?;
            enc.finish().map_err(fail)
        }
        Compression::Snappy => snap::raw::Encoder::new()
            .compress_vec(section)
            .map_err(|e| corrupt(format!("cannot compress: {e}"))),
        Compression::Lz4 => {
            let mut enc = lz4::EncoderBuilder::new().build(Vec::new()).map_err(fail)?;
            enc.write_all(section).map_err(fail)?;
            let (out, r) = enc.finish();
            r.map_err(fail)?;
            Ok(out)
        }
        Compression::Zstd => zstd::encode_all(section, 1).map_err(fail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_gzip_bomb_is_refused() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(MAX_DECOMPRESSED / zeros.len() + 2) {
            enc.write_all(&zeros).unwrap();
        }
        let small = Bytes::from(enc.finish().unwrap());
        assert!(small.len() < 1 << 20);
        assert!(decompress(&small, Compression::Gzip).is_err());
    }

    #[test]
    fn a_lying_snappy_length_is_refused() {
        // A raw snappy stream whose varint header claims 4 GiB.
        let lying = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]);
        assert!(decompress(&lying, Compression::Snappy).is_err());
    }
}
