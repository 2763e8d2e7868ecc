//! Round trips and refusals of the batch codec.

use broker_api::{Header, ProducerBatch, Record, StoredRecord};
use bytes::Bytes;

use crate::*;

fn rec(i: i64) -> Record {
    Record {
        key: (i % 2 == 0).then(|| Bytes::from(format!("k{i}"))),
        value: Some(Bytes::from(vec![b'v'; (i * 3) as usize])),
        headers: vec![
            Header {
                key: "h".into(),
                value: Some(Bytes::from_static(b"1")),
            },
            Header {
                key: "x".into(),
                value: None,
            },
            Header {
                key: "h".into(),
                value: Some(Bytes::from_static(b"2")),
            },
        ],
        timestamp_ms: Some(1_700_000_000_000 + i * 7 - 20),
        not_before_ms: None,
    }
}

fn encoded(records: &[Record], base: i64) -> Bytes {
    let mut buf = Vec::new();
    encode_records(&mut buf, records, 1_700_000_000_000, None).unwrap();
    set_base_offset(&mut buf, base);
    Bytes::from(buf)
}

fn decode_all(batch: &Bytes, from: i64) -> Result<Vec<StoredRecord>, BatchError> {
    let mut out = Vec::new();
    decode_records(batch, from, |r| {
        out.push(r);
        true
    })?;
    Ok(out)
}

