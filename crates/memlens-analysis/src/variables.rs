//! Where global variables are declared, from a module's DWARF.
//!
//! [`variable_sources`] lists every variable with a static address (`DW_TAG_variable`
//! whose `DW_AT_location` is exactly `DW_OP_addr ADDR`: globals, file-scope `static`s,
//! function-scope `static`s, C++ static data members) with the source file and line that
//! declare it; [`source_at`] finds the one that starts at an address. Thread-local
//! variables, locals and anything whose location is not a plain address are left out.
//!
//! The reading never fails: a file that cannot be read, has no DWARF, or has compressed
//! `.debug_*` sections gives an empty list, and a damaged unit is skipped (what was found
//! before the damage is kept).

use gimli::{AttributeValue, Reader};
use object::{Object, ObjectSection};
use std::borrow::Cow;
use std::path::Path;

/// A global (or static) variable's declaration, from DWARF: where its storage starts (the
/// module's virtual address, as in its symbol table) and the source file and line that
/// declare it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VariableSource {
    /// The variable's first byte: the module's virtual address (`DW_OP_addr`).
    pub addr: u64,
    /// The declaring file as the compiler was given it (`server.c`, `src/cache.c`, or an
    /// absolute path): relative paths stay relative to the compilation directory; empty
    /// when the DWARF does not say.
    pub file: String,
    /// The declaring line; 0 when unknown.
    pub line: u32,
}

impl VariableSource {
    /// `file:line` for a person; just `file` when the line is unknown (0), `?` for an
    /// unknown file.
    pub fn text(&self) -> String {
        let file = if self.file.is_empty() {
            "?"
        } else {
            &self.file
        };
        match self.line {
            0 => file.to_string(),
            line => format!("{file}:{line}"),
        }
    }
}

/// Every variable of the ELF file at `path` with a static address (DW_TAG_variable whose
/// DW_AT_location is exactly `DW_OP_addr ADDR`), sorted by address, one per address.
/// Empty when the file cannot be read or has no DWARF (never an error).
pub fn variable_sources(path: &Path) -> Vec<VariableSource> {
    let Ok(data) = std::fs::read(path) else {
        return Vec::new();
    };
    let Ok(file) = object::File::parse(&*data) else {
        return Vec::new();
    };
    let Some(sections) = load_sections(&file) else {
        return Vec::new();
    };
    let endian = if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, endian));

    let mut found = Vec::new();
    let mut units = dwarf.units();
    // A unit header that cannot be read ends the walk: the next one's offset is unknown.
    while let Ok(Some(header)) = units.next() {
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        read_unit(&dwarf, &unit, &mut found);
    }
    // Stable: of the entries at one address, the first in the DWARF stays.
    found.sort_by_key(|v| v.addr);
    found.dedup_by_key(|v| v.addr);
    found
}

/// The entry for the variable starting at `addr` (binary search in the sorted list).
pub fn source_at(sources: &[VariableSource], addr: u64) -> Option<&VariableSource> {
    sources
        .binary_search_by_key(&addr, |v| v.addr)
        .ok()
        .map(|i| &sources[i])
}

type Slice<'a> = gimli::EndianSlice<'a, gimli::RunTimeEndian>;

/// The DWARF sections of `file` (empty where absent); `None` if one of them cannot be
/// read, e.g. because it is compressed (the `object` crate is built without
/// decompression): the file is then treated as having no DWARF.
fn load_sections<'data>(
    file: &object::File<'data>,
) -> Option<gimli::DwarfSections<Cow<'data, [u8]>>> {
    gimli::DwarfSections::load(|id| -> Result<Cow<'data, [u8]>, ()> {
        match file.section_by_name(id.name()) {
            Some(section) => section.uncompressed_data().map_err(|_| ()),
            None => Ok(Cow::Borrowed(&[])),
        }
    })
    .ok()
}

/// Appends the statically allocated variables of `unit` to `out`; stops at the first
/// error inside the unit.
fn read_unit(
    dwarf: &gimli::Dwarf<Slice<'_>>,
    unit: &gimli::Unit<Slice<'_>>,
    out: &mut Vec<VariableSource>,
) {
    let mut entries = unit.entries();
    while let Ok(Some(entry)) = entries.next_dfs() {
        if entry.tag() != gimli::DW_TAG_variable {
            continue;
        }
        let Some(AttributeValue::Exprloc(expr)) = entry.attr_value(gimli::DW_AT_location) else {
            continue;
        };
        let Some(addr) = static_address(expr.0.slice(), expr.0.endian()) else {
            continue;
        };
        let (file_index, line) = declaration(unit, entry);
        let file = file_index
            .and_then(|index| file_name(dwarf, unit, index))
            .unwrap_or_default();
        out.push(VariableSource {
            addr,
            file,
            line: line.and_then(|l| u32::try_from(l).ok()).unwrap_or(0),
        });
    }
}

