//! Xception (Chollet, CVPR 2017) inference on any GPU through wgpu compute shaders, with a
//! plain CPU reference implementation of every op.
//!
//! - [`weights`] loads pretrained weights (Keras', or timm's converted) from safetensors
//!   (float16 or float32).
//! - [`architecture`] describes the members of the Xception family (Keras', timm's
//!   `legacy_xception` and aligned `xception41/65/71`, `xception41p/65p`) as block lists;
//!   [`graph`] builds the node list every backend walks from one, with its shape rules.
//! - [`gpu`] holds the WGSL kernels, the device context and the dispatcher.
//! - [`cpu`] is the fast CPU backend (GEMMs, fused epilogues, threads) for machines without a
//!   usable GPU.
//! - [`reference`](mod@reference) is the plain, readable backend every other one is tested against.
//! - [`preprocess`] turns image files into network input.
//! - [`explain`] computes Grad-CAM heatmaps of what the network looked at.
//!
//! The core is async where it waits on the GPU ([`XceptionBuilder::load_bytes_async`],
//! [`Xception::classify_async`], ...), so the library also builds for `wasm32-unknown-unknown`
//! on the browser's WebGPU (`web/` holds the page and its bindings); on native targets the
//! blocking calls below wrap the same code.
//!
//! The bundled model (`weights/xception_kitchenware.safetensors`) knows six kinds of
//! kitchenware: cup, fork, glass, knife, plate, spoon. `weights/convert.py` converts other
//! Xception checkpoints, the stock 1000-class ImageNet one included (see `weights/README.md`).
//!
//! ```no_run
//! use xception_wgpu::{BackendKind, Xception};
//!
//! let model = Xception::builder()
//!     .backend(BackendKind::Auto) // a hardware GPU, else the CPU; or Gpu (the default), Cpu, Reference
//!     .load("weights/xception_kitchenware.safetensors")?;
//! for p in model.classify_file("samples/fork.jpg", 3)? {
//!     println!("{:>8} {:.4}", p.label, p.probability);
//! }
//! let embedding: Vec<f32> = model.embed_file("samples/cup.jpg")?; // 2048 values
//! # Ok::<(), xception_wgpu::Error>(())
//! ```

#![warn(missing_docs)]

pub mod architecture;
#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod cpu;
pub mod error;
pub mod explain;
pub mod files;
#[cfg(not(target_arch = "wasm32"))]
pub mod fit;
pub mod gpu;
pub mod graph;
pub mod head;
mod model;
mod outputs;
pub mod preprocess;
pub mod profile;
pub mod reference;
pub mod tensor;
pub mod weights;

pub use error::{Error, Result};
pub use explain::Heatmap;
pub use gpu::{ConvKernel, KernelChoice, Precision};
/// The `image` crate this library decodes with, re-exported so callers can pass `DynamicImage`s
/// without matching its version.
pub use image;
pub use model::{BackendKind, Fallback, Prediction, Xception, XceptionBuilder};
pub use outputs::Outputs;
pub use tensor::{Shape, Size, Tensor};
pub use weights::{ModelInfo, Weights};
