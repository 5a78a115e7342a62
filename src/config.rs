//! Client configuration.
//!
//! [`Config`] holds what every client needs: timeouts, message size limits, TLS material, the
//! keyspace (API v2), how store addresses become URLs, and the runtime (clock and timers).
//! Defaults follow client-go. Build one with the `with_*` methods:
//!
//! ```
//! use std::time::Duration;
//! use tikv_client::Config;
//!
//! let config = Config::default()
//!     .with_timeout(Duration::from_secs(10))
//!     .with_keyspace("tenant-a");
//! assert_eq!(config.timeout, Duration::from_secs(10));
//! assert!(config.validate().is_ok());
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::rt::Runtime;
use crate::transport::{AddressMapper, DefaultAddressMapper};
use crate::{Error, Result};

/// client-go's `ReadTimeoutShort`: the deadline of an ordinary RPC.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// client-go's `ReadTimeoutMedium`: the deadline of slow RPCs (scans, batch gets).
pub const DEFAULT_LONG_TIMEOUT: Duration = Duration::from_secs(60);
/// client-go's dial timeout.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a PD request may keep retrying by default.
pub const DEFAULT_PD_RETRY_BUDGET: Duration = Duration::from_secs(20);
/// The default total deadline of one public operation, attempts and retries included.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(60);
/// The default gRPC message size limit: none in practice (client-go uses `MaxInt64 - 1`).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = usize::MAX;

/// Settings shared by every client.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The deadline of an ordinary RPC. Default 30 s.
    pub timeout: Duration,
    /// The deadline of slow RPCs such as scans and batch gets. Default 60 s.
    pub long_timeout: Duration,
    /// How long opening a connection may take. Default 5 s.
    pub dial_timeout: Duration,
    /// The largest gRPC message accepted. Default: no practical limit.
    pub max_decoding_message_size: usize,
    /// The largest gRPC message sent. Default: no practical limit.
    pub max_encoding_message_size: usize,
    /// The API v2 keyspace to work in, by name; `None` for API v1.
    pub keyspace: Option<String>,
    /// TLS material for native connections; `None` for plain HTTP/2.
    pub tls: Option<TlsConfig>,
    /// Turns store and PD addresses into URLs.
    pub address_mapper: Arc<dyn AddressMapper>,
    /// Time and timers. Default: the system's.
    pub runtime: Runtime,
    /// How long a PD request may keep retrying (with the `pdRPC` backoff). Default 20 s.
    pub pd_retry_budget: Duration,
    /// The total deadline of one public operation (a read, a write, a lock request, a commit,
    /// a scan page), including every attempt, retry and sleep. Default 60 s; clients and
    /// transactions can set their own (`RawClient::with_operation_timeout`,
    /// `TransactionOptions::operation_timeout`). An attempt's RPC deadline
    /// ([`Config::timeout`]) is clipped to what is left of it.
    pub operation_timeout: Duration,
    /// Whether requests to TiKV are gzip-compressed. Default off, as in client-go; gzip
    /// responses are always accepted.
    pub gzip: bool,
    /// Whether batchable requests to a store share one long-lived `BatchCommands` stream
    /// (client-go's transport) instead of one gRPC call each. Default on, as in client-go
    /// (several times the throughput of unary calls under concurrency: `benches/mock.rs`).
    /// Native targets only: gRPC-web cannot stream requests, so wasm32 sends unary calls.
    pub batch_commands: bool,
}

/// Paths to PEM files for TLS (native targets; browsers use the page's HTTPS).
///
/// With only a CA the client checks the servers' certificates (server-only TLS, from
/// [`Config::with_tls_ca`]); with a client certificate and key as well it also proves who it
/// is (mutual TLS, from [`Config::with_security`]), as TiKV's `security.cert-allowed-cn`
/// setups require. The certificate and the key come together: [`Config::validate`] refuses
/// one without the other.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsConfig {
    /// The CA certificate that signed the servers' certificates.
    pub ca_path: PathBuf,
    /// This client's certificate, for mutual TLS.
    pub cert_path: Option<PathBuf>,
    /// This client's private key, for mutual TLS.
    pub key_path: Option<PathBuf>,
}

