//! Image decoding and preprocessing: any PNG/JPEG to the network's RGB `x / 127.5 - 1` input.

use std::io::Cursor;
use std::path::Path;

use image::{imageops::FilterType, DynamicImage, ImageDecoder, ImageReader, RgbImage};

use crate::error::{Error, Result};
use crate::files::read_bounded;
use crate::graph::{Graph, MIN_INPUT_SIZE};
use crate::tensor::{Shape, Size, Tensor};

/// Largest width or height accepted, checked before decoding so a huge image cannot exhaust memory.
pub const MAX_IMAGE_SIDE: u32 = 16_384;

fn image_error(path: &Path, problem: impl std::fmt::Display) -> Error {
    Error::Image {
        path: path.to_path_buf(),
        problem: problem.to_string(),
    }
}

/// Largest image file read: larger ones, and anything but a regular file (a FIFO, a device
/// such as `/dev/zero`), are refused by their metadata before any byte is read.
pub const MAX_FILE_BYTES: u64 = 512 << 20;

/// Decodes an image file as 8-bit RGB, honouring its EXIF orientation. A file that cannot be
/// read is an [`Error::Io`]; one that is not a usable image an [`Error::Image`].
pub fn decode(path: impl AsRef<Path>) -> Result<RgbImage> {
    let path = path.as_ref();
    let bytes = read_bounded(path, MAX_FILE_BYTES, |problem| image_error(path, problem))?;
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
    let format = reader()?
        .format()
        .ok_or_else(|| image_error(path, "not a recognised image format (PNG or JPEG)"))?;
    let complete = match format {
        image::ImageFormat::Jpeg => jpeg_is_complete(bytes),
        image::ImageFormat::Png => {
            png_is_complete(bytes).map_err(|problem| image_error(path, problem))?
        }
        _ => true,
    };
    let truncated = || {
        image_error(
            path,
            "truncated image (the data ends before the image does)",
        )
    };
    // The size is checked first, so that a huge image is refused as such however it ends.
    let (width, height) = reader()?.into_dimensions().map_err(|e| match complete {
        true => image_error(path, format!("cannot read the image header: {e}")),
        false => truncated(),
    })?;
    if width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
        return Err(image_error(
            path,
            format!("image is {width}x{height}; the largest side accepted is {MAX_IMAGE_SIDE}"),
        ));
    }
    if !complete {
        // Decoders fill what is missing with grey: a result that would look real.
        return Err(truncated());
    }
    let mut decoder = reader()?.into_decoder().map_err(|e| image_error(path, e))?;
    let orientation = decoder.orientation().map_err(|e| image_error(path, e))?;
    let strict = match format {
        image::ImageFormat::Jpeg => decode_jpeg_strictly(bytes),
        _ => StrictJpeg::NotTried,
    };
    let mut image = match strict {
        StrictJpeg::Decoded(rgb) => DynamicImage::ImageRgb8(rgb),
        StrictJpeg::Truncated => return Err(truncated()),
        StrictJpeg::Corrupt(problem) => {
            return Err(image_error(path, format!("corrupt JPEG data: {problem}")))
        }
        StrictJpeg::NotTried => {
            DynamicImage::from_decoder(decoder).map_err(|e| image_error(path, e))?
        }
    };
    image.apply_orientation(orientation);
    Ok(image.to_rgb8())
}

/// A JPEG decoded to the letter of the standard.
enum StrictJpeg {
    /// Every pixel came from the file.
    Decoded(RgbImage),
    /// The entropy-coded data ran out before the last block: a lenient decoder would fill the
    /// rest with grey and give a result that looks real.
    Truncated,
    /// The entropy-coded data cannot be decoded (a bad Huffman code, a marker inside a scan,
    /// a missing table): a lenient decoder would fill the rest with grey or garbage.
    Corrupt(String),
    /// Not tried, or the file departs from the standard only between its segments (stray
    /// bytes, which libjpeg too only warns about): `image`'s lenient decoder takes it.
    NotTried,
}

/// Decodes a JPEG with `zune-jpeg` (the decoder `image` wraps) in strict mode, to RGB as
/// `image` would. The marker walk ([`jpeg_is_complete`]) cannot see a scan that ends, or goes
/// wrong, before the image does while the file still ends in its end-of-image marker; this
/// can.
fn decode_jpeg_strictly(bytes: &[u8]) -> StrictJpeg {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    use zune_jpeg::errors::DecodeErrors;

    let side = MAX_IMAGE_SIDE as usize;
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_strict_mode(true)
        .set_max_width(side)
        .set_max_height(side);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    match decoder.decode() {
        Ok(pixels) => decoder
            .dimensions()
            .and_then(|(w, h)| RgbImage::from_raw(w as u32, h as u32, pixels))
            .map_or(StrictJpeg::NotTried, StrictJpeg::Decoded),
        Err(
            DecodeErrors::ExhaustedData
            | DecodeErrors::FormatStatic("Premature end of buffer" | "Premature End of image"),
        ) => StrictJpeg::Truncated,
        Err(DecodeErrors::FormatStatic(message)) if message.contains("Extra bytes") => {
            StrictJpeg::NotTried
        }
        Err(DecodeErrors::FormatStatic(message)) => StrictJpeg::Corrupt(message.to_string()),
        Err(DecodeErrors::Format(message)) => StrictJpeg::Corrupt(message),
        Err(e) => StrictJpeg::Corrupt(e.to_string()),
    }
}

