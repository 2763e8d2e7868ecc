//! The in-process floor: handing a message from one task to another.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::{BenchError, BenchResult};

/// The latency of handing a message from one task to another over a tokio channel at `rate`
/// per second: the floor of in-process delivery. Nanoseconds.
pub async fn channel_latency(rate: u32, duration: Duration) -> BenchResult<(Histogram<u64>, f64)> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let reader = tokio::spawn(async move {
        let mut h = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3)
            .map_err(|e| BenchError::Wrong(e.to_string()))?;
        while let Some(sent) = rx.recv().await {
            h.saturating_record((sent.elapsed().as_nanos() as u64).max(1_000));
        }
        Ok::<_, BenchError>(h)
    });
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let start = tokio::time::Instant::now();
    let count = ((rate as f64 * duration.as_secs_f64()) as u32).max(50);
    for i in 0..count {
        tokio::time::sleep_until(start + interval * i).await;
        let _ = tx.send(Instant::now());
    }
    drop(tx);
    let h = reader
        .await
        .map_err(|e| BenchError::Wrong(format!("reader panicked: {e}")))??;
    Ok((h, start.elapsed().as_secs_f64()))
}
