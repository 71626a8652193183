//! Per-launch device times of one forward pass, from timestamp queries.

use super::GpuModel;
use crate::error::{Error, Result};
use crate::gpu::ops::activation_bytes;
use crate::profile::LaunchTiming;
use crate::tensor::Tensor;

impl GpuModel {
    /// Runs one forward pass with a timestamp around every launch and returns the device time
    /// of each, in execution order. Needs the `TIMESTAMP_QUERY` feature, and a batch that
    /// fits one pass.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile(&self, input: &Tensor) -> Result<Vec<LaunchTiming>> {
        pollster::block_on(self.profile_async(input))
    }

    /// [`GpuModel::profile`] without blocking.
    pub async fn profile_async(&self, input: &Tensor) -> Result<Vec<LaunchTiming>> {
        let device = &self.context.device;
        if !device.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            return Err(Error::Gpu(format!(
                "{} has no timestamp queries; profiling needs them",
                self.context.description()
            )));
        }
        let s = input.shape;
        if s.batch > self.max_batch(s.height, s.width)? {
            return Err(Error::Input(format!(
                "a profile runs one pass; batch {} is larger than one pass holds",
                s.batch
            )));
        }
        let plan = self.plan(s.batch, s.height, s.width).await?;
        let _guard = self.plans.lock().await;
        let count = plan.dispatches.len() as u32 * 2;
        let resolved = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps"),
            size: count as u64 * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps readback"),
            size: count as u64 * 8,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.context
            .checked("profiling the network", || {
                let queries = device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("launch timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count,
                });
                let queue = &self.context.queue;
                let element = self.kernels.element();
                queue.write_buffer(&plan.input, 0, &activation_bytes(&input.data, element));
                let mut encoder = device.create_command_encoder(&Default::default());
                for (i, dispatch) in plan.dispatches.iter().enumerate() {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                            query_set: &queries,
                            beginning_of_pass_write_index: Some(2 * i as u32),
                            end_of_pass_write_index: Some(2 * i as u32 + 1),
                        }),
                    });
                    self.kernels
                        .record(&mut pass, std::slice::from_ref(dispatch));
                }
                encoder.resolve_query_set(&queries, 0..count, &resolved, 0);
                encoder.copy_buffer_to_buffer(&resolved, 0, &readback, 0, count as u64 * 8);
                queue.submit([encoder.finish()]);
            })
            .await?;
        let ticks: Vec<u64> =
            bytemuck::cast_slice(&self.context.map_bytes(&readback).await?).to_vec();
        let period_ns = self.context.queue.get_timestamp_period() as f64;
        Ok(plan
            .launches
            .iter()
            .zip(ticks.chunks_exact(2))
            .map(|(launch, t)| LaunchTiming {
                ms: t[1].saturating_sub(t[0]) as f64 * period_ns / 1e6,
                ..launch.clone()
            })
            .collect())
    }
}
