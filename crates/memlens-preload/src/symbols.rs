//! Which loaded module defines a symbol, read from the modules' own tables (their GNU
//! hash tables) rather than asked of the loader: it works without allocating, from inside
//! a malloc hook as well as from `memlens attach`'s routing, and it can leave the
//! recorder's own definitions out, which `dlsym` cannot.

use core::ffi::{c_int, c_void, CStr};

pub const DT_NULL: i64 = 0;
pub const DT_STRTAB: i64 = 5;
pub const DT_SYMTAB: i64 = 6;
const DT_GNU_HASH: i64 = 0x6fff_fef5;

/// The first module, in the loader's order (the order of its global lookups) and
/// leaving the recorder out, that *defines* `name` (an undefined symbol with a value, an
/// executable's canonical PLT entry, is not a definition): the definition's address and
/// the module's file name.
struct Definer<'a> {
    name: &'a [u8],
    own: u64,
    found: Option<(u64, &'static [u8])>,
}

/// The GNU hash of a symbol name.
fn gnu_hash(name: &[u8]) -> u32 {
    name.iter()
        .fold(5381u32, |h, &c| h.wrapping_mul(33).wrapping_add(c as u32))
}

/// # Safety
/// A `dl_iterate_phdr` callback: `info` is valid for the call (the loader's lock keeps
/// the module mapped), `data` is the caller's [`Definer`].
unsafe extern "C" fn find_definer(
    info: *mut libc::dl_phdr_info,
    _s: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: see the function's contract.
    let (info, d) = unsafe { (&*info, &mut *(data as *mut Definer)) };
    if info.dlpi_phdr.is_null() {
        return 0;
    }
    // SAFETY: the program headers of a loaded module.
    let phdrs = unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    let bias = info.dlpi_addr;
    if phdrs.iter().any(|ph| {
        ph.p_type == libc::PT_LOAD
            && bias.wrapping_add(ph.p_vaddr) <= d.own
            && d.own < bias.wrapping_add(ph.p_vaddr + ph.p_memsz)
    }) {
        return 0; // the recorder itself
    }
    let Some(dynamic) = phdrs.iter().find(|ph| ph.p_type == libc::PT_DYNAMIC) else {
        return 0;
    };
    let (mut symtab, mut strtab, mut gnu_hash_table) = (0u64, 0u64, 0u64);
    let mut e = (bias + dynamic.p_vaddr) as *const [i64; 2];
    for _ in 0..4096 {
        // SAFETY: the module's dynamic array, which ends with DT_NULL.
        let [tag, val] = unsafe { core::ptr::read(e) };
        match tag {
            DT_NULL => break,
            DT_SYMTAB => symtab = absolute(bias, val as u64),
            DT_STRTAB => strtab = absolute(bias, val as u64),
            DT_GNU_HASH => gnu_hash_table = absolute(bias, val as u64),
            _ => {}
        }
        // SAFETY: the next entry (the loop ends at DT_NULL).
        e = unsafe { e.add(1) };
    }
    if symtab == 0 || strtab == 0 || gnu_hash_table == 0 {
        return 0;
    }
    // SAFETY: the module's GNU hash table (header, bloom words, buckets, chains), symbol
    // table and string table, all mapped with it, read as their ELF layout says.
    unsafe {
        let header = gnu_hash_table as *const u32;
        let (nbuckets, symoffset, bloom_words) = (*header, *header.add(1), *header.add(2));
        if nbuckets == 0 {
            return 0;
        }
        let buckets = (gnu_hash_table + 16 + bloom_words as u64 * 8) as *const u32;
        let chains = buckets.add(nbuckets as usize);
        let h = gnu_hash(d.name);
        let first = *buckets.add((h % nbuckets) as usize);
        if first < symoffset {
            return 0;
        }
        // A chain ends with an odd hash; the bound only guards against a damaged table.
        for i in first..first.saturating_add(1_000_000) {
            let h2 = *chains.add((i - symoffset) as usize);
            if h | 1 == h2 | 1 {
                let sym = (symtab + i as u64 * 24) as *const u8;
                let st_name = *(sym as *const u32) as u64;
                let st_info = *sym.add(4);
                let st_shndx = *(sym.add(6) as *const u16);
                let st_value = *(sym.add(8) as *const u64);
                let name =
                    CStr::from_ptr((strtab + st_name) as *const core::ffi::c_char).to_bytes();
                // STT_FUNC or STT_GNU_IFUNC, defined here.
                let func = matches!(st_info & 0xf, 2 | 10);
                if name == d.name && func && st_shndx != 0 && st_value != 0 {
                    let file = if info.dlpi_name.is_null() {
                        &b""[..]
                    } else {
                        let path = CStr::from_ptr(info.dlpi_name).to_bytes();
                        path.rsplit(|&c| c == b'/').next().unwrap_or(path)
                    };
                    d.found = Some((bias + st_value, file));
                    return 1;
                }
            }
            if h2 & 1 != 0 {
                break;
            }
        }
    }
    0
}

/// The definition of `name` the process's global lookups find (see [`Definer`]).
pub fn definer(name: &[u8]) -> Option<(u64, &'static [u8])> {
    let mut d = Definer {
        name,
        own: definer as *const () as u64,
        found: None,
    };
    // SAFETY: `find_definer` reads loaded modules' tables and writes `d`.
    unsafe { libc::dl_iterate_phdr(Some(find_definer), &mut d as *mut Definer as *mut c_void) };
    d.found
}

/// A dynamic-section pointer: glibc rewrites them to absolute addresses in most modules,
/// not in all (a read-only dynamic section, the vDSO).
pub fn absolute(bias: u64, p: u64) -> u64 {
    if bias != 0 && p < bias {
        p + bias
    } else {
        p
    }
}
