//! `regapp access explain USER REPO [--tag TAG]`: reads the config's rules and prints, for each
//! action, which rule decides and why; with a tag, whether an `[[immutable]]` rule holds it. It needs no running server: the rules are all in the file.

use std::process::ExitCode;

use crate::cli::AccessCommand;
use crate::config::Settings;
use crate::registry::types::RepoName;

pub fn run(command: AccessCommand) -> ExitCode {
    match command {
        AccessCommand::Explain(args) => {
            let settings = match Settings::load(&args.config.config) {
                Ok(settings) => settings,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::FAILURE;
                }
            };
            if let Err(e) = args.repository.parse::<RepoName>() {
                eprintln!("regapp: {:?}: {e}", args.repository);
                return ExitCode::FAILURE;
            }
            let mut text =
                crate::auth::access::explain(&settings.access, &args.user, &args.repository);
            if let Some(tag) = &args.tag {
                let immutable = &settings.engine.store.immutable;
                text.push_str(&match immutable.describe(&args.repository, tag) {
                    Some(rule) => format!(
                        "tag {tag}: immutable by {rule}: it never moves to another digest and is never deleted\n"
                    ),
                    None => format!("tag {tag}: mutable (no [[immutable]] rule holds it)\n"),
                });
            }
            if settings.edge.is_none() {
                text.push_str(&format!(
                    "(no [edge] in {}: nobody is authenticated, so the engine alone enforces no rules)\n",
                    args.config.config.display()
                ));
            }
            // Not `print!`: it panics when the reader went away (`| head`).
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
            ExitCode::SUCCESS
        }
    }
}
