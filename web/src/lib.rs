//! xception-wgpu in the browser: a small `wasm-bindgen` surface over the same runtime, running
//! the network on the page's WebGPU adapter with the same kernels as on native or, as the
//! native `auto` does where there is no adapter or only a software one, on the fast CPU
//! backend compiled to WebAssembly with its SIMD128 kernels; with the `threads` feature (the
//! threaded build of web/build.sh) on rayon's Web Workers.
//!
//! ```js
//! import init, { Model } from "./pkg/xception_web.js";
//! await init();
//! const weights = new Uint8Array(await (await fetch(url)).arrayBuffer());
//! const model = await Model.create(weights); // or (weights, { backend: "gpu", kernel: "tiled" })
//! model.backend; // "gpu" or "cpu"; model.fallback says why `auto` did not take the GPU
//! const result = await model.classifyEncoded(jpegBytes, "photo.jpg", 5);
//! // { image, top: [{ index, label, probability }], logits, timings: { decode_ms, inference_ms } }
//! ```
//!
//! Errors reject the promise with an `Error` whose message is the native one.
#![cfg(target_arch = "wasm32")]

use std::rc::Rc;

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use web_time::Instant;
use xception_wgpu::image::{DynamicImage, RgbaImage};
use xception_wgpu::{preprocess, BackendKind, Error, KernelChoice, Precision, Size, Xception};

/// `initThreadPool(threads)`: starts the CPU backend's worker threads (the threaded build only;
/// call it once, before `Model.create`).
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// Xception with its weights on the page's WebGPU device or on the CPU.
#[wasm_bindgen]
pub struct Model {
    inner: Rc<Xception>,
    /// What images are resized to: the `size` option, else the weights' input size.
    size: Size,
}

/// How to run the network: the names of the command line's `--backend` (`auto`, `gpu`, `cpu`
/// or `reference`; `auto` when left out), `--size` (`N` or `WxH`; the weights' input size
/// when left out), `--kernel` and `--precision`.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Options {
    backend: Option<String>,
    size: Option<String>,
    kernel: Option<String>,
    precision: Option<String>,
}

/// One classified image, as `xception classify --json` prints it, plus timings.
#[derive(Serialize)]
struct Classified {
    image: String,
    top: Vec<Class>,
    logits: Vec<f32>,
    timings: Timings,
}

#[derive(Serialize)]
struct Class {
    index: usize,
    label: String,
    probability: f32,
}

#[derive(Serialize)]
struct Timings {
    /// Decoding, resizing and normalising the image.
    decode_ms: f64,
    /// The forward pass, from upload to the outputs read back.
    inference_ms: f64,
}

fn js_error(error: Error) -> JsValue {
    JsError::new(&error.to_string()).into()
}

fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

#[wasm_bindgen]
impl Model {
    /// Creates a model from safetensors weights (the bytes of the `.safetensors` file) on the
    /// page's WebGPU adapter or the CPU: resolves to the model, or rejects with the runtime's
    /// message. `options` (optional): `{ backend: "auto" | "gpu" | "cpu" | "reference",
    /// size: "N" | "WxH", kernel: "auto" | "portable" | "subgroup" | "tiled" | "coopmat",
    /// precision: "f32" | "f16" }`, as on the command line; `auto` takes a hardware WebGPU
    /// adapter, else the CPU.
    pub async fn create(weights: Vec<u8>, options: JsValue) -> Result<Model, JsError> {
        console_error_panic_hook::set_once();
        let options: Option<Options> = serde_wasm_bindgen::from_value(options)?;
        let Options {
            backend,
            size,
            kernel,
            precision,
        } = options.unwrap_or_default();
        let size = size
            .map(|size| size.parse::<Size>())
            .transpose()
            .map_err(|e| JsError::new(&e.to_string()))?;
        let backend = backend
            .as_deref()
            .unwrap_or("auto")
            .parse::<BackendKind>()?;
        let mut builder = Xception::builder().backend(backend);
        if let Some(kernel) = kernel {
            builder = builder.conv_kernel(kernel.parse::<KernelChoice>()?);
        }
        if let Some(precision) = precision {
            builder = builder.precision(precision.parse::<Precision>()?);
        }
        let model = builder
            .load_bytes_async(&weights)
            .await
            .map_err(|e| JsError::new(&e.to_string()))?;
        Ok(Model {
            size: size.unwrap_or(model.info().input_size),
            inner: Rc::new(model),
        })
    }

