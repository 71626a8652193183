//! Image decoding and preprocessing: any PNG/JPEG to the network's RGB `x / 127.5 - 1` input.

use std::io::Cursor;
use std::path::Path;

use image::{imageops::FilterType, DynamicImage, ImageDecoder, ImageReader, RgbImage};

use crate::error::{Error, Result};
use crate::graph::MIN_INPUT_SIZE;
use crate::tensor::{Shape, Size, Tensor};

/// Largest width or height accepted, checked before decoding so a huge image cannot exhaust memory.
pub const MAX_IMAGE_SIDE: u32 = 16_384;

fn image_error(path: &Path, problem: impl std::fmt::Display) -> Error {
    Error::Image {
        path: path.to_path_buf(),
        problem: problem.to_string(),
    }
}

/// Largest image file read, checked before reading it.
pub const MAX_FILE_BYTES: u64 = 512 << 20;

/// Decodes an image file as 8-bit RGB, honouring its EXIF orientation. A file that cannot be
/// read is an [`Error::Io`]; one that is not a usable image an [`Error::Image`].
pub fn decode(path: impl AsRef<Path>) -> Result<RgbImage> {
    let path = path.as_ref();
    let io_error = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io_error)?.len();
    if len > MAX_FILE_BYTES {
        return Err(image_error(
            path,
            format!("the file is {len} bytes; the largest accepted is {MAX_FILE_BYTES}"),
        ));
    }
    let bytes = std::fs::read(path).map_err(io_error)?;
    decode_bytes(&bytes, path)
}

/// Decodes an in-memory PNG or JPEG as 8-bit RGB, honouring its EXIF orientation; `name`
/// identifies it in errors. Its dimensions are checked before any pixel is decoded.
pub fn decode_bytes(bytes: &[u8], name: impl AsRef<Path>) -> Result<RgbImage> {
    let path = name.as_ref();
    if bytes.is_empty() {
        return Err(image_error(path, "the file is empty"));
    }
    let reader = || {
        ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| image_error(path, e))
    };
    if reader()?.format().is_none() {
        return Err(image_error(
            path,
            "not a recognised image format (PNG or JPEG)",
        ));
    }
    let (width, height) = reader()?
        .into_dimensions()
        .map_err(|e| image_error(path, format!("cannot read the image header: {e}")))?;
    if width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
        return Err(image_error(
            path,
            format!("image is {width}x{height}; the largest side accepted is {MAX_IMAGE_SIDE}"),
        ));
    }
    let mut decoder = reader()?.into_decoder().map_err(|e| image_error(path, e))?;
    let orientation = decoder.orientation().map_err(|e| image_error(path, e))?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| image_error(path, e))?;
    image.apply_orientation(orientation);
    Ok(image.to_rgb8())
}

/// Converts 8-bit RGB pixels (`height * width * 3`, row-major) to a batch-1 input tensor,
/// computing `p / 127.5 - 1` in `f32` as Keras' `preprocess_input` does.
pub fn normalize(pixels: &[u8], height: usize, width: usize) -> Result<Tensor> {
    let data = pixels.iter().map(|&p| p as f32 / 127.5 - 1.0).collect();
    Tensor::new(Shape::new(1, height, width, 3), data)
}

/// Resizes a decoded image to `size` (or keeps its own size with `None`) and preprocesses it
/// into a batch-1 NHWC tensor.
pub fn from_image(image: &DynamicImage, size: Option<Size>) -> Result<Tensor> {
    let mut rgb = image.to_rgb8();
    if let Some(Size { width, height }) = size {
        if (rgb.width() as usize, rgb.height() as usize) != (width, height) {
            rgb = image::imageops::resize(&rgb, width as u32, height as u32, FilterType::Triangle);
        }
    }
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    if width < MIN_INPUT_SIZE || height < MIN_INPUT_SIZE {
        return Err(Error::Input(format!(
            "image is {width}x{height}; Xception needs at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} pixels"
        )));
    }
    normalize(rgb.as_raw(), height, width)
}

/// Decodes `path`, resizes it to `size` (or keeps its own size with `None`) and preprocesses
/// it into a batch-1 NHWC tensor.
pub fn load_image(path: impl AsRef<Path>, size: Option<Size>) -> Result<Tensor> {
    let path = path.as_ref();
    let image = DynamicImage::ImageRgb8(decode(path)?);
    from_image(&image, size).map_err(|e| match e {
        Error::Input(problem) => image_error(path, problem),
        other => other,
    })
}
