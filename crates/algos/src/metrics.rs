//! Metrics: one JSON line per step (`metrics.jsonl`), and PNG line plots drawn with plotters.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::AlgoError;

/// One metrics record: named numbers (`step`, `loss`, `rewards/accuracies`, `dev/loss`, ...).
pub type MetricsRecord = BTreeMap<String, f64>;

/// An append-only JSON-lines file of records, flushed after every record.
pub struct JsonlLog<T> {
    path: PathBuf,
    file: File,
    records: Vec<T>,
}

/// The per-step metrics of a run (`metrics.jsonl`).
pub type MetricsLog = JsonlLog<MetricsRecord>;

impl<T: Serialize + DeserializeOwned> JsonlLog<T> {
    /// Starts `path` afresh.
    pub fn create(path: &Path) -> Result<Self, AlgoError> {
        let file = File::create(path).map_err(|e| AlgoError::io(path, e))?;
        Ok(JsonlLog {
            path: path.to_path_buf(),
            file,
            records: Vec::new(),
        })
    }

    /// Reopens `path` keeping its first `keep` lines byte for byte and dropping the rest (a
    /// resumed run's log then reads as if the run had never stopped). A missing file starts
    /// empty.
    pub fn resume(path: &Path, keep: usize) -> Result<Self, AlgoError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(AlgoError::io(path, e)),
        };
        let mut records = Vec::new();
        let mut kept_bytes = 0;
        for line in text.split_inclusive('\n').take(keep) {
            let record = serde_json::from_str(line.trim_end()).map_err(|e| {
                AlgoError::Config(format!(
                    "{} line {}: {e}",
                    path.display(),
                    records.len() + 1
                ))
            })?;
            records.push(record);
            kept_bytes += line.len();
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| AlgoError::io(path, e))?;
        file.set_len(kept_bytes as u64)
            .map_err(|e| AlgoError::io(path, e))?;
        Ok(JsonlLog {
            path: path.to_path_buf(),
            file,
            records,
        })
    }

    /// Appends and flushes one record.
    pub fn append(&mut self, record: T) -> Result<(), AlgoError> {
        let line = serde_json::to_string(&record).expect("json");
        writeln!(self.file, "{line}").map_err(|e| AlgoError::io(&self.path, e))?;
        self.file
            .flush()
            .map_err(|e| AlgoError::io(&self.path, e))?;
        self.records.push(record);
        Ok(())
    }

    /// Everything logged so far.
    pub fn records(&self) -> &[T] {
        &self.records
    }
}

const FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");

fn ensure_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The embedded DejaVu Sans Mono (Bitstream Vera license, assets/LICENSE-DejaVu.txt).
        let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// One line of a plot.
pub struct Series<'a> {
    /// Legend label.
    pub label: &'a str,
    /// `(x, y)` points, joined by a line.
    pub points: Vec<(f64, f64)>,
    /// `(x, y)` points drawn as small unjoined rings in the same colour (e.g. each seed of a
    /// point that is their mean); often empty.
    pub cloud: Vec<(f64, f64)>,
}

/// Draws `series` as lines into a PNG at `path`.
pub fn line_plot(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<'_>],
) -> Result<(), AlgoError> {
    ensure_font();
    let points: Vec<&(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().chain(&s.cloud))
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if points.is_empty() {
        return Ok(());
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &&(x, y) in &points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style(("sans-serif", 14))
            .draw()?;
        let palette = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
        for (i, s) in series.iter().enumerate() {
            let color = palette[i % palette.len()];
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    color.stroke_width(2),
                ))?
                .label(s.label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            if s.points.len() < 30 {
                chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            }
            let cloud = s
                .cloud
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite());
            chart.draw_series(cloud.map(|&p| Circle::new(p, 2, color.stroke_width(1))))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| AlgoError::io(path, std::io::Error::other(e.to_string())))
}

/// The `(step, value)` points of `key` in `records`.
pub fn points(records: &[MetricsRecord], key: &str) -> Vec<(f64, f64)> {
    records
        .iter()
        .filter_map(|r| Some((*r.get("step")?, *r.get(key)?)))
        .collect()
}

/// The plots every trainer writes at the end: `(metric, file stem)`.
pub const TRAINING_PLOTS: &[(&str, &str)] = &[
    ("loss", "loss"),
    ("rewards/accuracies", "reward_accuracy"),
    ("rewards/margins", "reward_margins"),
];

/// Plots each metric of `keys` (training curve and its `dev/` counterpart when logged) into
/// `<dir>/<name>.png`; returns the files written.
pub fn plot_training(
    records: &[MetricsRecord],
    dir: &Path,
    keys: &[(&str, &str)],
) -> Result<Vec<PathBuf>, AlgoError> {
    let mut written = Vec::new();
    for (key, name) in keys {
        let train = points(records, key);
        let dev = points(records, &format!("dev/{key}"));
        if train.is_empty() && dev.is_empty() {
            continue;
        }
        let path = dir.join(format!("{name}.png"));
        let series = [
            Series {
                label: "train",
                points: train,
                cloud: Vec::new(),
            },
            Series {
                label: "dev",
                points: dev,
                cloud: Vec::new(),
            },
        ];
        let series: Vec<Series<'_>> = series
            .into_iter()
            .filter(|s| !s.points.is_empty())
            .collect();
        line_plot(&path, key, "step", key, &series)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_resume_keeps_only_earlier_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::create(&path).unwrap();
        for step in 1..=5 {
            log.append(MetricsRecord::from([
                ("step".into(), step as f64),
                ("loss".into(), 1.0 / step as f64),
            ]))
            .unwrap();
        }
        let resumed = MetricsLog::resume(&path, 3).unwrap();
        assert_eq!(resumed.records().len(), 3);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
    }

    #[test]
    fn plots_are_png_files() {
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<MetricsRecord> = (1..=10)
            .map(|s| {
                MetricsRecord::from([("step".into(), s as f64), ("loss".into(), 1.0 / s as f64)])
            })
            .collect();
        let files = plot_training(
            &records,
            dir.path(),
            &[("loss", "loss"), ("absent", "absent")],
        )
        .unwrap();
        assert_eq!(files.len(), 1);
        let bytes = std::fs::read(&files[0]).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
}
