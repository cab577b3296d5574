//! The small enumerations records carry: allocating functions and their families, how a
//! process ended, notices, heap errors, the exit scan's block states, heuristics, root
//! kinds and links. Each has its byte value and a `from_u8` that refuses unknown ones.

/// The function through which a block was allocated or released. The family
/// ([`AllocFunc::family`]) is what must match between allocation and release. Each of
/// C++'s operators is its own value, so that frames name the operator the program called
/// (`_ZdlPvm`, as Valgrind suppressions do); traces written before the variants existed
/// recorded every variant as the plain operator (10 to 13).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum AllocFunc {
    Malloc = 0,
    Calloc = 1,
    Realloc = 2,
    Reallocarray = 3,
    PosixMemalign = 4,
    AlignedAlloc = 5,
    Memalign = 6,
    Valloc = 7,
    Pvalloc = 8,
    Free = 9,
    /// `operator new(size_t)` (and, in old traces, its nothrow / aligned variants).
    New = 10,
    /// `operator new[](size_t)` (and, in old traces, its variants).
    NewArray = 11,
    /// `operator delete(void*)` (and, in old traces, its sized / aligned / nothrow variants).
    Delete = 12,
    /// `operator delete[](void*)` (and, in old traces, its variants).
    DeleteArray = 13,
    NewNothrow = 14,
    NewArrayNothrow = 15,
    NewAligned = 16,
    NewArrayAligned = 17,
    NewAlignedNothrow = 18,
    NewArrayAlignedNothrow = 19,
    DeleteSized = 20,
    DeleteArraySized = 21,
    DeleteAligned = 22,
    DeleteArrayAligned = 23,
    DeleteSizedAligned = 24,
    DeleteArraySizedAligned = 25,
    DeleteNothrow = 26,
    DeleteArrayNothrow = 27,
    DeleteAlignedNothrow = 28,
    DeleteArrayAlignedNothrow = 29,
}

/// Allocation families: a block must be released by the family that allocated it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// malloc, calloc, realloc, memalign... released by free/realloc.
    C,
    /// operator new, released by operator delete.
    New,
    /// operator new[], released by operator delete[].
    NewArray,
}

