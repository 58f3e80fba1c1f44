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
    for warning in mirror_warnings(&settings) {
        eprintln!("warning: {warning}");
    }
    println!("{}: ok\n{settings}", path.display());
    ExitCode::SUCCESS
}

/// A `[[mirror]]` prefix that is the first component of repositories pushed to the store
/// hides them: said, not refused (the operator may mean it).
fn mirror_warnings(settings: &Settings) -> Vec<String> {
    let mirrors = &settings.engine.mirrors;
    if mirrors.is_empty() {
        return Vec::new();
    }
    let check = async {
        let store =
            crate::registry::store::Store::open(&settings.storage, settings.engine.store.clone())?;
        let mut warnings = Vec::new();
        for mirror in mirrors {
            let hidden =
                crate::registry::mirror::local_repositories_under(&store, &mirror.prefix).await?;
            if !hidden.is_empty() {
                warnings.push(format!(
                    "[[mirror]] {:?}: prefix {:?} is the first component of local repositories, \
                     which the mirror hides (pulls go to {}, pushes are refused): {}",
                    mirror.upstream.name,
                    mirror.prefix,
                    mirror.upstream.url,
                    hidden.join(", ")
                ));
            }
        }
        Ok::<_, crate::registry::store::StoreError>(warnings)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match runtime.map(|rt| rt.block_on(check)) {
        Ok(Ok(warnings)) => warnings,
        Ok(Err(e)) => vec![format!(
            "could not look for local repositories under the mirrors' prefixes: {e}"
        )],
        Err(e) => vec![format!("could not look for local repositories: {e}")],
    }
}
