//! One order over HTTP-01: new order (with `replaces` when renewing a certificate the CA tracks
//! through ARI, and again without it if the CA refuses that), publish the challenge answers for
//! the :80 listener, wait for validation, finalize with a fresh P-256 key, download the chain.
//!
//! Authorizations the CA already holds as valid are skipped. A failed validation is reported
//! with the CA's own error detail for the name that failed.

use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeType, Identifier, NewOrder,
    Order, OrderStatus, Problem, RetryPolicy,
};
use rcgen::{CertificateParams, DistinguishedName, KeyPair};

use super::challenges::{ChallengeTokens, Published};
use super::error::AcmeError;

use super::ORDER_TIMEOUT;

/// Polls start fast (a local CA answers in milliseconds) and back off; Retry-After is honoured.
fn polling() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(50))
        .backoff(1.5)
        .timeout(ORDER_TIMEOUT)
}

/// What an order produced.
#[derive(Debug)]
pub struct Issued {
    /// The chain, leaf first, as the CA sent it.
    pub chain_pem: String,
    /// The new certificate's private key (PKCS#8 PEM).
    pub key_pem: String,
    /// Whether the CA accepted `replaces` (false also when none was sent).
    pub replaced: bool,
}

/// Orders a certificate for `domains`; see the module doc.
pub async fn order_certificate(
    account: &Account,
    domains: &[String],
    profile: Option<&str>,
    replaces: Option<CertificateIdentifier<'static>>,
    tokens: &ChallengeTokens,
) -> Result<Issued, AcmeError> {
    check_profile(account, profile)?;
    let identifiers: Vec<Identifier> = domains.iter().cloned().map(Identifier::Dns).collect();
    let (mut order, replaced) = new_order(account, &identifiers, profile, replaces).await?;
    // The answers must stay published until the CA has validated them.
    let published = answer_challenges(&mut order, tokens).await?;
    wait_until_ready(&mut order).await?;
    drop(published);
    let key = finalize(&mut order, domains).await?;
    let chain_pem = download_chain(&mut order).await?;
    Ok(Issued {
        chain_pem,
        key_pem: key.serialize_pem(),
        replaced,
    })
}

/// Refuses a profile the CA does not offer, naming the ones it does.
fn check_profile(account: &Account, profile: Option<&str>) -> Result<(), AcmeError> {
    if let Some(profile) = profile {
        let offered: Vec<String> = account.profiles().map(|p| p.name.to_owned()).collect();
        if !offered.iter().any(|name| name == profile) {
            return Err(AcmeError::UnknownProfile {
                profile: profile.to_owned(),
                offered,
            });
        }
    }
    Ok(())
}

/// Publishes the HTTP-01 answer of every pending authorization and tells the CA it is ready;
/// the answers are withdrawn when the returned guards drop.
async fn answer_challenges(
    order: &mut Order,
    tokens: &ChallengeTokens,
) -> Result<Vec<Published>, AcmeError> {
    let mut published = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization =
            authorization.map_err(|e| AcmeError::from_acme("fetching an authorization", e))?;
        let name = authorization.identifier().to_string();
        match authorization.status {
            AuthorizationStatus::Valid => {
                tracing::debug!(%name, "authorization already valid");
                continue;
            }
            AuthorizationStatus::Pending => {}
            other => {
                return Err(AcmeError::Validation {
                    name,
                    detail: format!("the CA reports the authorization as {other:?}"),
                })
            }
        }
        let Some(mut challenge) = authorization.challenge(ChallengeType::Http01) else {
            return Err(AcmeError::Validation {
                name,
                detail: "the CA offers no http-01 challenge for it".to_owned(),
            });
        };
        let answer = challenge.key_authorization();
        published.push(tokens.publish(&challenge.token, answer.as_str()).await?);
        challenge
            .set_ready()
            .await
            .map_err(|e| AcmeError::from_acme("answering a challenge", e))?;
    }
    Ok(published)
}

