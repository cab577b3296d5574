//! Progress on a terminal: a bar on stderr fed by an analysis's [`Progress`] reports,
//! nothing when stderr is not a terminal.

use memlens_analysis::Progress;
use memlens_trace::reader::TraceReader;
use std::io::IsTerminal;

/// A progress bar on stderr when it is a terminal, fed by [`Progress`] reports; `messages`
/// names each pass. `None` when stderr is not a terminal.
pub struct Bar {
    bar: indicatif::ProgressBar,
    pass: u8,
    messages: &'static [&'static str],
}

impl Bar {
    pub fn new(reader: &TraceReader, messages: &'static [&'static str]) -> Option<Bar> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = indicatif::ProgressBar::new(reader.event_chunk_count() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg:>26} [{bar:40}] {percent:>3}%")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(messages.first().copied().unwrap_or(""));
        Some(Bar {
            bar,
            pass: 1,
            messages,
        })
    }

    pub fn update(&mut self, p: Progress) {
        if p.pass != self.pass {
            self.pass = p.pass;
            let i = (p.pass as usize).saturating_sub(1);
            let message = match self.messages.get(i) {
                Some(m) => m,
                None if p.pass == memlens_analysis::leaks::HEAP_ERRORS_PASS => "naming heap errors",
                None => "",
            };
            self.bar.set_message(message);
            self.bar.reset();
        }
        self.bar.set_position(p.chunks_done);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Run an analysis of `reader` that reports [`Progress`] (pass 1: the events; pass 3: the
/// leak check's replay), with a progress bar on stderr if it is a terminal.
pub fn with_progress<T>(
    reader: &TraceReader,
    analysis: impl FnOnce(&mut dyn FnMut(Progress)) -> T,
) -> T {
    let mut bar = Bar::new(
        reader,
        &["reading events", "reading events", "checking leaks"],
    );
    analysis(&mut |p| {
        if let Some(b) = bar.as_mut() {
            b.update(p)
        }
    })
}
