//! A small desktop window (eframe/egui on wgpu): drop a photo on it, or type a path and press
//! Open, and it shows the photo with its class probabilities; "Show heatmap" draws the
//! Grad-CAM heatmap of the top class over it. The model runs on the window's own wgpu
//! device: no second device is created.
//!
//! ```sh
//! cargo run --release --example desktop -- samples/plate.jpg
//! ```

use std::path::{Path, PathBuf};

use eframe::egui;
use xception_wgpu::image::DynamicImage;
use xception_wgpu::{preprocess, Prediction, Weights, Xception};

const WEIGHTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/weights/xception_kitchenware.safetensors"
);

struct Shown {
    path: PathBuf,
    texture: egui::TextureHandle,
    /// The photo with the top class's Grad-CAM heatmap over it.
    heatmap: Result<egui::TextureHandle, String>,
    result: Result<Vec<Prediction>, String>,
}

struct App {
    model: Result<Xception, String>,
    path_input: String,
    shown: Option<Shown>,
    show_heatmap: bool,
    error: Option<String>,
}

impl App {
    fn new(cc: &eframe::CreationContext<'_>, initial: Option<PathBuf>) -> Self {
        let model = match &cc.wgpu_render_state {
            Some(rs) => Weights::load(WEIGHTS)
                .and_then(|w| Xception::with_device(w, rs.device.clone(), rs.queue.clone()))
                .map_err(|e| e.to_string()),
            None => Err("eframe is not running on wgpu".to_string()),
        };
        let mut app = Self {
            model,
            path_input: initial
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            shown: None,
            show_heatmap: false,
            error: None,
        };
        if let Some(path) = initial {
            app.open(&cc.egui_ctx, &path);
        }
        app
    }

    fn open(&mut self, ctx: &egui::Context, path: &Path) {
        let Ok(model) = &self.model else { return };
        if path.as_os_str().is_empty() {
            self.error = Some("Type the path of a photo, or drop one on the window.".into());
            self.shown = None;
            return;
        }
        // A new result or error replaces the old one.
        let rgb = match preprocess::decode(path) {
            Ok(rgb) => rgb,
            Err(e) => {
                self.error = Some(e.to_string());
                self.shown = None;
                return;
            }
        };
        let size = [rgb.width() as usize, rgb.height() as usize];
        let name = path.display().to_string();
        let texture = |name: String, rgb: &xception_wgpu::image::RgbImage| {
            let pixels = egui::ColorImage::from_rgb(size, rgb.as_raw());
            ctx.load_texture(name, pixels, Default::default())
        };
        let image = DynamicImage::ImageRgb8(rgb.clone());
        let k = model.info().num_classes().min(5);
        let result = model
            .classify(std::slice::from_ref(&image), k)
            .map(|mut all| all.remove(0))
            .map_err(|e| e.to_string());
        let heatmap = model
            .explain(&image, None)
            .map(|heatmap| texture(format!("{name} heatmap"), &heatmap.overlay(&rgb)))
            .map_err(|e| e.to_string());
        self.error = None;
        self.shown = Some(Shown {
            path: path.to_path_buf(),
            texture: texture(name, &rgb),
            heatmap,
            result,
        });
    }
}

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
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
                Err(e) => {
                    ui.colored_label(egui::Color32::RED, format!("cannot load the model: {e}"));
                    return;
                }
                Ok(model) => ui.weak(format!("Xception on {}", model.backend_description())),
            };
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
