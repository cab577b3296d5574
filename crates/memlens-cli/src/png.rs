//! PNG charts: the SVG memlens draws (`plot`, `watch --plot`), rasterized in-process with
//! resvg, text set in the system's fonts.

use resvg::{tiny_skia, usvg};
use std::path::Path;

/// Whether `path` asks for a PNG (by its extension, any case).
pub fn wants_png(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"))
}

/// The PNG of an SVG document, at the SVG's own size. `Err` is one sentence.
pub fn from_svg(svg: &str) -> Result<Vec<u8>, String> {
    let mut opt = usvg::Options::default();
    let db = opt.fontdb_mut();
    db.load_system_fonts();
    if db.is_empty() {
        return Err(
            "no fonts for the chart's text (install fonts-dejavu-core), or write an .svg"
                .to_string(),
        );
    }
    // The charts ask for "sans-serif", which fontdb maps to Arial unless told: take the
    // first common sans family installed, or any family at all.
    let installed = |name: &str| {
        db.faces()
            .any(|f| f.families.iter().any(|(n, _)| n == name))
    };
    let family = [
        "DejaVu Sans",
        "Liberation Sans",
        "Noto Sans",
        "FreeSans",
        "Arial",
    ]
    .into_iter()
    .find(|n| installed(n))
    .map(str::to_string)
    .or_else(|| {
        db.faces()
            .find_map(|f| f.families.first().map(|(n, _)| n.clone()))
    });
    if let Some(family) = family {
        db.set_sans_serif_family(family);
    }
    let tree = usvg::Tree::from_str(svg, &opt)
        .map_err(|e| format!("cannot draw the chart as PNG: {e}"))?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| "cannot draw the chart as PNG: it has no area".to_string())?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap
        .encode_png()
        .map_err(|e| format!("cannot encode the chart as PNG: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_svg_becomes_a_png_of_its_size() {
        let svg = r##"<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect x="0" y="0" width="20" height="20" fill="#ff0000"/><text x="22" y="15" font-size="10" font-family="sans-serif">a</text></svg>"##;
        let png = from_svg(svg).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR: width and height, big-endian, right after the 8-byte signature and the
        // chunk's length and type.
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 40);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 20);
        assert!(from_svg("<svg").is_err());
        assert!(wants_png(Path::new("a/chart.PNG")));
        assert!(!wants_png(Path::new("chart.svg")));
    }
}
