//! `info` (adapters, limits, weights metadata) and `summary` (the layer table).

use std::path::Path;

use xception_wgpu::gpu::default_cache_dir;
use xception_wgpu::gpu::tune::TuneInput;
use xception_wgpu::gpu::{activation_element, largest_batch, ConvAssignment, GpuContext, GpuModel};
use xception_wgpu::graph::{Graph, Op};
use xception_wgpu::{Error, Fallback, Size, Weights};

use crate::{parse_size, report_tuning, ComputeArgs, Sizing};

/// Prints the adapters, the chosen one with the features and limits the runtime relies on,
/// where `--backend auto` runs and why, the CPU backend's threads and vector extension,
/// the kernel each convolution gets with `compute`'s settings, and what the weights file says
/// about the model.
pub fn info(weights: &Path, compute: ComputeArgs) -> Result<(), Error> {
    outln!("adapters found:");
    let adapters = GpuContext::adapters();
    if adapters.is_empty() {
        outln!("  none");
    }
    for a in &adapters {
        outln!(
            "  {} ({:?}, {:?}; driver {} {})",
            a.name,
            a.backend,
            a.device_type,
            a.driver,
            a.driver_info
        );
    }
    let loaded = Weights::load(weights)?;
    let graph = loaded.graph();
    let info = &loaded.info;
    match GpuContext::new() {
        Ok(context) => {
            let limits = context.device.limits();
            outln!("chosen: {}", context.description());
            match Fallback::for_adapter(&context) {
                Some(why) => outln!("--backend auto runs on the CPU: {why}"),
                None => outln!("--backend auto runs on this GPU"),
            }
            let used = features_used(&context);
            outln!(
                "features used: {}",
                if used.is_empty() {
                    "none".to_string()
                } else {
                    used.join(", ")
                }
            );
            let precision = compute.precision.precision();
            let kernel = compute.kernel.choice();
            outln!("convolution kernels ({kernel:?} at {precision:?}, and why):");
            let input = TuneInput::of(info.input_size, 1);
            let assignments = pollster::block_on(GpuModel::conv_kernels(
                &match default_cache_dir() {
                    Some(dir) => context.clone().with_pipeline_cache(&dir),
                    None => context.clone(),
                },
                graph,
                kernel,
                precision,
                input,
                &mut |event| report_tuning(&event, true),
            ))?;
            print_assignments(&assignments);
            outln!("limits used:");
            outln!(
                "  max_storage_buffer_binding_size {}",
                limits.max_storage_buffer_binding_size
            );
            outln!("  max_buffer_size {}", limits.max_buffer_size);
            outln!(
                "  max_compute_workgroups_per_dimension {}",
                limits.max_compute_workgroups_per_dimension
            );
            let Size {
                width: w,
                height: h,
            } = info.input_size;
            let shapes = graph.infer_shapes(1, h, w)?;
            let element = activation_element(precision, &context.device);
            let largest = Graph::largest_activation(&shapes);
            outln!(
                "  largest batch per pass at {w}x{h}: {} (largest activation {} bytes per \
                 image, {element:?} activations)",
                largest_batch(&context, element, h, w)?,
                largest * element.bytes()
            );
            outln!(
                "to test every kernel on this adapter against the reference: xception check \
                 (--json for a report to attach to a bug report)"
            );
        }
        Err(e) => {
            outln!("chosen: none ({e})");
            outln!("--backend auto runs on the CPU: there is no GPU adapter");
        }
    }
    outln!(
        "cpu backend: {} threads, {} kernels",
        compute
            .threads
            .map_or_else(rayon::current_num_threads, usize::from),
        xception_wgpu::cpu::gemm::Isa::detect().name()
    );
    outln!("weights: {}", weights.display());
    if let Some(source) = &info.source {
        outln!("  source: {source}");
    }
    outln!("  architecture: {}", info.architecture.name);
    outln!("  input size: {} (WxH)", info.input_size);
    outln!("  batchnorm epsilon: {}", info.bn_epsilon);
    let head: Vec<String> = info
        .head
        .iter()
        .map(|l| format!("{} {}->{} {:?}", l.name, l.inputs, l.units, l.activation))
        .collect();
    if head.is_empty() {
        outln!("  head: none (embeddings only)");
    } else {
        outln!("  head: {}", head.join(", "));
        let shown: Vec<&str> = info.labels.iter().take(10).map(String::as_str).collect();
        let more = info.labels.len().saturating_sub(shown.len());
        let more = if more > 0 {
            format!(", ... ({more} more)")
        } else {
            String::new()
        };
        outln!(
            "  classes: {} ({}{more})",
            info.num_classes(),
            shown.join(", ")
        );
    }
    Ok(())
}