impl TlsConfig {
    /// Server-only TLS: trust servers whose certificates `ca_path` signed.
    pub fn new(ca_path: impl Into<PathBuf>) -> Self {
        TlsConfig {
            ca_path: ca_path.into(),
            cert_path: None,
            key_path: None,
        }
    }

    /// Mutual TLS: also present this certificate, proven with this private key.
    pub fn with_client_identity(
        mut self,
        cert_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
    ) -> Self {
        self.cert_path = Some(cert_path.into());
        self.key_path = Some(key_path.into());
        self
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timeout: DEFAULT_TIMEOUT,
            long_timeout: DEFAULT_LONG_TIMEOUT,
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
            max_decoding_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_encoding_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            keyspace: None,
            tls: None,
            address_mapper: Arc::new(DefaultAddressMapper),
            runtime: Runtime::system(),
            pd_retry_budget: DEFAULT_PD_RETRY_BUDGET,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            gzip: false,
            batch_commands: true,
        }
    }
}

impl Config {
    /// Sets the deadline of ordinary RPCs.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the deadline of slow RPCs (scans, batch gets).
    pub fn with_long_timeout(mut self, timeout: Duration) -> Self {
        self.long_timeout = timeout;
        self
    }

    /// Sets how long opening a connection may take.
    pub fn with_dial_timeout(mut self, timeout: Duration) -> Self {
        self.dial_timeout = timeout;
        self
    }