/// A batch around an arbitrary (possibly compressed) records section.
fn batch_with_body(count: i32, attributes: i16, body: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; HEADER_LEN];
    b.extend_from_slice(body);
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    b[12..16].copy_from_slice(&(-1i32).to_be_bytes());
    b[16] = 2;
    b[21..23].copy_from_slice(&attributes.to_be_bytes());
    b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    b[27..35].copy_from_slice(&1000i64.to_be_bytes());
    b[35..43].copy_from_slice(&1000i64.to_be_bytes());
    b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    b[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    b[57..61].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

#[test]
fn records_round_trip_with_duplicate_headers_in_order() {
    let records: Vec<Record> = (1..40).map(rec).collect();
    let batch = encoded(&records, 500);
    let h = BatchHeader::parse_stored(&batch).expect("a stored header");
    assert_eq!(
        (h.base_offset, h.record_count, h.last_offset()),
        (500, 39, 538)
    );
    assert!(crc_ok(&batch));
    let out = decode_all(&batch, 0).unwrap();
    assert_eq!(out.len(), 39);
    for (i, (got, want)) in out.iter().zip(&records).enumerate() {
        assert_eq!(got.offset, 500 + i as i64);
        assert_eq!(got.key, want.key);
        assert_eq!(got.value, want.value);
        assert_eq!(got.headers, want.headers);
        assert_eq!(Some(got.timestamp_ms), want.timestamp_ms);
        assert_eq!(got.not_before_ms, None);
    }
    assert_eq!(
        h.max_timestamp,
        records.last().unwrap().timestamp_ms.unwrap()
    );
    // From the middle of the batch.
    let tail = decode_all(&batch, 520).unwrap();
    assert_eq!(tail.first().map(|r| r.offset), Some(520));
    assert_eq!(tail.len(), 19);
}

#[test]
fn not_before_rides_in_a_marked_last_header() {
    let mut records = vec![rec(2), rec(3), Record::from_value("plain")];
    records[0].not_before_ms = Some(-5);
    records[1].not_before_ms = Some(i64::MAX);
    records[1].headers.push(Header {
        key: NOT_BEFORE_HEADER.into(),
        value: Some(Bytes::from_static(b"12345678")),
    });
    let batch = encoded(&records, 0);
    assert!(BatchHeader::read(&batch).unwrap().has_not_before());
    let out = decode_all(&batch, 0).unwrap();
    assert_eq!(out[0].not_before_ms, Some(-5));
    assert_eq!(out[0].headers, records[0].headers);
    assert_eq!(out[1].not_before_ms, Some(i64::MAX));
    // A user header of the same name stays a header.
    assert_eq!(out[1].headers, records[1].headers);
    assert_eq!(out[2].not_before_ms, None);
    // A producer may not mark a batch that way.
    let err = validate(batch, Timestamps::Create, usize::MAX).unwrap_err();
    assert!(matches!(err, BatchError::Invalid(_)), "{err}");
}

#[test]
fn extreme_timestamps_and_empty_fields_round_trip() {
    let records = vec![
        Record {
            key: Some(Bytes::new()),
            value: Some(Bytes::from(vec![3u8; 70_000])),
            headers: vec![Header {
                key: "é".repeat(200),
                value: Some(Bytes::new()),
            }],
            timestamp_ms: Some(i64::MIN),
            not_before_ms: None,
        },
        Record {
            timestamp_ms: Some(i64::MAX),
            ..Record::default()
        },
        Record::default(),
    ];
    for append_time in [0, -1, i64::MAX, i64::MIN] {
        let mut buf = Vec::new();
        let e = encode_records(&mut buf, &records, append_time, None).unwrap();
        assert_eq!(e.record_count, 3);
        let out = decode_all(&Bytes::from(buf), 0).unwrap();
        assert_eq!(out[0].key.as_deref(), Some(&b""[..]));
        assert_eq!(out[0].value.as_ref().map(|v| v.len()), Some(70_000));
        assert_eq!(out[0].headers, records[0].headers);
        assert_eq!(out[0].timestamp_ms, i64::MIN);
        assert_eq!(out[1].timestamp_ms, i64::MAX);
        assert_eq!((out[1].key.clone(), out[1].value.clone()), (None, None));
        assert_eq!(out[2].timestamp_ms, append_time);
    }
}

#[test]
fn a_producers_batch_passes_and_keeps_its_bytes() {
    let records: Vec<Record> = (1..10).map(rec).collect();
    let mut buf = Vec::new();
    let p = ProducerBatch {
        producer_id: 7,
        epoch: 2,
        first_sequence: 40,
    };
    encode_records(&mut buf, &records, 0, Some(p)).unwrap();
    buf[12..16].copy_from_slice(&(-1i32).to_be_bytes()); // producers send epoch -1
    let sent = Bytes::from(buf);
    let v = validate(sent.clone(), Timestamps::Create, 1 << 20).unwrap();
    assert_eq!(v.header.producer(), Some(p));
    assert_eq!(v.record_count(), 9);
    assert_eq!(
        v.record_bytes,
        records.iter().map(|r| r.size() as u64).sum::<u64>()
    );
    let stored = v.stored(1234);
    assert_eq!(
        &stored[PREFIX_LEN..],
        &sent[PREFIX_LEN..],
        "CRC on unchanged"
    );
    assert_eq!(&v.tail()[..], &sent[PREFIX_LEN..]);
    let h = BatchHeader::parse_stored(&stored).unwrap();
    assert_eq!((h.base_offset, h.leader_epoch), (1234, 0));
    assert!(crc_ok(&stored));
}

#[test]
fn log_append_time_rewrites_max_timestamp_and_crc() {
    let records: Vec<Record> = (1..5).map(rec).collect();
    let sent = encoded(&records, 0);
    let v = validate(sent.clone(), Timestamps::LogAppend(42), 1 << 20).unwrap();
    let stored = v.stored(10);
    assert!(crc_ok(&stored));
    let h = BatchHeader::parse_stored(&stored).unwrap();
    assert!(h.log_append_time());
    assert_eq!(h.max_timestamp, 42);
    let out = decode_all(&stored, 0).unwrap();
    assert!(out.iter().all(|r| r.timestamp_ms == 42));
    // And back: a LogAppendTime batch on a CreateTime topic gets its own max timestamp.
    let v = validate(stored, Timestamps::Create, 1 << 20).unwrap();
    assert!(!v.header.log_append_time());
    assert_eq!(
        v.header.max_timestamp,
        h.max_timestamp.max(records[3].timestamp_ms.unwrap())
    );
    let mut lying = sent.to_vec();
    lying[35..43].copy_from_slice(&5i64.to_be_bytes());
    let crc = crc32c::crc32c(&lying[21..]);
    lying[17..21].copy_from_slice(&crc.to_be_bytes());
    let v = validate(Bytes::from(lying), Timestamps::Create, 1 << 20).unwrap();
    assert_eq!(v.header.max_timestamp, records[3].timestamp_ms.unwrap());
    assert!(crc_ok(&v.stored(0)));
}

#[test]
fn damaged_and_invalid_batches_are_refused_with_their_kind() {
    let records: Vec<Record> = (1..4).map(rec).collect();
    let good = encoded(&records, 0);
    let corrupt = |b: Vec<u8>| {
        let e = validate(Bytes::from(b), Timestamps::Create, usize::MAX).unwrap_err();
        assert!(matches!(e, BatchError::Corrupt(_)), "{e}");
    };
    let mut flipped = good.to_vec();
    let n = flipped.len();
    flipped[n - 3] ^= 0x40;
    corrupt(flipped);
    corrupt(good[..good.len() - 1].to_vec());
    let mut magic1 = good.to_vec();
    magic1[16] = 1;
    assert_eq!(
        validate(Bytes::from(magic1), Timestamps::Create, usize::MAX).unwrap_err(),
        BatchError::UnsupportedMagic(1)
    );
    let resign = |mut b: Vec<u8>| {
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        validate(Bytes::from(b), Timestamps::Create, usize::MAX).unwrap_err()
    };
    let mut count = good.to_vec();
    count[57..61].copy_from_slice(&2i32.to_be_bytes());
    assert!(matches!(resign(count), BatchError::Invalid(_)));
    let mut txn = good.to_vec();
    txn[22] |= 0x10;
    assert!(matches!(resign(txn), BatchError::Invalid(_)));
    assert_eq!(
        validate(good.clone(), Timestamps::Create, 5).unwrap_err(),
        BatchError::RecordTooLarge { size: 8, limit: 5 }
    );
    // A record whose offset delta is wrong.
    let body = [12u8, 0, 0, 2, 1, 1, 0]; // length 6, attrs, ts 0, delta 1, key null, value null, 0 headers
    let err = validate(
        Bytes::from(batch_with_body(1, 0, &body)),
        Timestamps::Create,
        usize::MAX,
    )
    .unwrap_err();
    assert!(matches!(err, BatchError::Invalid(_)), "{err}");
}

#[test]
fn every_truncation_and_byte_flip_is_refused_or_decoded_without_panicking() {
    let records: Vec<Record> = (1..5).map(rec).collect();
    let good = encoded(&records, 3);
    for cut in 0..good.len() {
        assert!(validate(good.slice(..cut), Timestamps::Create, usize::MAX).is_err());
        let _ = decode_all(&good.slice(..cut), 0);
        let _ = split_batches(&good.slice(..cut));
    }
    for i in 0..good.len() {
        for bits in [0xffu8, 0x80, 0x01] {
            let mut b = good.to_vec();
            b[i] ^= bits;
            let b = Bytes::from(b);
            let _ = validate(b.clone(), Timestamps::Create, usize::MAX);
            let _ = decode_all(&b, 0);
            let _ = record_timestamps(&b, 0, |_, _| true);
            let _ = BatchHeader::parse_stored(&b);
        }
    }
}

#[test]
fn compressed_batches_validate_and_decode() {
    use std::io::Write;
    let records: Vec<Record> = (1..30).map(rec).collect();
    let plain = encoded(&records, 0);
    let section = &plain[HEADER_LEN..];
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(section).unwrap();
    let gz = gz.finish().unwrap();
    let batch = Bytes::from(batch_with_body(29, 1, &gz));
    let v = validate(batch.clone(), Timestamps::Create, usize::MAX).unwrap();
    assert_eq!(v.header.compression(), Compression::Gzip);
    let stored = v.stored(100);
    // Still compressed: the records section is the producer's.
    assert_eq!(&stored[HEADER_LEN..], &batch[HEADER_LEN..]);
    assert!(crc_ok(&stored));
    let out = decode_all(&stored, 110).unwrap();
    assert_eq!(out.len(), 19);
    assert_eq!(out[0].offset, 110);
    assert_eq!(out[0].value, records[10].value);
    // A compressed section that is not gzip.
    let bad = Bytes::from(batch_with_body(29, 1, b"not gzip at all"));
    assert!(matches!(
        validate(bad, Timestamps::Create, usize::MAX),
        Err(BatchError::Corrupt(_))
    ));
    // Timestamps only.
    let mut ts = Vec::new();
    record_timestamps(&stored, 127, |o, t| {
        ts.push((o, t));
        true
    })
    .unwrap();
    assert_eq!(ts.len(), 2);
    // The hand-made header's base timestamp is 1000; the deltas are the encoder's.
    let delta = records[27].timestamp_ms.unwrap() - records[0].timestamp_ms.unwrap();
    assert_eq!(ts[0], (127, 1000 + delta));
}

#[test]
fn record_sets_split_into_batches() {
    let a = encoded(&[rec(1)], 0);
    let b = encoded(&[rec(2), rec(3)], 0);
    let mut set = a.to_vec();
    set.extend_from_slice(&b);
    let parts = split_batches(&Bytes::from(set.clone())).unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[1], b);
    assert!(split_batches(&Bytes::new()).is_err());
    set.push(0);
    assert!(matches!(
        split_batches(&Bytes::from(set)),
        Err(BatchError::Corrupt(_))
    ));
}

