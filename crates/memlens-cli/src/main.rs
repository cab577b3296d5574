//! The `memlens` command line: presentation layer over the recorder (`run`), the
//! analysis library (`report`, `leaks`, `flamegraph`, `export`, `diff`, `html`) and the /proc
//! sampler (`watch`).

mod attach;
mod budgets;
mod diff;
mod export;
mod flamegraph;
mod html;
mod leaks;
mod plot;
mod png;
mod pprof;
mod pprof_every;
mod present;
mod profile;
mod report;
mod run;
mod sample_files;
mod snapshot;
mod supervise;
mod top;
mod watch;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "memlens",
    version,
    about = "Memory profiler and leak detector for Linux programs",
    long_about = "memlens records every heap allocation of a program, with its stack, without \
rebuilding it, and turns the trace into reports.\n\n\
Typical session:\n  \
memlens run -- ./myprog arg1 arg2      # run it, print a summary, write memlens.myprog.<pid>.trace\n  \
memlens report memlens.myprog.<pid>.trace   # the full report (add --format json for machines)\n  \
memlens leaks memlens.myprog.<pid>.trace    # leak kinds at exit, as memcheck reports them\n  \
memlens flamegraph memlens.myprog.<pid>.trace --metric leaked -o leaks.svg\n  \
memlens export memlens.myprog.<pid>.trace --format pprof -o heap.pb.gz && go tool pprof -top heap.pb.gz\n  \
memlens diff before.trace after.trace  # what grew, what shrank, per site\n  \
memlens plot memlens.myprog.<pid>.trace -o timeline.svg   # heap, RSS and top sites over time\n  \
memlens html memlens.myprog.<pid>.trace -o report.html    # all of it as one web page, offline\n  \
memlens watch -- ./myprog              # its memory over time, from outside: growing or stable?\n  \
memlens top                            # every process: which one grows?"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Treat the function NAME as an allocator, as Valgrind's --alloc-fn: stacks start at
    /// its caller (for wrappers such as `my_malloc`; well-known ones, `xmalloc`,
    /// `g_malloc`, `Perl_safesysmalloc`, `sqlite3Malloc`..., are built in). Repeatable.
    #[arg(long = "alloc-fn", value_name = "NAME", global = true)]
    alloc_fn: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a program under the recorder and write a trace per recorded process (its own,
    /// and with --trace-children=yes those it starts).
    Run(run::RunArgs),
    /// Print the report of a trace: totals, peak heap, memory not freed at exit, top sites,
    /// temporary allocations, growing sites, heap vs RSS, advice; for the whole run or a
    /// window of it (--from/--to).
    Report(report::ReportArgs),
    /// Draw a trace's timeline as an SVG (or PNG) chart: heap in use, RSS and the top
    /// sites' live bytes over time.
    Plot(plot::PlotArgs),
    /// Leak kinds at exit (definitely / indirectly / possibly lost, still reachable) and
    /// heap errors, as memcheck reports them: loss records with stacks, LEAK SUMMARY.
    Leaks(leaks::LeaksArgs),
    /// CI gate: run the program like `run`, then exit with --error-exitcode (default 1)
    /// on heap errors, leaks of the kinds in --errors-for-leak-kinds, an exceeded budget
    /// (--max-peak, --max-leaked, --max-allocations, a --budgets file), an allocation on a
    /// --no-alloc thread or a regression against a --baseline.
    Check(CheckArgs),
    /// Draw one metric of every allocation site (peak, leaked, allocations...) as an
    /// interactive flame graph (SVG), or write its folded stacks.
    #[command(long_about = flamegraph::LONG_ABOUT)]
    Flamegraph(flamegraph::FlamegraphArgs),
    /// Write every allocation site for other tools: pprof (for `go tool pprof`), folded
    /// stacks, or JSON.
    #[command(long_about = export::LONG_ABOUT)]
    Export(export::ExportArgs),
    /// Compare two traces site by site: what grew, what shrank, what is new or vanished.
    #[command(long_about = diff::LONG_ABOUT)]
    Diff(diff::DiffArgs),
    /// Write the report as one self-contained HTML page: summary, timeline, flame graph
    /// with a metric switcher, sortable site tables with stacks, leak records.
    #[command(long_about = html::LONG_ABOUT)]
    Html(html::HtmlArgs),
    /// Stop a running process for a moment and take a heap snapshot: every live block
    /// (glibc's heap walked), its leak kind, and what holds the memory; a file that
    /// `leaks`, `report` and `diff` read.
    #[command(long_about = snapshot::LONG_ABOUT)]
    Snapshot(snapshot::SnapshotArgs),
    /// Record a running process for a while without restarting it: load the recorder
    /// into it (ptrace, its own dlopen), record until --duration, Ctrl-C or SIGTERM, undo
    /// everything and let it run on; print `run`'s summary of that window.
    Attach(attach::AttachArgs),
    /// Follow a process's memory over time from /proc (any language, no preload) and
    /// judge whether it grows.
    Watch(watch::WatchArgs),
    /// Every process of the machine (or of a cgroup, a systemd unit) over time, ranked by
    /// growth, not size: find the one that grows, see it grow again after a restart, and
    /// the kernel's share.
    Top(top::TopArgs),
}

