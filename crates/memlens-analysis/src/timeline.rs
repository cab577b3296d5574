//! Heap, RSS and the top sites' live bytes over time, for charts (`memlens plot`, and any
//! later view that embeds the same data).
//!
//! The window is cut into a fixed number of buckets; each series keeps, per bucket, the
//! **highest** value it had during the bucket (so a short spike is never lost), whatever
//! the length of the trace: memory is `buckets x (2 + sites)` numbers plus the replay.
//! Two streaming passes: the first picks the sites to follow (the `sites` highest by their
//! own peak of live bytes in the window), unless the caller names them; the second fills
//! the buckets.

use crate::replay::{Block, HeapObserver, Release, Replay, SiteKey};
use crate::site::ReportedEvents;
use crate::site::{run_end_ns, Progress};
use crate::window::{Window, WindowSpec};
use crate::Error;
use memlens_trace::reader::{Event, TraceReader};
use std::collections::HashMap;

/// What to draw.
#[derive(Clone, Debug)]
pub struct TimelineOptions {
    /// Buckets the window is cut into (at least 1).
    pub buckets: usize,
    /// How many sites to follow, when `follow` is `None`.
    pub sites: usize,
    /// Follow these sites instead of picking the top ones.
    pub follow: Option<Vec<SiteKey>>,
    pub window: WindowSpec,
}

impl Default for TimelineOptions {
    fn default() -> Self {
        TimelineOptions {
            buckets: 500,
            sites: 5,
            follow: None,
            window: WindowSpec::default(),
        }
    }
}

/// One followed site's live bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteSeries {
    pub site: SiteKey,
    /// Its highest live bytes in the window.
    pub peak_bytes: u64,
    /// Highest live bytes in each bucket.
    pub values: Vec<u64>,
}

/// The series of a window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeline {
    pub window: Window,
    /// Start of each bucket, ns since the trace started; bucket `i` ends where `i + 1`
    /// starts, the last one at the window's end.
    pub times_ns: Vec<u64>,
    /// Highest live heap (requested bytes) in each bucket.
    pub heap: Vec<u64>,
    /// Highest RSS sample in each bucket (`None`: no sample in it).
    pub rss: Vec<Option<u64>>,
    /// Followed sites, highest peak first.
    pub sites: Vec<SiteSeries>,
}

/// Live bytes of the followed sites (or of all sites, in the first pass).
#[derive(Default)]
struct SiteLive {
    /// Site -> (live bytes, highest live bytes in the window, series index).
    live: HashMap<SiteKey, (u64, u64, usize)>,
    /// Only these sites (second pass).
    only: bool,
    in_window: bool,
    /// Sites changed by the current event.
    changed: Vec<SiteKey>,
}

impl SiteLive {
    fn change(&mut self, site: SiteKey, add: bool, size: u64) {
        let e = match self.live.get_mut(&site) {
            Some(e) => e,
            None if self.only => return,
            None => self.live.entry(site).or_insert((0, 0, 0)),
        };
        e.0 = if add {
            e.0.saturating_add(size)
        } else {
            e.0.saturating_sub(size)
        };
        if self.in_window {
            e.1 = e.1.max(e.0);
        }
        if self.only {
            self.changed.push(site);
        }
    }
}

impl HeapObserver for SiteLive {
    fn added(&mut self, _addr: u64, b: &Block) -> u32 {
        self.change(b.site, true, b.size);
        0
    }
    fn removed(&mut self, _addr: u64, b: &Block, _why: Release) {
        self.change(b.site, false, b.size);
    }
}

