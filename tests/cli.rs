//! End to end: the `xception` binary on the bundled photos.

use std::path::PathBuf;
use std::process::{Command, Output};

mod common;

use common::process::{wait_within_limit, OutputWithinLimit};

const LABELS: [&str; 6] = ["cup", "fork", "glass", "knife", "plate", "spoon"];

fn samples() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples");
    LABELS
        .iter()
        .map(|l| dir.join(format!("{l}.jpg")))
        .collect()
}

fn xception(args: &[&str], images: &[PathBuf]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xception"))
        .args(args)
        .args(images)
        .output_within_limit()
}

/// An empty folder of this name in the tests' temporary folder.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stdout_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn classify_labels_every_bundled_photo_on_the_gpu() {
    let out = xception(
        &["classify", "--backend", "gpu", "--json", "--top", "3"],
        &samples(),
    );
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), LABELS.len());
    for (line, (label, path)) in lines.iter().zip(LABELS.iter().zip(samples())) {
        assert_eq!(line["image"], path.display().to_string());
        assert_eq!(line["top"].as_array().unwrap().len(), 3);
        assert_eq!(line["top"][0]["label"], *label, "{line}");
        assert!(
            line["top"][0]["probability"].as_f64().unwrap() > 0.5,
            "{line}"
        );
        assert_eq!(line["logits"].as_array().unwrap().len(), 6);
    }
}

/// `--kernel` picks the GPU's convolution kernels: the tiled GEMM and the float16 tiled GEMM
/// label the photos as the default does; one the adapter cannot run fails cleanly.
#[test]
fn classify_runs_the_kernel_asked_for_and_refuses_one_it_cannot() {
    for args in [
        ["--kernel", "tiled", "--precision", "f32"],
        ["--kernel", "tiled", "--precision", "f16"],
    ] {
        let mut all = vec!["classify", "--backend", "gpu", "--json", "--top", "1"];
        all.extend(args);
        let out = xception(&all, &samples());
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (line, label) in stdout_lines(&out).iter().zip(LABELS) {
            assert_eq!(line["top"][0]["label"], label, "{args:?}: {line}");
        }
    }
    let out = xception(
        &["classify", "--backend", "gpu", "--kernel", "coopmat"],
        &samples()[..1],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.starts_with("error: ") && stderr.contains("float16"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn classify_on_the_cpu_prints_one_line_per_photo() {
    let out = xception(&["classify", "--backend", "cpu", "--top", "1"], &samples());
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), LABELS.len());
    for (line, label) in lines.iter().zip(LABELS) {
        let (_, top) = line.split_once(": ").unwrap();
        assert!(top.starts_with(&format!("{label} (")), "{line}");
    }
}

#[test]
fn a_bad_image_is_reported_and_the_others_still_run() {
    let dir = std::env::temp_dir().join(format!("xception-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.png");
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\n not really").unwrap();
    let missing = dir.join("missing.jpg");
    let images = [
        samples()[0].clone(),
        broken.clone(),
        missing.clone(),
        samples()[3].clone(),
    ];
    let out = xception(&["classify", "--json"], &images);
    assert!(
        !out.status.success(),
        "a failed image must make the exit code non-zero"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&broken.display().to_string()), "{stderr}");
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Every input gets a JSON line, in input order; failures say why.
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), images.len());
    for (line, image) in lines.iter().zip(&images) {
        assert_eq!(line["image"], image.display().to_string());
    }
    assert_eq!(lines[0]["top"][0]["label"], "cup");
    assert_eq!(lines[3]["top"][0]["label"], "knife");
    for line in &lines[1..3] {
        let error = line["error"].as_str().unwrap();
        assert!(error.starts_with(line["image"].as_str().unwrap()), "{line}");
    }
    assert!(lines[2]["error"].as_str().unwrap().contains("No such file"));
}