impl AllocFunc {
    /// Every value, in order (`ALL[v as usize] as u8 == v`).
    pub const ALL: [AllocFunc; 30] = {
        use AllocFunc::*;
        [
            Malloc,
            Calloc,
            Realloc,
            Reallocarray,
            PosixMemalign,
            AlignedAlloc,
            Memalign,
            Valloc,
            Pvalloc,
            Free,
            New,
            NewArray,
            Delete,
            DeleteArray,
            NewNothrow,
            NewArrayNothrow,
            NewAligned,
            NewArrayAligned,
            NewAlignedNothrow,
            NewArrayAlignedNothrow,
            DeleteSized,
            DeleteArraySized,
            DeleteAligned,
            DeleteArrayAligned,
            DeleteSizedAligned,
            DeleteArraySizedAligned,
            DeleteNothrow,
            DeleteArrayNothrow,
            DeleteAlignedNothrow,
            DeleteArrayAlignedNothrow,
        ]
    };

    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(v as usize).copied()
    }

    pub fn family(self) -> Family {
        use AllocFunc::*;
        match self {
            New | NewNothrow | NewAligned | NewAlignedNothrow | Delete | DeleteSized
            | DeleteAligned | DeleteSizedAligned | DeleteNothrow | DeleteAlignedNothrow => {
                Family::New
            }
            NewArray
            | NewArrayNothrow
            | NewArrayAligned
            | NewArrayAlignedNothrow
            | DeleteArray
            | DeleteArraySized
            | DeleteArrayAligned
            | DeleteArraySizedAligned
            | DeleteArrayNothrow
            | DeleteArrayAlignedNothrow => Family::NewArray,
            _ => Family::C,
        }
    }

    /// The name a C or C++ programmer knows the function by (C++'s operators by their
    /// family: `operator new`, `operator delete[]`...).
    pub fn name(self) -> &'static str {
        use AllocFunc::*;
        match self {
            Malloc => "malloc",
            Calloc => "calloc",
            Realloc => "realloc",
            Reallocarray => "reallocarray",
            PosixMemalign => "posix_memalign",
            AlignedAlloc => "aligned_alloc",
            Memalign => "memalign",
            Valloc => "valloc",
            Pvalloc => "pvalloc",
            Free => "free",
            New | NewNothrow | NewAligned | NewAlignedNothrow => "operator new",
            NewArray | NewArrayNothrow | NewArrayAligned | NewArrayAlignedNothrow => {
                "operator new[]"
            }
            Delete | DeleteSized | DeleteAligned | DeleteSizedAligned | DeleteNothrow
            | DeleteAlignedNothrow => "operator delete",
            DeleteArray
            | DeleteArraySized
            | DeleteArrayAligned
            | DeleteArraySizedAligned
            | DeleteArrayNothrow
            | DeleteArrayAlignedNothrow => "operator delete[]",
        }
    }

    /// For C++'s operators, the exact one the program called: its symbol (Itanium ABI,
    /// x86_64) and its demangled name. `None` for the C functions.
    pub fn cxx_operator(self) -> Option<(&'static str, &'static str)> {
        use AllocFunc::*;
        Some(match self {
            New => ("_Znwm", "operator new(unsigned long)"),
            NewArray => ("_Znam", "operator new[](unsigned long)"),
            NewNothrow => (
                "_ZnwmRKSt9nothrow_t",
                "operator new(unsigned long, std::nothrow_t const&)",
            ),
            NewArrayNothrow => (
                "_ZnamRKSt9nothrow_t",
                "operator new[](unsigned long, std::nothrow_t const&)",
            ),
            NewAligned => (
                "_ZnwmSt11align_val_t",
                "operator new(unsigned long, std::align_val_t)",
            ),
            NewArrayAligned => (
                "_ZnamSt11align_val_t",
                "operator new[](unsigned long, std::align_val_t)",
            ),
            NewAlignedNothrow => (
                "_ZnwmSt11align_val_tRKSt9nothrow_t",
                "operator new(unsigned long, std::align_val_t, std::nothrow_t const&)",
            ),
            NewArrayAlignedNothrow => (
                "_ZnamSt11align_val_tRKSt9nothrow_t",
                "operator new[](unsigned long, std::align_val_t, std::nothrow_t const&)",
            ),
            Delete => ("_ZdlPv", "operator delete(void*)"),
            DeleteArray => ("_ZdaPv", "operator delete[](void*)"),
            DeleteSized => ("_ZdlPvm", "operator delete(void*, unsigned long)"),
            DeleteArraySized => ("_ZdaPvm", "operator delete[](void*, unsigned long)"),
            DeleteAligned => (
                "_ZdlPvSt11align_val_t",
                "operator delete(void*, std::align_val_t)",
            ),
            DeleteArrayAligned => (
                "_ZdaPvSt11align_val_t",
                "operator delete[](void*, std::align_val_t)",
            ),
            DeleteSizedAligned => (
                "_ZdlPvmSt11align_val_t",
                "operator delete(void*, unsigned long, std::align_val_t)",
            ),
            DeleteArraySizedAligned => (
                "_ZdaPvmSt11align_val_t",
                "operator delete[](void*, unsigned long, std::align_val_t)",
            ),
            DeleteNothrow => (
                "_ZdlPvRKSt9nothrow_t",
                "operator delete(void*, std::nothrow_t const&)",
            ),
            DeleteArrayNothrow => (
                "_ZdaPvRKSt9nothrow_t",
                "operator delete[](void*, std::nothrow_t const&)",
            ),
            DeleteAlignedNothrow => (
                "_ZdlPvSt11align_val_tRKSt9nothrow_t",
                "operator delete(void*, std::align_val_t, std::nothrow_t const&)",
            ),
            DeleteArrayAlignedNothrow => (
                "_ZdaPvSt11align_val_tRKSt9nothrow_t",
                "operator delete[](void*, std::align_val_t, std::nothrow_t const&)",
            ),
            _ => return None,
        })
    }
}

