//! Download progress: a bar per file on a terminal, a line per file otherwise.

use std::io::IsTerminal;
use std::time::Instant;

use hf_hub::api::Progress;

/// Download progress: a bar on a terminal, a line per file otherwise.
pub(crate) struct DownloadReport {
    label: String,
    bar: Option<indicatif::ProgressBar>,
    size: usize,
    started: Instant,
    announced: bool,
}

impl DownloadReport {
    pub(crate) fn new(repo: &str, file: &str) -> Self {
        let bar = std::io::stderr()
            .is_terminal()
            .then(|| indicatif::ProgressBar::new(0));
        DownloadReport {
            label: format!("{repo}/{file}"),
            bar,
            size: 0,
            started: Instant::now(),
            announced: false,
        }
    }
}

fn megabytes(bytes: usize) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

impl Progress for DownloadReport {
    fn init(&mut self, size: usize, _filename: &str) {
        self.size = size;
        match &mut self.bar {
            Some(bar) => Progress::init(bar, size, &self.label),
            None if !self.announced => {
                eprintln!("downloading {} ({})", self.label, megabytes(size));
                self.announced = true;
            }
            None => {}
        }
    }

    fn update(&mut self, size: usize) {
        if let Some(bar) = &mut self.bar {
            Progress::update(bar, size);
        }
    }

    fn finish(&mut self) {
        match &mut self.bar {
            Some(bar) => Progress::finish(bar),
            None => eprintln!(
                "downloaded {} ({}) in {:.1} s",
                self.label,
                megabytes(self.size),
                self.started.elapsed().as_secs_f64()
            ),
        }
    }
}
