//! Python bindings of xception-wgpu (`xception_wgpu._xception_wgpu`): a `Model` that
//! classifies and embeds numpy images or image files, releasing the GIL while it works.

use std::ffi::CString;
use std::path::PathBuf;

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyUserWarning, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use xception_wgpu::gpu::default_cache_dir;
use xception_wgpu::gpu::tune::TuneEvent;
use xception_wgpu::graph::EMBEDDING_DIM;
use xception_wgpu::image::{DynamicImage, RgbImage};
use xception_wgpu::{
    preprocess, BackendKind, Error, Fallback, KernelChoice, Precision, Tensor, Weights, Xception,
};

pyo3::create_exception!(
    _xception_wgpu,
    XceptionError,
    PyException,
    "An error of the runtime: bad weights, an unreadable image, a GPU failure."
);

/// The bundled kitchenware model, compiled into the module.
const BUNDLED_WEIGHTS: &[u8] = include_bytes!("../../weights/xception_kitchenware.safetensors");

/// The Python exception for a runtime error: `ValueError` for bad input, `FileNotFoundError`
/// for a missing file, `XceptionError` for the rest.
fn to_py(error: Error) -> PyErr {
    let message = error.to_string();
    match &error {
        Error::Input(_) | Error::Argument(_) => PyValueError::new_err(message),
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(message)
        }
        _ => XceptionError::new_err(message),
    }
}

/// One image as given: a file, or RGB pixels (with its position in the call).
enum Image {
    File(PathBuf),
    Pixels(usize, DynamicImage),
}

impl Image {
    /// How results and errors name it: the path, or `array <i>`.
    fn name(&self) -> String {
        match self {
            Image::File(path) => path.display().to_string(),
            Image::Pixels(i, _) => format!("array {i}"),
        }
    }

    /// Decodes (files) and preprocesses it for `model`.
    fn prepare(&self, model: &Xception) -> Result<Tensor, Error> {
        match self {
            Image::File(path) => model.prepare(&DynamicImage::ImageRgb8(preprocess::decode(path)?)),
            Image::Pixels(_, pixels) => model.prepare(pixels),
        }
    }
}

/// RGB pixels from a uint8 `[H, W, 3]` array.
fn pixels(array: &PyReadonlyArrayDyn<'_, u8>, index: usize) -> PyResult<DynamicImage> {
    let shape = array.shape();
    let [height, width, 3] = shape else {
        return Err(PyValueError::new_err(format!(
            "image {index}: an image array is uint8 [height, width, 3] (RGB), not {shape:?}"
        )));
    };
    let data: Vec<u8> = array.as_array().iter().copied().collect();
    let image =
        RgbImage::from_raw(*width as u32, *height as u32, data).expect("the shape fits the data");
    Ok(DynamicImage::ImageRgb8(image))
}

/// The images of a call: a uint8 `[N, H, W, 3]` array, or a list of `[H, W, 3]` arrays and
/// paths (`str` or `os.PathLike`).
fn images(images: &Bound<'_, PyAny>) -> PyResult<Vec<Image>> {
    if let Ok(batch) = images.extract::<PyReadonlyArrayDyn<'_, u8>>() {
        let shape = batch.shape().to_vec();
        if let [_, _, 3] = shape[..] {
            // One image given bare.
            return Ok(vec![Image::Pixels(0, pixels(&batch, 0)?)]);
        }
        let [n, height, width, 3] = shape[..] else {
            return Err(PyValueError::new_err(format!(
                "a batch array is uint8 [N, height, width, 3] (RGB), not {shape:?}"
            )));
        };
        let data: Vec<u8> = batch.as_array().iter().copied().collect();
        let len = height * width * 3;
        return Ok((0..n)
            .map(|i| {
                let image = data[i * len..(i + 1) * len].to_vec();
                let image = RgbImage::from_raw(width as u32, height as u32, image)
                    .expect("the shape fits the data");
                Image::Pixels(i, DynamicImage::ImageRgb8(image))
            })
            .collect());
    }
    if images.hasattr("__array_interface__")? {
        return Err(PyValueError::new_err(
            "images are a uint8 array [N, height, width, 3] or [height, width, 3], or a list \
             of uint8 [height, width, 3] arrays and paths",
        ));
    }
    if images.is_instance_of::<pyo3::types::PyString>() || images.hasattr("__fspath__")? {
        // One path given bare.
        return Ok(vec![Image::File(images.extract::<PathBuf>()?)]);
    }
    images
        .try_iter()?
        .enumerate()
        .map(|(i, item)| {
            let item = item?;
            if let Ok(array) = item.extract::<PyReadonlyArrayDyn<'_, u8>>() {
                return Ok(Image::Pixels(i, pixels(&array, i)?));
            }
            if let Ok(path) = item.extract::<PathBuf>() {
                return Ok(Image::File(path));
            }
            Err(PyValueError::new_err(format!(
                "image {i} is neither a uint8 [height, width, 3] array nor a path: {}",
                item.get_type().name()?
            )))
        })
        .collect()
}