/// Whether a JPEG's marker segments and entropy-coded scans run to its end-of-image marker
/// (what follows it is ignored, as decoders do).
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let mut at = 2; // past the start-of-image marker
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while bytes.get(at) == Some(&0xFF) && bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        let (Some(0xFF), Some(&marker)) = (bytes.get(at), bytes.get(at + 1)) else {
            return false;
        };
        at += 2;
        match marker {
            0xD9 => return true,
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let Some(length) = bytes.get(at..at + 2) else {
            return false;
        };
        at += usize::from(u16::from_be_bytes([length[0], length[1]]));
        if at > bytes.len() {
            return false;
        }
        if marker == 0xDA {
            // A scan's data runs to the next marker that is not a stuffed 0xFF00 or a restart.
            loop {
                match (bytes.get(at), bytes.get(at + 1)) {
                    (Some(0xFF), Some(0x00 | 0xD0..=0xD7)) => at += 2,
                    (Some(0xFF), Some(_)) => break,
                    (Some(_), _) => at += 1,
                    (None, _) => return false,
                }
            }
        }
    }
}

/// Whether a PNG's chunks run, whole, to its end chunk (`IEND`); an error where an indexed
/// image's palette (`PLTE`) holds a partial entry, which the decoder panics on.
fn png_is_complete(bytes: &[u8]) -> std::result::Result<bool, String> {
    const INDEXED: u8 = 3;
    let indexed = bytes.get(25) == Some(&INDEXED); // IHDR's colour type; IHDR comes first
    let mut at = 8; // past the signature
    while let Some(header) = bytes.get(at..at + 8) {
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let end = at.saturating_add(12).saturating_add(length);
        if end > bytes.len() {
            return Ok(false);
        }
        match &header[4..8] {
            b"IEND" => return Ok(true),
            b"PLTE" if indexed && !length.is_multiple_of(3) => {
                return Err(format!(
                    "invalid PNG: its palette (PLTE) is {length} bytes, not whole RGB entries"
                ))
            }
            _ => {}
        }
        at = end;
    }
    Ok(false)
}

/// Converts 8-bit RGB pixels (`height * width * 3`, row-major) to a batch-1 input tensor,
/// computing `p / 127.5 - 1` in `f32` as Keras' `preprocess_input` does.
pub fn normalize(pixels: &[u8], height: usize, width: usize) -> Result<Tensor> {
    let data = pixels.iter().map(|&p| p as f32 / 127.5 - 1.0).collect();
    Tensor::new(Shape::new(1, height, width, 3), data)
}

/// How an image of another size is brought to the network's input size (the weights' metadata
/// says which: [`crate::ModelInfo::resize`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Resize {
    /// The whole image resized to the input size, bilinear, its aspect ratio not kept: Keras'
    /// `load_img(target_size=...)`, and what the Keras models here were trained on.
    Stretch,
    /// timm's evaluation transform: the image scaled, its aspect ratio kept, until the input
    /// size is `crop_fraction` of it along the constraining side (for a square input, the
    /// shorter side becomes `floor(size / crop_fraction)`), then its centre cropped.
    CenterCrop {
        /// timm's `crop_pct` (0.94 for its `ra3` weights, 0.903 for the `tf` ports).
        crop_fraction: f32,
        /// The filter of the resize.
        filter: Interpolation,
    },
}

/// A resize filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolation {
    /// Linear in each direction (PIL's `BILINEAR`).
    Bilinear,
    /// Catmull-Rom cubic (PIL's and torchvision's `BICUBIC`).
    Bicubic,
}

impl Interpolation {
    fn filter(self) -> FilterType {
        match self {
            Interpolation::Bilinear => FilterType::Triangle,
            Interpolation::Bicubic => FilterType::CatmullRom,
        }
    }
}

impl Resize {
    /// `rgb` at `target`, by this rule (untouched where it already has that size).
    pub fn apply(self, rgb: RgbImage, target: Size) -> RgbImage {
        let (w, h) = (rgb.width() as usize, rgb.height() as usize);
        if (w, h) == (target.width, target.height) {
            return rgb;
        }
        let resize = |image: &RgbImage, w: usize, h: usize, filter: Interpolation| {
            image::imageops::resize(image, w as u32, h as u32, filter.filter())
        };
        match self {
            Resize::Stretch => resize(&rgb, target.width, target.height, Interpolation::Bilinear),
            Resize::CenterCrop {
                crop_fraction,
                filter,
            } => {
                let (scaled_w, scaled_h) =
                    center_crop_scale(Size::new(w, h), target, crop_fraction);
                let scaled = if (scaled_w, scaled_h) == (w, h) {
                    rgb
                } else {
                    resize(&rgb, scaled_w, scaled_h, filter)
                };
                // torchvision's CenterCrop: the offsets rounded half to even.
                let left = ((scaled_w - target.width) as f64 / 2.0).round_ties_even() as u32;
                let top = ((scaled_h - target.height) as f64 / 2.0).round_ties_even() as u32;
                let (tw, th) = (target.width as u32, target.height as u32);
                image::imageops::crop_imm(&scaled, left, top, tw, th).to_image()
            }
        }
    }
}

