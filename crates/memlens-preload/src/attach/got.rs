//! Routing a running process's allocation calls to the hooks, for `memlens attach`.
//!
//! A recorder loaded by `dlopen` into a running process interposes nothing: its symbols
//! are not in the global scope. Instead, every loaded module's relocations that name a
//! function of the malloc family or a C++ operator new/delete (`R_X86_64_JUMP_SLOT`,
//! `R_X86_64_GLOB_DAT`, `R_X86_64_64` without addend: the PLT, address-taken uses, and
//! pointers in data) get their slot rewritten to the recorder's hook. The recorder
//! itself, ld.so (its own allocations go through pointers it keeps, and patching it
//! crashed heaptrack) and the vDSO are left alone. Each slot's old value is kept and
//! written back at detach, if the slot still holds the hook (a module unloaded and
//! another one mapped there is never written).
//!
//! Slots in `PT_GNU_RELRO` are read-only once ld.so has relocated the module: the page is
//! made writable for the write and read-only again. A module whose RELRO part is still
//! writable is being loaded right now (ld.so relocates before it protects): it is left
//! for the next pass, so the recorder never changes a page's protection under ld.so.

use crate::symbols::{absolute, definer, DT_NULL, DT_STRTAB, DT_SYMTAB};
use alloc::vec::Vec;
use core::ffi::{c_int, c_void, CStr};

extern crate alloc;

const R_X86_64_64: u32 = 1;
const R_X86_64_GLOB_DAT: u32 = 6;
const R_X86_64_JUMP_SLOT: u32 = 7;
const DT_PLTRELSZ: i64 = 2;
const DT_RELA: i64 = 7;
const DT_RELASZ: i64 = 8;
const DT_STRSZ: i64 = 10;
const DT_JMPREL: i64 = 23;

/// One slot the recorder rewrote.
#[derive(Clone, Copy)]
struct Slot {
    /// The module's load bias (slots are restored only while that module is loaded).
    bias: u64,
    addr: u64,
    old: u64,
    hook: u64,
}

/// Every slot rewritten and not yet restored.
static SLOTS: spin::Mutex<Vec<Slot>> = spin::Mutex::new(Vec::new());

/// One routed name: the recorder's hook, and the process-wide definition a slot must
/// hold (or lead to, a lazy PLT slot) to be routed. `expected` 0: the name is not routed.
#[derive(Clone, Copy)]
struct Route {
    name: &'static [u8],
    hook: u64,
    expected: u64,
    /// The process-wide address of the name (an executable's canonical PLT entry, which
    /// leads to the definition), 0 if none besides the hook.
    canonical: u64,
}

/// One route per hooked name.
const ROUTES: usize = crate::hooks::HOOKED.len();

/// The routes, by the name of the function each stands for.
///
/// The hooks' addresses: not `hooks::malloc as usize`: the recorder's exported functions
/// are interposable, so inside it their address is the process-wide definition (glibc's:
/// the library was loaded by `dlopen` with `RTLD_LOCAL`). A lookup in the recorder's own
/// handle finds the recorder's.
///
/// What is routed: the hooks serve blocks with glibc's `__libc_*` functions, so a name
/// is routed only where that changes nothing about which allocator serves a block: the C
/// functions if the module that defines them also defines what the hooks call (glibc, or
/// an allocator that replaces it whole, as tcmalloc does), C++'s operators if libstdc++
/// defines them (its operators call malloc). `None` when malloc, free, calloc, realloc
/// or memalign is another allocator's than the one the hooks would call (jemalloc
/// preloaded, the program's own): routing would free one allocator's blocks with the
/// other. A slot is routed if it holds the definition, the process-wide (canonical)
/// address of the name, or (lazy binding) its own module's PLT stub.
fn routes() -> Option<[Route; ROUTES]> {
    let mut out = [Route {
        name: b"",
        hook: 0,
        expected: 0,
        canonical: 0,
    }; ROUTES];
    let mut c_module: &[u8] = b"";
    for (name, real) in crate::libc_alloc::addresses() {
        let real = real as u64;
        let (_, file) = definer(name)?;
        // What the hooks call must live in the module that defines the name.
        let real = definer(match name {
            b"malloc" => b"__libc_malloc",
            b"free" => b"__libc_free",
            b"calloc" => b"__libc_calloc",
            b"realloc" => b"__libc_realloc",
            _ => b"__libc_memalign",
        })
        .filter(|&(addr, _)| addr == real)?;
        if real.1 != file {
            return None;
        }
        c_module = file;
    }
    // SAFETY: dladdr fills `info` (dli_fname is the loader's NUL-terminated path of this
    // library); dlopen with RTLD_NOLOAD returns the already loaded recorder's handle,
    // and dlsym in it (and in RTLD_DEFAULT) looks up NUL-terminated names the recorder
    // defines, so neither fails.
    unsafe {
        let mut info: libc::Dl_info = core::mem::zeroed();
        if libc::dladdr(routes as *const c_void, &mut info) == 0 || info.dli_fname.is_null() {
            return Some(out);
        }
        let handle = libc::dlopen(info.dli_fname, libc::RTLD_LAZY | libc::RTLD_NOLOAD);
        if handle.is_null() {
            return Some(out);
        }
        // The names routed to the hooks: the malloc family and C++'s operator new/delete.
        for (slot, (c_name, _)) in out.iter_mut().zip(crate::hooks::HOOKED) {
            let name = c_name.to_bytes();
            let c_name = c_name.as_ptr();
            let hook = libc::dlsym(handle, c_name) as u64;
            let canonical = libc::dlsym(libc::RTLD_DEFAULT, c_name) as u64;
            let expected = match definer(name) {
                Some((addr, file)) if name.starts_with(b"_Z") && file.starts_with(b"libstdc++") => {
                    addr
                }
                Some((addr, file)) if !name.starts_with(b"_Z") && file == c_module => addr,
                _ => 0,
            };
            *slot = Route {
                name,
                hook,
                expected: if hook != 0 { expected } else { 0 },
                canonical: if canonical != hook { canonical } else { 0 },
            };
        }
        // The reference the NOLOAD dlopen took (the library stays loaded: NODELETE).
        libc::dlclose(handle);
    }
    Some(out)
}