#[test]
fn every_codec_compresses_and_decodes() {
    let records: Vec<Record> = (1..20).map(rec).collect();
    let plain = encoded(&records, 0);
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let packed = Bytes::from(compress_batch(&plain, codec).unwrap());
        let v = validate(packed.clone(), Timestamps::Create, usize::MAX).unwrap();
        assert_eq!(v.header.compression(), codec);
        assert_eq!(v.len(), packed.len(), "{codec:?} kept as sent");
        let out = decode_all(&v.stored(0), 0).unwrap();
        assert_eq!(out.len(), 19, "{codec:?}");
        assert_eq!(out[18].value, records[18].value);
    }
}

#[test]
fn markers_round_trip_and_pass_the_stored_checks() {
    for commit in [true, false] {
        let m = broker_api::TxnMarker {
            producer_id: 7,
            producer_epoch: 3,
            commit,
            coordinator_epoch: 11,
        };
        let mut b = crate::marker_batch(&m, 1_000);
        crate::set_base_offset(&mut b, 42);
        assert!(crate::crc_ok(&b));
        let h = BatchHeader::parse_stored(&b).expect("a stored marker parses");
        assert!(h.is_control() && h.is_transactional());
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (7, 3, -1)
        );
        assert_eq!((h.base_offset, h.record_count), (42, 1));
        assert_eq!(crate::marker_commits(&b), Some(commit));
        // A producer may not send one.
        let err = crate::validate(bytes::Bytes::from(b), crate::Timestamps::Create, 1 << 20);
        assert!(matches!(err, Err(BatchError::Invalid(_))), "{err:?}");
    }
}

