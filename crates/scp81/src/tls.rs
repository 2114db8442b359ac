//! TLS-PSK contexts over OpenSSL, shared settings for both sides.

use std::sync::Arc;

use openssl::ssl::{
    SslAcceptor, SslConnector, SslContextBuilder, SslMethod, SslOptions, SslSessionCacheMode,
    SslVersion,
};
use zeroize::Zeroizing;

use crate::error::TlsError;

/// OpenSSL names of the cipher suites Amendment B's TLS 1.2 profile asks cards to
/// support: `TLS_PSK_WITH_AES_128_GCM_SHA256` and `TLS_PSK_WITH_AES_128_CBC_SHA256`.
/// The default for both sides.
pub const AMENDMENT_B_CIPHERS: &str = "PSK-AES128-GCM-SHA256:PSK-AES128-CBC-SHA256";

/// Longest PSK accepted (OpenSSL's own limit is larger; SCP81 keys are 16–32 bytes).
pub const MAX_PSK_LEN: usize = 64;

/// Looks up the PSK of a security domain by the TLS PSK identity the card sends.
///
/// The platform's key store implements this (SCP81 keys: key version numbers
/// 0x40–0x4F). It is called from inside OpenSSL's handshake, on the connection's
/// task: it must answer from memory or a fast local store, not block on the network.
pub trait PskStore: Send + Sync + 'static {
    /// The key for `identity` (the identity's bytes as sent, without the terminating
    /// NUL), or `None` to refuse the handshake.
    fn psk(&self, identity: &[u8]) -> Option<Zeroizing<Vec<u8>>>;
}

impl<F> PskStore for F
where
    F: Fn(&[u8]) -> Option<Zeroizing<Vec<u8>>> + Send + Sync + 'static,
{
    fn psk(&self, identity: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        self(identity)
    }
}

/// What the PSK callback saw, kept on the `Ssl` for the session report.
#[derive(Clone, Debug, Default)]
pub(crate) struct PskSeen {
    pub(crate) identity: Option<Vec<u8>>,
    pub(crate) known: bool,
}

fn tls12_only(b: &mut SslContextBuilder, ciphers: &str) -> Result<(), TlsError> {
    b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    b.set_max_proto_version(Some(SslVersion::TLS1_2))?;
    b.set_cipher_list(ciphers)?;
    // Amendment B: no session resumption, no renegotiation.
    b.set_options(SslOptions::NO_TICKET | SslOptions::NO_RENEGOTIATION);
    b.set_session_cache_mode(SslSessionCacheMode::OFF);
    Ok(())
}

/// The server's acceptor: TLS 1.2 only, the given PSK cipher list, keys from `store`.
pub(crate) fn acceptor(
    ciphers: &str,
    store: Arc<dyn PskStore>,
    seen: openssl::ex_data::Index<openssl::ssl::Ssl, PskSeen>,
) -> Result<SslAcceptor, TlsError> {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    tls12_only(&mut b, ciphers)?;
    b.set_psk_server_callback(move |ssl, identity, out| {
        let mut record = PskSeen {
            identity: identity.map(<[u8]>::to_vec),
            known: false,
        };
        let key = identity.and_then(|id| store.psk(id));
        let len = match key {
            Some(key) if !key.is_empty() && key.len() <= out.len().min(MAX_PSK_LEN) => {
                out[..key.len()].copy_from_slice(&key);
                record.known = true;
                key.len()
            }
            Some(_) => {
                tracing::warn!("PSK store returned a key of unusable length; refusing");
                0
            }
            // 0 makes OpenSSL abort the handshake (unknown_psk_identity).
            None => 0,
        };
        ssl.set_ex_data(seen, record);
        Ok(len)
    });
    Ok(b.build())
}

/// A client (card-side) connector holding `identity` and `psk`.
pub(crate) fn connector(
    ciphers: &str,
    identity: Vec<u8>,
    psk: Zeroizing<Vec<u8>>,
) -> Result<SslConnector, TlsError> {
    let mut b = SslConnector::builder(SslMethod::tls_client())?;
    tls12_only(&mut b, ciphers)?;
    b.set_psk_client_callback(move |_ssl, _hint, id_out, psk_out| {
        // The identity goes out as a C string.
        if identity.len() >= id_out.len() || psk.len() > psk_out.len() {
            return Ok(0);
        }
        id_out[..identity.len()].copy_from_slice(&identity);
        id_out[identity.len()] = 0;
        psk_out[..psk.len()].copy_from_slice(&psk);
        Ok(psk.len())
    });
    Ok(b.build())
}

/// Check a PSK identity: 1..=128 bytes, no NUL (it travels as a C string).
pub(crate) fn valid_identity(identity: &[u8]) -> bool {
    !identity.is_empty() && identity.len() <= 128 && !identity.contains(&0)
}