    /// Sets the largest gRPC message accepted and sent.
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_decoding_message_size = bytes;
        self.max_encoding_message_size = bytes;
        self
    }

    /// Works in the API v2 keyspace `name`.
    pub fn with_keyspace(mut self, name: impl Into<String>) -> Self {
        self.keyspace = Some(name.into());
        self
    }

    /// Connects with TLS, trusting servers whose certificates the CA in `ca_path` (PEM)
    /// signed. Addresses without a scheme become `https://` URLs; an `http://` URL is then
    /// refused rather than dialled in plaintext.
    pub fn with_tls_ca(mut self, ca_path: impl Into<PathBuf>) -> Self {
        self.tls = Some(TlsConfig::new(ca_path));
        self
    }

    /// Connects with mutual TLS using PEM files: the CA that signed the servers'
    /// certificates, and this client's certificate and private key.
    pub fn with_security(
        mut self,
        ca_path: impl Into<PathBuf>,
        cert_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
    ) -> Self {
        self.tls = Some(TlsConfig::new(ca_path).with_client_identity(cert_path, key_path));
        self
    }

    /// Replaces how addresses become URLs (for example to send everything through one
    /// gRPC-web proxy).
    pub fn with_address_mapper(mut self, mapper: impl AddressMapper + 'static) -> Self {
        self.address_mapper = Arc::new(mapper);
        self
    }

    /// Sets how long a PD request may keep retrying.
    pub fn with_pd_retry_budget(mut self, budget: Duration) -> Self {
        self.pd_retry_budget = budget;
        self
    }

    /// Sets the total deadline of one public operation, attempts and retries included.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Compresses requests to TiKV with gzip (useful on slow links, such as a browser far from
    /// its proxy).
    pub fn with_gzip(mut self, gzip: bool) -> Self {
        self.gzip = gzip;
        self
    }

    /// Sends batchable requests over one `BatchCommands` stream per store (native only).
    pub fn with_batch_commands(mut self, on: bool) -> Self {
        self.batch_commands = on;
        self
    }

    /// Replaces the clock and timers (tests use [`Runtime::manual`]).
    pub fn with_runtime(mut self, runtime: Runtime) -> Self {
        self.runtime = runtime;
        self
    }

    /// Checks the settings, naming the first that is invalid.
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("timeout", self.timeout),
            ("long_timeout", self.long_timeout),
            ("dial_timeout", self.dial_timeout),
            ("operation_timeout", self.operation_timeout),
            ("pd_retry_budget", self.pd_retry_budget),
        ] {
            if value.is_zero() {
                return Err(Error::InvalidConfig(format!(
                    "{name} must be greater than zero"
                )));
            }
        }
        if self.max_decoding_message_size < 1024 || self.max_encoding_message_size < 1024 {
            return Err(Error::InvalidConfig(
                "message size limits below 1 KiB cannot carry a TiKV response".into(),
            ));
        }
        if matches!(&self.keyspace, Some(name) if name.is_empty()) {
            return Err(Error::InvalidConfig(
                "keyspace name must not be empty".into(),
            ));
        }
        if let Some(tls) = &self.tls {
            if !crate::transport::TLS_FILES_SUPPORTED {
                return Err(Error::InvalidConfig(
                    "TLS files cannot be used on wasm32: use https:// URLs through the address mapper"
                        .into(),
                ));
            }
            if tls.cert_path.is_some() != tls.key_path.is_some() {
                return Err(Error::InvalidConfig(
                    "tls: a client certificate needs its private key and a key its certificate: \
                     set both (mutual TLS, Config::with_security) or neither (Config::with_tls_ca)"
                        .into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_client_go() {
        let c = Config::default();
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(c.long_timeout, Duration::from_secs(60));
        assert_eq!(c.dial_timeout, Duration::from_secs(5));
        assert_eq!(c.max_decoding_message_size, usize::MAX);
        assert!(c.keyspace.is_none() && c.tls.is_none());
        assert_eq!(
            c.address_mapper.map("127.0.0.1:20160", false),
            "http://127.0.0.1:20160"
        );
        c.validate().unwrap();
    }

    #[test]
    fn builders_set_fields() {
        let c = Config::default()
            .with_timeout(Duration::from_secs(1))
            .with_long_timeout(Duration::from_secs(2))
            .with_dial_timeout(Duration::from_secs(3))
            .with_max_message_size(1 << 20)
            .with_keyspace("ks")
            .with_security("ca.pem", "cert.pem", "key.pem");
        assert_eq!(c.timeout, Duration::from_secs(1));
        assert_eq!(c.long_timeout, Duration::from_secs(2));
        assert_eq!(c.dial_timeout, Duration::from_secs(3));
        assert_eq!(c.max_encoding_message_size, 1 << 20);
        assert_eq!(c.keyspace.as_deref(), Some("ks"));
        let tls = c.tls.as_ref().unwrap();
        assert_eq!(tls.ca_path, PathBuf::from("ca.pem"));
        assert_eq!(
            tls.cert_path.as_deref(),
            Some(std::path::Path::new("cert.pem"))
        );
        assert_eq!(
            tls.key_path.as_deref(),
            Some(std::path::Path::new("key.pem"))
        );
        c.validate().unwrap();
    }

    #[test]
    fn server_only_tls_needs_just_a_ca() {
        let c = Config::default().with_tls_ca("ca.pem");
        assert_eq!(c.tls, Some(TlsConfig::new("ca.pem")));
        assert!(c.tls.as_ref().unwrap().cert_path.is_none());
        c.validate().unwrap();
        // A later with_security replaces it with mutual TLS.
        let c = c.with_security("ca2.pem", "cert.pem", "key.pem");
        assert_eq!(
            c.tls,
            Some(TlsConfig::new("ca2.pem").with_client_identity("cert.pem", "key.pem"))
        );
    }

    #[test]
    fn a_client_certificate_without_its_key_is_invalid() {
        for (cert, key) in [(Some("cert.pem"), None), (None, Some("key.pem"))] {
            let mut c = Config::default().with_tls_ca("ca.pem");
            let tls = c.tls.as_mut().unwrap();
            tls.cert_path = cert.map(PathBuf::from);
            tls.key_path = key.map(PathBuf::from);
            let err = c.validate().unwrap_err();
            assert!(
                matches!(&err, Error::InvalidConfig(m) if m.starts_with("tls:") && m.contains("with_security")),
                "{err}"
            );
        }
    }

    #[test]
    fn invalid_settings_are_named() {
        let err = Config::default()
            .with_timeout(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(m) if m.starts_with("timeout")));
        for zero in [
            Config::default().with_operation_timeout(Duration::ZERO),
            Config::default().with_pd_retry_budget(Duration::ZERO),
        ] {
            let err = zero.validate().unwrap_err();
            assert!(
                matches!(err, Error::InvalidConfig(m) if m.contains("must be greater than zero"))
            );
        }
        let err = Config::default().with_keyspace("").validate().unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(m) if m.contains("keyspace")));
        let err = Config::default()
            .with_max_message_size(10)
            .validate()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(m) if m.contains("message size")));
    }
}