/// The address of an expression that is exactly `DW_OP_addr ADDR` (a 64-bit address, in
/// the file's byte order); `None` for anything else (TLS offsets, registers, frame
/// offsets, computed addresses), and for the addresses a linker leaves to variables it
/// discarded (0, and the -1/-2 tombstones).
fn static_address(expr: &[u8], endian: gimli::RunTimeEndian) -> Option<u64> {
    let (&op, rest) = expr.split_first()?;
    if op != gimli::DW_OP_addr.0 {
        return None;
    }
    let bytes: [u8; 8] = rest.try_into().ok()?;
    let addr = match endian {
        gimli::RunTimeEndian::Little => u64::from_le_bytes(bytes),
        gimli::RunTimeEndian::Big => u64::from_be_bytes(bytes),
    };
    (addr != 0 && addr < u64::MAX - 1).then_some(addr)
}

/// How many `DW_AT_specification` / `DW_AT_abstract_origin` links to follow for the
/// declaration (a cycle in damaged DWARF stops here).
const MAX_LINKS: usize = 8;

/// The `DW_AT_decl_file` index and `DW_AT_decl_line` of `entry`; each one missing is
/// taken from the DIE it refers to by `DW_AT_specification` or `DW_AT_abstract_origin`
/// (same unit), and so on. The defining DIE's own attributes win: GCC writes on the
/// definition only what differs from the declaration (e.g. the line of
/// `int g = 1;` after `extern int g;`, not the file).
fn declaration<'a>(
    unit: &gimli::Unit<Slice<'a>>,
    entry: &gimli::DebuggingInformationEntry<Slice<'a>>,
) -> (Option<u64>, Option<u64>) {
    let mut file = None;
    let mut line = None;
    let mut current = entry.clone();
    for _ in 0..=MAX_LINKS {
        if file.is_none() {
            file = current
                .attr_value(gimli::DW_AT_decl_file)
                .and_then(|v| match v {
                    AttributeValue::FileIndex(i) => Some(i),
                    other => other.udata_value(),
                });
        }
        if line.is_none() {
            line = current
                .attr_value(gimli::DW_AT_decl_line)
                .and_then(|v| v.udata_value());
        }
        if file.is_some() && line.is_some() {
            break;
        }
        let link = current
            .attr_value(gimli::DW_AT_specification)
            .or_else(|| current.attr_value(gimli::DW_AT_abstract_origin));
        let Some(AttributeValue::UnitRef(offset)) = link else {
            break;
        };
        match unit.entry(offset) {
            Ok(next) => current = next,
            Err(_) => break,
        }
    }
    (file, line)
}

