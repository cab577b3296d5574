//! From watching to finding: for a process judged growing, the next command to run to see
//! *what* grows, by the runtime it is built on. memlens records native heaps itself
//! (`memlens run`); managed heaps need the runtime's own tools. Detected from the
//! executable's name and, for Go, its ELF sections; the command line is the fallback.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    Java,
    Go,
    Node,
    Python,
    /// C, C++, Rust...: the heap memlens records.
    Native,
}

impl Runtime {
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Java => "java",
            Runtime::Go => "go",
            Runtime::Node => "node",
            Runtime::Python => "python",
            Runtime::Native => "native",
        }
    }
}

fn base(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

/// The runtime of a process, from its executable (if readable) and command line.
pub fn detect(exe: Option<&Path>, cmdline: &[String]) -> Runtime {
    let exe_name = exe.and_then(|p| p.file_name()).and_then(|n| n.to_str());
    let arg0 = cmdline.first().map(|a| base(a));
    for name in [exe_name, arg0].into_iter().flatten() {
        if name == "java" || name == "javaw" {
            return Runtime::Java;
        }
        if name == "node" || name == "nodejs" {
            return Runtime::Node;
        }
        if name.starts_with("python") || name.starts_with("pypy") {
            return Runtime::Python;
        }
    }
    if exe.is_some_and(is_go_binary) {
        return Runtime::Go;
    }
    Runtime::Native
}

/// Whether an ELF file has the sections of a Go program (`.go.buildinfo`, or the older
/// `.gopclntab`). Reads the headers only.
pub fn is_go_binary(path: &Path) -> bool {
    elf_section_names(path).is_some_and(|names| {
        names
            .iter()
            .any(|n| n == ".go.buildinfo" || n == ".gopclntab")
    })
}

/// The section names of a 64-bit little-endian ELF file.
fn elf_section_names(path: &Path) -> Option<Vec<String>> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = [0u8; 64];
    f.read_exact(&mut h).ok()?;
    if &h[..4] != b"\x7fELF" || h[4] != 2 || h[5] != 1 {
        return None;
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as u64;
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let (shoff, shentsize, shnum, shstrndx) = (
        u64_at(&h, 0x28),
        u16_at(&h, 0x3a),
        u16_at(&h, 0x3c),
        u16_at(&h, 0x3e),
    );
    if shentsize < 64 || shnum == 0 || shnum > 4096 || shstrndx >= shnum {
        return None;
    }
    let mut sh = vec![0u8; (shentsize * shnum) as usize];
    f.seek(SeekFrom::Start(shoff)).ok()?;
    f.read_exact(&mut sh).ok()?;
    let entry = |i: u64| &sh[(i * shentsize) as usize..((i + 1) * shentsize) as usize];
    let strtab = entry(shstrndx);
    let (str_off, str_size) = (u64_at(strtab, 0x18), u64_at(strtab, 0x20));
    if str_size > 1 << 20 {
        return None;
    }
    let mut names = vec![0u8; str_size as usize];
    f.seek(SeekFrom::Start(str_off)).ok()?;
    f.read_exact(&mut names).ok()?;
    Some(
        (0..shnum)
            .filter_map(|i| {
                let at = u32::from_le_bytes(entry(i)[..4].try_into().ok()?) as usize;
                let rest = names.get(at..)?;
                let end = rest.iter().position(|&c| c == 0)?;
                Some(String::from_utf8_lossy(&rest[..end]).into_owned())
            })
            .collect(),
    )
}

/// A command line as words a POSIX shell reads back the same.
fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|w| {
            let plain = !w.is_empty()
                && w.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"-_./=:,%+@".contains(&c));
            if plain {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `memlens attach` and `memlens snapshot` can work on process `pid`: it maps
/// glibc's `libc.so.6` (they walk glibc's heap and call its `dlopen`). False when its
/// map cannot be read (another user's process, or it has ended).
pub fn maps_glibc(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .is_ok_and(|m| m.lines().any(|l| l.ends_with("/libc.so.6")))
}

/// One line: what to run next to find what grows in process `pid`. `glibc`: it can be
/// attached to and snapshotted ([`maps_glibc`]).
pub fn next_step(rt: Runtime, pid: i32, cmdline: &[String], glibc: bool) -> String {
    match rt {
        Runtime::Java => format!(
            "Java: take a heap dump, `jcmd {pid} GC.heap_dump /tmp/heap-{pid}.hprof`, twice \
             some time apart, and compare them (Eclipse MAT, VisualVM)"
        ),
        Runtime::Go => format!(
            "Go: if it serves net/http/pprof, `go tool pprof -top http://HOST:PORT/debug/pprof/heap` \
             twice and compare (-base); otherwise build it with that import (pid {pid})"
        ),
        Runtime::Node => format!(
            "Node: restart it with `node --heapsnapshot-signal=SIGUSR2 ...`, then \
             `kill -USR2 PID` writes a .heapsnapshot (twice, compare in Chrome DevTools); \
             pid {pid} now"
        ),
        Runtime::Python | Runtime::Native => {
            let what = if rt == Runtime::Python {
                "Python (CPython's heap is recorded natively)"
            } else {
                "native"
            };
            let words = shell_words(cmdline);
            let run = if cmdline.is_empty() || words.len() > 160 {
                "`memlens run --` followed by its command line".to_string()
            } else {
                format!("`memlens run -- {words}`")
            };
            match (glibc, rt) {
                (true, Runtime::Python) => format!(
                    "{what}: `memlens snapshot {pid}` now and again later, and `memlens diff` \
                     of the two .snap files names the roots and sizes that grew; for Python \
                     lines in the stacks, restart it under the recorder, {run}"
                ),
                (true, _) => format!(
                    "{what}: `memlens snapshot {pid}` now and again later, and `memlens diff` \
                     of the two .snap files names the roots that grew; `memlens attach {pid} \
                     --duration 60s` records a minute of its allocations with their stacks \
                     and leak kinds"
                ),
                (false, _) => format!(
                    "{what}: restart it under the recorder, {run}, and `memlens report` shows \
                     the allocation sites that grow (memlens attach and snapshot need a process \
                     that maps glibc's libc.so.6 and whose map memlens may read)"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn runtimes_by_name() {
        let java = PathBuf::from("/usr/lib/jvm/java-17/bin/java");
        assert_eq!(
            detect(Some(&java), &v(&["java", "-jar", "a.jar"])),
            Runtime::Java
        );
        // exe unreadable (another user's): the command line says.
        assert_eq!(
            detect(None, &v(&["/usr/bin/node", "server.js"])),
            Runtime::Node
        );
        assert_eq!(detect(None, &v(&["python3.11", "app.py"])), Runtime::Python);
        assert_eq!(detect(None, &v(&["./server"])), Runtime::Native);
        assert_eq!(detect(None, &[]), Runtime::Native);
    }

    #[test]
    fn go_binaries_by_their_sections() {
        // This test binary is Rust: no Go sections.
        let me = std::env::current_exe().unwrap();
        assert!(elf_section_names(&me).unwrap().iter().any(|n| n == ".text"));
        assert!(!is_go_binary(&me));
        assert_eq!(detect(Some(&me), &[]), Runtime::Native);
        assert!(!is_go_binary(Path::new("/no/such/file")));
        // The go tool is itself a Go program, when installed.
        if let Ok(go) = std::fs::canonicalize("/usr/bin/go") {
            assert!(is_go_binary(&go), "{}", go.display());
            assert_eq!(detect(Some(&go), &v(&["go"])), Runtime::Go);
        }
    }

    #[test]
    fn one_line_each_and_no_command_that_does_not_exist() {
        let j = next_step(Runtime::Java, 42, &[], true);
        assert!(j.contains("jcmd 42 GC.heap_dump /tmp/heap-42.hprof"), "{j}");
        assert!(next_step(Runtime::Go, 7, &[], true).contains("/debug/pprof/heap"));
        assert!(next_step(Runtime::Node, 7, &[], true).contains("--heapsnapshot-signal"));
        let n = next_step(Runtime::Native, 7, &v(&["./srv", "--port", "80 80"]), false);
        assert!(n.contains("`memlens run -- ./srv --port '80 80'`"), "{n}");
        assert!(
            n.contains("need a process that maps glibc's libc.so.6"),
            "{n}"
        );
        let n = next_step(Runtime::Native, 7, &v(&["./srv"]), true);
        assert!(
            n.contains("`memlens snapshot 7` now and again later")
                && n.contains("`memlens attach 7 --duration 60s`"),
            "{n}"
        );
        let py = next_step(Runtime::Python, 7, &v(&["python3", "app.py"]), true);
        assert!(
            py.contains("`memlens snapshot 7`") && py.contains("`memlens run -- python3 app.py`"),
            "{py}"
        );
        // This process maps glibc's libc; no process has pid 0x7fffffff.
        assert!(maps_glibc(std::process::id() as i32));
        assert!(!maps_glibc(i32::MAX));
        for rt in [
            Runtime::Java,
            Runtime::Go,
            Runtime::Node,
            Runtime::Python,
            Runtime::Native,
        ] {
            for glibc in [false, true] {
                assert!(!next_step(rt, 1, &[], glibc).contains('\n'));
            }
        }
    }
}
