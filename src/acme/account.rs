//! The ACME account: loaded from the state directory when one exists for this directory URL,
//! otherwise created once (with External Account Binding when configured) and stored.

use std::path::PathBuf;
use std::sync::Arc;

use instant_acme::{Account, AccountBuilder, ExternalAccountKey, NewAccount};

use super::error::AcmeError;
use super::state::StateDir;
use super::AcmeOptions;

/// Makes the HTTP side of an account: the system's roots, a private CA's root, or (in tests)
/// canned answers through `Account::builder_with_http`.
pub type Connector = Arc<dyn Fn() -> Result<AccountBuilder, instant_acme::Error> + Send + Sync>;

/// The connector for real CAs: trusts `ca_root` alone when given, else the platform's roots.
pub fn https_connector(ca_root: Option<PathBuf>) -> Connector {
    Arc::new(move || match &ca_root {
        Some(root) => Account::builder_with_root(root),
        None => Account::builder(),
    })
}

/// The stored account for `options.directory`, or a new one (stored before it is used).
pub async fn load_or_create(
    options: &AcmeOptions,
    state: &StateDir,
    connector: &Connector,
) -> Result<Account, AcmeError> {
    let builder =
        || connector().map_err(|e| AcmeError::from_acme("setting up the HTTPS client", e));
    if let Some(credentials) = state.load_account(&options.directory)? {
        let account = builder()?
            .from_credentials(credentials)
            .await
            .map_err(|e| AcmeError::from_acme("reading the CA's directory", e))?;
        tracing::debug!(account = account.id(), "using the stored ACME account");
        return Ok(account);
    }
    let contact: Vec<&str> = options.contact.iter().map(String::as_str).collect();
    let eab = options
        .eab
        .as_ref()
        .map(|(kid, key)| ExternalAccountKey::new(kid.clone(), key));
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            options.directory.clone(),
            eab.as_ref(),
        )
        .await
        .map_err(|e| AcmeError::from_account_creation(e, eab.is_some()))?;
    state.save_account(&options.directory, &credentials)?;
    tracing::info!(
        account = account.id(),
        directory = %options.directory,
        file = %state.account_path(&options.directory).display(),
        "created an ACME account"
    );
    Ok(account)
}
