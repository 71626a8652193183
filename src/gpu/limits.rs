//! What a device's limits allow, in one place: the bytes one buffer binding holds, the batch
//! one forward pass runs at a size, and whether the weights fit at all.

use super::context::GpuContext;
use super::kernels::Element;
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::tensor::Shape;
use crate::weights::{expected_tensors, Weights};

/// The most bytes one storage buffer can hold and be bound on `context`'s device.
pub(crate) fn buffer_limit(context: &GpuContext) -> u64 {
    let limits = context.device.limits();
    limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size)
}

/// Largest batch one pass can run at `height` x `width` on `context`'s device with activations
/// of `element`: bounded by its storage-buffer limits (every activation is one binding) and by
/// the depthwise grid, which puts `batch * height` in one dimension.
pub fn largest_batch(
    context: &GpuContext,
    element: Element,
    height: usize,
    width: usize,
) -> Result<usize> {
    let shapes = Graph::xception().infer_shapes(1, height, width)?;
    batch_capacity(context, element, &shapes).map_err(Error::Input)
}

/// [`largest_batch`] for the shapes of one image (from [`Graph::infer_shapes`]), or why not
/// even one image fits.
pub(crate) fn batch_capacity(
    context: &GpuContext,
    element: Element,
    shapes_of_one: &[Shape],
) -> std::result::Result<usize, String> {
    let Shape { height, width, .. } = shapes_of_one[0];
    let per_image = (Graph::largest_activation(shapes_of_one) * element.bytes()) as u64;
    let limit = buffer_limit(context);
    let grid = context.device.limits().max_compute_workgroups_per_dimension as usize;
    if per_image > limit {
        return Err(format!(
            "a {width}x{height} image needs {per_image} bytes for one activation, more than \
             {}'s storage buffer limit of {limit} bytes (max_storage_buffer_binding_size)",
            context.description()
        ));
    }
    if height > grid {
        return Err(format!(
            "a {width}x{height} image is taller than {}'s dispatch limit of {grid} rows \
             (max_compute_workgroups_per_dimension)",
            context.description()
        ));
    }
    Ok(((limit / per_image) as usize).min(grid / height))
}

/// Fails, naming the tensor and the limit, where the device's buffers cannot hold the largest
/// weight tensor (in float32, as it is uploaded) - a host's device created with small limits.
pub(crate) fn check_weights_fit(
    context: &GpuContext,
    graph: &Graph,
    weights: &Weights,
) -> Result<()> {
    let limit = buffer_limit(context);
    let largest = expected_tensors(graph, &weights.info)
        .into_iter()
        .map(|(name, shape)| (shape.iter().product::<usize>() as u64 * 4, name))
        .max();
    match largest {
        Some((bytes, name)) if bytes > limit => Err(Error::Gpu(format!(
            "{}'s storage buffers hold at most {limit} bytes; the weight tensor {name} needs \
             {bytes} (max_storage_buffer_binding_size)",
            context.description()
        ))),
        _ => Ok(()),
    }
}
