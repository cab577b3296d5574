//! Reading a budget file: TOML with every value's span, so each mistake names its line.

use super::*;

/// 1-based line of a byte offset.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&c| c == b'\n')
        .count()
        + 1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) no_alloc: Option<Spanned<Patterns>>,
    pub(super) process: Option<Spanned<RawSection>>,
    #[serde(default)]
    pub(super) component: BTreeMap<String, Spanned<RawSection>>,
}

/// A table of limits (and, for a component, its matchers). The limit fields are the keys
/// of [`METRICS`]: `limits` lists them in the same order.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSection {
    pub(super) threads: Option<Spanned<Patterns>>,
    pub(super) modules: Option<Spanned<Patterns>>,
    pub(super) functions: Option<Spanned<Patterns>>,
    pub(super) regions: Option<Spanned<Patterns>>,
    /// Only to say where `no_alloc` belongs.
    pub(super) no_alloc: Option<Spanned<Patterns>>,
    pub(super) peak: Option<Spanned<RawValue>>,
    pub(super) live_at_exit: Option<Spanned<RawValue>>,
    pub(super) leaked: Option<Spanned<RawValue>>,
    pub(super) definitely_lost: Option<Spanned<RawValue>>,
    pub(super) indirectly_lost: Option<Spanned<RawValue>>,
    pub(super) possibly_lost: Option<Spanned<RawValue>>,
    pub(super) still_reachable: Option<Spanned<RawValue>>,
    pub(super) allocations: Option<Spanned<RawValue>>,
    pub(super) allocated: Option<Spanned<RawValue>>,
    pub(super) alloc_rate: Option<Spanned<RawValue>>,
}

impl RawSection {
    pub(super) fn matcher_spans(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        [
            ("threads", &self.threads),
            ("modules", &self.modules),
            ("functions", &self.functions),
            ("regions", &self.regions),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v.span())))
        .collect()
    }

    pub(super) fn limits(
        &self,
        text: &str,
        err: &dyn Fn(Option<std::ops::Range<usize>>, String) -> ParseError,
    ) -> Result<Vec<Limit>, ParseError> {
        let fields = [
            &self.peak,
            &self.live_at_exit,
            &self.leaked,
            &self.definitely_lost,
            &self.indirectly_lost,
            &self.possibly_lost,
            &self.still_reachable,
            &self.allocations,
            &self.allocated,
            &self.alloc_rate,
        ];
        debug_assert_eq!(fields.len(), METRICS.len());
        let mut out = Vec::new();
        for (metric, field) in METRICS.iter().zip(fields) {
            let Some(v) = field else { continue };
            let max = v
                .get_ref()
                .value(metric.unit)
                .map_err(|m| err(Some(v.span()), format!("`{}`: {m}", metric.key)))?;
            out.push(Limit {
                metric,
                max,
                line: line_of(text, v.span().start),
            });
        }
        Ok(out)
    }
}

/// A pattern or a list of them.
pub(super) struct Patterns(pub(super) Vec<String>);

impl<'de> Deserialize<'de> for Patterns {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Patterns;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a pattern (\"audio*\") or a list of patterns ([\"audio*\", \"mixer\"])",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Patterns, E> {
                if v.is_empty() {
                    return Err(E::custom("an empty pattern matches nothing"));
                }
                Ok(Patterns(vec![v.to_string()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Patterns, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = a.next_element::<String>()? {
                    if s.is_empty() {
                        return Err(de::Error::custom("an empty pattern matches nothing"));
                    }
                    out.push(s);
                }
                Ok(Patterns(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A limit as written: a number, or a string with a unit.
pub(super) enum RawValue {
    Int(i64),
    Float(f64),
    Str(String),
}

impl RawValue {
    pub(super) fn value(&self, unit: Unit) -> Result<u64, String> {
        use memlens_common::units::{parse_rate, parse_size};
        match (self, unit) {
            (RawValue::Int(n), _) if *n < 0 => Err(format!("{n} is negative")),
            (RawValue::Int(n), _) => Ok(*n as u64),
            (RawValue::Float(_), Unit::Count) => {
                Err("a number of allocations is a whole number".into())
            }
            (RawValue::Float(x), _) if !(0.0..1.8e19).contains(x) => {
                Err(format!("{x} is out of range"))
            }
            (RawValue::Float(x), Unit::Bytes) if x.fract() != 0.0 => Err(format!(
                "{x} bytes: a number of bytes is a whole number (with a unit, as a string: \"{x}MiB\")"
            )),
            (RawValue::Float(x), _) => Ok(x.round() as u64),
            (RawValue::Str(s), Unit::Bytes) => parse_size(s),
            (RawValue::Str(s), Unit::BytesPerSec) => parse_rate(s).map(|r| r.round() as u64),
            (RawValue::Str(s), Unit::Count) => s
                .replace('_', "")
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("'{s}' is not a number of allocations")),
        }
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a string with a unit (\"64 MiB\", \"10 MiB/s\")")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawValue, E> {
                Ok(RawValue::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValue, E> {
                Ok(RawValue::Int(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawValue, E> {
                Ok(RawValue::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawValue, E> {
                Ok(RawValue::Str(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}