fn keyed(key: &str, value: Option<&str>, ts: i64) -> Record {
    Record {
        key: Some(Bytes::from(key.to_string())),
        value: value.map(|v| Bytes::from(v.to_string())),
        headers: vec![],
        timestamp_ms: Some(ts),
        not_before_ms: None,
    }
}

#[test]
fn compaction_keeps_offsets_and_newest_values() {
    let first = encoded(
        &[
            keyed("a", Some("1"), 100),
            keyed("b", Some("1"), 101),
            keyed("a", Some("2"), 102),
            keyed("c", None, 103),
        ],
        10,
    );
    let second = encoded(&[keyed("b", Some("2"), 104)], 14);
    for codec in [Compression::None, Compression::Zstd] {
        let first = if codec == Compression::None {
            first.clone()
        } else {
            Bytes::from(compress_batch(&first, codec).unwrap())
        };
        let mut map = OffsetMap::with_memory(1 << 20);
        assert!(map.add_batch(&first, 0).unwrap());
        assert!(map.add_batch(&second, 0).unwrap());
        assert_eq!(map.newest(b"a"), Some(12));
        let cx = CleanContext {
            map: &map,
            now_ms: 1_000,
            delete_retention_ms: 50,
        };
        let out = clean_batch(&first, &cx, false).unwrap();
        assert_eq!(out.records_removed, 2);
        let Cleaned::Rewrite(bytes) = out.action else {
            panic!("expected a rewrite, got {:?}", out.action)
        };
        assert!(crc_ok(&bytes));
        let h = BatchHeader::read(&bytes).unwrap();
        assert_eq!(
            (h.base_offset, h.last_offset(), h.record_count),
            (10, 13, 2)
        );
        assert_eq!(h.compression(), codec);
        // The kept tombstone set the delete horizon; timestamps did not move.
        assert_eq!(h.delete_horizon(), Some(1_050));
        let got = decode_all(&bytes, 0).unwrap();
        let view: Vec<_> = got
            .iter()
            .map(|r| (r.offset, r.value.clone(), r.timestamp_ms))
            .collect();
        assert_eq!(
            view,
            vec![(12, Some(Bytes::from("2")), 102), (13, None, 103)]
        );
        assert_eq!(decode_all(&bytes, 13).unwrap().len(), 1);
        // Before the horizon the tombstone stays; at it, it goes.
        let early = clean_batch(&bytes, &cx, false).unwrap();
        assert_eq!(early.action, Cleaned::Keep);
        let late = CleanContext {
            now_ms: 1_050,
            ..cx
        };
        let Cleaned::Rewrite(last) = clean_batch(&bytes, &late, false).unwrap().action else {
            panic!("expected the tombstone to go")
        };
        let got = decode_all(&last, 0).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].offset, 12);
        // An aborted batch goes whole, a newest-only batch stays.
        assert_eq!(
            clean_batch(&second, &cx, true).unwrap().action,
            Cleaned::Remove
        );
        assert_eq!(
            clean_batch(&second, &cx, false).unwrap().action,
            Cleaned::Keep
        );
    }
}

