//! Any byte string given to the safetensors loader is either valid Xception weights or a
//! clean error: no panic, no allocation driven by a lying header.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = xception_wgpu::Weights::from_bytes(data, "fuzz.safetensors");
});