/// What running a call's images gave: per image, its row in the outputs or its error.
struct Run {
    names: Vec<String>,
    rows: Vec<Result<usize, Error>>,
    outputs: Option<xception_wgpu::Outputs>,
}

/// `errors`: `"raise"` (the first bad image fails the call) or `"skip"`.
fn skip_errors(errors: &str) -> PyResult<bool> {
    match errors {
        "raise" => Ok(false),
        "skip" => Ok(true),
        other => Err(PyValueError::new_err(format!(
            "errors={other:?}: use \"raise\" or \"skip\""
        ))),
    }
}

/// Xception with its weights loaded on a GPU (or the CPU): classifies and embeds images.
#[pyclass(frozen, module = "xception_wgpu")]
struct Model {
    inner: Xception,
}

#[pymethods]
impl Model {
    /// Loads the weights (`None`: the bundled kitchenware model) on `backend` ("auto": a
    /// hardware GPU, else the fast CPU backend, with a warning when there is no adapter at all;
    /// "gpu"; "cpu"; "reference"), at `precision` ("f32" or "f16"), running at most `max_batch`
    /// images per GPU pass.
    #[new]
    #[pyo3(signature = (weights=None, backend="auto", precision="f32", max_batch=None, kernel="auto"))]
    fn new(
        py: Python<'_>,
        weights: Option<PathBuf>,
        backend: &str,
        precision: &str,
        max_batch: Option<i64>,
        kernel: &str,
    ) -> PyResult<Self> {
        let max_batch = max_batch
            .map(|images| {
                usize::try_from(images)
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| {
                        PyValueError::new_err(format!("max_batch={images}: must be at least 1"))
                    })
            })
            .transpose()?;
        let precision: Precision = precision.parse().map_err(to_py)?;
        let kernel: KernelChoice = kernel.parse().map_err(to_py)?;
        let kind = match backend {
            "auto" => BackendKind::Auto,
            "gpu" => BackendKind::Gpu,
            "cpu" => BackendKind::Cpu,
            "reference" => BackendKind::Reference,
            other => {
                return Err(PyValueError::new_err(format!(
                    "backend={other:?}: use \"auto\", \"gpu\", \"cpu\" or \"reference\""
                )))
            }
        };
        let model = py
            .detach(|| {
                let weights = match &weights {
                    Some(path) => Weights::load(path)?,
                    None => Weights::from_bytes(BUNDLED_WEIGHTS, "the bundled kitchenware model")?,
                };
                let mut builder = Xception::builder()
                    .backend(kind)
                    .precision(precision)
                    .conv_kernel(kernel)
                    .on_tune(|event| match event {
                        TuneEvent::Timing { shapes } => eprintln!(
                            "xception_wgpu: tuning GPU kernels on {shapes} convolution shapes \
                             (first run only)…"
                        ),
                        TuneEvent::Warning(why) => eprintln!("xception_wgpu: warning: {why}"),
                        TuneEvent::Measured(_) | TuneEvent::Stored { .. } => {}
                    });
                if let Some(dir) = default_cache_dir() {
                    builder = builder.pipeline_cache(dir);
                }
                if let Some(images) = max_batch {
                    builder = builder.max_batch(images);
                }
                builder.build(weights)
            })
            .map_err(to_py)?;
        if let Some(why @ Fallback::NoAdapter(_)) = model.fallback() {
            warn(py, &format!("{why}; running on the CPU"))?;
        }
        Ok(Self { inner: model })
    }

    /// The class labels, by index.
    #[getter]
    fn labels(&self) -> Vec<String> {
        self.inner.info().labels.clone()
    }

    /// `(height, width)` images are resized to.
    #[getter]
    fn input_size(&self) -> (usize, usize) {
        let size = self.inner.info().input_size;
        (size.height, size.width)
    }

    /// Which member of the Xception family the weights are (`xception`, `xception65`, ...).
    #[getter]
    fn architecture(&self) -> String {
        self.inner.info().architecture.name.clone()
    }

    /// Values of one image's embedding (2048 for every named member of the family).
    #[getter]
    fn embedding_dim(&self) -> usize {
        self.inner.embedding_dim()
    }

    /// The backend and adapter the model runs on, e.g. `gpu (llvmpipe ..., Vulkan)`.
    #[getter]
    fn adapter(&self) -> String {
        self.inner.backend_description()
    }

    /// The `top` most probable classes of each image: a list of
    /// `{"image", "top": [{"index", "label", "probability"}], "logits"}` dicts (logits as a
    /// float32 array). With `errors="skip"`, a bad image gives `{"image", "error"}` instead.
    #[pyo3(signature = (images, top=5, errors="raise"))]
    fn classify<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
        top: i64,
        errors: &str,
    ) -> PyResult<Bound<'py, PyList>> {
        let top = usize::try_from(top)
            .ok()
            .filter(|&top| top >= 1)
            .ok_or_else(|| PyValueError::new_err(format!("top={top}: must be at least 1")))?;
        if self.inner.info().num_classes() == 0 {
            return Err(to_py(Error::NoHead));
        }
        let run = self.run(py, images, skip_errors(errors)?)?;
        let list = PyList::empty(py);
        for (name, row) in run.names.iter().zip(&run.rows) {
            let entry = PyDict::new(py);
            entry.set_item("image", name)?;
            match (row, &run.outputs) {
                (Ok(i), Some(outputs)) => {
                    let classes = PyList::empty(py);
                    for p in self.inner.top_k(outputs, *i, top).map_err(to_py)? {
                        let class = PyDict::new(py);
                        class.set_item("index", p.index)?;
                        class.set_item("label", p.label)?;
                        class.set_item("probability", p.probability)?;
                        classes.append(class)?;
                    }
                    entry.set_item("top", classes)?;
                    entry.set_item("logits", PyArray1::from_slice(py, outputs.logits(*i)))?;
                }
                (Err(e), _) => entry.set_item("error", e.to_string())?,
                (Ok(_), None) => unreachable!("a row without outputs"),
            }
            list.append(entry)?;
        }
        Ok(list)
    }

    /// The 2048-d embedding of each image: a float32 `[N, 2048]` array. With
    /// `errors="skip"`, a bad image gets a row of NaN and a warning naming it.
    #[pyo3(signature = (images, errors="raise"))]
    fn embed<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
        errors: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let run = self.run(py, images, skip_errors(errors)?)?;
        let dim = self.inner.embedding_dim();
        let mut values = Vec::with_capacity(run.rows.len() * dim);
        for (name, row) in run.names.iter().zip(&run.rows) {
            match (row, &run.outputs) {
                (Ok(i), Some(outputs)) => values.extend_from_slice(outputs.embedding(*i)),
                _ => {
                    let why = row
                        .as_ref()
                        .err()
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    warn(py, &format!("{name}: skipped: {why}"))?;
                    values.extend(std::iter::repeat_n(f32::NAN, dim));
                }
            }
        }
        let n = run.rows.len();
        Ok(PyArray1::from_vec(py, values).reshape([n, dim])?.into_any())
    }
}