#[derive(clap::Args)]
struct CheckArgs {
    /// Fail if the heap's peak exceeds SIZE (e.g. 64MiB, 1.5G, 4096).
    #[arg(long, value_name = "SIZE", value_parser = memlens_common::units::parse_size)]
    max_peak: Option<u64>,
    /// Fail if more than SIZE is definitely + indirectly lost at exit (with --sample, which
    /// has no leak kinds: the estimate of what was not freed at exit).
    #[arg(long, value_name = "SIZE", value_parser = memlens_common::units::parse_size)]
    max_leaked: Option<u64>,
    /// Fail if the program makes more than N allocations.
    #[arg(long, value_name = "N")]
    max_allocations: Option<u64>,
    #[command(flatten)]
    budget: budgets::BudgetArgs,
    #[command(flatten)]
    run: run::RunArgs,
}

/// The command line, parsed. A negative number after an option that takes a value is
/// that option's value, refused (or taken) by the option's own check in one sentence:
/// clap's default ("unexpected argument '-5'; to pass it as a value, use '-- -5'") would
/// send `memlens run --rss-interval -5` users to a command line that runs `-5`.
fn parse_command_line() -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let negatives = |a: clap::Arg| {
        if a.get_action().takes_values() && !a.is_positional() {
            a.allow_negative_numbers(true)
        } else {
            a
        }
    };
    let cmd = Cli::command()
        .mut_args(negatives)
        .mut_subcommands(|c| c.mut_args(negatives));
    Cli::from_arg_matches(&cmd.try_get_matches()?)
}

fn main() -> ExitCode {
    let cli = match parse_command_line() {
        Ok(cli) => cli,
        Err(e) => return command_line_error(&e),
    };
    memlens_analysis::symbolize::set_alloc_fns(&cli.alloc_fn);
    match cli.command {
        Command::Run(args) => run::main(args),
        Command::Report(args) => report::main(args),
        Command::Plot(args) => plot::main(args),
        Command::Leaks(args) => leaks::main(args),
        Command::Check(mut args) => {
            // A gate: errors fail it with 1 unless told otherwise (0: report only).
            args.run.error_exitcode = Some(args.run.error_exitcode.unwrap_or(1));
            let file = match args.budget.load() {
                Ok(g) => g,
                Err(e) => return fail(e),
            };
            if file.as_ref().is_some_and(budgets::Gate::wants_free_stacks) {
                args.run.free_stacks = true;
            }
            let budgets = run::Budgets {
                max_peak: args.max_peak,
                max_leaked: args.max_leaked,
                max_allocations: args.max_allocations,
                file,
            };
            match run::run(args.run, Some(budgets)) {
                Ok(code) => code,
                Err(e) => e.exit(),
            }
        }
        Command::Attach(args) => attach::main(args),
        Command::Watch(args) => watch::main(args),
        Command::Top(args) => top::main(args),
        Command::Snapshot(args) => snapshot::main(args),
        Command::Flamegraph(args) => flamegraph::main(args),
        Command::Export(args) => export::main(args),
        Command::Diff(args) => diff::main(args),
        Command::Html(args) => html::main(args),
    }
}

