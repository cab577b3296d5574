//! A time window of the run: `--from` and `--to` as times since the trace started
//! (`1.5s`, `200ms`, `1m30s`) or as percentages of the run (`50%`).
//!
//! The run is `[0, end]`, `end` being the end record's time or, without one, the last
//! event's. A window `[from, to]` includes both ends. Times past the end are clamped to it
//! for `to`, and refused for `from`.

use memlens_common::units::human_duration;

/// One end of a window, as given.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TimePoint {
    /// Nanoseconds since the trace started.
    Ns(u64),
    /// Percent of the run, 0 to 100.
    Percent(f64),
}

impl TimePoint {
    /// Parse `1.5s`, `200ms`, `50us`, `10ns`, `2m`, `1h`, `1m30s` or `50%`. A number needs a
    /// unit. `Err` is a sentence about `s`.
    pub fn parse(s: &str) -> Result<TimePoint, String> {
        let t = s.trim();
        let bad = || format!("`{s}` is not a time in the run (examples: 1.5s, 200ms, 1m30s, 50%)");
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(0.0..=100.0).contains(&v) {
                return Err(format!("`{s}` is not a percentage of the run (0% to 100%)"));
            }
            return Ok(TimePoint::Percent(v));
        }
        if t.is_empty() {
            return Err(bad());
        }
        if t.parse::<f64>().is_ok() {
            return Err(format!("`{s}` has no unit (write {t}s, {t}ms or {t}%)"));
        }
        let ns = memlens_common::units::sum_of_parts(t, |u| {
            Some(match u {
                "ns" => 1.0,
                "us" | "µs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                "m" | "min" => 60e9,
                "h" => 3600e9,
                _ => return None,
            })
        })
        .ok_or_else(bad)?;
        if !ns.is_finite() || ns >= u64::MAX as f64 {
            return Err(bad());
        }
        Ok(TimePoint::Ns(ns.round() as u64))
    }

    /// The time in ns of a run that lasts `run_ns`.
    pub fn at(self, run_ns: u64) -> u64 {
        match self {
            TimePoint::Ns(ns) => ns,
            TimePoint::Percent(p) => (run_ns as f64 * p / 100.0).round() as u64,
        }
    }

    fn show(self, run_ns: u64) -> String {
        match self {
            TimePoint::Ns(ns) => human_duration(ns as f64 / 1e9),
            TimePoint::Percent(p) => {
                format!("{p}% ({})", human_duration(self.at(run_ns) as f64 / 1e9))
            }
        }
    }
}

/// The window asked for; `None` ends are the run's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowSpec {
    pub from: Option<TimePoint>,
    pub to: Option<TimePoint>,
    /// What errors call the two ends: the options they came from (`--from`, `--to`), or
    /// words for them when one option gives both (`memlens diff --before-window`).
    pub names: [&'static str; 2],
}

impl Default for WindowSpec {
    fn default() -> Self {
        WindowSpec {
            from: None,
            to: None,
            names: ["--from", "--to"],
        }
    }
}

/// A window resolved against a run: `[from_ns, to_ns]`, both included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub from_ns: u64,
    pub to_ns: u64,
    /// The whole run's end, for context.
    pub run_ns: u64,
}

impl Window {
    /// Whether this is the whole run.
    pub fn is_whole(&self) -> bool {
        self.from_ns == 0 && self.to_ns >= self.run_ns
    }
    pub fn span_ns(&self) -> u64 {
        self.to_ns - self.from_ns
    }
}

impl WindowSpec {
    pub fn is_whole(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }

    /// The window in a run of `run_ns`; `Err` is one sentence naming the ends as
    /// [`WindowSpec::names`] does.
    pub fn resolve(&self, run_ns: u64) -> Result<Window, String> {
        let [from_name, to_name] = self.names;
        let from = self.from.map_or(0, |p| p.at(run_ns));
        let to = self.to.map_or(run_ns, |p| p.at(run_ns)).min(run_ns);
        if let Some(f) = self.from {
            if from > run_ns || (from == run_ns && run_ns > 0) {
                return Err(format!(
                    "{from_name} {} is at or after the end of the run ({})",
                    f.show(run_ns),
                    human_duration(run_ns as f64 / 1e9)
                ));
            }
        }
        if from >= to && !(run_ns == 0 && self.to.is_none()) {
            return Err(match (self.from, self.to) {
                (Some(f), Some(t)) => format!(
                    "{from_name} {} is not before {to_name} {}: the window is empty",
                    f.show(run_ns),
                    t.show(run_ns)
                ),
                (_, Some(t)) => format!("{to_name} {} leaves an empty window", t.show(run_ns)),
                _ => "the window is empty".to_string(),
            });
        }
        Ok(Window {
            from_ns: from,
            to_ns: to,
            run_ns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        assert_eq!(TimePoint::parse("1.5s"), Ok(TimePoint::Ns(1_500_000_000)));
        assert_eq!(TimePoint::parse("200ms"), Ok(TimePoint::Ns(200_000_000)));
        assert_eq!(
            TimePoint::parse("12.345678ms"),
            Ok(TimePoint::Ns(12_345_678))
        );
        assert_eq!(TimePoint::parse("1m30s"), Ok(TimePoint::Ns(90_000_000_000)));
        assert_eq!(TimePoint::parse("250us"), Ok(TimePoint::Ns(250_000)));
        assert_eq!(TimePoint::parse("7ns"), Ok(TimePoint::Ns(7)));
        assert_eq!(TimePoint::parse("50%"), Ok(TimePoint::Percent(50.0)));
        assert_eq!(TimePoint::parse("0%"), Ok(TimePoint::Percent(0.0)));
        for bad in [
            "",
            "abc",
            "1.5",
            "150%",
            "-5%",
            "5 parsecs",
            "s",
            "1..2s",
            "-1s",
        ] {
            let e = TimePoint::parse(bad).unwrap_err();
            assert!(!e.contains('\n') && e.contains(bad), "{bad}: {e}");
        }
        assert!(TimePoint::parse("1.5").unwrap_err().contains("no unit"));
    }

    #[test]
    fn resolve() {
        let s = 1_000_000_000;
        let w = |from: Option<&str>, to: Option<&str>| {
            WindowSpec {
                from: from.map(|f| TimePoint::parse(f).unwrap()),
                to: to.map(|t| TimePoint::parse(t).unwrap()),
                ..Default::default()
            }
            .resolve(4 * s)
        };
        assert_eq!(
            w(None, None),
            Ok(Window {
                from_ns: 0,
                to_ns: 4 * s,
                run_ns: 4 * s
            })
        );
        assert!(w(None, None).unwrap().is_whole());
        let half = w(Some("50%"), Some("3s")).unwrap();
        assert_eq!((half.from_ns, half.to_ns), (2 * s, 3 * s));
        assert!(!half.is_whole());
        assert_eq!(w(None, Some("10s")).unwrap().to_ns, 4 * s);
        assert!(w(None, Some("10s")).unwrap().is_whole());
        let e = w(Some("5s"), None).unwrap_err();
        assert_eq!(e, "--from 5.0 s is at or after the end of the run (4.0 s)");
        let e = w(Some("3s"), Some("2s")).unwrap_err();
        assert_eq!(
            e,
            "--from 3.0 s is not before --to 2.0 s: the window is empty"
        );
        assert!(w(Some("100%"), None).is_err());
        assert!(w(None, Some("0%")).is_err());
        // An empty run is fine as a whole.
        assert!(WindowSpec::default().resolve(0).is_ok());
    }
}