/// The size a `size` image is scaled to before its centre is cropped to `target`: as timm and
/// torchvision compute it for a square target (the shorter side `floor(target / crop)`, the
/// longer in proportion, truncated); for others, the side that constrains the crop set so.
fn center_crop_scale(size: Size, target: Size, crop_fraction: f32) -> (usize, usize) {
    let (w, h) = (size.width as f64, size.height as f64);
    let crop = f64::from(crop_fraction);
    let scale = (target.width as f64 / w).max(target.height as f64 / h);
    let (short, long) = (w.min(h), w.max(h));
    let short_scaled = ((short * scale) / crop + 1e-9).floor().max(1.0);
    let long_scaled = (short_scaled * long / short).floor().max(1.0);
    let (scaled_w, scaled_h) = if w <= h {
        (short_scaled, long_scaled)
    } else {
        (long_scaled, short_scaled)
    };
    // Never smaller than the crop (a rounding away from it at most).
    (
        (scaled_w as usize).max(target.width),
        (scaled_h as usize).max(target.height),
    )
}

/// Resizes a decoded image to `size` by `resize` (or keeps its own size with `None`) and
/// preprocesses it into a batch-1 NHWC tensor.
pub fn from_image(image: &DynamicImage, size: Option<Size>, resize: Resize) -> Result<Tensor> {
    let own = Size::new(image.width() as usize, image.height() as usize);
    if own.width == 0 || own.height == 0 {
        return Err(Error::Input(format!("image is {own}: it has no pixels")));
    }
    let target = size.unwrap_or(own);
    if target.width >= MIN_INPUT_SIZE && target.height >= MIN_INPUT_SIZE {
        // Before anything of the target's size is allocated.
        Graph::check_input_size(target)?;
    }
    let rgb = resize.apply(image.to_rgb8(), target);
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    if width < MIN_INPUT_SIZE || height < MIN_INPUT_SIZE {
        return Err(Error::Input(format!(
            "image is {width}x{height}; Xception needs at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} pixels"
        )));
    }
    normalize(rgb.as_raw(), height, width)
}

/// Decodes `path`, resizes it to `size` by `resize` (or keeps its own size with `None`) and
/// preprocesses it into a batch-1 NHWC tensor.
pub fn load_image(path: impl AsRef<Path>, size: Option<Size>, resize: Resize) -> Result<Tensor> {
    let path = path.as_ref();
    let image = DynamicImage::ImageRgb8(decode(path)?);
    from_image(&image, size, resize).map_err(|e| match e {
        Error::Input(problem) => image_error(path, problem),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// timm's evaluation transform at 299 with crop 0.94: the shorter side becomes
    /// floor(299 / 0.94) = 318, the longer in proportion (truncated), and the centre is cut with
    /// torchvision's offsets (rounded half to even: 9.5 -> 10, 62.5 -> 62).
    #[test]
    fn center_crop_scales_and_cuts_as_timm_does() {
        let target = Size::new(299, 299);
        assert_eq!(
            center_crop_scale(Size::new(400, 300), target, 0.94),
            (424, 318)
        );
        assert_eq!(
            center_crop_scale(Size::new(300, 400), target, 0.94),
            (318, 424)
        );
        assert_eq!(
            center_crop_scale(Size::new(1000, 1000), target, 0.903),
            (331, 331)
        );
        // An image already of the scaled size is only cut: pixel (x, y) of the crop is pixel
        // (x + 10, y + 10) of the image.
        let image = RgbImage::from_fn(318, 318, |x, y| {
            image::Rgb([x as u8, y as u8, (x ^ y) as u8])
        });
        let resize = Resize::CenterCrop {
            crop_fraction: 0.94,
            filter: Interpolation::Bicubic,
        };
        let cut = resize.apply(image.clone(), target);
        assert_eq!(cut.dimensions(), (299, 299));
        for (x, y) in [(0, 0), (298, 0), (17, 200), (298, 298)] {
            assert_eq!(cut.get_pixel(x, y), image.get_pixel(x + 10, y + 10));
        }
        // An image of the input size is left alone, by either rule.
        let own = RgbImage::from_fn(299, 299, |x, y| image::Rgb([y as u8, x as u8, 7]));
        assert_eq!(resize.apply(own.clone(), target), own);
        assert_eq!(Resize::Stretch.apply(own.clone(), target), own);
    }
}