/// Whether the process's malloc family is one the hooks can stand in for (see
/// [`routes`]).
pub fn allocator_is_routable() -> bool {
    routes().is_some()
}

/// A page's protection, from a snapshot of /proc/self/maps.
#[derive(Clone, Copy)]
struct Area {
    start: u64,
    end: u64,
    prot: c_int,
}

fn areas() -> Vec<Area> {
    let mut v = Vec::new();
    crate::sys::for_each_mapping(|m| {
        let mut prot = 0;
        if m.read {
            prot |= libc::PROT_READ;
        }
        if m.write {
            prot |= libc::PROT_WRITE;
        }
        if m.exec {
            prot |= libc::PROT_EXEC;
        }
        v.push(Area {
            start: m.start,
            end: m.end,
            prot,
        });
        true
    });
    v
}

fn prot_of(areas: &[Area], addr: u64) -> Option<c_int> {
    areas
        .iter()
        .find(|a| a.start <= addr && addr + 8 <= a.end)
        .map(|a| a.prot)
}

/// Write one 8-byte slot, making its page writable for the moment if it is not.
///
/// # Safety
/// `addr` is an 8-byte GOT or data slot of a loaded module that `areas` shows mapped.
unsafe fn write_slot(areas: &[Area], addr: u64, value: u64) -> bool {
    let Some(prot) = prot_of(areas, addr) else {
        return false;
    };
    if prot & libc::PROT_READ == 0 {
        return false;
    }
    let page = addr & !4095;
    if prot & libc::PROT_WRITE == 0 {
        // SAFETY: the page is mapped (maps said so); only its protection changes, and
        // back again below.
        if unsafe { libc::mprotect(page as *mut c_void, 4096, prot | libc::PROT_WRITE) } != 0 {
            return false;
        }
    }
    // SAFETY: the slot is mapped and writable now; other threads read it with plain
    // loads, and an aligned 8-byte store is atomic on x86_64.
    unsafe { core::ptr::write_volatile(addr as *mut u64, value) };
    if prot & libc::PROT_WRITE == 0 {
        // SAFETY: as above: the page's protection as it was.
        unsafe { libc::mprotect(page as *mut c_void, 4096, prot) };
    }
    true
}

/// What a pass over the modules does.
struct Pass<'a> {
    routes: [Route; ROUTES],
    areas: &'a [Area],
    own_bias: u64,
    /// Slots found and written in this pass.
    patched: Vec<Slot>,
    /// Slots already patched before it (skipped).
    known: &'a [Slot],
    restore: bool,
    restored: usize,
}

fn skip_module(name: &[u8]) -> bool {
    let file = name.rsplit(|&c| c == b'/').next().unwrap_or(name);
    file.starts_with(b"ld-linux")
        || file.starts_with(b"ld64.so")
        || file.starts_with(b"linux-vdso")
        || file.starts_with(b"linux-gate")
}