    /// The adapter and backend the model runs on, e.g. `gpu (…)` or `cpu (1 threads, SIMD128)`.
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.inner.backend_description()
    }

    /// `"gpu"`, `"cpu"` (or `"reference"`, asked for by name): where the network runs.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.inner.backend_kind().name().to_string()
    }

    /// Threads the CPU backend runs on (`undefined` on the GPU).
    #[wasm_bindgen(getter)]
    pub fn threads(&self) -> Option<u32> {
        self.inner.cpu_threads().map(|threads| threads as u32)
    }

    /// Why `auto` runs on the CPU rather than the page's WebGPU adapter (`undefined` where it
    /// took the GPU or a backend was asked for).
    #[wasm_bindgen(getter)]
    pub fn fallback(&self) -> Option<String> {
        self.inner.fallback().map(ToString::to_string)
    }

    /// The kernels the convolutions run on, e.g. `conv_tiled+depthwise_conv_tiled`.
    #[wasm_bindgen(getter)]
    pub fn kernels(&self) -> String {
        self.inner.conv_kernel_summary()
    }

    /// The class labels, by index.
    #[wasm_bindgen(getter)]
    pub fn labels(&self) -> Vec<String> {
        self.inner.info().labels.clone()
    }

    /// `[height, width]` that images are resized to.
    #[wasm_bindgen(getter, js_name = inputSize)]
    pub fn input_size(&self) -> Vec<u32> {
        let Size { width, height } = self.size;
        vec![height as u32, width as u32]
    }

    /// Classifies an encoded PNG or JPEG: resolves to `{ image, top, logits, timings }` with
    /// the `top` most probable classes; `name` identifies the image in errors.
    #[wasm_bindgen(js_name = classifyEncoded)]
    pub fn classify_encoded(&self, bytes: Vec<u8>, name: String, top: usize) -> js_sys::Promise {
        let (model, size) = (self.inner.clone(), self.size);
        future_to_promise(async move {
            let start = Instant::now();
            let image = preprocess::decode_bytes(&bytes, &name).map_err(js_error)?;
            classify(
                &model,
                size,
                DynamicImage::ImageRgb8(image),
                name,
                top,
                start,
            )
            .await
        })
    }

    /// Classifies RGBA pixels, e.g. a canvas' `ImageData.data`: resolves like
    /// [`Model::classify_encoded`].
    #[wasm_bindgen(js_name = classifyPixels)]
    pub fn classify_pixels(
        &self,
        rgba: Vec<u8>,
        width: u32,
        height: u32,
        name: String,
        top: usize,
    ) -> js_sys::Promise {
        let (model, size) = (self.inner.clone(), self.size);
        future_to_promise(async move {
            let start = Instant::now();
            let expected = width as usize * height as usize * 4;
            let image = RgbaImage::from_raw(width, height, rgba).ok_or_else(|| {
                js_error(Error::Input(format!(
                    "{name}: {width}x{height} RGBA pixels take {expected} bytes"
                )))
            })?;
            classify(
                &model,
                size,
                DynamicImage::ImageRgba8(image),
                name,
                top,
                start,
            )
            .await
        })
    }
}

/// Preprocesses `image`, runs the network and returns the JS result object.
async fn classify(
    model: &Xception,
    size: Size,
    image: DynamicImage,
    name: String,
    top: usize,
    start: Instant,
) -> Result<JsValue, JsValue> {
    let resize = model.info().resize;
    let input = preprocess::from_image(&image, Some(size), resize).map_err(js_error)?;
    let decode_ms = ms_since(start);
    let start = Instant::now();
    let outputs = model.forward_async(&input).await.map_err(js_error)?;
    let inference_ms = ms_since(start);
    let top = model
        .top_k(&outputs, 0, top)
        .map_err(js_error)?
        .into_iter()
        .map(|p| Class {
            index: p.index,
            label: p.label,
            probability: p.probability,
        })
        .collect();
    let result = Classified {
        image: name,
        top,
        logits: outputs.logits(0).to_vec(),
        timings: Timings {
            decode_ms,
            inference_ms,
        },
    };
    serde_wasm_bindgen::to_value(&result).map_err(JsValue::from)
}