/// The optional features the runtime uses that `context`'s device has.
pub fn features_used(context: &GpuContext) -> Vec<&'static str> {
    let features = context.device.features();
    [
        (
            wgpu::Features::TIMESTAMP_QUERY,
            "TIMESTAMP_QUERY (for bench --profile and tuning)",
        ),
        (wgpu::Features::SUBGROUP, "SUBGROUP"),
        (wgpu::Features::SHADER_F16, "SHADER_F16"),
        (
            wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX,
            "EXPERIMENTAL_COOPERATIVE_MATRIX",
        ),
        (wgpu::Features::PIPELINE_CACHE, "PIPELINE_CACHE"),
    ]
    .into_iter()
    .filter(|(feature, _)| features.contains(*feature))
    .map(|(_, name)| name)
    .collect()
}

/// Prints the kernels of every convolution and why it got them; consecutive layers on the
/// same kernels for the same reason share a line.
pub fn print_assignments(assignments: &[ConvAssignment]) {
    let mut i = 0;
    while i < assignments.len() {
        let key = |a: &ConvAssignment| (a.kernels(), a.reason);
        let run = assignments[i..]
            .iter()
            .take_while(|a| key(a) == key(&assignments[i]))
            .count();
        let layers = if run == 1 {
            assignments[i].layer.clone()
        } else {
            format!(
                "{} .. {} ({run} layers)",
                assignments[i].layer,
                assignments[i + run - 1].layer
            )
        };
        let a = &assignments[i];
        outln!("  {:<42} {:<7} {layers}", a.kernels(), a.reason.name());
        i += run;
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Prints every layer with its op, output shape, parameters and multiply-adds, and the totals.
pub fn summary(weights: &Path, size: Option<&str>) -> Result<(), Error> {
    let loaded = Weights::load(weights)?;
    let Size { width, height } = match size.map(parse_size).transpose()? {
        Some(Sizing::Fixed(size)) => size,
        Some(Sizing::Native) => return Err(Error::Argument("summary needs a fixed --size".into())),
        None => loaded.info.input_size,
    };
    let graph = loaded.graph();
    let shapes = graph.infer_shapes(1, height, width)?;
    outln!("{} at {width}x{height}", graph.architecture.name);
    outln!(
        "{:<28} {:<40} {:>16} {:>12} {:>16}",
        "layer",
        "op",
        "output",
        "params",
        "MACs"
    );
    for node in &graph.nodes {
        let name = match &node.op {
            Op::Conv(c) => c.conv.clone(),
            Op::Separable(s) => s.conv.clone(),
            _ => graph.value_names[node.output.0].clone(),
        };
        let s = shapes[node.output.0];
        outln!(
            "{:<28} {:<40} {:>16} {:>12} {:>16}",
            name,
            node.describe(),
            format!("{}x{}x{}", s.height, s.width, s.channels),
            thousands(node.params()),
            thousands(node.macs(&shapes).total())
        );
    }
    let mut head_params = 0;
    let mut head_macs = 0;
    for layer in &loaded.info.head {
        let params = (layer.inputs * layer.units + layer.units) as u64;
        let macs = (layer.inputs * layer.units) as u64;
        head_params += params;
        head_macs += macs;
        let op = format!("Dense {:?}", layer.activation);
        outln!(
            "{:<28} {:<40} {:>16} {:>12} {:>16}",
            layer.name,
            op,
            layer.units,
            thousands(params),
            thousands(macs)
        );
    }
    let backbone_macs = graph.macs(height, width)?;
    outln!();
    outln!(
        "backbone: {} params, {} MACs",
        thousands(graph.params()),
        thousands(backbone_macs)
    );
    outln!(
        "head:     {} params, {} MACs",
        thousands(head_params),
        thousands(head_macs)
    );
    outln!(
        "total:    {} params, {} MACs ({:.3} G)",
        thousands(graph.params() + head_params),
        thousands(backbone_macs + head_macs),
        (backbone_macs + head_macs) as f64 / 1e9
    );
    Ok(())
}