/// # Safety
/// A `dl_iterate_phdr` callback: `info` is valid for the call (the loader's lock keeps
/// the module mapped meanwhile) and `data` is the caller's [`Pass`].
unsafe extern "C" fn visit(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: see the function's contract.
    let (info, pass) = unsafe { (&*info, &mut *(data as *mut Pass)) };
    let name: &[u8] = if info.dlpi_name.is_null() {
        b""
    } else {
        // SAFETY: the loader's NUL-terminated name.
        unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes()
    };
    let bias = info.dlpi_addr;
    if bias == pass.own_bias || skip_module(name) || info.dlpi_phdr.is_null() {
        return 0;
    }
    if pass.restore {
        // SAFETY: the slots of this module were found in it while it was loaded, and it
        // still is (this callback); each is written back only if it holds our hook.
        unsafe { restore_module(pass, bias) };
        return 0;
    }
    // SAFETY: the program headers of a loaded module.
    let phdrs = unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    let mut dynamic = None;
    let mut relro = None;
    for ph in phdrs {
        match ph.p_type {
            libc::PT_DYNAMIC => dynamic = Some(bias + ph.p_vaddr),
            libc::PT_GNU_RELRO => relro = Some((bias + ph.p_vaddr, bias + ph.p_vaddr + ph.p_memsz)),
            _ => {}
        }
    }
    let Some(dynamic) = dynamic else {
        return 0;
    };
    // Still being loaded: ld.so has not protected its RELRO part yet.
    if let Some((lo, hi)) = relro {
        let first_full_page = (lo + 4095) & !4095;
        if first_full_page + 4096 <= hi
            && prot_of(pass.areas, first_full_page).is_some_and(|p| p & libc::PROT_WRITE != 0)
        {
            return 0;
        }
    }
    let lo = phdrs
        .iter()
        .filter(|ph| ph.p_type == libc::PT_LOAD)
        .map(|ph| bias + ph.p_vaddr)
        .min()
        .unwrap_or(0);
    let hi = phdrs
        .iter()
        .filter(|ph| ph.p_type == libc::PT_LOAD)
        .map(|ph| bias + ph.p_vaddr + ph.p_memsz)
        .max()
        .unwrap_or(0);
    // SAFETY: the dynamic section of a loaded module.
    unsafe { patch_module(pass, bias, dynamic, (lo, hi)) };
    0
}

/// # Safety
/// `dynamic` is the address of the loaded module's dynamic section, `bias` its bias,
/// `[lo, hi)` the span of its segments.
unsafe fn patch_module(pass: &mut Pass, bias: u64, dynamic: u64, (lo, hi): (u64, u64)) {
    let (mut symtab, mut strtab, mut strsz) = (0u64, 0u64, 0u64);
    let (mut rela, mut relasz, mut jmprel, mut pltrelsz) = (0u64, 0u64, 0u64, 0u64);
    let mut d = dynamic as *const [i64; 2];
    for _ in 0..4096 {
        // SAFETY: the dynamic array ends with DT_NULL, inside the mapped module.
        let [tag, val] = unsafe { core::ptr::read(d) };
        let val = val as u64;
        match tag {
            DT_NULL => break,
            DT_SYMTAB => symtab = absolute(bias, val),
            DT_STRTAB => strtab = absolute(bias, val),
            DT_STRSZ => strsz = val,
            DT_RELA => rela = absolute(bias, val),
            DT_RELASZ => relasz = val,
            DT_JMPREL => jmprel = absolute(bias, val),
            DT_PLTRELSZ => pltrelsz = val,
            _ => {}
        }
        // SAFETY: the next entry (the loop ends at DT_NULL).
        d = unsafe { d.add(1) };
    }
    if symtab == 0 || strtab == 0 {
        return;
    }
    for (table, size) in [(rela, relasz), (jmprel, pltrelsz)] {
        if table == 0 {
            continue;
        }
        for i in 0..size / 24 {
            // SAFETY: Elf64_Rela entries of the module's relocation tables.
            let [offset, info, addend] =
                unsafe { core::ptr::read((table + i * 24) as *const [u64; 3]) };
            let kind = info as u32;
            let sym = info >> 32;
            let ok = match kind {
                R_X86_64_JUMP_SLOT | R_X86_64_GLOB_DAT => true,
                R_X86_64_64 => addend == 0,
                _ => false,
            };
            if !ok || sym == 0 {
                continue;
            }
            // SAFETY: an Elf64_Sym of the module's symbol table (st_name is its first
            // u32).
            let st_name = unsafe { core::ptr::read((symtab + sym * 24) as *const u32) } as u64;
            if strsz != 0 && st_name >= strsz {
                continue;
            }
            // SAFETY: a NUL-terminated name in the module's string table.
            let name = unsafe { CStr::from_ptr((strtab + st_name) as *const core::ffi::c_char) }
                .to_bytes();
            let Some(route) = pass
                .routes
                .iter()
                .find(|r| r.name == name && r.expected != 0)
            else {
                continue;
            };
            let hook = route.hook;
            let addr = bias + offset;
            if pass.known.iter().any(|s| s.addr == addr)
                || pass.patched.iter().any(|s| s.addr == addr)
            {
                continue;
            }
            let Some(prot) = prot_of(pass.areas, addr) else {
                continue;
            };
            if prot & libc::PROT_READ == 0 {
                continue;
            }
            // SAFETY: a readable, mapped slot of the module.
            let old = unsafe { core::ptr::read_volatile(addr as *const u64) };
            // Only a slot that leads to the process-wide definition: resolved to it, or
            // (a lazily bound PLT slot) still at the module's own PLT stub.
            let lazy = kind == R_X86_64_JUMP_SLOT && lo <= old && old < hi;
            let leads_there =
                old == route.expected || (route.canonical != 0 && old == route.canonical);
            if old == hook || (!leads_there && !lazy) {
                continue;
            }
            // SAFETY: as above.
            if unsafe { write_slot(pass.areas, addr, hook) } {
                pass.patched.push(Slot {
                    bias,
                    addr,
                    old,
                    hook,
                });
            }
        }
    }
}

