//! A small desktop window (eframe/egui on wgpu): drop a photo on it, or type a path and press
//! Open, and it shows the photo with its class probabilities; "Show heatmap" draws the
//! Grad-CAM heatmap of the top class over it. The model runs on the window's own wgpu
//! device: no second device is created. The model loads and runs on background threads, so
//! the window appears at once and stays responsive (a spinner shows while they work).
//!
//! ```sh
//! cargo run --release --example desktop -- samples/plate.jpg
//! ```

use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, TryRecvError};
use std::sync::Arc;

use eframe::egui;
use xception_wgpu::image::{DynamicImage, RgbImage};
use xception_wgpu::{preprocess, Prediction, Weights, Xception};

const WEIGHTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/weights/xception_kitchenware.safetensors"
);

/// What a background run of the model gives back for one photo.
struct Ran {
    path: PathBuf,
    rgb: RgbImage,
    result: Result<Vec<Prediction>, String>,
    overlay: Result<RgbImage, String>,
}

struct Shown {
    path: PathBuf,
    texture: egui::TextureHandle,
    /// The photo with the top class's Grad-CAM heatmap over it.
    heatmap: Result<egui::TextureHandle, String>,
    result: Result<Vec<Prediction>, String>,
}

/// The model, loaded on a thread of its own while the window is already up.
enum Model {
    Loading(Receiver<Result<Xception, String>>),
    Ready(Arc<Xception>),
    Failed(String),
}

struct App {
    model: Model,
    path_input: String,
    /// A photo waiting for the model to finish loading.
    queued: Option<PathBuf>,
    /// The run in progress, off the interface thread.
    running: Option<Receiver<Result<Ran, String>>>,
    shown: Option<Shown>,
    show_heatmap: bool,
    error: Option<String>,
}

impl App {
    fn new(cc: &eframe::CreationContext<'_>, initial: Option<PathBuf>) -> Self {
        let model = match &cc.wgpu_render_state {
            Some(rs) => {
                let (device, queue) = (rs.device.clone(), rs.queue.clone());
                let (send, receive) = channel();
                let ctx = cc.egui_ctx.clone();
                std::thread::spawn(move || {
                    let model = Weights::load(WEIGHTS)
                        .and_then(|w| Xception::with_device(w, device, queue))
                        .map_err(|e| e.to_string());
                    let _ = send.send(model);
                    ctx.request_repaint();
                });
                Model::Loading(receive)
            }
            None => Model::Failed("eframe is not running on wgpu".to_string()),
        };
        Self {
            model,
            path_input: initial
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            queued: initial,
            running: None,
            shown: None,
            show_heatmap: false,
            error: None,
        }
    }

    /// Classifies and explains `path` on a background thread (once the model is loaded).
    fn open(&mut self, ctx: &egui::Context, path: &Path) {
        if path.as_os_str().is_empty() {
            self.error = Some("Type the path of a photo, or drop one on the window.".into());
            self.shown = None;
            return;
        }
        let model = match &self.model {
            Model::Ready(model) => model.clone(),
            Model::Loading(_) => {
                self.queued = Some(path.to_path_buf());
                return;
            }
            Model::Failed(_) => return,
        };
        let (send, receive) = channel();
        let (ctx, path) = (ctx.clone(), path.to_path_buf());
        std::thread::spawn(move || {
            let _ = send.send(run(&model, path));
            ctx.request_repaint();
        });
        self.running = Some(receive);
    }

    /// Takes what the background threads have finished: the model, then a run.
    fn collect(&mut self, ctx: &egui::Context) {
        if let Model::Loading(receive) = &self.model {
            let loaded = match receive.try_recv() {
                Err(TryRecvError::Empty) => None,
                Ok(loaded) => Some(loaded),
                Err(TryRecvError::Disconnected) => Some(Err("the loading thread stopped".into())),
            };
            if let Some(loaded) = loaded {
                self.model = match loaded {
                    Ok(model) => Model::Ready(Arc::new(model)),
                    Err(e) => Model::Failed(e),
                };
                if let Some(path) = self.queued.take() {
                    self.open(ctx, &path);
                }
            }
        }
        let ran = match self.running.as_ref().map(Receiver::try_recv) {
            None | Some(Err(TryRecvError::Empty)) => return,
            Some(Ok(ran)) => ran,
            Some(Err(TryRecvError::Disconnected)) => Err("the run stopped".to_string()),
        };
        self.running = None;
        // A new result or error replaces the old one.
        match ran {
            Err(e) => {
                self.error = Some(e);
                self.shown = None;
            }
            Ok(ran) => {
                let name = ran.path.display().to_string();
                let texture = |name: String, rgb: &RgbImage| {
                    let size = [rgb.width() as usize, rgb.height() as usize];
                    let pixels = egui::ColorImage::from_rgb(size, rgb.as_raw());
                    ctx.load_texture(name, pixels, Default::default())
                };
                self.error = None;
                self.shown = Some(Shown {
                    heatmap: ran
                        .overlay
                        .map(|overlay| texture(format!("{name} heatmap"), &overlay)),
                    texture: texture(name, &ran.rgb),
                    path: ran.path,
                    result: ran.result,
                });
            }
        }
    }
}

