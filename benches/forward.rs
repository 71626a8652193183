//! Criterion benchmarks of one forward pass: GPU, fast CPU and reference, 150x150 and 299x299,
//! batch 1 and 4.
//!
//! `cargo bench` runs them; `xception bench` prints the same cases as a table with cold start.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use xception_wgpu::{BackendKind, Shape, Tensor, Xception};

const WEIGHTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/weights/xception_kitchenware.safetensors"
);

fn input(batch: usize, side: usize) -> Tensor {
    let shape = Shape::new(batch, side, side, 3);
    let data = (0..shape.len())
        .map(|i| (i % 255) as f32 / 127.5 - 1.0)
        .collect();
    Tensor::new(shape, data).unwrap()
}

fn forward(c: &mut Criterion) {
    for (name, backend) in [
        ("gpu", BackendKind::Gpu),
        ("cpu", BackendKind::Cpu),
        ("reference", BackendKind::Reference),
    ] {
        let model = Xception::load(WEIGHTS, backend).unwrap();
        let mut group = c.benchmark_group(format!("forward/{name}"));
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(20));
        for (batch, side) in [(1, 150), (1, 299), (4, 150)] {
            let x = input(batch, side);
            model.forward(&x).unwrap(); // plan and shader compilation outside the timing
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("batch{batch}"), side),
                &x,
                |b, x| b.iter(|| model.forward(x).unwrap()),
            );
        }
        group.finish();
    }
}

criterion_group!(benches, forward);
criterion_main!(benches);