/// A command line clap refused (or `--help`/`--version`): its message, a hint when the
/// words look like a program meant for `memlens run`, and the status: 0 for help and
/// version, [`EXIT_USAGE`] for a bad command line, as for any other input memlens cannot
/// use.
fn command_line_error(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    if e.exit_code() == 0 {
        return ExitCode::SUCCESS;
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if let Some(hint) = run_hint(&args) {
        write_stderr(&hint);
    }
    ExitCode::from(EXIT_USAGE)
}

/// `memlens ./prog args` or `memlens --leak-check=full ./prog` (Valgrind's habit): the
/// `memlens run` command line that was probably meant, as a tip. None when the first word
/// is a subcommand or there is no program word.
fn run_hint(args: &[std::ffi::OsString]) -> Option<String> {
    use clap::CommandFactory;
    let first = args.first()?.to_str().unwrap_or("");
    let cmd = Cli::command();
    if first == "help" || cmd.get_subcommands().any(|c| c.get_name() == first) {
        return None;
    }
    let program = args
        .iter()
        .position(|a| !a.to_string_lossy().starts_with('-'))?;
    let words = |a: &[std::ffi::OsString]| {
        a.iter()
            .map(|w| shell_word(&w.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let options = words(&args[..program]);
    Some(format!(
        "\ntip: to record a program, name the `run` command and put the program after `--`:\n  memlens run {}{}-- {}\n",
        options,
        if options.is_empty() { "" } else { " " },
        words(&args[program..])
    ))
}

/// `w` as one word for a POSIX shell: as it is when that is safe, else single-quoted.
fn shell_word(w: &str) -> String {
    let plain = !w.is_empty()
        && w.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_./=:,%+@".contains(&c));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// Write memlens's own message text to stderr. A stderr that is closed, full or gone
/// (`memlens run ... 2>&1 | head -1`, `2>/dev/full`) loses the message and nothing else:
/// the program's exit status must still come out, so the error is ignored.
pub fn write_stderr(text: &str) {
    use std::io::Write as _;
    let mut stderr = std::io::stderr().lock();
    let _ = stderr
        .write_all(text.as_bytes())
        .and_then(|()| stderr.flush());
}

/// `eprintln!` for memlens's own messages, through [`write_stderr`]: never panics.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::write_stderr(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// Write a finished report to stdout. A reader that went away (`memlens report t | head`)
/// is nothing to complain about; any other write error is.
pub fn print_stdout(out: &str) -> ExitCode {
    match write_stdout(out.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// Write bytes to stdout; a reader that went away is `Ok`. `Err` is one sentence.
pub fn write_stdout(out: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(out).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(format!("cannot write the report: {e}")),
    }
}

/// Print one error sentence for a person and return the generic failure code.
pub fn fail(msg: impl std::fmt::Display) -> ExitCode {
    say!("memlens: error: {msg}");
    ExitCode::from(EXIT_USAGE)
}

/// Say on stderr that a trace was cut short, for outputs with no place of their own for it
/// (`report` prints it in the report itself).
pub fn warn_truncated(path: &std::path::Path, t: Option<&memlens_trace::reader::Truncation>) {
    if let Some(t) = t {
        say!(
            "memlens: warning: {} is truncated: {}; the output covers what was recorded",
            path.display(),
            t.reason
        );
    }
}

/// Exit status of memlens itself when it cannot do its job (bad input, missing program...).
pub const EXIT_USAGE: u8 = 125;
