//! Every WGSL kernel parses, validates and translates to SPIR-V with naga (no GPU needed: the
//! cooperative-matrix kernel, which lavapipe cannot run, is checked this far here), and every
//! shader file is registered.

use xception_wgpu::gpu::{Element, Kernel};

/// Every kernel with each activation element type it has.
fn variants() -> impl Iterator<Item = (Kernel, Element)> {
    Kernel::ALL.into_iter().flat_map(|kernel| {
        Element::ALL
            .into_iter()
            .filter(move |&element| kernel.has_variant(element))
            .map(move |element| (kernel, element))
    })
}

#[test]
fn every_kernel_validates_with_naga() {
    for (kernel, element) in variants() {
        if let Err(e) = kernel.validate(element) {
            panic!("{element:?} {}: {e}", kernel.name());
        }
    }
}

#[test]
fn every_kernel_translates_to_spirv_for_vulkan() {
    for (kernel, element) in variants() {
        let module = kernel.parse(element).unwrap();
        let info = kernel.validate(element).unwrap();
        let options = naga::back::spv::Options::default();
        if let Err(e) = naga::back::spv::write_vec(&module, &info, &options, None) {
            panic!("{element:?} {}: {e}", kernel.name());
        }
    }
}

#[test]
fn every_shader_file_is_a_registered_kernel() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut registered: Vec<String> = Kernel::ALL.iter().map(|k| k.file().to_string()).collect();
    registered.sort();
    registered.dedup();
    assert_eq!(files, registered);
}

#[test]
fn every_shader_fragment_is_included() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    let kernels: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    for fragment in std::fs::read_dir(format!("{dir}/fragments")).unwrap() {
        let name = fragment.unwrap().file_name().to_string_lossy().into_owned();
        let include = format!("#include \"{name}\"");
        assert!(
            kernels.iter().any(|k| k.contains(&include)),
            "shaders/fragments/{name} is included by no kernel"
        );
    }
}
