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