/// Decodes `path`, then classifies it and draws its Grad-CAM overlay.
fn run(model: &Xception, path: PathBuf) -> Result<Ran, String> {
    let rgb = preprocess::decode(&path).map_err(|e| e.to_string())?;
    let image = DynamicImage::ImageRgb8(rgb.clone());
    let k = model.info().num_classes().min(5);
    let result = model
        .classify(std::slice::from_ref(&image), k)
        .map(|mut all| all.remove(0))
        .map_err(|e| e.to_string());
    let overlay = model
        .explain(&image, None)
        .map(|heatmap| heatmap.overlay(&rgb))
        .map_err(|e| e.to_string());
    Ok(Ran {
        path,
        rgb,
        result,
        overlay,
    })
}

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        self.collect(&ctx);
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        if let Some(path) = dropped.into_iter().next() {
            self.path_input = path.display().to_string();
            self.open(&ctx, &path);
        }
        egui::Panel::top("open").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.label("Photo:");
                let edit = ui.text_edit_singleline(&mut self.path_input);
                let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                if ui.button("Open").clicked() || enter {
                    let path = PathBuf::from(self.path_input.trim());
                    self.open(&ctx, &path);
                }
                ui.checkbox(&mut self.show_heatmap, "Show heatmap");
            });
        });
        egui::CentralPanel::default().show(ui, |ui| {
            match &self.model {
                Model::Failed(e) => {
                    ui.colored_label(egui::Color32::RED, format!("cannot load the model: {e}"));
                    return;
                }
                Model::Loading(_) => {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label("loading the model...");
                    });
                }
                Model::Ready(model) => {
                    ui.weak(format!("Xception on {}", model.backend_description()));
                }
            };
            if self.running.is_some() {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("running...");
                });
            }
            if let Some(error) = &self.error {
                ui.colored_label(egui::Color32::RED, error);
            }
            let Some(shown) = &self.shown else {
                ui.heading("Drop a photo here, or type its path and press Open.");
                return;
            };
            ui.horizontal_top(|ui| {
                let photo = match (&shown.heatmap, self.show_heatmap) {
                    (Ok(heatmap), true) => heatmap,
                    _ => &shown.texture,
                };
                ui.add(egui::Image::new(photo).max_size(egui::vec2(360.0, 360.0)));
                ui.vertical(|ui| {
                    ui.strong(shown.path.display().to_string());
                    match &shown.result {
                        Ok(predictions) => {
                            for p in predictions {
                                ui.horizontal(|ui| {
                                    ui.add_sized([70.0, 18.0], egui::Label::new(&p.label));
                                    ui.add(
                                        egui::ProgressBar::new(p.probability)
                                            .desired_width(200.0)
                                            .text(format!("{:.1}%", p.probability * 100.0)),
                                    );
                                });
                            }
                        }
                        Err(e) => {
                            ui.colored_label(egui::Color32::RED, e);
                        }
                    }
                    if let (Err(e), true) = (&shown.heatmap, self.show_heatmap) {
                        ui.colored_label(egui::Color32::RED, format!("no heatmap: {e}"));
                    }
                });
            });
        });
    }
}

fn main() -> eframe::Result {
    let initial = std::env::args().nth(1).map(PathBuf::from);
    let options = eframe::NativeOptions {
        renderer: eframe::Renderer::Wgpu,
        viewport: egui::ViewportBuilder::default()
            .with_inner_size([720.0, 460.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native(
        "Xception",
        options,
        Box::new(|cc| Ok(Box::new(App::new(cc, initial)))),
    )
}