/// Waits until the CA has validated every authorization; a failure carries the CA's reason.
async fn wait_until_ready(order: &mut Order) -> Result<(), AcmeError> {
    // Already ready (every authorization was valid): nothing to wait for.
    let ready = order.state().status == OrderStatus::Ready;
    let status = match ready {
        true => Ok(OrderStatus::Ready),
        false => order.poll_ready(&polling()).await,
    };
    let status = match status {
        Ok(status) => status,
        Err(instant_acme::Error::Api(problem)) => {
            return Err(validation_failure(order, Some(problem)).await)
        }
        Err(e) => return Err(AcmeError::from_acme("waiting for validation", e)),
    };
    if status != OrderStatus::Ready {
        return Err(validation_failure(order, None).await);
    }
    Ok(())
}

/// Finalizes the order with a CSR for `domains` under a fresh P-256 key, and returns that key.
async fn finalize(order: &mut Order, domains: &[String]) -> Result<KeyPair, AcmeError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(domains.to_vec())?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params.serialize_request(&key)?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(|e| AcmeError::from_acme("finalizing the order", e))?;
    Ok(key)
}

/// Downloads the issued chain (PEM, leaf first), waiting for issuance if it is not done yet.
async fn download_chain(order: &mut Order) -> Result<String, AcmeError> {
    // A CA that issues at once answers the finalize with a valid order: no need to wait.
    let issued = match order.state().status {
        OrderStatus::Valid => order.certificate().await.and_then(|chain| {
            chain.ok_or(instant_acme::Error::Str("no certificate in a valid order"))
        }),
        _ => order.poll_certificate(&polling()).await,
    };
    issued.map_err(|e| AcmeError::from_acme("downloading the certificate", e))
}

/// A new order; with `replaces` first when given, and without it if the CA refuses that.
async fn new_order(
    account: &Account,
    identifiers: &[Identifier],
    profile: Option<&str>,
    replaces: Option<CertificateIdentifier<'static>>,
) -> Result<(Order, bool), AcmeError> {
    let plain = || {
        let order = NewOrder::new(identifiers);
        match profile {
            Some(profile) => order.profile(profile),
            None => order,
        }
    };
    if let Some(replaces) = replaces {
        match account.new_order(&plain().replaces(replaces.clone())).await {
            Ok(order) => return Ok((order, true)),
            Err(instant_acme::Error::Api(problem))
                if problem.r#type.as_deref() != Some("urn:ietf:params:acme:error:rateLimited") =>
            {
                tracing::warn!(
                    replaces = %replaces,
                    %problem,
                    "the CA refused the order as a replacement; ordering again without `replaces`"
                );
            }
            Err(e) => return Err(AcmeError::from_acme("creating the order", e)),
        }
    }
    let order = account
        .new_order(&plain())
        .await
        .map_err(|e| AcmeError::from_acme("creating the order", e))?;
    Ok((order, false))
}

/// The CA's reason for an invalid order: the first failed challenge's error, naming its name.
async fn validation_failure(order: &mut Order, order_problem: Option<Problem>) -> AcmeError {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        let name = authorization.identifier().to_string();
        let Ok(state) = authorization.refresh().await else {
            continue;
        };
        if let Some(problem) = state.challenges.iter().find_map(|c| c.error.as_ref()) {
            return AcmeError::Validation {
                name,
                detail: problem_text(problem),
            };
        }
    }
    match order_problem {
        Some(problem) => AcmeError::from_problem("validating the order", problem),
        None => AcmeError::Validation {
            name: "the order".to_owned(),
            detail: "the CA marked it invalid without saying why".to_owned(),
        },
    }
}

fn problem_text(problem: &Problem) -> String {
    match (&problem.detail, &problem.r#type) {
        (Some(detail), Some(kind)) => format!("{detail} ({kind})"),
        (Some(detail), None) => detail.clone(),
        _ => problem.to_string(),
    }
}
