//! Signal names, for every place memlens prints a signal: the report's "killed by signal
//! 15 (SIGTERM)", `run`'s and `watch`'s summaries. One table, so a signal reads the same
//! everywhere. The numbers are Linux's on x86_64 (the only platform memlens records on);
//! this crate has no `libc` to ask.

/// The standard signals, 1 to 31, by number.
const NAMES: [&str; 31] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// `SIGTERM` for 15; `None` for a real-time signal or a number that is no signal.
pub fn signal_name(sig: i32) -> Option<&'static str> {
    let i = usize::try_from(sig).ok()?.checked_sub(1)?;
    NAMES.get(i).copied()
}

/// `SIGTERM`, or `signal 40` for a signal without a name.
pub fn signal_label(sig: i32) -> String {
    signal_name(sig).map_or_else(|| format!("signal {sig}"), str::to_string)
}

/// `killed by signal 15 (SIGTERM)`, or `killed by signal 40`.
pub fn killed_by(sig: i32) -> String {
    match signal_name(sig) {
        Some(name) => format!("killed by signal {sig} ({name})"),
        None => format!("killed by signal {sig}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(signal_name(1), Some("SIGHUP"));
        assert_eq!(signal_name(10), Some("SIGUSR1"));
        assert_eq!(signal_name(15), Some("SIGTERM"));
        assert_eq!(signal_name(31), Some("SIGSYS"));
        assert_eq!(signal_name(0), None);
        assert_eq!(signal_name(34), None);
        assert_eq!(signal_name(-1), None);
        assert_eq!(signal_label(2), "SIGINT");
        assert_eq!(signal_label(40), "signal 40");
        assert_eq!(killed_by(9), "killed by signal 9 (SIGKILL)");
        assert_eq!(killed_by(40), "killed by signal 40");
    }
}
