//! `regapp cert status|renew`: reads the configuration to find the ACME state directory, then
//! asks the running server over its control socket (see `acme::control`). `status` falls back to
//! what is on disk when the server is not running; `renew` needs the server and says so.

use std::process::ExitCode;

use crate::certs::acme::{self, control};
use crate::certs::TlsSettings;
use crate::cli::CertCommand;
use crate::config::Settings;
use crate::plumbing::control_socket::ControlError;
use crate::storage::Backend;

pub fn run(command: CertCommand) -> ExitCode {
    let (config, renew) = match &command {
        CertCommand::Status(arg) => (&arg.config, false),
        CertCommand::Renew(arg) => (&arg.config, true),
    };
    let settings = match Settings::load(config) {
        Ok(settings) => settings,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let acme = match settings.edge.as_ref().map(|edge| &edge.tls) {
        Some(TlsSettings::Acme(acme)) => acme,
        _ => {
            eprintln!(
                "regapp cert: {} does not use ACME (it needs [edge] and tls.mode = \"acme\")",
                config.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let options = acme.clone();
    let socket = acme::StateDir::new(&options.state_dir, &options.directory).control_socket();
    if renew {
        println!("renewing through the running server (this takes one ACME order) …");
        return match control::request(&socket, "renew") {
            Ok(report) => {
                print!("renewed\n{report}");
                ExitCode::SUCCESS
            }
            Err(e @ ControlError::NotRunning { .. }) => {
                eprintln!("regapp cert renew: {}", control::not_running(&e));
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("regapp cert renew: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match control::request(&socket, "status") {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(ControlError::NotRunning { .. }) => match stored_status(&settings, &options) {
            Ok(status) => {
                print!("{}", status.report());
                println!("server:        not running (due date by the lifetime rule; a running server also asks the CA)");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("regapp cert status: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("regapp cert status: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The certificate as stored: in the state directory, or with several nodes in the bucket
/// (with who holds the `acme` lease).
fn stored_status(settings: &Settings, options: &acme::AcmeOptions) -> Result<acme::Status, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let bucket = match settings.storage.backend {
            Backend::S3(_) => {
                let driver = crate::storage::driver(&settings.storage)
                    .map_err(|e| format!("storage {}: {e}", settings.storage.location()))?;
                Some((driver, settings.cluster.node.as_str()))
            }
            Backend::Filesystem => None,
        };
        acme::status_stored(options, bucket)
            .await
            .map_err(|e| e.to_string())
    })
}