impl Timeline {
    /// Build the series of a trace's window.
    pub fn build(
        reader: &TraceReader,
        opts: &TimelineOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Timeline, Error> {
        let metadata = reader.metadata()?;
        let run_end = run_end_ns(reader, &metadata);
        let win = opts.window.resolve(run_end).map_err(Error::Window)?;
        let buckets = opts.buckets.max(1);

        // Pass 1: the sites to follow.
        let follow: Vec<SiteKey> = match &opts.follow {
            Some(f) => f.clone(),
            None => {
                let mut obs = SiteLive::default();
                replay_window(reader, &metadata, win, 1, progress, &mut obs, &mut ())?;
                let mut all: Vec<(SiteKey, u64)> =
                    obs.live.iter().map(|(k, v)| (*k, v.1)).collect();
                all.retain(|s| s.1 > 0);
                all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                all.into_iter().take(opts.sites).map(|s| s.0).collect()
            }
        };

        // Pass 2: the buckets.
        let mut obs = SiteLive {
            only: true,
            ..SiteLive::default()
        };
        for (i, k) in follow.iter().enumerate() {
            obs.live.insert(*k, (0, 0, i));
        }
        let mut fill = Fill {
            win,
            buckets,
            current: 0,
            heap: vec![0; buckets],
            rss: vec![None; buckets],
            series: vec![vec![0; buckets]; follow.len()],
        };
        replay_window(reader, &metadata, win, 2, progress, &mut obs, &mut fill)?;
        let mut sites: Vec<SiteSeries> = follow
            .iter()
            .enumerate()
            .map(|(i, k)| SiteSeries {
                site: *k,
                peak_bytes: obs.live.get(k).map_or(0, |v| v.1),
                values: std::mem::take(&mut fill.series[i]),
            })
            .collect();
        sites.sort_by(|a, b| b.peak_bytes.cmp(&a.peak_bytes).then(a.site.cmp(&b.site)));
        let span = win.span_ns() as u128;
        let times_ns = (0..buckets)
            .map(|i| win.from_ns + (span * i as u128 / buckets as u128) as u64)
            .collect();
        Ok(Timeline {
            window: win,
            times_ns,
            heap: fill.heap,
            rss: fill.rss,
            sites,
        })
    }
}

/// What a pass does with the events of the window.
trait Sink {
    /// The window starts (before its first event, or at the end if it has none).
    fn enter(&mut self, _obs: &SiteLive, _replay: &Replay) {}
    /// Before an event of the window is applied.
    fn before(&mut self, _obs: &SiteLive, _replay: &Replay, _ev: &Event) {}
    /// After it was applied; `obs.changed` names the followed sites it changed.
    fn after(&mut self, _obs: &SiteLive, _replay: &Replay, _ev: &Event) {}
    /// After the window's last event.
    fn finish(&mut self, _obs: &SiteLive, _replay: &Replay) {}
}

impl Sink for () {}

/// The second pass: highest values per bucket.
struct Fill {
    win: Window,
    buckets: usize,
    current: usize,
    heap: Vec<u64>,
    rss: Vec<Option<u64>>,
    series: Vec<Vec<u64>>,
}

impl Fill {
    fn bucket_of(&self, ts: u64) -> usize {
        let span = self.win.span_ns().max(1) as u128;
        let off = ts.saturating_sub(self.win.from_ns) as u128;
        ((off * self.buckets as u128 / span) as usize).min(self.buckets - 1)
    }

    /// Buckets up to `b` start with what is live now.
    fn advance(&mut self, obs: &SiteLive, replay: &Replay, b: usize) {
        for k in self.current + 1..=b {
            self.heap[k] = replay.live_bytes();
            for &(live, _, i) in obs.live.values() {
                self.series[i][k] = live;
            }
        }
        self.current = self.current.max(b);
    }
}

impl Sink for Fill {
    fn enter(&mut self, obs: &SiteLive, replay: &Replay) {
        self.heap[0] = replay.live_bytes();
        for &(live, _, i) in obs.live.values() {
            self.series[i][0] = live;
        }
    }
    fn before(&mut self, obs: &SiteLive, replay: &Replay, ev: &Event) {
        let b = self.bucket_of(ev.ts());
        self.advance(obs, replay, b);
    }
    fn after(&mut self, obs: &SiteLive, replay: &Replay, ev: &Event) {
        let b = self.current;
        self.heap[b] = self.heap[b].max(replay.live_bytes());
        if let Event::Rss { bytes, .. } = *ev {
            self.rss[b] = Some(self.rss[b].map_or(bytes, |r| r.max(bytes)));
        }
        for site in &obs.changed {
            if let Some(&(live, _, i)) = obs.live.get(site) {
                self.series[i][b] = self.series[i][b].max(live);
            }
        }
    }
    fn finish(&mut self, obs: &SiteLive, replay: &Replay) {
        self.advance(obs, replay, self.buckets - 1);
    }
}

/// Replay the trace up to the window's end, telling `sink` about the window's events.
fn replay_window(
    reader: &TraceReader,
    metadata: &memlens_trace::reader::Metadata,
    win: Window,
    pass: u8,
    progress: &mut dyn FnMut(Progress),
    obs: &mut SiteLive,
    sink: &mut dyn Sink,
) -> Result<(), Error> {
    let mut replay = Replay::for_trace(reader);
    let mut entered = false;
    let mut events = ReportedEvents::new(reader, metadata, pass, progress);
    while let Some(ev) = events.next_for(&replay) {
        let ev = ev?;
        let ts = ev.ts();
        if ts > win.to_ns {
            break;
        }
        if !entered && ts >= win.from_ns {
            entered = true;
            obs.in_window = true;
            sink.enter(obs, &replay);
        }
        if entered {
            sink.before(obs, &replay, &ev);
        }
        replay.apply(&ev, obs);
        if entered {
            sink.after(obs, &replay, &ev);
        }
        obs.changed.clear();
    }
    if !entered {
        obs.in_window = true;
        sink.enter(obs, &replay);
    }
    sink.finish(obs, &replay);
    Ok(())
}
