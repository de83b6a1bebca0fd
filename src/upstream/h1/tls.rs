//! TLS for `https://` upstreams, configured as reqwest configures its own (the same crates,
//! already in the tree through it): rustls with aws-lc-rs, TLS 1.2 and 1.3, the operating
//! system's trust store through rustls-platform-verifier (on Linux the system bundle, or the
//! files `SSL_CERT_FILE` and `SSL_CERT_DIR` name). Only `http/1.1` is offered by ALPN: this
//! client speaks nothing else.

use std::sync::{Arc, OnceLock};

use rustls::ClientConfig;
use rustls::crypto::CryptoProvider;

/// The configuration for every https upstream connection, with the platform's verifier.
/// Built once per process and shared by the workers' clients: the trust store is read once,
/// and a session one worker made can be resumed by another.
pub fn platform_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, rustls::Error>> = OnceLock::new();
    CONFIG.get_or_init(build_platform_config).clone()
}

fn build_platform_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    // A provider installed by the process would be reqwest's choice too; there is none in
    // this binary, so this is aws-lc-rs, reqwest's default.
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let verifier = rustls_platform_verifier::Verifier::new(Arc::clone(&provider))?;
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(http11_only(config))
}

/// `config` offering `http/1.1` by ALPN, as an upstream must know that h2 is not spoken.
pub fn http11_only(mut config: ClientConfig) -> Arc<ClientConfig> {
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}