/// The path of file `index` of the unit's line table as the compiler was given it:
/// `server.c`, `src/cache.c`, `/usr/include/stdio.h`. GCC splits a path into a
/// directory entry and a name (`src` + `cache.c`), so the directory is put back unless it
/// is the compilation directory (never joined: paths stay relative to it) or the name is
/// already absolute.
fn file_name(
    dwarf: &gimli::Dwarf<Slice<'_>>,
    unit: &gimli::Unit<Slice<'_>>,
    index: u64,
) -> Option<String> {
    let text = |value| -> Option<String> {
        let s = dwarf.attr_string(unit, value).ok()?;
        Some(s.to_string_lossy().into_owned())
    };
    let header = unit.line_program.as_ref()?.header();
    let entry = header.file(index)?;
    let name = text(entry.path_name())?;
    // Directory 0 is the compilation directory (DWARF 4: implicitly, DWARF 5: explicitly).
    if name.starts_with('/') || entry.directory_index() == 0 {
        return Some(name);
    }
    let Some(dir) = entry.directory(header).and_then(text) else {
        return Some(name);
    };
    let comp_dir = unit.comp_dir.map(|c| c.to_string_lossy().into_owned());
    if dir.is_empty() || dir == "." || comp_dir.as_deref() == Some(dir.as_str()) {
        return Some(name);
    }
    Some(format!("{}/{name}", dir.trim_end_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::ObjectSymbol;
    use std::path::PathBuf;
    use std::process::Command;

    const PROG_C: &str = r#"#include <stdio.h>

extern long g_other[10];
extern int g_spec;
int g_counter = 3;
static char *s_cache[4];
__thread int t_local = 5;
int g_spec = 7;

int main(void) {
    static int s_calls;
    s_calls++;
    s_cache[0] = "x";
    printf("%d %ld %s %d %d %d\n", g_counter, g_other[0], s_cache[0], s_calls, t_local,
           g_spec);
    return 0;
}
"#;
    const OTHER_C: &str = "/* other */\n\nlong g_other[10] = {1};\n";
    /// Compiled as `src/cache.c` (a relative path with a directory).
    const CACHE_C: &str = "int g_cache_hits;\n\n\nint g_cache_size = 64;\n";
    /// Compiled by its absolute path.
    const ABS_C: &str = "\nint g_abs = 1;\n";

    /// (symbol, file, line) of every variable the programs above declare at a static
    /// address. `g_spec`'s definition refers to its `extern` declaration (line 4) and
    /// carries only its own line.
    const EXPECTED: &[(&str, &str, u32)] = &[
        ("g_counter", "prog.c", 5),
        ("s_cache", "prog.c", 6),
        ("g_spec", "prog.c", 8),
        ("s_calls", "prog.c", 11),
        ("g_other", "other.c", 3),
        ("g_cache_hits", "src/cache.c", 1),
        ("g_cache_size", "src/cache.c", 4),
        // "{dir}": the test's directory.
        ("g_abs", "{dir}/abs/abs.c", 2),
    ];

    /// A fresh directory for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("memlens-variables-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test directory");
        dir
    }

    /// Builds `prog` from the sources above, in `dir`, with `flags`; returns its path.
    fn build(dir: &Path, flags: &[&str]) -> PathBuf {
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::create_dir_all(dir.join("abs")).unwrap();
        std::fs::write(dir.join("prog.c"), PROG_C).unwrap();
        std::fs::write(dir.join("other.c"), OTHER_C).unwrap();
        std::fs::write(dir.join("src/cache.c"), CACHE_C).unwrap();
        let abs = dir.join("abs/abs.c");
        std::fs::write(&abs, ABS_C).unwrap();
        let status = Command::new("gcc")
            .current_dir(dir)
            .args(flags)
            .args(["-O0", "-o", "prog", "prog.c", "other.c", "src/cache.c"])
            .arg(&abs)
            .status()
            .unwrap_or_else(|e| panic!("these tests need gcc, which cannot be run: {e}"));
        assert!(status.success(), "gcc {flags:?} failed");
        dir.join("prog")
    }

    /// The address of symbol `name` (a data symbol, possibly local, e.g. `s_calls.0`).
    fn symbol_addr(exe: &Path, name: &str) -> u64 {
        let data = std::fs::read(exe).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let found: Vec<u64> = file
            .symbols()
            .filter(|s| {
                s.name().is_ok_and(|n| {
                    n == name || n.strip_prefix(name).is_some_and(|r| r.starts_with('.'))
                })
            })
            .map(|s| s.address())
            .collect();
        assert_eq!(found.len(), 1, "symbol {name}: {found:?}");
        found[0]
    }

    fn check_program(flags: &[&str], name: &str) {
        let dir = scratch(name);
        let exe = build(&dir, flags);
        let sources = variable_sources(&exe);
        assert!(
            sources.windows(2).all(|w| w[0].addr < w[1].addr),
            "{sources:?}"
        );
        for &(sym, file, line) in EXPECTED {
            let file = file.replace("{dir}", &dir.to_string_lossy());
            let file = file.as_str();
            let addr = symbol_addr(&exe, sym);
            let got = source_at(&sources, addr)
                .unwrap_or_else(|| panic!("no source for {sym} at {addr:#x}: {sources:?}"));
            assert_eq!(
                (got.file.as_str(), got.line),
                (file, line),
                "{sym} ({flags:?})"
            );
        }
        // The thread-local variable (a TLS offset, not an address) is left out.
        assert_eq!(sources.len(), EXPECTED.len(), "{sources:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn dwarf5_declarations() {
        check_program(&["-g", "-gdwarf-5"], "dwarf5");
    }

    #[test]
    fn dwarf4_declarations() {
        check_program(&["-g", "-gdwarf-4"], "dwarf4");
    }

    #[test]
    fn default_debug_info_declarations() {
        check_program(&["-g"], "default");
    }

    #[test]
    fn no_dwarf_gives_nothing() {
        let dir = scratch("nodwarf");
        let exe = build(&dir, &[]);
        assert_eq!(variable_sources(&exe), Vec::new());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn compressed_debug_sections_give_nothing() {
        let dir = scratch("compressed");
        let exe = build(&dir, &["-g", "-gz=zlib"]);
        let data = std::fs::read(&exe).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let info = file.section_by_name(".debug_info").unwrap();
        assert!(
            info.uncompressed_data().is_err(),
            "gcc -gz=zlib did not compress .debug_info"
        );
        assert_eq!(variable_sources(&exe), Vec::new());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unreadable_files_give_nothing() {
        let dir = scratch("unreadable");
        assert!(variable_sources(&dir.join("does-not-exist")).is_empty());
        let junk = dir.join("junk");
        std::fs::write(&junk, b"\x7fELF not really an ELF file").unwrap();
        assert!(variable_sources(&junk).is_empty());
        assert!(variable_sources(&dir).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn damaged_dwarf_does_not_panic() {
        let dir = scratch("damaged");
        let exe = build(&dir, &["-g"]);
        let original = std::fs::read(&exe).unwrap();
        let (start, end) = {
            let file = object::File::parse(&*original).unwrap();
            let info = file.section_by_name(".debug_info").unwrap();
            let (offset, size) = info.file_range().unwrap();
            (offset as usize, (offset + size) as usize)
        };
        let damaged = dir.join("damaged");
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..64 {
            let mut bytes = original.clone();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = start + (seed as usize) % (end - start);
                bytes[at] = (seed >> 32) as u8;
            }
            std::fs::write(&damaged, &bytes).unwrap();
            let sources = variable_sources(&damaged);
            assert!(sources.windows(2).all(|w| w[0].addr < w[1].addr));
        }
        // Cut short: the units that fit are still read, without panicking.
        std::fs::write(&damaged, &original[..start + (end - start) / 2]).unwrap();
        let _ = variable_sources(&damaged);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_plain_addresses() {
        const LE: gimli::RunTimeEndian = gimli::RunTimeEndian::Little;
        let addr = [0x03, 0x30, 0x40, 0, 0, 0, 0, 0, 0];
        assert_eq!(static_address(&addr, LE), Some(0x4030));
        // DW_OP_addr then DW_OP_GNU_push_tls_address / DW_OP_form_tls_address.
        assert_eq!(static_address(&[&addr[..], &[0xe0]].concat(), LE), None);
        assert_eq!(static_address(&[&addr[..], &[0x9b]].concat(), LE), None);
        // DW_OP_const8u OFFSET; DW_OP_form_tls_address (GCC's TLS variables).
        assert_eq!(
            static_address(&[0x0e, 0, 0, 0, 0, 0, 0, 0, 0, 0x9b], LE),
            None
        );
        // DW_OP_fbreg -20 (a local), a short DW_OP_addr, discarded variables.
        assert_eq!(static_address(&[0x91, 0x6c], LE), None);
        assert_eq!(static_address(&[0x03, 0x30, 0x40, 0, 0], LE), None);
        assert_eq!(static_address(&[], LE), None);
        assert_eq!(static_address(&[0x03, 0, 0, 0, 0, 0, 0, 0, 0], LE), None);
        assert_eq!(
            static_address(&[0x03, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], LE),
            None
        );
    }

    #[test]
    fn source_at_finds_exact_starts() {
        let v = |addr, line| VariableSource {
            addr,
            file: "a.c".into(),
            line,
        };
        let sources = [v(0x10, 1), v(0x20, 2), v(0x30, 3)];
        assert_eq!(source_at(&sources, 0x20), Some(&sources[1]));
        assert_eq!(source_at(&sources, 0x10), Some(&sources[0]));
        assert_eq!(source_at(&sources, 0x30), Some(&sources[2]));
        assert_eq!(source_at(&sources, 0x24), None);
        assert_eq!(source_at(&sources, 0), None);
        assert_eq!(source_at(&[], 0x20), None);
    }

    #[test]
    fn text_names_file_and_line() {
        let v = |file: &str, line| VariableSource {
            addr: 1,
            file: file.into(),
            line,
        };
        assert_eq!(v("src/cache.c", 12).text(), "src/cache.c:12");
        assert_eq!(v("src/cache.c", 0).text(), "src/cache.c");
        assert_eq!(v("", 7).text(), "?:7");
    }
}