#[test]
fn embed_prints_a_2048_value_embedding_per_image_at_native_size() {
    // Small grayscale and RGBA versions of two photos, at their own (non-square) sizes.
    let dir = std::env::temp_dir().join(format!("xception-embed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let gray = dir.join("fork_gray.png");
    let rgba = dir.join("glass_rgba.png");
    let fork = image::open(&samples()[1]).unwrap().resize_exact(
        97,
        83,
        image::imageops::FilterType::Triangle,
    );
    fork.to_luma8().save(&gray).unwrap();
    let glass = image::open(&samples()[2]).unwrap().resize_exact(
        80,
        120,
        image::imageops::FilterType::Triangle,
    );
    glass.to_rgba8().save(&rgba).unwrap();

    let out = xception(&["embed", "--json", "--size", "native"], &[gray, rgba]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 2);
    for line in &lines {
        let e = line["embedding"].as_array().unwrap();
        assert_eq!(e.len(), 2048);
        // An average of post-ReLU features: non-negative, and not all zero.
        assert!(e.iter().all(|v| v.as_f64().unwrap() >= 0.0));
        assert!(e.iter().any(|v| v.as_f64().unwrap() > 0.0));
    }
}

#[test]
fn bad_arguments_and_bad_weights_fail_cleanly() {
    let out = xception(&["classify", "--size", "big"], &samples()[..1]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--size `big`"));

    // Arguments are checked before the model loads or any image runs, and a bad one is a
    // usage error (status 2, as clap's own), like an option that does not exist.
    let dir = std::env::temp_dir().join(format!("xception-args-{}", std::process::id()));
    let missing_folder = dir.join("missing").join("e.npy");
    for (args, error) in [
        (
            vec!["classify", "--size", "50"],
            "--size 50x50 is too small",
        ),
        (vec!["classify", "--top", "0"], "--top must be at least 1"),
        (
            vec!["embed", "--output", "e.csv"],
            "--output must end in .npy or .safetensors",
        ),
        (
            vec!["embed", "--output", missing_folder.to_str().unwrap()],
            "is in a folder that does not exist",
        ),
        (
            vec!["classify", "--class-of-its-own"],
            "unexpected argument",
        ),
        (
            vec!["explain", "--class", "teapot"],
            "is not one of the model's classes",
        ),
    ] {
        let out = xception(&args, &samples()[..1]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(error), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing ran");
    }
    let out = xception(&["bench", "--size", "native"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bench needs a fixed --size"));
    // A run that fails on its input is not a usage error.
    let out = xception(
        &["classify"],
        &[PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")],
    );
    assert_eq!(out.status.code(), Some(1));
    // One size syntax everywhere: N means NxN.
    let out = xception(
        &[
            "classify",
            "--backend",
            "cpu",
            "--size",
            "150",
            "--top",
            "1",
            "--precision",
            "f16",
        ],
        &samples()[..1],
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("cup"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--precision f16 applies to the GPU"),
        "f16 on the CPU is not silently ignored"
    );

    let out = xception(&["classify", "--weights", "Cargo.toml"], &samples()[..1]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Cargo.toml: not a valid safetensors file"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn without_an_adapter_auto_falls_back_to_the_cpu_and_gpu_fails_clearly() {
    // `WGPU_BACKEND=webgpu` asks wgpu for a backend that native builds do not have.
    let run = |backend: &str| {
        Command::new(env!("CARGO_BIN_EXE_xception"))
            .args(["classify", "--top", "1", "--backend", backend])
            .arg(&samples()[0])
            .env("WGPU_BACKEND", "webgpu")
            .output_within_limit()
    };
    let auto = run("auto");
    let stderr = String::from_utf8_lossy(&auto.stderr);
    assert!(auto.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: no usable GPU adapter") && stderr.contains("running on the CPU"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&auto.stdout).contains(": cup ("));

    let gpu = run("gpu");
    let stderr = String::from_utf8_lossy(&gpu.stderr);
    assert!(!gpu.status.success());
    assert!(
        stderr.starts_with("error: no usable GPU adapter"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Without a desktop session (no `XDG_RUNTIME_DIR`), Mesa's device-selection Vulkan layer
/// would have libwayland print "XDG_RUNTIME_DIR is invalid" on every adapter enumeration;
/// the CLI turns that layer off there.
#[test]
fn without_a_session_directory_a_gpu_run_prints_no_wayland_complaint() {
    let out = Command::new(env!("CARGO_BIN_EXE_xception"))
        .args(["classify", "--top", "1", "--backend", "gpu"])
        .arg(&samples()[0])
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("NODEVICE_SELECT")
        .env("WGPU_BACKEND", "vulkan")
        .output_within_limit();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(": cup ("));
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
}

/// A GPU run with an empty pipeline cache says on stderr that it compiles the kernels (which
/// takes seconds on a first run); the next run, which finds them cached, and CPU runs do not.
#[test]
fn a_first_gpu_run_says_it_compiles_its_kernels_and_the_next_does_not() {
    let cache = fresh_dir("first-run-cache");
    let run = |backend: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_xception"))
            .args(["classify", "--top", "1", "--backend", backend])
            .arg(&samples()[0])
            .env("XDG_CACHE_HOME", &cache)
            .output_within_limit();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        assert!(String::from_utf8_lossy(&out.stdout).contains(": cup ("));
        stderr
    };
    const NOTICE: &str = "compiling GPU kernels (first run only";
    assert!(!run("cpu").contains(NOTICE));
    assert!(run("gpu").contains(NOTICE));
    let second = run("gpu");
    assert!(!second.contains(NOTICE), "{second}");
}

#[test]
fn folders_and_stdin_lists_expand_to_their_images() {
    let samples_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples");
    let out = xception(
        &["classify", "--top", "1"],
        std::slice::from_ref(&samples_dir),
    );
    // samples/README.md is skipped: folders contribute only image files.
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        LABELS.len()
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_xception"))
        .args(["classify", "--top", "1", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let list = format!("{}\n\n{}\n", samples()[4].display(), samples()[5].display());
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), list.as_bytes()).unwrap();
    let out = wait_within_limit(child, "xception");
    let text = String::from_utf8_lossy(&out.stdout);
    let labels: Vec<&str> = text
        .lines()
        .map(|l| l.split_once(": ").unwrap().1.split(' ').next().unwrap())
        .collect();
    assert_eq!(labels, ["plate", "spoon"]);
}

#[test]
fn embed_writes_npy_and_safetensors_files() {
    let dir = std::env::temp_dir().join(format!("xception-output-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let images = &samples()[..2];
    let npy = dir.join("e.npy");
    let out = xception(&["embed", "--output", npy.to_str().unwrap()], images);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&npy).unwrap();
    assert!(bytes.starts_with(b"\x93NUMPY"));
    let header = String::from_utf8_lossy(&bytes[..128]);
    assert!(
        header.contains("'descr': '<f4'") && header.contains("(2, 2048,"),
        "{header}"
    );
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!(bytes.len(), 10 + header_len + 2 * 2048 * 4);

    let st = dir.join("e.safetensors");
    let out = xception(
        &["embed", "--json", "--output", st.to_str().unwrap()],
        images,
    );
    assert!(out.status.success());
    // Both outputs get the permissions of any new file (not 0600 for one of them).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&st), mode(&npy));
    }
    let bytes = std::fs::read(&st).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = file.tensor("embeddings").unwrap();
    assert_eq!(t.shape(), [2, 2048]);
    // The file holds what was printed.
    let printed = stdout_lines(&out);
    let first: Vec<f32> = t.data()[..8]
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let json_first: Vec<f32> = printed[0]["embedding"].as_array().unwrap()[..2]
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(first, json_first);

    let bad = dir.join("e.csv");
    let out = xception(&["embed", "--output", bad.to_str().unwrap()], images);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--output must end in .npy or .safetensors")
    );
}

#[test]
fn summary_totals_match_keras_and_info_names_the_model() {
    let out = xception(&["summary", "--size", "299x299"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("backbone: 20,861,480 params, 8,355,355,496 MACs"),
        "{text}"
    );
    assert!(text.contains("block4_sepconv2"), "{text}");

    let out = xception(&["info"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("classes: 6 (cup, fork, glass, knife, plate, spoon)"),
        "{text}"
    );
    assert!(text.contains("input size: 150x150"), "{text}");
    // Every convolution is named with its kernel: the first stem convolution and the last
    // separable one at least.
    assert!(
        text.contains("convolution kernels (Auto at F32, and why):"),
        "{text}"
    );
    assert!(
        text.contains("block1_conv1") && text.contains("block14_sepconv2"),
        "{text}"
    );

    let out = xception(&["info", "--kernel", "portable"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("conv_portable") && text.contains("conv_direct"),
        "the portable kernels run every convolution:\n{text}"
    );
    assert!(!text.contains("conv_gemm"), "{text}");
}

#[test]
fn bench_prints_json_lines_and_profiles() {
    let out = xception(
        &[
            "bench",
            "--backend",
            "cpu",
            "--size",
            "80",
            "--size",
            "96x72",
            "--runs",
            "2",
            "--json",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["size"], serde_json::json!([96, 72]));
    for line in &lines {
        assert_eq!(line["backend"], "cpu");
        assert_eq!(line["batch"], 1);
        let latency = &line["latency_ms"];
        let (min, median, max) = (
            latency["min"].as_f64().unwrap(),
            latency["median"].as_f64().unwrap(),
            latency["max"].as_f64().unwrap(),
        );
        assert!(0.0 < min && min <= median && median <= max, "{latency}");
        assert!(
            line["images_per_s"].as_f64().unwrap() > 0.0 && line["gflops"].as_f64().unwrap() > 0.0
        );
        assert!(line["cold_start_ms"]["total"].as_f64().unwrap() > 0.0);
        assert!(
            line["submit_ms"].is_null(),
            "the CPU submits nothing: {line}"
        );
    }

    // A list of batches, each a case, on the kernel asked for.
    let out = xception(
        &[
            "bench",
            "--backend",
            "gpu",
            "--size",
            "80",
            "--batch",
            "1,3",
            "--runs",
            "1",
            "--kernel",
            "tiled",
            "--json",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = stdout_lines(&out);
    let batches: Vec<_> = lines.iter().map(|l| l["batch"].as_u64().unwrap()).collect();
    assert_eq!(batches, [1, 3]);
    for line in &lines {
        let kernels = line["conv_kernels"].as_str().unwrap();
        assert!(kernels.starts_with("conv_tiled"), "{line}");
        let submit = line["submit_ms"].as_f64().unwrap();
        let min = line["latency_ms"]["min"].as_f64().unwrap();
        assert!(0.0 < submit && submit < min, "{line}");
    }

    // Profiles: the GPU's kernel launches (with the head's), the CPU's kernels (each separable
    // convolution in one).
    for (backend, kinds, steps) in [
        ("gpu", &["depthwise", "pointwise"][..], "82 steps"),
        ("cpu", &["separable"][..], "45 steps"),
    ] {
        let out = xception(
            &[
                "bench",
                "--profile",
                "--backend",
                backend,
                "--size",
                "80",
                "--runs",
                "1",
            ],
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        for &needle in [
            "block4_sepconv2",
            "stem conv",
            "shortcut conv",
            "max pool + add",
            steps,
        ]
        .iter()
        .chain(kinds)
        {
            assert!(
                text.contains(needle),
                "`{needle}` missing from the {backend} profile:\n{text}"
            );
        }
        // The CPU's steps are set against the peak measured beside them; the GPU has none.
        let peak = text
            .lines()
            .find_map(|l| l.strip_prefix("measured fused multiply-add peak of its threads: "))
            .and_then(|rest| rest.strip_suffix(" GFLOP/s"))
            .map(|value| value.parse::<f64>().unwrap());
        match backend {
            "cpu" => {
                assert!(peak.is_some_and(|p| p > 0.0), "{text}");
                assert!(
                    text.contains("% peak") && text.contains("\ntotal "),
                    "{text}"
                );
            }
            _ => assert!(peak.is_none() && !text.contains("% peak"), "{text}"),
        }
    }
}

/// `explain` writes one overlay per photo at the photo's size, prints the raw heatmap at the
/// feature map's resolution, explains the class asked for, and reports bad inputs and classes.
#[test]
fn explain_writes_overlays_and_prints_heatmaps() {
    let dir = std::env::temp_dir().join(format!("xception-explain-{}", std::process::id()));
    let out_dir = dir.to_str().unwrap();
    let not_an_image = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples/README.md");
    let mut images = samples();
    images.insert(1, not_an_image.clone());
    let out = xception(&["explain", "--json", "--output", out_dir], &images);
    assert_eq!(out.status.code(), Some(1), "one input is not an image");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:", not_an_image.display())),
        "{stderr}"
    );
    let mut lines = stdout_lines(&out);
    assert_eq!(lines.len(), LABELS.len() + 1);
    let failed = lines.remove(1);
    assert_eq!(failed["image"], not_an_image.display().to_string());
    assert!(failed["error"]
        .as_str()
        .unwrap()
        .contains("not a recognised image format"));
    for (line, (label, path)) in lines.iter().zip(LABELS.iter().zip(samples())) {
        assert_eq!(line["image"], path.display().to_string());
        assert_eq!(
            line["class"], *label,
            "the top class is explained by default"
        );
        let rows: Vec<Vec<f32>> = serde_json::from_value(line["heatmap"].clone()).unwrap();
        assert_eq!(
            (rows.len(), rows[0].len()),
            (5, 5),
            "150x150 gives a 5x5 map"
        );
        let values: Vec<f32> = rows.concat();
        assert!(values.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_eq!(values.iter().copied().fold(0.0, f32::max), 1.0);
        let overlay = dir.join(format!("{label}.gradcam.png"));
        assert_eq!(line["overlay"], overlay.display().to_string());
        let photo = image::image_dimensions(&path).unwrap();
        assert_eq!(image::image_dimensions(&overlay).unwrap(), photo);
    }

    let fork = &samples()[1..2];
    for class in ["knife", "3"] {
        let out = xception(
            &["explain", "--json", "--class", class, "--output", out_dir],
            fork,
        );
        assert!(out.status.success());
        assert_eq!(stdout_lines(&out)[0]["class"], "knife");
    }
    for (class, error) in [
        (
            "spork",
            "is not one of the model's classes (cup, fork, glass, knife, plate, spoon)",
        ),
        ("6", "--class 6 is out of range: the model has 6 classes"),
    ] {
        let out = xception(&["explain", "--class", class, "--output", out_dir], fork);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(error), "{stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--format csv` quotes paths that hold commas and quotes, gives a failed image a row with
/// its error, and reads back as the same results as `--json`; `--batch` changes how many
/// images share a pass, not the results.
#[test]
fn csv_output_is_quoted_and_batches_do_not_change_results() {
    let dir = std::env::temp_dir().join(format!("xception-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let awkward = dir.join("a, \"quoted\" cup.jpg");
    std::fs::copy(&samples()[0], &awkward).unwrap();
    let bad = dir.join("b_bad.png");
    std::fs::write(&bad, b"not an image").unwrap();
    let images = [awkward.clone(), bad.clone(), samples()[1].clone()];

    let out = xception(&["classify", "--format", "csv", "--top", "2"], &images);
    assert_eq!(out.status.code(), Some(1), "one image failed");
    let mut reader = csv::Reader::from_reader(&out.stdout[..]);
    assert_eq!(
        reader.headers().unwrap(),
        vec!["image", "rank", "label", "probability", "error"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(
        rows.len(),
        2 + 1 + 2,
        "two classes per image, one row for the failure"
    );
    assert_eq!(&rows[0][0], awkward.to_str().unwrap());
    assert_eq!((&rows[0][1], &rows[0][2]), ("1", "cup"));
    assert_eq!(&rows[2][0], bad.to_str().unwrap());
    assert!(
        rows[2][4].contains("not a recognised image format"),
        "{:?}",
        rows[2]
    );
    assert_eq!(&rows[3][2], "fork");

    // The same probabilities as the JSON lines, whatever the batch size.
    let json = |batch: &str| {
        stdout_lines(&xception(
            &["classify", "--json", "--top", "1", "--batch", batch],
            &images,
        ))
    };
    let (one, eight) = (json("1"), json("8"));
    assert_eq!(one.len(), eight.len());
    for (a, b) in one.iter().zip(&eight) {
        assert_eq!(a["image"], b["image"]);
        assert_eq!(a["error"], b["error"]);
        assert_eq!(a["top"][0]["label"], b["top"][0]["label"]);
        let (pa, pb) = (&a["top"][0]["probability"], &b["top"][0]["probability"]);
        assert!(pa.is_null() == pb.is_null());
        if let (Some(pa), Some(pb)) = (pa.as_f64(), pb.as_f64()) {
            assert!((pa - pb).abs() < 1e-6, "{a} {b}");
        }
    }
    let p = one[0]["top"][0]["probability"].as_f64().unwrap();
    assert!((p - rows[0][3].parse::<f64>().unwrap()).abs() < 1e-6);

    let out = xception(&["embed", "--format", "csv"], &images[..1]);
    let mut reader = csv::Reader::from_reader(&out.stdout[..]);
    assert_eq!(reader.headers().unwrap().len(), 1 + 2048 + 1);
    let row = reader.records().next().unwrap().unwrap();
    assert_eq!(&row[0], awkward.to_str().unwrap());
    assert!(row[1].parse::<f32>().is_ok() && row[2049].is_empty());
}

/// `check` proves the kernels on the test adapter (lavapipe in CI), at float32 and float16,
/// and on llvmpipe's OpenGL (`WGPU_BACKEND=gl`, float32: it has no float16 arithmetic, and its
/// shaders compile slowly): every variant and the whole network pass, and `--json` reports the
/// adapter, its driver, features and limits with every result.
#[test]
fn check_passes_on_vulkan_and_gl_and_reports_json() {
    for (backend, precisions) in [("vulkan", &["f32", "f16"][..]), ("gl", &["f32"][..])] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_xception"));
        command
            .args(["check", "--json"])
            .env("WGPU_BACKEND", backend);
        if let [only] = precisions {
            command.args(["--precision", only]);
        }
        let out = command.output_within_limit();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{backend}: not JSON ({e}); stderr: {stderr}"));
        assert!(out.status.success(), "{backend}: {report:#}\n{stderr}");
        assert_eq!(report["passed"], true);
        let adapter = &report["adapter"];
        assert_eq!(
            adapter["backend"].as_str().unwrap().to_lowercase(),
            backend,
            "{adapter}"
        );
        let driver = format!("{} {}", adapter["driver"], adapter["driver_info"]);
        assert!(driver.contains("Mesa"), "{driver}");
        assert!(adapter["limits"]["max_storage_buffer_binding_size"].as_u64() > Some(0));
        assert_eq!(report["crate"]["version"], env!("CARGO_PKG_VERSION"));
        let results = report["results"].as_array().unwrap();
        let kernels: Vec<&str> = results
            .iter()
            .map(|r| r["kernel"].as_str().unwrap())
            .collect();
        for kernel in [
            "conv_direct",
            "conv_portable",
            "conv_tiled",
            "depthwise_conv_tiled",
        ] {
            assert!(kernels.contains(&kernel), "{backend}: {kernels:?}");
        }
        let networks: Vec<_> = results
            .iter()
            .filter(|r| r["op"] == "network")
            .map(|r| r["precision"].as_str().unwrap())
            .collect();
        assert_eq!(networks, precisions, "{results:?}");
        for result in results {
            assert_eq!(result["passed"], true, "{result}");
            assert!(result["cases"].as_u64() > Some(0), "{result}");
            assert!(result["worst_error"].as_f64() <= result["bound"].as_f64());
        }
    }
}

/// A kernel whose weights `check` is told to move fails, and the verdict names it: exit 1.
#[test]
fn check_fails_naming_a_planted_fault() {
    let out = xception(
        &["check", "--precision", "f32", "--plant-fault", "conv_tiled"],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let verdict = stdout.lines().last().unwrap();
    assert!(
        verdict.starts_with("verdict: 1 of ") && verdict.contains("FAILED: conv_tiled at F32"),
        "{verdict}"
    );
}

/// `--kernel tuned` times every kernel on each convolution shape once and keeps the choices in
/// the cache directory: a second process reads them and times nothing. A corrupt or stale
/// store is ignored with one warning and measured again.
#[test]
fn tuned_kernels_are_timed_once_and_a_bad_store_is_ignored_with_one_warning() {
    let cache = fresh_dir("tuned-cache");
    let store = cache.join("xception-wgpu/tuned-kernels.json");
    let info = || {
        let out = Command::new(env!("CARGO_BIN_EXE_xception"))
            .args(["info", "--kernel", "tuned"])
            .env("XDG_CACHE_HOME", &cache)
            .output_within_limit();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{stderr}");
        let tuned = stdout.lines().filter(|l| l.contains(" tuned ")).count();
        assert!(tuned > 0, "every convolution says it is tuned: {stdout}");
        assert!(!stdout.contains(" rule "), "{stdout}");
        stderr
    };
    const TIMING: &str = "tuning GPU kernels: timing every kernel";
    let first = info();
    assert!(first.contains(TIMING), "{first}");
    let entries = |path: &PathBuf| {
        let text = std::fs::read_to_string(path).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        json["entries"].as_array().unwrap().clone()
    };
    let stored = entries(&store);
    assert!(stored.len() >= 20, "{stored:?}");
    let second = info();
    assert!(!second.contains(TIMING), "{second}");
    assert!(!second.contains("warning"), "{second}");

    std::fs::write(&store, "{\"entries\": [truncated").unwrap();
    let corrupt = info();
    assert_eq!(corrupt.matches("warning:").count(), 1, "{corrupt}");
    assert!(corrupt.contains("is not valid JSON"), "{corrupt}");
    assert!(corrupt.contains(TIMING), "{corrupt}");
    assert_eq!(entries(&store).len(), stored.len());

    let text = std::fs::read_to_string(&store).unwrap();
    let version = format!("\"version\": \"{}\"", env!("CARGO_PKG_VERSION"));
    std::fs::write(&store, text.replace(&version, "\"version\": \"0.0.0-old\"")).unwrap();
    let stale = info();
    assert_eq!(stale.matches("warning:").count(), 1, "{stale}");
    assert!(stale.contains("another xception-wgpu version"), "{stale}");
    assert!(stale.contains(TIMING), "{stale}");
    assert_eq!(
        entries(&store).len(),
        stored.len(),
        "stale entries are replaced"
    );
}

/// A reader that goes away (`| head`) ends the printing quietly: no panic, the usual exit
/// status, and the work goes on: the `--output` file holds every embedding and every overlay
/// is written.
#[test]
fn a_closed_pipe_ends_printing_quietly_and_output_files_are_still_written() {
    use std::io::Read;
    let dir = fresh_dir("closed-pipe");
    let npy = dir.join("embeddings.npy");
    let images: Vec<PathBuf> = samples().into_iter().cycle().take(18).collect();
    let overlays = dir.join("overlays");
    // explain refuses two images that would write the same overlay: the six photos once.
    let commands: [(Vec<String>, Vec<PathBuf>); 2] = [
        (
            vec!["embed".into(), "--output".into(), npy.display().to_string()],
            images,
        ),
        (
            vec![
                "explain".into(),
                "--output".into(),
                overlays.display().to_string(),
            ],
            samples(),
        ),
    ];
    for (args, images) in commands {
        let mut child = Command::new(env!("CARGO_BIN_EXE_xception"))
            .args(&args)
            .args(["--backend", "cpu"])
            .args(&images)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 10];
        stdout.read_exact(&mut first).unwrap();
        drop(stdout);
        let out = wait_within_limit(child, "xception");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let floats = 18 * 2048 * 4;
    let written = std::fs::metadata(&npy).unwrap().len() as usize;
    assert!(
        written > floats && written < floats + 256,
        "{written} bytes"
    );
    assert_eq!(std::fs::read_dir(&overlays).unwrap().count(), 6);
}

/// A size whose activations no machine holds is a usage error before any work (exit 2, naming
/// the size and the limit), where it used to abort on a 30 GB allocation.
#[test]
fn a_size_past_the_activation_limit_is_a_usage_error() {
    for size in ["100000", "2950", "99999999999999999999x100"] {
        let out = xception(&["classify", "--size", size], &samples()[..1]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--size {size}: {stderr}");
        assert!(stderr.contains("--size"), "{stderr}");
        assert!(!stderr.contains("memory allocation"), "{stderr}");
    }
    let out = xception(&["classify", "--size", "2950"], &samples()[..1]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("more than the 1 GiB allowed"));
}

/// `embed --output` keeps a row per image in input order, NaN where the image failed, and says
/// which row is which (the `.safetensors` metadata, or `FILE.npy.json` beside a `.npy`); a run
/// in which every image fails keeps an existing file; an output that cannot be written, a
/// head that is not `.safetensors` and zero epochs are usage errors before any work.
#[test]
fn output_files_keep_a_row_per_input_and_are_checked_before_any_work() {
    let dir = fresh_dir("rows");
    let empty = dir.join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    let inputs = [empty.clone(), samples()[0].clone()];
    let f32s = |bytes: &[u8]| -> Vec<f32> {
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    };

    let embed_to = |output: &PathBuf, images: &[PathBuf]| {
        xception(
            &[
                "embed",
                "--backend",
                "cpu",
                "--output",
                output.to_str().unwrap(),
            ],
            images,
        )
    };
    let npy = dir.join("two.npy");
    let out = embed_to(&npy, &inputs);
    assert_eq!(out.status.code(), Some(1), "one image failed");
    let bytes = std::fs::read(&npy).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert!(String::from_utf8_lossy(&bytes[..10 + header_len]).contains("(2, 2048,"));
    let values = f32s(&bytes[10 + header_len..]);
    assert!(
        values[..2048].iter().all(|v| v.is_nan()),
        "the failed row is NaN"
    );
    assert!(values[2048..].iter().all(|v| v.is_finite()));
    let rows: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("two.npy.json")).unwrap()).unwrap();
    assert_eq!(rows["ok"], serde_json::json!([false, true]));
    assert_eq!(rows["images"][0], empty.display().to_string());

    let st = dir.join("two.safetensors");
    let out = embed_to(&st, &inputs);
    assert_eq!(out.status.code(), Some(1));
    let bytes = std::fs::read(&st).unwrap();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = metadata.metadata().as_ref().unwrap();
    assert_eq!(metadata["ok"], "[false,true]");
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let values = f32s(file.tensor("embeddings").unwrap().data());
    assert!(values[0].is_nan() && values[2048].is_finite());

    // Every image failing keeps the good file that was there.
    let before = std::fs::read(&npy).unwrap();
    let out = embed_to(&npy, &[empty]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("was not written"));
    assert_eq!(std::fs::read(&npy).unwrap(), before);

    // Usage errors, before the model is even loaded.
    let photos = dir.join("photos");
    for label in ["cup", "fork"] {
        std::fs::create_dir_all(photos.join(label)).unwrap();
    }
    let photos = photos.to_str().unwrap();
    for (args, says) in [
        (vec!["embed", "--output", "/sys/x.npy"], "cannot be written"),
        (
            vec!["explain", "--output", "/sys/overlays"],
            "--output /sys/overlays",
        ),
        (
            vec!["fit", photos, "--output", "head.txt"],
            "written as .safetensors",
        ),
        (
            vec!["fit", photos, "--output", "h.safetensors", "--epochs", "0"],
            "--epochs must be at least 1",
        ),
    ] {
        let images: &[PathBuf] = if args[0] == "fit" {
            &[]
        } else {
            &samples()[..1]
        };
        let out = xception(&args, images);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// `bench` runs where every other command does by default (`auto`: on this machine's
/// software adapter, the CPU backend), and its table's columns line up with its header.
#[test]
fn bench_defaults_to_auto_and_aligns_its_columns() {
    let out = xception(&["bench", "--size", "80", "--runs", "1"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().take(2).collect();
    assert!(
        lines[1].starts_with("cpu ("),
        "auto prefers the CPU to a software adapter: {stdout}"
    );
    // Every header ends where its value does (numbers are right-aligned under their names).
    let header = lines[0];
    for name in ["size", "batch", "median ms", "GFLOP/s"] {
        let end = header.find(name).unwrap() + name.len();
        let value_end = lines[1][..end].trim_end().len();
        assert_eq!(value_end, end, "column {name} in\n{stdout}");
    }
}
