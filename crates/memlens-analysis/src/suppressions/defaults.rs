//! memlens's built-in suppressions (`--default-suppressions=yes`): what glibc, the dynamic
//! loader and libstdc++ keep for themselves, in Valgrind's format with the reason for each.

use super::Suppressions;

impl Suppressions {
    /// memlens's built-in suppressions: memory that glibc, the dynamic loader and libstdc++
    /// keep for themselves. The text, with the reason for each entry, is
    /// [`Suppressions::default_set_text`].
    pub fn default_set() -> Suppressions {
        let mut s = Suppressions::new();
        s.parse_valgrind(DEFAULT_SUPPRESSIONS, DEFAULT_ORIGIN)
            .expect("the built-in suppressions parse");
        s
    }

    /// The built-in suppressions in Valgrind's format, with comments, as
    /// `memlens leaks --show-default-suppressions` prints them.
    pub fn default_set_text() -> &'static str {
        DEFAULT_SUPPRESSIONS
    }
}

const DEFAULT_ORIGIN: &str = "<memlens default suppressions>";

/// The built-in suppressions. Every entry is something memcheck does not report either
/// (valgrind frees it at exit or suppresses it) or that LeakSanitizer treats as reachable.
const DEFAULT_SUPPRESSIONS: &str = r#"# memlens's built-in leak suppressions, in Valgrind's suppression format.
#
# Each entry hides memory that the dynamic loader (ld.so), glibc or libstdc++ keep for
# themselves, never the program's leaks. memcheck does not show any of it either: valgrind
# frees most of it at exit (__libc_freeres, __gnu_cxx::__freeres) or suppresses it (its
# default.supp), and LeakSanitizer treats ld.so's allocations as reachable. Checked with
# valgrind 3.19, glibc 2.36 and GCC 12's libstdc++ (see tests/leaks/README.md).
#
# Frame 0 is the allocation function (malloc, calloc, realloc, operator new...). obj:
# patterns have no directory because memlens knows modules by file name. Entries that name
# glibc's internal functions need glibc's debug symbols (Debian: libc6-dbg) to apply.

# Each thread's dynamic thread vector (DTV), calloc'd by ld.so when the thread is created.
# A running thread refers to it only as &dtv[1], so memcheck reports it as possibly lost
# (272 bytes with glibc 2.36); a joined thread's DTV stays in glibc's cache of thread
# stacks until __libc_freeres.
{
   glibc-thread-dtv
   Memcheck:Leak
   match-leak-kinds: all
   ...
   fun:_dl_allocate_tls
}

# Dynamic TLS blocks and DTV growth for the __thread variables of dlopen'd libraries.
# valgrind's default.supp: dtv-addr-tail, dtv-addr-init, dtv-addr-resize; LeakSanitizer's
# built-in suppressions: leak:*tls_get_addr* (glibc bug 12650).
{
   glibc-tls-get-addr
   Memcheck:Leak
   match-leak-kinds: all
   ...
   fun:*tls_get_addr*
}
{
   glibc-dtv-resize
   Memcheck:Leak
   match-leak-kinds: all
   ...
   fun:_dl_resize_dtv
}

# Everything else ld.so allocates for itself: the link map, name and search paths of each
# library loaded with dlopen, dependency lists, version tables, libgcc_s loaded behind
# pthread_exit and backtrace. memcheck shows dlopen's blocks as still reachable until the
# library is closed; LeakSanitizer ignores every block allocated from ld.so
# (use_ld_allocations).
{
   ld.so-internal
   Memcheck:Leak
   match-leak-kinds: all
   fun:*
   obj:*ld-linux*.so*
}

# libstdc++'s emergency exception-handling pool (72,704 bytes with GCC 12's libstdc++),
# malloc'd by a static constructor of libstdc++ itself, run by ld.so, and never freed
# (valgrind frees it with __gnu_cxx::__freeres). Without libstdc++'s debug symbols the
# allocating function has no name: the entry names the module and who ran it.
{
   libstdc++-emergency-eh-pool
   Memcheck:Leak
   match-leak-kinds: reachable
   fun:malloc
   obj:*libstdc++.so*
   ...
   obj:*ld-linux*.so*
}

# stdio buffers (4096 bytes for a pipe or a file, 1024 for a terminal), malloc'd on a
# stream's first read or write. glibc never frees them at exit, only __libc_freeres does
# (valgrind runs it, so memcheck shows them only after a fatal signal).
{
   glibc-stdio-buffer
   Memcheck:Leak
   match-leak-kinds: reachable
   fun:malloc
   fun:_IO_file_doallocate
}

# Caches that glibc fills on first use and frees only in __libc_freeres, which valgrind
# runs at exit (seen with valgrind --run-libc-freeres=no): locale data, time zone, message
# catalogs (gettext, and strerror or dlerror in a translated locale), NSS configuration,
# resolver configuration, dlerror's state.
{
   glibc-locale
   Memcheck:Leak
   match-leak-kinds: reachable
   ...
   fun:setlocale
}
{
   glibc-locale-data
   Memcheck:Leak
   match-leak-kinds: reachable
   ...
   fun:_nl_find_locale
}
{
   glibc-timezone
   Memcheck:Leak
   match-leak-kinds: reachable
   ...
   fun:tzset_internal
}
{
   glibc-gettext
   Memcheck:Leak
   match-leak-kinds: reachable
   ...
   fun:__dcigettext
}
{
   glibc-nss
   Memcheck:Leak
   match-leak-kinds: reachable
   ...
   fun:__nss_*
}
{
   glibc-resolver
   Memcheck:Leak
   match-leak-kinds: reachable
   ...
   fun:__resolv_conf_*
}
{
   glibc-dlerror
   Memcheck:Leak
   match-leak-kinds: reachable
   ...
   fun:_dlerror_run
}
{
   glibc-dlerror-message
   Memcheck:Leak
   match-leak-kinds: reachable
   ...
   fun:dlerror*
}

# The static result buffers of the non-reentrant lookups (glibc's getXXbyYY.c and
# getXXent.c: getpwnam, getgrgid, gethostbyname, getservbyname, getprotobyname...), kept
# for the next call and freed by __libc_freeres.
{
   glibc-getpw-buffer
   Memcheck:Leak
   match-leak-kinds: reachable
   fun:*alloc
   fun:getpw*
}
{
   glibc-getgr-buffer
   Memcheck:Leak
   match-leak-kinds: reachable
   fun:*alloc
   fun:getgr*
}
{
   glibc-getsp-buffer
   Memcheck:Leak
   match-leak-kinds: reachable
   fun:*alloc
   fun:getsp*
}
{
   glibc-gethostby-buffer
   Memcheck:Leak
   match-leak-kinds: reachable
   fun:*alloc
   fun:gethostby*
}
{
   glibc-getservby-buffer
   Memcheck:Leak
   match-leak-kinds: reachable
   fun:*alloc
   fun:getservby*
}
{
   glibc-getprotoby-buffer
   Memcheck:Leak
   match-leak-kinds: reachable
   fun:*alloc
   fun:getprotoby*
}
{
   glibc-getnetby-buffer
   Memcheck:Leak
   match-leak-kinds: reachable
   fun:*alloc
   fun:getnetby*
}
"#;
