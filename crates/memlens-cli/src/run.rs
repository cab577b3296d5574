//! `memlens run`: launch a program with the recorder preloaded.
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct RunArgs {
    /// The program and its arguments.
    #[arg(trailing_var_arg = true, required = true)]
    pub command: Vec<std::ffi::OsString>,
}

pub fn main(_args: RunArgs) -> ExitCode {
    crate::fail("run is not implemented yet")
}
