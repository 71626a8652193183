//! Bad and unusual images: each either works correctly or fails with an error that names the
//! file and the reason; nothing panics, and in a batch the other images still run.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::process::{wait_within_limit, OutputWithinLimit};

use xception_wgpu::image::{self, ImageBuffer, Luma, LumaA, Rgb, RgbImage, Rgba};
use xception_wgpu::{preprocess, Error, Size};

fn dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xception-robust-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A recognisable 120x90 test picture: red top-left quadrant, blue elsewhere.
fn picture() -> RgbImage {
    RgbImage::from_fn(120, 90, |x, y| {
        if x < 60 && y < 45 {
            Rgb([230, 20, 20])
        } else {
            Rgb([20, 20, 230])
        }
    })
}

fn jpeg_bytes(rgb: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    rgb.write_to(
        &mut std::io::Cursor::new(&mut out),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    out
}

fn png_bytes(rgb: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    rgb.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Asserts `load_image` fails with an image error naming `path` and containing `reason`.
fn assert_rejected(path: &Path, size: Option<Size>, reason: &str) {
    match preprocess::load_image(path, size, preprocess::Resize::Stretch) {
        Err(e @ Error::Image { .. }) => {
            let text = e.to_string();
            assert!(text.starts_with(&path.display().to_string()), "{text}");
            assert!(text.contains(reason), "expected `{reason}` in: {text}");
        }
        other => panic!("{}: expected an image error, got {other:?}", path.display()),
    }
}

const MODEL_SIZE: Option<Size> = Some(Size::new(150, 150));

#[test]
fn empty_and_truncated_files_are_rejected_by_name() {
    assert_rejected(&write("empty.png", b""), MODEL_SIZE, "the file is empty");
    let png = png_bytes(&picture());
    assert_rejected(
        &write("truncated.png", &png[..png.len() / 2]),
        MODEL_SIZE,
        "",
    );
    let jpeg = jpeg_bytes(&picture());
    // A JPEG cut after its headers has no image data at all.
    assert_rejected(
        &write("truncated.jpg", &jpeg[..200.min(jpeg.len())]),
        MODEL_SIZE,
        "",
    );
    let missing = dir().join("does-not-exist.jpg");
    match preprocess::load_image(&missing, MODEL_SIZE, preprocess::Resize::Stretch) {
        Err(Error::Io { path, source }) => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("a missing file is an I/O error naming it, got {other:?}"),
    }
}

/// A JPEG of the test picture as jpeg-encoder writes it: `progressive` (several scans), with
/// restart markers every `restart` blocks (0: none), and an EXIF-like application segment.
fn jpeg_encoded(progressive: bool, restart: u16) -> Vec<u8> {
    let rgb = picture();
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 90);
    encoder.set_progressive(progressive);
    encoder.set_restart_interval(restart);
    encoder
        .add_app_segment(1, b"Exif\0\0not a real one".to_vec())
        .unwrap();
    encoder
        .encode(rgb.as_raw(), 120, 90, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

/// A JPEG or PNG whose data ends early is refused as truncated wherever it is cut (decoders
/// would fill the rest with grey and a classification would look real); whole files, with
/// progressive scans, restart markers or bytes after the end marker, still decode.
#[test]
fn images_cut_short_are_refused_as_truncated_and_whole_ones_decode() {
    let sample = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/cup.jpg")).unwrap();
    let whole = vec![
        ("sample.jpg", sample),
        ("baseline.jpg", jpeg_encoded(false, 0)),
        ("progressive.jpg", jpeg_encoded(true, 0)),
        ("restarts.jpg", jpeg_encoded(false, 4)),
        ("picture.png", png_bytes(&picture())),
    ];
    for (name, bytes) in &whole {
        let path = write(name, bytes);
        assert!(
            preprocess::load_image(&path, MODEL_SIZE, preprocess::Resize::Stretch).is_ok(),
            "{name} is whole"
        );
        // Cut anywhere from just after the header to one byte short of the end.
        let cuts = [
            bytes.len() / 10,
            bytes.len() / 2,
            bytes.len() - 100,
            bytes.len() - 1,
        ];
        for cut in cuts.into_iter().filter(|&cut| cut > 100) {
            let cut_name = format!("cut_{cut}_{name}");
            assert_rejected(
                &write(&cut_name, &bytes[..cut]),
                MODEL_SIZE,
                "truncated image",
            );
        }
    }
    let mut trailing = jpeg_encoded(false, 0);
    trailing.extend_from_slice(&[0, 0, 0xFF, 0xD8, 1, 2, 3]);
    let path = write("trailing.jpg", &trailing);
    assert!(
        preprocess::load_image(&path, MODEL_SIZE, preprocess::Resize::Stretch).is_ok(),
        "bytes after the end"
    );
    // The half photo from the issue, through the command line: an error line, exit 1, and
    // the next photo still classified.
    let sample = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/cup.jpg")).unwrap();
    let half = write("half_cup.jpg", &sample[..97_938]);
    let out = Command::new(env!("CARGO_BIN_EXE_xception"))
        .args(["classify", "--backend", "cpu", "--json", "--top", "1"])
        .arg(&half)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/fork.jpg"))
        .output_within_limit();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].contains("truncated image") && !lines[0].contains("\"top\""),
        "{stdout}"
    );
    assert!(lines[1].contains("\"label\":\"fork\""), "{stdout}");
}

/// A JPEG whose entropy-coded data cannot be decoded while the file still runs, marker by
/// marker, to its end-of-image marker (the fuzzer's finds, kept in `fuzz/regressions`): the
/// marker walk sees a whole file, the strict decode sees the scan break. A lenient decoder
/// would fill the rest with grey and give a result that looks real.
#[test]
fn a_jpeg_whose_scan_breaks_is_refused_even_with_its_end_marker() {
    let regressions = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/regressions/image"
    ));
    for (name, problem) in [
        (
            "marker-inside-progressive-scan.jpg",
            "corrupt JPEG data: Marker found where not expected",
        ),
        (
            "bad-huffman-code.jpg",
            "corrupt JPEG data: Bad Huffman Code",
        ),
    ] {
        assert_rejected(&regressions.join(name), MODEL_SIZE, problem);
    }
}