impl Model {
    /// Prepares every image and runs the good ones as one batch, without the GIL; fails on the
    /// first bad image unless `skip`.
    fn run(&self, py: Python<'_>, images: &Bound<'_, PyAny>, skip: bool) -> PyResult<Run> {
        let images = self::images(images)?;
        let names: Vec<String> = images.iter().map(Image::name).collect();
        let model = &self.inner;
        let (rows, outputs) = py
            .detach(|| -> Result<_, Error> {
                let mut tensors = Vec::new();
                let mut rows = Vec::with_capacity(images.len());
                for image in &images {
                    match image.prepare(model) {
                        Ok(tensor) => {
                            rows.push(Ok(tensors.len()));
                            tensors.push(tensor);
                        }
                        Err(e) if skip => rows.push(Err(e)),
                        Err(e) => return Err(e),
                    }
                }
                let outputs = if tensors.is_empty() {
                    None
                } else {
                    Some(model.forward(&Tensor::stack(&tensors)?)?)
                };
                Ok((rows, outputs))
            })
            .map_err(to_py)?;
        Ok(Run {
            names,
            rows,
            outputs,
        })
    }
}

/// Issues a Python `UserWarning`.
fn warn(py: Python<'_>, message: &str) -> PyResult<()> {
    let message = CString::new(message.replace('\0', " ")).expect("no NUL left");
    PyErr::warn(py, &py.get_type::<PyUserWarning>(), &message, 1)
}

/// The native module of the `xception_wgpu` package.
#[pymodule]
fn _xception_wgpu(m: &Bound<'_, PyModule>) -> PyResult<()> {
    xception_wgpu::gpu::quiet_device_select_layer();
    m.add_class::<Model>()?;
    m.add("XceptionError", m.py().get_type::<XceptionError>())?;
    m.add("EMBEDDING_DIM", EMBEDDING_DIM)?;
    Ok(())
}
