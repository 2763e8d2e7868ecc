//! Kafka record batches for the listener's tests, tools and fuzzing: records encoded as one
//! batch (as a producer would send them) and record sets decoded back into records. The
//! codec is the `kafka_batch` crate's; the produce and fetch paths themselves never decode
//! or re-encode records (see `produce.rs` and `fetch.rs`).

use broker_api::{ProducerBatch, Record, StoredRecord};
use bytes::Bytes;
use kafka_batch::{BatchError, BatchHeader, Timestamps};
use kafka_protocol::ResponseError;

/// Bytes of a v2 batch header, up to and including the record count.
pub const BATCH_HEADER_LEN: usize = kafka_batch::HEADER_LEN;

/// A Kafka error code with a message naming what was wrong.
pub type BatchFault = (i16, String);

/// The Kafka error code for a batch the codec refused.
pub fn error_code(e: &BatchError) -> i16 {
    match e {
        BatchError::Corrupt(_) => ResponseError::CorruptMessage.code(),
        BatchError::Invalid(_) => ResponseError::InvalidRecord.code(),
        BatchError::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat.code(),
        BatchError::RecordTooLarge { .. } => ResponseError::MessageTooLarge.code(),
    }
}

/// One record batch of a record set, decoded.
#[derive(Debug)]
pub struct DecodedBatch {
    pub records: Vec<Record>,
    pub producer: Option<ProducerBatch>,
}

/// Decodes every batch of a produced record set, checking each as the broker does (see
/// `kafka_batch::validate`); refuses anything else with the Kafka error a client expects.
pub fn decode_batches(bytes: &Bytes) -> Result<Vec<DecodedBatch>, BatchFault> {
    let fault = |e: BatchError| (error_code(&e), e.to_string());
    let mut out = Vec::new();
    for b in kafka_batch::split_batches(bytes).map_err(fault)? {
        let valid = kafka_batch::validate(b, Timestamps::Create, usize::MAX).map_err(fault)?;
        let stored = valid.stored(0);
        let mut records = Vec::new();
        kafka_batch::decode_records(&stored, 0, |r| {
            records.push(Record {
                key: r.key,
                value: r.value,
                headers: r.headers,
                timestamp_ms: Some(r.timestamp_ms),
                not_before_ms: None,
            });
            true
        })
        .map_err(fault)?;
        out.push(DecodedBatch {
            records,
            producer: valid.header.producer(),
        });
    }
    Ok(out)
}

/// Encodes stored records (ascending offsets) as one uncompressed v2 batch whose base offset
/// is the first record's; `log_append_time` marks it LogAppendTime with the largest
/// timestamp as max timestamp.
pub fn encode_batch(records: &[StoredRecord], log_append_time: bool) -> Bytes {
    let Some(first) = records.first() else {
        return Bytes::new();
    };
    let plain: Vec<Record> = records
        .iter()
        .map(|r| Record {
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
            timestamp_ms: Some(r.timestamp_ms),
            not_before_ms: None,
        })
        .collect();
    let mut buf = Vec::new();
    let enc = kafka_batch::encode_records(&mut buf, &plain, 0, None).expect("records fit a batch");
    kafka_batch::set_base_offset(&mut buf, first.offset);
    let bytes = Bytes::from(buf);
    if !log_append_time {
        return bytes;
    }
    let valid = kafka_batch::validate(bytes, Timestamps::LogAppend(enc.max_timestamp), usize::MAX)
        .expect("an encoded batch is valid");
    valid.stored(first.offset)
}

/// The header of the first batch of `bytes`, if it holds one.
pub fn first_header(bytes: &[u8]) -> Option<BatchHeader> {
    BatchHeader::read(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use broker_api::Header;

    fn stored(offset: i64, headers: Vec<(&str, Option<&str>)>) -> StoredRecord {
        StoredRecord {
            offset,
            timestamp_ms: 1_700_000_000_000 + offset * 7 - 20,
            key: (offset % 2 == 0).then(|| Bytes::from(format!("k{offset}"))),
            value: Some(Bytes::from(vec![b'v'; offset as usize * 3])),
            headers: headers
                .into_iter()
                .map(|(k, v)| Header {
                    key: k.into(),
                    value: v.map(|v| Bytes::from(v.to_string())),
                })
                .collect(),
            not_before_ms: None,
        }
    }

    #[test]
    fn batches_round_trip_and_agree_with_the_codec_crate() {
        let records: Vec<StoredRecord> = (5..40)
            .map(|o| stored(o, vec![("h", Some("1")), ("x", None), ("h", Some("2"))]))
            .collect();
        let bytes = encode_batch(&records, false);
        let decoded = decode_batches(&bytes).unwrap();
        assert_eq!(decoded.len(), 1);
        let got = &decoded[0].records;
        for (g, want) in got.iter().zip(&records) {
            assert_eq!(g.key, want.key);
            assert_eq!(g.value, want.value);
            assert_eq!(g.headers, want.headers);
            assert_eq!(g.timestamp_ms, Some(want.timestamp_ms));
        }
        // The kafka-protocol crate agrees on the framing and the CRC.
        let mut b = bytes.clone();
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut b).unwrap();
        let offsets: Vec<i64> = set.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (5..40).collect::<Vec<_>>());
        let lat = encode_batch(&records, true);
        let mut b = lat.clone();
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut b).unwrap();
        assert_eq!(
            set.records[0].timestamp_type,
            kafka_protocol::records::TimestampType::LogAppend
        );
    }

    #[test]
    fn damaged_batches_are_refused_with_kafka_errors() {
        let bytes = encode_batch(&[stored(0, vec![]), stored(1, vec![])], false);
        let mut flipped = bytes.to_vec();
        let n = flipped.len();
        flipped[n - 3] ^= 0x40;
        let err = decode_batches(&Bytes::from(flipped)).unwrap_err();
        assert_eq!(err.0, ResponseError::CorruptMessage.code(), "{}", err.1);
        assert!(err.1.contains("CRC"), "{}", err.1);
        let truncated = bytes.slice(..bytes.len() - 1);
        assert_eq!(
            decode_batches(&truncated).unwrap_err().0,
            ResponseError::CorruptMessage.code()
        );
        let mut magic1 = bytes.to_vec();
        magic1[16] = 1;
        assert_eq!(
            decode_batches(&Bytes::from(magic1)).unwrap_err().0,
            ResponseError::UnsupportedForMessageFormat.code()
        );
        assert!(decode_batches(&Bytes::new()).is_err());
    }
}