#[test]
fn a_png_named_jpg_is_read_by_its_content() {
    let path = write("really_a_png.jpg", &png_bytes(&picture()));
    let t = preprocess::load_image(&path, None, preprocess::Resize::Stretch).unwrap();
    assert_eq!((t.shape.height, t.shape.width), (90, 120));
}

#[test]
fn tiny_images_are_resized_or_rejected_at_native_size() {
    let one = RgbImage::from_pixel(1, 1, Rgb([10, 200, 30]));
    let path = write("one_pixel.png", &png_bytes(&one));
    let t = preprocess::load_image(&path, MODEL_SIZE, preprocess::Resize::Stretch).unwrap();
    assert_eq!((t.shape.height, t.shape.width), (150, 150));
    assert_rejected(&path, None, "needs at least 71x71");
    let small = RgbImage::from_pixel(70, 70, Rgb([1, 2, 3]));
    assert_rejected(
        &write("seventy.png", &png_bytes(&small)),
        None,
        "image is 70x70",
    );
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn a_huge_image_is_refused_before_decoding() {
    // A PNG whose header claims 30000x30000 RGB (2.7 GB decoded), cut short after the header.
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(30000u32.to_be_bytes());
    ihdr.extend(30000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    // The start of the compressed pixel data (a zlib header), as a real file would have.
    let idat = b"IDAT\x78\x9c".to_vec();
    png.extend(2u32.to_be_bytes());
    png.extend(&idat);
    png.extend(crc32(&idat).to_be_bytes());
    let path = write("huge.png", &png);
    assert_rejected(
        &path,
        MODEL_SIZE,
        "image is 30000x30000; the largest side accepted is 16384",
    );
}

#[test]
fn every_colour_type_decodes_to_rgb() {
    let rgb = picture();
    let cases: Vec<(&str, image::DynamicImage)> = vec![
        (
            "gray.png",
            image::DynamicImage::ImageLuma8(image::imageops::grayscale(&rgb)),
        ),
        (
            "gray_alpha.png",
            image::DynamicImage::ImageLumaA8(ImageBuffer::from_fn(120, 90, |x, _| {
                LumaA([(x * 2) as u8, 255])
            })),
        ),
        (
            "rgba.png",
            image::DynamicImage::ImageRgba8(ImageBuffer::from_fn(120, 90, |x, y| {
                Rgba([x as u8, y as u8, 7, 200])
            })),
        ),
        (
            "rgb16.png",
            image::DynamicImage::ImageRgb16(ImageBuffer::from_fn(120, 90, |x, _| {
                Rgb([(x * 500) as u16, 0, 65535])
            })),
        ),
        (
            "gray16.png",
            image::DynamicImage::ImageLuma16(ImageBuffer::from_fn(120, 90, |_, y| {
                Luma([(y * 700) as u16])
            })),
        ),
        (
            "gray.jpg",
            image::DynamicImage::ImageLuma8(image::imageops::grayscale(&rgb)),
        ),
    ];
    for (name, img) in cases {
        let path = dir().join(name);
        img.save(&path).unwrap();
        let t = preprocess::load_image(&path, None, preprocess::Resize::Stretch)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (t.shape.height, t.shape.width, t.shape.channels),
            (90, 120, 3),
            "{name}"
        );
        assert!(t.data.iter().all(|v| (-1.0..=1.0).contains(v)), "{name}");
    }
    // A 16-bit white pixel is 1.0, like an 8-bit one.
    let t =
        preprocess::load_image(dir().join("rgb16.png"), None, preprocess::Resize::Stretch).unwrap();
    assert_eq!(t.data[2], 1.0);
}

#[test]
fn a_palette_png_decodes_to_its_colours() {
    let path = dir().join("palette.png");
    let file = std::fs::File::create(&path).unwrap();
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), 80, 80);
    encoder.set_color(png::ColorType::Indexed);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_palette(vec![255, 0, 0, 0, 0, 255]);
    let mut writer = encoder.write_header().unwrap();
    let indices: Vec<u8> = (0..80 * 80).map(|i| ((i % 80) >= 40) as u8).collect();
    writer.write_image_data(&indices).unwrap();
    writer.finish().unwrap();
    let rgb = preprocess::decode(&path).unwrap();
    assert_eq!(rgb.get_pixel(0, 0).0, [255, 0, 0]);
    assert_eq!(rgb.get_pixel(79, 0).0, [0, 0, 255]);
}

