//! Runs many forward passes in one process and prints the resident memory as it goes, to show
//! that it stays flat after warm-up (Linux: reads `VmRSS` from `/proc/self/status`).
//!
//! ```sh
//! cargo run --release --example soak -- gpu 10000 71
//! ```

use xception_wgpu::{BackendKind, Shape, Tensor, Xception};

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let backend = match args.first().map(String::as_str) {
        Some("cpu") => BackendKind::Cpu,
        Some("reference") => BackendKind::Reference,
        _ => BackendKind::Gpu,
    };
    let runs: usize = args.get(1).map_or(Ok(1000), |s| s.parse())?;
    let side: usize = args.get(2).map_or(Ok(71), |s| s.parse())?;
    let model = Xception::builder().backend(backend).load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/weights/xception_kitchenware.safetensors"
    ))?;
    let shape = Shape::new(1, side, side, 3);
    let input = Tensor::new(
        shape,
        (0..shape.len())
            .map(|i| (i % 251) as f32 / 125.5 - 1.0)
            .collect(),
    )?;
    let reference = model.forward(&input)?;
    let start = std::time::Instant::now();
    let mut after_warmup = None;
    for run in 1..=runs {
        let out = model.forward(&input)?;
        assert_eq!(
            out.logits, reference.logits,
            "run {run} gave different logits"
        );
        if run == 100.min(runs) {
            after_warmup = rss_kib();
        }
        if run % (runs / 10).max(1) == 0 || run == runs {
            println!(
                "{run:>6} runs  {:>8.1} s  RSS {} KiB",
                start.elapsed().as_secs_f64(),
                rss_kib().map_or("?".into(), |k| k.to_string())
            );
        }
    }
    if let (Some(warm), Some(end)) = (after_warmup, rss_kib()) {
        println!(
            "{} on {side}x{side}: RSS after 100 runs {warm} KiB, after {runs} runs {end} KiB ({:+} KiB)",
            model.backend_description(),
            end as i64 - warm as i64
        );
    }
    Ok(())
}