/// Something the recorder found at start-up that limits what it can see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum NoticeKind {
    /// The executable defines allocation functions of its own (`symbols`), which take
    /// the place of the C library's for the whole process.
    OwnAllocator = 1,
    /// A CPython interpreter whose frames the recorder reads: `module` is the module
    /// that holds it, `symbols` its version (`3.11.2`), then `,` and the allocator its
    /// object domain uses at the first Python frame (`malloc` or `pymalloc`; empty if
    /// unknown). Stacks carry its Python frames.
    PythonFrames = 2,
    /// A CPython interpreter whose frames the recorder does not read (its version,
    /// in `symbols`, is not one it knows): stacks stay native.
    PythonUnsupported = 3,
    /// The CPython interpreter began finalizing at `ts`: the program's own work is done.
    /// The leak check ran then (the scan's flags say so), and the analysis ends the run
    /// there: what the interpreter frees while tearing itself down is not the program's.
    PythonWorkDone = 4,
}

impl NoticeKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::OwnAllocator),
            2 => Some(Self::PythonFrames),
            3 => Some(Self::PythonUnsupported),
            4 => Some(Self::PythonWorkDone),
            _ => None,
        }
    }
}

/// How the traced process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitKind {
    /// `exit()` or return from `main`; `code` is the status.
    Exit = 1,
    /// `_exit()` / `_Exit()` called by the program; `code` is the status.
    UnderscoreExit = 2,
    /// Killed by a fatal signal that the recorder saw; `code` is the signal number.
    Signal = 3,
    /// The image was replaced by `execve`; `code` says whether the new image is
    /// recorded (one of the `EXEC_*` constants).
    Exec = 4,
    /// Not an end: `memlens snapshot` stopped the live process for a moment, scanned it
    /// and let it run on (a snapshot file's scan and end record); `code` is 0.
    Snapshot = 5,
    /// `memlens attach` ended the recording and the process runs on; `code` is 0.
    Detach = 6,
}

/// Exec end code: the environment passed to the new image still preloads the recorder.
/// (Traces older than the other codes have it for every exec.)
pub const EXEC_RECORDER_KEPT: i32 = 0;
/// Exec end code: the environment passed to the new image does not preload the recorder
/// (the program removed or replaced `LD_PRELOAD`): the new image is not recorded.
pub const EXEC_RECORDER_REMOVED: i32 = 1;
/// Exec end code: `--no-follow` took the recorder out of `LD_PRELOAD`: the new image is
/// not recorded, as asked.
pub const EXEC_NOT_FOLLOWED: i32 = 2;

impl ExitKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Exit),
            2 => Some(Self::UnderscoreExit),
            3 => Some(Self::Signal),
            4 => Some(Self::Exec),
            5 => Some(Self::Snapshot),
            6 => Some(Self::Detach),
            _ => None,
        }
    }
}

/// A heap error the recorder caught (and did not pass on to the allocator).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum HeapErrorKind {
    /// free/delete/realloc of an address where no live block starts: a double free, a
    /// pointer never allocated, or one inside a block. Not passed to the allocator.
    NotABlock = 1,
    /// A block released by the wrong family (malloc/delete, new/free, new[]/delete...).
    /// It is released anyway, as memcheck does.
    Mismatch = 2,
}

impl HeapErrorKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::NotABlock),
            2 => Some(Self::Mismatch),
            _ => None,
        }
    }
}

/// What the exit scan concluded about one block. Memcheck's four kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum BlockState {
    DefinitelyLost = 0,
    IndirectlyLost = 1,
    PossiblyLost = 2,
    StillReachable = 3,
}

