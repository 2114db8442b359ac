//! `serve --role ci|ap --renew-at-contact` (the default): the renewal at contact
//! ([`server::contact`]) that `serve` starts for the role.

use std::sync::Arc;
use std::time::Duration;

use relay::hub::Hub;
use server::contact::ContactConfig;
use tsm::ssd::{CiContact, CiPlatform, RenewAtContact};

use crate::serve::ServeArgs;

/// What [`server::contact::spawn`] needs.
pub struct Contact {
    /// The terminals watched.
    pub hub: Arc<Hub>,
    /// The platform that renews.
    pub platform: Arc<dyn RenewAtContact>,
    /// How often.
    pub config: ContactConfig,
}

fn config(a: &ServeArgs) -> Option<ContactConfig> {
    (!a.no_renew_at_contact).then(|| ContactConfig {
        scan_every: Duration::from_secs(a.renew_scan_every.max(1)),
        ..ContactConfig::default()
    })
}

/// The CI's: at the desks of `--issuance` (none without), jobs recorded for
/// `platform/renew-at-contact`.
pub fn ci(a: &ServeArgs, ci: &Arc<CiPlatform>, desks: Option<&Arc<Hub>>) -> Option<Contact> {
    let hub = desks?.clone();
    let platform = Arc::new(CiContact {
        ci: ci.clone(),
        actor: tsm::Actor::new("platform", "renew-at-contact"),
    });
    Some(Contact {
        hub,
        platform,
        config: config(a)?,
    })
}

/// The AP's: at its terminals.
pub fn ap(a: &ServeArgs, api: &Arc<server::ap::ApApi>) -> Option<Contact> {
    Some(Contact {
        hub: api.hub().clone(),
        platform: api.platform().clone(),
        config: config(a)?,
    })
}
