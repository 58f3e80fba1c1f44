//! The `regapp` binary: flags, logging, and a call into the library.

use std::process::ExitCode;

use clap::Parser;
use regapp::cli::{Cli, Command};
use regapp::config::Settings;
use regapp::ops::logging::LogSettings;

fn main() -> ExitCode {
    tame_the_allocator();
    let cli = Cli::parse();
    match cli.command {
        Command::Cert(command) => {
            regapp::ops::logging::init(&LogSettings::default());
            regapp::cli::cert::run(command)
        }
        Command::Access(command) => regapp::cli::access::run(command),
        Command::User(args) => regapp::cli::user::run(args),
        Command::Gc(args) => {
            regapp::ops::logging::init(&LogSettings::default());
            regapp::cli::gc::gc(args)
        }
        Command::Du(arg) => {
            regapp::ops::logging::init(&LogSettings::default());
            regapp::cli::gc::du(arg)
        }
        // Exit status 0 only for a file `serve` would start with: what ExecStartPre and
        // ExecReload call before a (re)start.
        Command::CheckConfig(arg) => regapp::cli::check::run(&arg.config),
        Command::Serve(args) => {
            let settings = if args.dev {
                Settings::dev()
            } else {
                match Settings::load(&args.config.config) {
                    Ok(settings) => settings,
                    Err(errors) => {
                        eprintln!("{errors}");
                        return ExitCode::FAILURE;
                    }
                }
            };
            regapp::ops::logging::init(&settings.log);
            if args.dev {
                if let Err(e) = regapp::app::prepare_dev(&settings) {
                    eprintln!("regapp: {e}");
                    return ExitCode::FAILURE;
                }
            }
            let config = (!args.dev).then_some(args.config.config);
            match regapp::app::serve(settings, config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("regapp: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// glibc raises its mmap threshold each time a large buffer is freed, after which 1 MiB-class
/// buffers come from per-thread arenas that fragment and are never returned: a fixed threshold
/// and two arenas keep RSS flat (a lower threshold maps and unmaps hyper's read buffers all the
/// time). Keeping up to 32 MiB of a heap's free top spares a push re-faulting its buffers' pages;
/// it is memory already used, so it costs no peak.
fn tame_the_allocator() {
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 * 1024 * 1024);
    }
}
