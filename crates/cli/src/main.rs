//! `distillguard`: the command-line face of the workspace. Thin glue: parse arguments, open
//! the engine, run a command, print. All the work happens in the library crates.

mod analyze;
mod args;
mod check;
mod fmt;
mod progress;
mod serve;
mod share;
mod simulate;
mod sql;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    quiet_caught_decoder_panics();
    if matches!(
        cli.command,
        Command::Check(_) | Command::Sql(_) | Command::Analyze(_) | Command::Demo(_)
    ) {
        keep_freed_memory();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Check(a) => check::run(a).await,
            Command::Sql(a) => sql::run(a).await,
            Command::Simulate(a) => simulate::run(a).await,
            Command::Analyze(a) => analyze::run(a).await,
            Command::Eval(a) => analyze::eval(a).await,
            Command::Demo(a) => analyze::demo(a).await,
            Command::Export(args::ExportCommand::Stix(a)) => share::export_stix(a),
            Command::Import(args::ImportCommand::Stix(a)) => share::import_stix(a),
            Command::Serve(a) => serve::serve(a).await,
            Command::Replay(a) => serve::replay(a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Batch commands decode prompt text in buffers of megabytes per batch, allocated and freed
/// for every batch on every reading thread. By default glibc serves the largest of them with
/// fresh `mmap` pages and hands freed heap tops back to the system, so each batch paid again
/// for page faults and zeroed pages: a sixth of `analyze`'s time on `seed` x 0.05. Keeping
/// freed memory for reuse costs a few hundred megabytes of resident memory at most. The
/// service keeps the defaults (it is long-lived and its batches are small), and so does the
/// simulator, which ran no faster with it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: `mallopt` only changes the allocator's parameters; it is called before the
    // runtime starts any thread, and an unaccepted value is refused (returns 0), not applied.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

/// A damaged Parquet page can make the `parquet` crate's decoders panic; `dg_contract` turns
/// that into an error naming the file, carrying the panic's message. The default hook would
/// first print the panic itself, which reads like a crash: such panics go to the debug log
/// instead, every other one to the default hook.
fn quiet_caught_decoder_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if dg_contract::in_guarded_decode() {
            tracing::debug!("caught in the Parquet decoder: {info}");
        } else {
            default(info);
        }
    }));
}

/// A reader such as `head` closing our output early is not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.to_string().contains("Broken pipe")
    })
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("DISTILLGUARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
