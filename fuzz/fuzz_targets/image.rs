//! Any byte string given to the image path is either decoded and preprocessed into a network
//! input or rejected with a clean error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xception_wgpu::image::DynamicImage;
use xception_wgpu::preprocess;

fuzz_target!(|data: &[u8]| {
    if let Ok(rgb) = preprocess::decode_bytes(data, "fuzz.img") {
        let tensor = preprocess::from_image(
            &DynamicImage::ImageRgb8(rgb),
            Some(xception_wgpu::Size::new(75, 75)),
            preprocess::Resize::Stretch,
        )
            .expect("a decoded image always resizes to a valid input");
        assert!(tensor.data.iter().all(|v| (-1.0..=1.0).contains(v)));
    }
});
