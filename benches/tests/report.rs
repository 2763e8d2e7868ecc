//! The harness's arithmetic: ratios to baselines, target verdicts, and the written outputs.

use benches::model::{resolve_ratios, Layer, Measurement, Metric, Status};
use benches::report::{self, RunInfo};
use benches::{chart, targets, BenchError};

fn rate(layer: Layer, subject: &str, workload: &str, case: &str, per_s: f64) -> Measurement {
    Measurement::new(layer, subject, workload, case, Metric::RecordsPerS).with_records(
        (per_s * 2.0) as u64,
        100,
        2.0,
    )
}

#[test]
fn ratios_divide_by_the_baseline_of_the_same_run() {
    let mut ms = vec![
        rate(
            Layer::Baseline,
            "pg-copy",
            "append",
            "100B b1000 c1",
            400_000.0,
        ),
        rate(
            Layer::Contract,
            "postgres",
            "append",
            "100B b1000 c1",
            100_000.0,
        )
        .against("pg-copy/append/100B b1000 c1"),
        rate(Layer::Contract, "postgres", "append", "100B b1 c1", 5_000.0)
            .against("pg-copy/append/100B b1 c1"),
    ];
    resolve_ratios(&mut ms);
    let r = ms[1].ratio.expect("ratio");
    assert!((r - 0.25).abs() < 1e-9, "ratio {r}");
    assert_eq!(ms[2].ratio, None, "a missing baseline gives no ratio");
}

#[test]
fn ratios_compare_bytes_when_units_differ() {
    let mut ms = vec![
        Measurement::new(
            Layer::Baseline,
            "disk",
            "read",
            "page-cache",
            Metric::MbPerS,
        )
        .with_records(2_000_000_000, 1, 1.0),
        Measurement::new(
            Layer::Contract,
            "log-never",
            "fetch",
            "1024B",
            Metric::RecordsPerS,
        )
        .with_records(1_000_000, 1000, 1.0)
        .against("disk/read/page-cache"),
    ];
    resolve_ratios(&mut ms);
    let r = ms[1].ratio.expect("ratio");
    assert!((r - 0.5).abs() < 1e-9, "ratio {r}");
}

#[test]
fn unavailable_measurements_have_no_value_and_no_ratio() {
    let mut ms = vec![
        rate(Layer::Baseline, "pg-naive", "queue", "b1 c8", 1000.0),
        Measurement::new(
            Layer::Contract,
            "postgres",
            "lease",
            "b100 c8",
            Metric::RecordsPerS,
        )
        .against("pg-naive/queue/b1 c8")
        .unavailable(&BenchError::NotAvailable("DATABASE_URL is not set".into())),
    ];
    resolve_ratios(&mut ms);
    assert_eq!(ms[1].value(), None);
    assert_eq!(ms[1].ratio, None);
    assert!(matches!(ms[1].status, Status::NotAvailable(_)));
}

#[test]
fn targets_are_met_not_met_or_not_available() {
    let ms = vec![
        rate(
            Layer::Contract,
            "log-interval",
            "append",
            "100B b1000 c1",
            2_500_000.0,
        ),
        rate(
            Layer::Contract,
            "log-always",
            "append",
            "100B b1 c1",
            5_000.0,
        ),
        rate(
            Layer::Contract,
            "log-always",
            "append",
            "100B b1 c64",
            50_000.0,
        ),
    ];
    let ts = targets::evaluate(&ms);
    let find = |needle: &str| {
        ts.iter()
            .find(|t| t.requirement.contains(needle))
            .unwrap_or_else(|| panic!("no target about {needle}"))
    };
    assert_eq!(find(">= 2M records/s").met, Some(true));
    let group = find("group commit");
    assert_eq!(group.met, Some(false), "10x is below the 20x target");
    assert!((group.ratio.expect("ratio") - 10.0).abs() < 1e-9);
    assert_eq!(
        find(">= 150k records/s").met,
        None,
        "postgres was not measured"
    );
}

#[test]
fn outputs_are_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ms = vec![
        rate(
            Layer::Baseline,
            "disk",
            "write",
            "100B b1000 sync-end",
            3_000_000.0,
        ),
        rate(
            Layer::Contract,
            "log-never",
            "append",
            "100B b1000 c1",
            2_000_000.0,
        )
        .against("disk/write/100B b1000 sync-end"),
    ];
    resolve_ratios(&mut ms);
    let ts = targets::evaluate(&ms);
    let info = RunInfo::gather("broker-bench --test".into(), 2.0, false, "/tmp".into());
    report::write_files(dir.path(), &info, &ms, &ts).expect("write results");
    chart::write_charts(dir.path(), &ms).expect("write charts");
    let md = std::fs::read_to_string(dir.path().join("results.md")).expect("results.md");
    assert!(
        md.contains("| log-never | append | 100B b1000 c1 |"),
        "{md}"
    );
    assert!(md.contains("0.67x"), "ratio in the table: {md}");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("results.json")).expect("results.json"),
    )
    .expect("valid JSON");
    assert_eq!(json["measurements"].as_array().map(Vec::len), Some(2));
    let svg = std::fs::read_to_string(dir.path().join("throughput.svg")).expect("svg");
    assert!(
        svg.starts_with("<svg") && svg.contains("log-never"),
        "{svg}"
    );
}

fn mb(subject: &str, workload: &str, case: &str, mb_per_s: f64) -> Measurement {
    let layer = if subject == "disk" {
        Layer::Baseline
    } else {
        Layer::Contract
    };
    Measurement::new(layer, subject, workload, case, Metric::MbPerS).with_records(
        (mb_per_s * 1e6) as u64,
        1,
        1.0,
    )
}

#[test]
fn bulk_write_target_is_the_median_round_against_the_faster_neighbouring_dd() {
    use benches::runner::{bulk_case, bulk_dd_case};
    // dd-like: 400, 1000, 500, 500 MB/s; the log store: 380, 600, 450 MB/s (100 B).
    let dds = [400.0, 1000.0, 500.0, 500.0];
    let logs = [380.0, 600.0, 450.0];
    let mut ms: Vec<Measurement> = dds
        .iter()
        .enumerate()
        .map(|(k, v)| mb("disk", "write", &bulk_dd_case(k), *v))
        .collect();
    for (i, v) in logs.iter().enumerate() {
        ms.push(mb("log-never", "append", &bulk_case(100, i + 1), *v));
        ms.push(mb("log-never", "append", &bulk_case(1024, i + 1), *v * 2.0));
    }
    let ts = targets::evaluate(&ms);
    let t = ts
        .iter()
        .find(|t| t.requirement.contains("one fdatasync at the end"))
        .expect("bulk target");
    // Rounds: 380/1000 = 0.38, 600/1000 = 0.6, 450/500 = 0.9; the median is 0.6.
    assert!(
        (t.ratio.expect("ratio") - 0.6).abs() < 1e-9,
        "{:?}",
        t.ratio
    );
    assert_eq!(t.met, Some(false));
    // Without the dd-like runs there is no verdict.
    ms.retain(|m| !m.id.starts_with("disk/"));
    let ts = targets::evaluate(&ms);
    let t = ts
        .iter()
        .find(|t| t.requirement.contains("one fdatasync at the end"))
        .expect("bulk target");
    assert_eq!(t.met, None);
}
