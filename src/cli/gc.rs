//! `regapp gc` and `regapp du`: ask the running server over `gc.sock` in the storage root
//! (see `gc::control`), showing its progress; when none runs, work on the store directly — a
//! collection then holds `gc.lock`, which a server starting meanwhile waits for.

use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::{ConfigArg, GcArgs};
use crate::config::Settings;
use crate::plumbing::control_socket::ControlError;
use crate::registry::gc::control;
use crate::registry::gc::progress::TerminalLine;
use crate::registry::gc::{lock, Collector, RunOptions};

pub fn gc(args: GcArgs) -> ExitCode {
    let Some(settings) = load(&args.config) else {
        return ExitCode::FAILURE;
    };
    let options = RunOptions {
        dry_run: args.dry_run,
        delete_untagged: args.delete_untagged,
    };
    let socket = lock::socket_path(&settings.storage.root);
    let answer = ask_server_or_work_alone(&socket, &control::collect_command(options), || async {
        let collector = collector(&settings)?;
        let report = collector.run_once(options).await?;
        collector.reclaim().await?;
        Ok(report.summary())
    });
    let file_settings = settings.gc.settings_line();
    finish("gc", answer, |answer| match answer {
        Answer::Server(report) => {
            print!("collected by the running server, with its own settings\n{report}");
            warn_if_the_server_differs(&args.config.config, &file_settings, &report);
        }
        Answer::Alone(report) => print!(
            "collected without a server (none answers on {}), with the settings of {}\n{report}",
            socket.display(),
            args.config.config.display()
        ),
    })
}

/// The server collects with the settings it loaded (at start or its last SIGHUP), not with
/// the file given here: says so when the two differ.
fn warn_if_the_server_differs(file: &std::path::Path, file_settings: &str, report: &str) {
    let server = report
        .lines()
        .find_map(|line| line.strip_prefix(crate::registry::gc::SETTINGS_PREFIX));
    if server.is_some_and(|server| server != file_settings) {
        eprintln!(
            "warning: {} says {file_settings}; the running server collected with its own \
             settings above. Reload it (systemctl reload regapp, or SIGHUP) to apply the file.",
            file.display()
        );
    }
}

pub fn du(arg: ConfigArg) -> ExitCode {
    let Some(settings) = load(&arg) else {
        return ExitCode::FAILURE;
    };
    let socket = lock::socket_path(&settings.storage.root);
    let answer = ask_server_or_work_alone(&socket, "du", || async {
        let usage = collector(&settings)?.usage().await?;
        Ok(usage.report())
    });
    finish("du", answer, |answer| match answer {
        Answer::Server(report) | Answer::Alone(report) => print!("{report}"),
    })
}

/// Who produced a report.
enum Answer {
    Server(String),
    Alone(String),
}

/// Asks the running server over `socket`; when none answers there, does `alone` on the store
/// itself. Any other failure (permission, a refusal) is the answer: no fallback behind a
/// server's back.
fn ask_server_or_work_alone<F, Fut>(
    socket: &std::path::Path,
    command: &str,
    alone: F,
) -> Result<Answer, String>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<String, crate::registry::gc::GcError>>,
{
    // The server's progress, on this terminal as if the work ran here.
    let mut terminal = TerminalLine::on_stderr();
    let asked = control::request(socket, command, |text| {
        if let Some(line) = &mut terminal {
            line.show(text);
        }
    });
    if let Some(line) = &mut terminal {
        line.clear();
    }
    match asked {
        Ok(report) => return Ok(Answer::Server(report)),
        Err(ControlError::NotRunning { .. }) => {}
        Err(e) => return Err(e.to_string()),
    }
    let report = runtime()?.block_on(alone()).map_err(|e| e.to_string())?;
    Ok(Answer::Alone(report))
}

/// Prints the answer (or `regapp <name>: <error>`) and gives the exit code.
fn finish(name: &str, answer: Result<Answer, String>, print: impl FnOnce(Answer)) -> ExitCode {
    match answer {
        Ok(answer) => {
            print(answer);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("regapp {name}: {e}");
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

fn collector(settings: &Settings) -> Result<Collector, crate::registry::gc::GcError> {
    let store =
        crate::registry::store::Store::open(&settings.storage, settings.engine.store.clone())?;
    let store = Arc::new(store);
    let disposal = crate::registry::gc::disposal_for(&settings.storage, store.driver());
    Ok(
        Collector::new(store, disposal, settings.gc.clone(), &settings.storage.root)
            .on_node(&settings.storage, &settings.cluster.node)
            .interactive(),
    )
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}
