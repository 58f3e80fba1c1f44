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

use super::challenges::ChallengeTokens;
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
    if let Some(profile) = profile {
        let offered: Vec<String> = account.profiles().map(|p| p.name.to_owned()).collect();
        if !offered.iter().any(|name| name == profile) {
            return Err(AcmeError::UnknownProfile {
                profile: profile.to_owned(),
                offered,
            });
        }
    }
    let identifiers: Vec<Identifier> = domains.iter().cloned().map(Identifier::Dns).collect();
    let (mut order, replaced) = new_order(account, &identifiers, profile, replaces).await?;

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
        published.push(tokens.publish(&challenge.token, challenge.key_authorization().as_str()));
        challenge
            .set_ready()
            .await
            .map_err(|e| AcmeError::from_acme("answering a challenge", e))?;
    }

    // Already ready (every authorization was valid): nothing to wait for.
    let ready = order.state().status == OrderStatus::Ready;
    let status = match ready {
        true => Ok(OrderStatus::Ready),
        false => order.poll_ready(&polling()).await,
    };
    let status = match status {
        Ok(status) => status,
        Err(instant_acme::Error::Api(problem)) => {
            return Err(validation_failure(&mut order, Some(problem)).await)
        }
        Err(e) => return Err(AcmeError::from_acme("waiting for validation", e)),
    };
    if status != OrderStatus::Ready {
        return Err(validation_failure(&mut order, None).await);
    }
    drop(published);

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(domains.to_vec())?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params.serialize_request(&key)?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(|e| AcmeError::from_acme("finalizing the order", e))?;
    // A CA that issues at once answers the finalize with a valid order: no need to wait.
    let issued = match order.state().status {
        OrderStatus::Valid => order.certificate().await.and_then(|chain| {
            chain.ok_or(instant_acme::Error::Str("no certificate in a valid order"))
        }),
        _ => order.poll_certificate(&polling()).await,
    };
    let chain_pem = issued.map_err(|e| AcmeError::from_acme("downloading the certificate", e))?;
    Ok(Issued {
        chain_pem,
        key_pem: key.serialize_pem(),
        replaced,
    })
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
