//! `regapp gc` and `regapp du`: ask the running server over `gc.sock` in the storage root
//! (see `gc::control`); when none runs, work on the store directly — a collection then holds
//! `gc.lock`, which a server starting meanwhile waits for.

use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::{ConfigArg, GcArgs};
use crate::config::Settings;
use crate::control_socket::ControlError;
use crate::gc::control;
use crate::gc::{lock, Collector, RunOptions};

pub fn gc(args: GcArgs) -> ExitCode {
    let Some(settings) = load(&args.config) else {
        return ExitCode::FAILURE;
    };
    let options = RunOptions {
        dry_run: args.dry_run,
        delete_untagged: args.delete_untagged,
    };
    let socket = lock::socket_path(&settings.storage.root);
    match control::request(&socket, &control::collect_command(options)) {
        Ok(report) => {
            println!("collected by the running server");
            print!("{report}");
            return ExitCode::SUCCESS;
        }
        Err(ControlError::NotRunning { .. }) => {}
        Err(e) => {
            eprintln!("regapp gc: {e}");
            return ExitCode::FAILURE;
        }
    }
    let result = runtime().and_then(|runtime| {
        runtime
            .block_on(collector(&settings).run_once(options))
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(report) => {
            println!(
                "collected without a server (none answers on {})",
                socket.display()
            );
            print!("{}", report.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("regapp gc: {e}");
            ExitCode::FAILURE
        }
    }
}

pub fn du(arg: ConfigArg) -> ExitCode {
    let Some(settings) = load(&arg) else {
        return ExitCode::FAILURE;
    };
    let socket = lock::socket_path(&settings.storage.root);
    match control::request(&socket, "du") {
        Ok(report) => {
            print!("{report}");
            return ExitCode::SUCCESS;
        }
        Err(ControlError::NotRunning { .. }) => {}
        Err(e) => {
            eprintln!("regapp du: {e}");
            return ExitCode::FAILURE;
        }
    }
    let result = runtime().and_then(|runtime| {
        runtime
            .block_on(collector(&settings).usage())
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(usage) => {
            print!("{}", usage.report());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("regapp du: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(arg: &ConfigArg) -> Option<Settings> {
    match Settings::load(&arg.config) {
        Ok(settings) => Some(settings),
        Err(errors) => {
            eprintln!("{errors}");
            None
        }
    }
}

fn collector(settings: &Settings) -> Collector {
    let store = Arc::new(crate::app::build_store(settings));
    Collector::new(
        store,
        crate::app::gc_policy(&settings.gc),
        &settings.storage.root,
    )
    .interactive()
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}