impl BlockState {
    pub fn from_u8(v: u8) -> Self {
        match v & 3 {
            0 => Self::DefinitelyLost,
            1 => Self::IndirectlyLost,
            2 => Self::PossiblyLost,
            _ => Self::StillReachable,
        }
    }
}

/// The interior-pointer heuristics of memcheck's `--leak-check-heuristics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Heuristic {
    StdString = 1,
    Length64 = 2,
    NewArray = 3,
    MultipleInheritance = 4,
    /// memlens's own, for CPython: a pointer 16 bytes into a block whose word at 24 is a
    /// Python type (the object after a garbage collector header, where every reference to
    /// a container object points). Only in a process whose Python frames are read.
    PyObject = 5,
    /// Not an interior-pointer heuristic but what the pyobject one finds too: CPython
    /// objects reachable only through the cycle collector's lists (garbage in reference
    /// cycles, freed whenever the collector runs; never if it is off), and what they hold.
    PyCycle = 6,
}

impl Heuristic {
    pub const ALL: [Heuristic; 6] = [
        Heuristic::StdString,
        Heuristic::Length64,
        Heuristic::NewArray,
        Heuristic::MultipleInheritance,
        Heuristic::PyObject,
        Heuristic::PyCycle,
    ];
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get((v as usize).wrapping_sub(1)).copied()
    }
    /// The name memcheck's `--leak-check-heuristics` uses.
    pub fn name(self) -> &'static str {
        match self {
            Heuristic::StdString => "stdstring",
            Heuristic::Length64 => "length64",
            Heuristic::NewArray => "newarray",
            Heuristic::MultipleInheritance => "multipleinheritance",
            Heuristic::PyObject => "pyobject",
            Heuristic::PyCycle => "pycycle",
        }
    }
}

/// Kinds of root regions the scan reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RootKind {
    /// Writable data (.data, .bss, relro...) of a loaded module.
    ModuleData = 1,
    /// An anonymous mapping (the program's own mmap, the main thread's TLS...).
    Anonymous = 2,
    /// A thread's stack, from its stack pointer up (it also holds its static TLS).
    ThreadStack = 3,
    /// A thread's registers.
    Registers = 4,
    /// Another writable mapping (a file mapped privately, shared memory).
    OtherMapping = 5,
}

impl RootKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::ModuleData,
            2 => Self::Anonymous,
            3 => Self::ThreadStack,
            4 => Self::Registers,
            5 => Self::OtherMapping,
            _ => return None,
        })
    }
}

/// Why a scanned block has the state it has. `Block(i)`: the `i`th block of the scan (in
/// address order) points to it: for a lost block, `i` is the clique leader that owns it
/// (possibly itself indirect when its clique was merged into a later one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockLink {
    None,
    Block(u32),
    /// Root region `root`, the pointer word at `addr`.
    Root {
        root: u32,
        addr: u64,
    },
}

/// What an Assert record asks (the program's `memlens_assert` call).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AssertKind {
    /// The blocks allocated since the mark (trace time, ns) by the asserting thread that
    /// are still live hold at most the limit (bytes; 0: no block at all). Of an assertion
    /// made from Python, the blocks the asserting Python function allocated itself (its
    /// arguments, ctypes' temporaries), rather than through a Python function it called,
    /// are left out (and from the blocks a failed peak-since assertion lists).
    NoLeaksSince = 1,
    /// The process's live heap bytes are at most the limit.
    MaxLive = 2,
    /// The live bytes of the blocks the asserting thread allocated since the mark never
    /// exceeded the limit between the mark and the assertion (a test's peak).
    PeakSince = 3,
}

impl AssertKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::NoLeaksSince),
            2 => Some(Self::MaxLive),
            3 => Some(Self::PeakSince),
            _ => None,
        }
    }
}
