//! The Kafka load client sends what it claims: one record batch per Produce.

use benches::kafka_client::encode_batch;
use kafka_protocol::records::RecordBatchDecoder;

#[test]
fn a_produce_batch_is_one_record_batch() {
    let mut data = encode_batch(1000, 100).expect("encode");
    let infos = RecordBatchDecoder::decode_batch_info(&mut data).expect("decode");
    assert_eq!(infos.len(), 1, "1000 records must travel as one batch");
    assert_eq!(infos[0].record_count, 1000);
    assert_eq!(infos[0].base_sequence, -1, "no producer sequence");
    assert_eq!(infos[0].producer_id, -1);
}

#[test]
fn a_producer_batch_carries_the_producer_and_its_sequence() {
    use benches::kafka_client::encode_producer_batch;
    let producer = broker_api::ProducerBatch {
        producer_id: 42,
        epoch: 3,
        first_sequence: 700,
    };
    for transactional in [false, true] {
        let mut data = encode_producer_batch(100, 100, producer, transactional).expect("encode");
        let infos = RecordBatchDecoder::decode_batch_info(&mut data).expect("decode");
        assert_eq!(infos.len(), 1, "100 records must travel as one batch");
        let b = &infos[0];
        assert_eq!(b.record_count, 100);
        assert_eq!((b.producer_id, b.producer_epoch), (42, 3));
        assert_eq!(b.base_sequence, 700);
        assert_eq!(b.transactional, transactional);
        assert!(!b.control);
    }
}
