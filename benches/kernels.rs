//! Every convolution kernel variant the adapter runs at float32, on 1x1 convolutions,
//! against a plain register-tiled WGSL matmul (`reference_matmul.wgsl`, 4x4 outputs per
//! invocation in vec4 registers) on the same device, in the same run, on GEMMs of Xception's
//! pointwise shapes. Criterion's throughput is in FLOPs (2 per multiply-add), so "Gelem/s"
//! reads as GFLOP/s.
//!
//! `cargo bench --bench kernels`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use xception_wgpu::gpu::{
    storage, upload, Conv, ConvGeometry, Dispatch, Element, GpuContext, GpuOps, Kernels, Precision,
};
use xception_wgpu::weights::BatchNorm;
use xception_wgpu::Shape;

/// Launches recorded per submission, so per-submit overhead does not dominate.
const LAUNCHES: usize = 4;

fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7 + seed) % 23) as f32 / 23.0 - 0.5)
        .collect()
}

fn run(
    context: &GpuContext,
    kernels: &Kernels,
    extra: Option<&wgpu::ComputePipeline>,
    dispatches: &[Dispatch],
    reference: &[(wgpu::BindGroup, [u32; 3])],
) {
    let mut encoder = context.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        kernels.record(&mut pass, dispatches);
        if let Some(pipeline) = extra {
            pass.set_pipeline(pipeline);
            for (group, [x, y, z]) in reference {
                pass.set_bind_group(0, group, &[]);
                pass.dispatch_workgroups(*x, *y, *z);
            }
        }
    }
    context.queue.submit([encoder.finish()]);
    context.wait().unwrap();
}

fn pointwise_vs_matmul(c: &mut Criterion) {
    let context = GpuContext::new().expect("a GPU adapter");
    let device = &context.device;
    let kernels = Kernels::new(device, Element::F32);
    let variants = GpuOps::new(context.clone()).conv_kernels(Precision::F32);
    let module = device.create_shader_module(wgpu::include_wgsl!("reference_matmul.wgsl"));
    let matmul = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("reference matmul"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let mut group = c.benchmark_group(format!("gemm on {}", context.description()));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    // (M pixels, K in, N out): block4_sepconv2 at 150x150, a middle-flow layer at 299x299,
    // block3_sepconv2 at 299x299.
    for (m, k, n) in [
        (18 * 18, 728, 728),
        (19 * 19, 728, 728),
        (37 * 37, 256, 256),
    ] {
        let a = upload(device, "a", &values(m * k, 1));
        let b_plain = values(k * n, 2);
        let out = storage(device, "c", m * n);
        // The pointwise kernel's weights: B folded with an identity batchnorm (scale 1, no bias).
        let (ones, zeros) = (vec![1.0; n], vec![0.0; n]);
        let identity = BatchNorm {
            gamma: &ones,
            beta: &zeros,
            mean: &zeros,
            variance: &ones,
            epsilon: 0.0,
        };
        let shape = Shape::new(1, m, 1, k);
        let mut encoder = device.create_command_encoder(&Default::default());
        let launches: Vec<(&str, Vec<Dispatch>)> = variants
            .iter()
            .map(|&variant| {
                let (conv, prep) = Conv::prepare(
                    &kernels,
                    variant,
                    ConvGeometry::pointwise(1),
                    &b_plain,
                    n,
                    &identity,
                    Precision::F32,
                )
                .expect("weights fit the device");
                prep.record(&kernels, &mut encoder);
                let out_shape = shape.with_channels(n);
                let launches = (0..LAUNCHES)
                    .map(|_| conv.launch(&kernels, &a, shape, out_shape, false, None, &out))
                    .collect();
                (variant.name(), launches)
            })
            .collect();
        context.queue.submit([encoder.finish()]);

        let b = upload(device, "b", &b_plain);
        let params: [u32; 4] = [m as u32, k as u32, n as u32, 0];
        let uniform = wgpu::util::DeviceExt::create_buffer_init(
            device,
            &wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::cast_slice(&params),
                usage: wgpu::BufferUsages::UNIFORM,
            },
        );
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &matmul.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: uniform.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: a.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: b.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: out.as_entire_binding(),
                },
            ],
        });
        assert_eq!(n % 4, 0, "the reference reads B as vec4 rows");
        let grid = [
            (n / 4).div_ceil(8) as u32,
            m.div_ceil(4).div_ceil(8) as u32,
            1,
        ];
        let reference: Vec<_> = (0..LAUNCHES).map(|_| (bind_group.clone(), grid)).collect();

        let flops = 2 * m * k * n * LAUNCHES;
        group.throughput(Throughput::Elements(flops as u64));
        let id = format!("{m}x{k}x{n}");
        for (name, conv) in &launches {
            group.bench_function(BenchmarkId::new(*name, &id), |bench| {
                bench.iter(|| run(&context, &kernels, None, conv, &[]))
            });
        }
        group.bench_function(BenchmarkId::new("reference_matmul", &id), |bench| {
            bench.iter(|| run(&context, &kernels, Some(&matmul), &[], &reference))
        });
    }
    group.finish();
}

criterion_group!(benches, pointwise_vs_matmul);
criterion_main!(benches);
