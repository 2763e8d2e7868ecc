//! Decompression of produced record batches with a ceiling on the output, so a small
//! compressed batch cannot expand into unbounded memory (a decompression bomb).

use std::io::Read;

use anyhow::{bail, ensure, Context};
use bytes::{Buf, Bytes};
use kafka_protocol::records::Compression;

/// Largest decompressed size of one record batch.
pub const MAX_DECOMPRESSED: usize = 64 << 20;

/// The xerial framing header Kafka's Java client puts before snappy blocks.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// Decompresses the records section of one batch; refuses output over [`MAX_DECOMPRESSED`].
pub fn decompress(data: &mut Bytes, compression: Compression) -> anyhow::Result<Bytes> {
    let input = data.clone();
    match compression {
        Compression::None => Ok(input),
        Compression::Gzip => bounded(flate2::read::MultiGzDecoder::new(input.reader())),
        Compression::Lz4 => bounded(lz4::Decoder::new(input.reader()).context("bad lz4 frame")?),
        Compression::Zstd => {
            bounded(zstd::stream::read::Decoder::new(input.reader()).context("bad zstd frame")?)
        }
        Compression::Snappy => snappy(input),
    }
}

fn bounded(reader: impl Read) -> anyhow::Result<Bytes> {
    let mut out = Vec::new();
    reader
        .take(MAX_DECOMPRESSED as u64 + 1)
        .read_to_end(&mut out)
        .context("cannot decompress record batch")?;
    ensure!(
        out.len() <= MAX_DECOMPRESSED,
        "record batch decompresses to more than {MAX_DECOMPRESSED} bytes"
    );
    Ok(out.into())
}

/// Raw snappy, or xerial-framed blocks (`[u32 length][raw snappy block]...`).
fn snappy(mut input: Bytes) -> anyhow::Result<Bytes> {
    let mut out: Vec<u8> = Vec::new();
    let block = |compressed: &[u8], out: &mut Vec<u8>| -> anyhow::Result<()> {
        let len = snap::raw::decompress_len(compressed).context("bad snappy block")?;
        ensure!(
            out.len().saturating_add(len) <= MAX_DECOMPRESSED,
            "record batch decompresses to more than {MAX_DECOMPRESSED} bytes"
        );
        let start = out.len();
        out.resize(start + len, 0);
        snap::raw::Decoder::new()
            .decompress(compressed, &mut out[start..])
            .context("bad snappy block")?;
        Ok(())
    };
    if input.len() >= XERIAL_HEADER_LEN && input.starts_with(XERIAL_MAGIC) {
        input.advance(XERIAL_HEADER_LEN);
        while input.has_remaining() {
            if input.remaining() < 4 {
                bail!("truncated snappy block length");
            }
            let n = input.get_u32() as usize;
            if input.remaining() < n {
                bail!("truncated snappy block");
            }
            let b = input.split_to(n);
            block(&b, &mut out)?;
        }
    } else {
        block(&input, &mut out)?;
    }
    Ok(out.into())
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
        let mut small = Bytes::from(enc.finish().unwrap());
        assert!(small.len() < 1 << 20);
        assert!(decompress(&mut small, Compression::Gzip).is_err());
    }

    #[test]
    fn a_lying_snappy_length_is_refused() {
        // A raw snappy stream whose varint header claims 4 GiB.
        let mut lying = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]);
        assert!(decompress(&mut lying, Compression::Snappy).is_err());
    }
}