/// # Safety
/// The module with this bias is loaded (called from the `dl_iterate_phdr` callback).
unsafe fn restore_module(pass: &mut Pass, bias: u64) {
    for s in pass.known.iter().filter(|s| s.bias == bias) {
        if prot_of(pass.areas, s.addr).is_none_or(|p| p & libc::PROT_READ == 0) {
            continue;
        }
        // SAFETY: a readable slot of a loaded module.
        let now = unsafe { core::ptr::read_volatile(s.addr as *const u64) };
        // SAFETY: as above; written only if it still holds the hook we put there.
        if now == s.hook && unsafe { write_slot(pass.areas, s.addr, s.old) } {
            pass.restored += 1;
        }
    }
}

fn own_bias() -> u64 {
    // SAFETY: dladdr on an address of this library fills `info`; it allocates nothing.
    unsafe {
        let mut info: libc::Dl_info = core::mem::zeroed();
        if libc::dladdr(own_bias as *const c_void, &mut info) != 0 {
            // The base of a shared library is its bias (its first segment is at 0).
            return info.dli_fbase as u64;
        }
    }
    0
}

/// Rewrite the slots of every loaded module not patched yet. Returns how many slots
/// were rewritten. Caller is busy.
pub fn patch_all() -> usize {
    let Some(routes) = routes() else {
        return 0;
    };
    let areas = areas();
    let known = SLOTS.lock().clone();
    let mut pass = Pass {
        routes,
        areas: &areas,
        own_bias: own_bias(),
        patched: Vec::new(),
        known: &known,
        restore: false,
        restored: 0,
    };
    // SAFETY: `visit` reads the loader's module list entries and writes `pass`.
    unsafe { libc::dl_iterate_phdr(Some(visit), &mut pass as *mut Pass as *mut c_void) };
    let n = pass.patched.len();
    SLOTS.lock().extend_from_slice(&pass.patched);
    n
}

/// Write back every slot still holding a hook, in the modules still loaded; forget them
/// all. Returns how many were restored. Caller is busy.
pub fn restore_all() -> usize {
    let areas = areas();
    let known = core::mem::take(&mut *SLOTS.lock());
    let mut pass = Pass {
        routes: [Route {
            name: b"",
            hook: 0,
            expected: 0,
            canonical: 0,
        }; ROUTES],
        areas: &areas,
        own_bias: own_bias(),
        patched: Vec::new(),
        known: &known,
        restore: true,
        restored: 0,
    };
    // SAFETY: as in patch_all.
    unsafe { libc::dl_iterate_phdr(Some(visit), &mut pass as *mut Pass as *mut c_void) };
    pass.restored
}

/// Forget the slots of modules that are no longer loaded (their memory may be reused).
pub fn forget_unloaded() {
    let mut loaded: Vec<u64> = Vec::new();
    /// # Safety
    /// A `dl_iterate_phdr` callback: `info` is valid for the call, `data` is the Vec.
    unsafe extern "C" fn bias_of(
        info: *mut libc::dl_phdr_info,
        _s: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: valid for the callback; data is the Vec passed below.
        unsafe { (*(data as *mut Vec<u64>)).push((*info).dlpi_addr) };
        0
    }
    // SAFETY: `bias_of` only reads the info and pushes into `loaded`.
    unsafe { libc::dl_iterate_phdr(Some(bias_of), &mut loaded as *mut Vec<u64> as *mut c_void) };
    SLOTS.lock().retain(|s| loaded.contains(&s.bias));
}