/// `png` panics expanding a palette whose PLTE chunk holds a partial entry (found by
/// fuzzing): refused by name before decoding.
#[test]
fn a_png_with_a_partial_palette_entry_is_refused_not_a_panic() {
    let path = dir().join("palette-source.png");
    let mut encoder = png::Encoder::new(std::fs::File::create(&path).unwrap(), 8, 8);
    encoder.set_color(png::ColorType::Indexed);
    encoder.set_palette(vec![255, 0, 0, 0, 0, 255]);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&[1; 64]).unwrap();
    writer.finish().unwrap();
    let source = std::fs::read(&path).unwrap();
    assert_eq!(
        preprocess::decode(&path).unwrap().get_pixel(0, 0).0,
        [0, 0, 255]
    );
    // The same file with one byte more in its palette chunk, written back with CRCs.
    let mut partial = source[..8].to_vec();
    let mut at = 8;
    while at < source.len() {
        let length = u32::from_be_bytes(source[at..at + 4].try_into().unwrap()) as usize;
        let mut chunk = source[at + 4..at + 8 + length].to_vec();
        if chunk.starts_with(b"PLTE") {
            chunk.push(9);
        }
        partial.extend((chunk.len() as u32 - 4).to_be_bytes());
        partial.extend(&chunk);
        partial.extend(crc32(&chunk).to_be_bytes());
        at += 12 + length;
    }
    assert_rejected(
        &write("partial_palette.png", &partial),
        MODEL_SIZE,
        "invalid PNG: its palette (PLTE) is 7 bytes, not whole RGB entries",
    );
}

#[test]
fn a_cmyk_jpeg_decodes_or_fails_clearly() {
    let path = dir().join("cmyk.jpg");
    let cmyk: Vec<u8> = (0..96 * 72)
        .flat_map(|i| [(i % 96) as u8, 0, 128, 0])
        .collect();
    let encoder = jpeg_encoder::Encoder::new_file(&path, 90).unwrap();
    encoder
        .encode(&cmyk, 96, 72, jpeg_encoder::ColorType::Cmyk)
        .unwrap();
    let t = preprocess::load_image(&path, None, preprocess::Resize::Stretch)
        .unwrap_or_else(|e| panic!("CMYK JPEG: {e}"));
    assert_eq!((t.shape.height, t.shape.width), (72, 96));
}