#[test]
fn offset_map_refuses_a_batch_it_cannot_hold() {
    let batch = encoded(&[keyed("a", Some("1"), 1), keyed("b", Some("1"), 2)], 0);
    let mut map = OffsetMap::with_memory(OFFSET_MAP_ENTRY_BYTES);
    assert!(!map.add_batch(&batch, 0).unwrap());
    assert!(map.is_empty());
    assert!(!all_records_keyed(&encoded(&[rec(1)], 0)).unwrap());
    assert!(all_records_keyed(&batch).unwrap());
}

#[test]
fn produced_batches_must_be_dense() {
    let batch = encoded(&[keyed("a", Some("1"), 1), keyed("b", Some("1"), 2)], 0);
    let mut map = OffsetMap::with_memory(1 << 20);
    map.add_batch(&encoded(&[keyed("a", Some("2"), 3)], 5), 0)
        .unwrap();
    let cx = CleanContext {
        map: &map,
        now_ms: 0,
        delete_retention_ms: 0,
    };
    let Cleaned::Rewrite(gappy) = clean_batch(&batch, &cx, false).unwrap().action else {
        panic!("expected a rewrite")
    };
    let err = validate(gappy, Timestamps::Create, usize::MAX).unwrap_err();
    assert!(matches!(err, BatchError::Invalid(_)), "{err:?}");
}
