//! SVG charts of one run (plotters, SVG backend): throughput per store and workload on a log
//! scale, and tailing latency percentiles.

use std::path::Path;

use plotters::prelude::*;

use crate::model::{Layer, Measurement, Metric};
use crate::report::human;
use crate::{BenchError, BenchResult};

const WIDTH: u32 = 1280;
const ROW: i32 = 16;
const LABEL_W: i32 = 430;
const BAR_W: i32 = 700;

struct Row {
    label: String,
    values: Vec<(f64, RGBColor)>,
    text: String,
}

struct Panel {
    title: String,
    rows: Vec<Row>,
}

fn color(layer: Layer) -> RGBColor {
    match layer {
        Layer::Baseline => RGBColor(140, 140, 140),
        Layer::Contract => RGBColor(45, 110, 190),
        Layer::Server => RGBColor(230, 130, 30),
    }
}

fn panel_of(m: &Measurement) -> Option<&'static str> {
    Some(match m.workload.as_str() {
        "append" | "write" | "insert" | "produce" | "send" | "idempotent-produce"
        | "txn-produce" => "append / produce (records/s, log scale)",
        "fetch" | "read" => "catch-up fetch (MB/s, log scale)",
        "lease" | "queue" | "receive+delete" | "share-consume" => {
            "lease + ack (records/s, log scale)"
        }
        "ts-lookup" | "random-read" => "timestamp lookup (lookups/s, log scale)",
        "compact" | "scan" => "compaction (MB/s of stored bytes read, log scale)",
        _ => return None,
    })
}

fn draw(path: &Path, title: &str, panels: &[Panel]) -> BenchResult<()> {
    let rows: usize = panels.iter().map(|p| p.rows.len() + 3).sum();
    let height = (60 + rows as i32 * ROW).max(120) as u32;
    let err = |e: &dyn std::fmt::Display| BenchError::Output(format!("{}: {e}", path.display()));
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let font = |size: i32| ("sans-serif", size).into_font();
    root.draw(&Text::new(title.to_string(), (10, 10), font(18)))
        .map_err(|e| err(&e))?;
    let mut legend_x = 10;
    for (name, layer) in [
        ("baseline", Layer::Baseline),
        ("store (contract)", Layer::Contract),
        ("through the server", Layer::Server),
    ] {
        root.draw(&Rectangle::new(
            [(legend_x, 36), (legend_x + 12, 46)],
            color(layer).filled(),
        ))
        .map_err(|e| err(&e))?;
        root.draw(&Text::new(name.to_string(), (legend_x + 16, 34), font(12)))
            .map_err(|e| err(&e))?;
        legend_x += 170;
    }
    let mut y = 60;
    for p in panels {
        root.draw(&Text::new(p.title.clone(), (10, y), font(15)))
            .map_err(|e| err(&e))?;
        y += ROW + 4;
        let vals: Vec<f64> = p
            .rows
            .iter()
            .flat_map(|r| r.values.iter().map(|v| v.0))
            .filter(|v| *v > 0.0)
            .collect();
        let max = vals.iter().cloned().fold(1e-9, f64::max).log10();
        let min = (vals.iter().cloned().fold(f64::INFINITY, f64::min) / 3.0)
            .max(1e-9)
            .log10();
        let span = (max - min).max(1e-9);
        for r in &p.rows {
            root.draw(&Text::new(r.label.clone(), (10, y), font(11)))
                .map_err(|e| err(&e))?;
            let n = r.values.len().max(1) as i32;
            let h = (ROW - 3) / n;
            let mut end = LABEL_W;
            for (i, (v, c)) in r.values.iter().enumerate() {
                let w = if *v > 0.0 {
                    (((v.log10() - min) / span) * BAR_W as f64) as i32
                } else {
                    0
                };
                let top = y + i as i32 * h;
                root.draw(&Rectangle::new(
                    [(LABEL_W, top), (LABEL_W + w.max(1), top + h - 1)],
                    c.filled(),
                ))
                .map_err(|e| err(&e))?;
                end = end.max(LABEL_W + w);
            }
            root.draw(&Text::new(r.text.clone(), (end + 6, y), font(11)))
                .map_err(|e| err(&e))?;
            y += ROW;
        }
        y += ROW;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Writes `throughput.svg` and `latency.svg` into `out`.
pub fn write_charts(out: &Path, ms: &[Measurement]) -> BenchResult<()> {
    let order = [
        "append / produce (records/s, log scale)",
        "catch-up fetch (MB/s, log scale)",
        "lease + ack (records/s, log scale)",
        "timestamp lookup (lookups/s, log scale)",
        "compaction (MB/s of stored bytes read, log scale)",
    ];
    let mut panels: Vec<Panel> = order
        .iter()
        .map(|t| Panel {
            title: t.to_string(),
            rows: Vec::new(),
        })
        .collect();
    for m in ms {
        let (Some(p), Some(v)) = (panel_of(m), m.value()) else {
            continue;
        };
        if m.metric == Metric::P99Us {
            continue;
        }
        let Some(i) = order.iter().position(|t| *t == p) else {
            continue;
        };
        let ratio = m
            .ratio
            .map_or(String::new(), |r| format!("  ({}x baseline)", human(r)));
        panels[i].rows.push(Row {
            label: format!("{}  {}  {}", m.subject, m.workload, m.case),
            values: vec![(v, color(m.layer))],
            text: format!("{} {}{ratio}", human(v), m.metric.unit()),
        });
    }
    panels.retain(|p| !p.rows.is_empty());
    draw(
        &out.join("throughput.svg"),
        "broker-bench: throughput per store and workload",
        &panels,
    )?;

    let mut lat = Panel {
        title: "append-to-delivery latency: p50 / p99 / p99.9 (us, log scale)".into(),
        rows: Vec::new(),
    };
    for m in ms {
        let (Some(l), Some(_)) = (m.latency, m.value()) else {
            continue;
        };
        let c = color(m.layer);
        let lighter = |k: f64| {
            RGBColor(
                (c.0 as f64 + (255.0 - c.0 as f64) * k) as u8,
                (c.1 as f64 + (255.0 - c.1 as f64) * k) as u8,
                (c.2 as f64 + (255.0 - c.2 as f64) * k) as u8,
            )
        };
        lat.rows.push(Row {
            label: format!("{}  {}  {}", m.subject, m.workload, m.case),
            values: vec![
                (l.p50_us, lighter(0.5)),
                (l.p99_us, lighter(0.2)),
                (l.p999_us, c),
            ],
            text: format!(
                "{} / {} / {} us",
                human(l.p50_us),
                human(l.p99_us),
                human(l.p999_us)
            ),
        });
    }
    let lat_panels: Vec<Panel> = if lat.rows.is_empty() {
        Vec::new()
    } else {
        vec![lat]
    };
    draw(
        &out.join("latency.svg"),
        "broker-bench: tailing latency",
        &lat_panels,
    )?;
    Ok(())
}