#[test]
fn exif_orientation_is_respected() {
    // Orientation 6: the stored image is displayed rotated 90 degrees clockwise.
    let exif: Vec<u8> = [
        &b"Exif\0\0II\x2a\0"[..],
        &8u32.to_le_bytes(),
        &1u16.to_le_bytes(),
        &[0x12, 0x01, 3, 0],
        &1u32.to_le_bytes(),
        &[6, 0, 0, 0],
        &0u32.to_le_bytes(),
    ]
    .concat();
    let path = dir().join("rotated.jpg");
    let mut encoder = jpeg_encoder::Encoder::new_file(&path, 95).unwrap();
    encoder.add_app_segment(1, exif).unwrap();
    let stored = picture();
    encoder
        .encode(stored.as_raw(), 120, 90, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    let shown = preprocess::decode(&path).unwrap();
    assert_eq!((shown.width(), shown.height()), (90, 120));
    // The red top-left quadrant of the stored image is now at the top right.
    let top_right = shown.get_pixel(80, 10).0;
    let top_left = shown.get_pixel(10, 10).0;
    assert!(top_right[0] > 180 && top_right[2] < 80, "{top_right:?}");
    assert!(top_left[2] > 180 && top_left[0] < 80, "{top_left:?}");
}

#[test]
fn a_batch_with_bad_images_reports_them_and_runs_the_rest() {
    let folder = dir().join("mixed");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("a_empty.png"), b"").unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/samples/spoon.jpg"),
        folder.join("b_spoon.jpg"),
    )
    .unwrap();
    let png = png_bytes(&picture());
    std::fs::write(folder.join("c_truncated.png"), &png[..png.len() / 3]).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/samples/knife.jpg"),
        folder.join("d_knife.jpg"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xception"))
        .args(["classify", "--backend", "cpu", "--top", "1"])
        .arg(&folder)
        .output_within_limit();
    assert_eq!(
        out.status.code(),
        Some(1),
        "some images failed, so the exit code is 1"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("a_empty.png") && stderr.contains("c_truncated.png"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let labels: Vec<&str> = stdout
        .lines()
        .map(|l| l.split_once(": ").unwrap().1.split(' ').next().unwrap())
        .collect();
    assert_eq!(labels, ["spoon", "knife"]);
}

/// `--size native` refuses a photo whose activations would take gigabytes, naming it and the
/// way out, and runs the others.
#[test]
fn a_photo_too_large_to_run_natively_is_refused_and_the_others_run() {
    let folder = dir().join("native");
    std::fs::create_dir_all(&folder).unwrap();
    // 3000x3000: its largest activation (1497x1497x128 float32) is 1.07 GiB.
    let large = RgbImage::from_pixel(3000, 3000, Rgb([120, 130, 140]));
    std::fs::write(folder.join("a_large.png"), png_bytes(&large)).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/samples/spoon.jpg"),
        folder.join("b_spoon.jpg"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xception"))
        .args([
            "classify",
            "--backend",
            "cpu",
            "--top",
            "1",
            "--size",
            "native",
            "--json",
        ])
        .arg(&folder)
        .output_within_limit();
    assert_eq!(out.status.code(), Some(1), "one image failed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("a_large.png") && stderr.contains("3000x3000") && stderr.contains("--size"),
        "{stderr}"
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "a line per image");
    assert!(lines[0]["error"].as_str().unwrap().contains("GiB"));
    assert_eq!(lines[1]["top"][0]["label"], "spoon");
}

/// Anything but a regular file is refused by its metadata before it is opened: a FIFO (whose
/// read would block forever) and a link to `/dev/zero` (endless), as images and as weights;
/// on the command line the images after them still run.
#[cfg(unix)]
#[test]
fn fifos_and_devices_are_refused_before_they_are_read() {
    let folder = dir().join("special");
    std::fs::create_dir_all(&folder).unwrap();
    let fifo = folder.join("fifo.jpg");
    let zero = folder.join("zero.jpg");
    let _ = std::fs::remove_file(&fifo);
    let _ = std::fs::remove_file(&zero);
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    for path in [&fifo, &zero] {
        assert_rejected(path, MODEL_SIZE, "not a regular file");
        match xception_wgpu::Weights::load(path) {
            Err(e @ Error::Weights { .. }) => {
                assert!(e.to_string().contains("not a regular file"), "{e}")
            }
            other => panic!("{}: {other:?}", path.display()),
        }
    }
    let child = Command::new(env!("CARGO_BIN_EXE_xception"))
        .args(["classify", "--backend", "cpu", "--top", "1"])
        .args([&fifo, &zero])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/fork.jpg"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_within_limit(child, "classify with a FIFO and a device");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("fork.jpg: fork"));
    for path in [&fifo, &zero] {
        let line = format!("{}: not a regular file", path.display());
        assert!(stderr.contains(&line), "{stderr}");
    }
}
