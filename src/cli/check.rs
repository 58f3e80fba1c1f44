//! `regapp check-config`: loads the file as `serve` would and says whether it would start.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Settings;

/// `regapp check-config`: whether `serve` would start with the file (exit status 0 only then),
/// and what it would warn about: users of the htpasswd file it would skip.
pub fn run(path: &Path) -> ExitCode {
    let settings = match Settings::load(path) {
        Ok(settings) => settings,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(edge) = &settings.edge {
        let htpasswd = &edge.auth.htpasswd;
        match crate::auth::users::inspect(htpasswd) {
            Ok(refused) => {
                for user in refused {
                    eprintln!("warning: htpasswd {}, {user}", htpasswd.display());
                }
            }
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{}: ok\n{settings}", path.display());
    ExitCode::SUCCESS
}
