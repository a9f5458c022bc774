//! The `--store` URL, and TLS to PostgreSQL.
//!
//! TLS is off unless the URL asks for it with `sslmode=require` (or
//! `prefer`), and whenever it is used the server's certificate is verified
//! (as libpq's `verify-full` does): against the system's trusted roots, and
//! the CA certificates in `sslrootcert=FILE` (libpq's parameter, for managed
//! databases whose CA the system does not know).

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::str::FromStr;
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// What a `--store` URL says: where to connect, and how to trust the server.
pub(super) struct StoreUrl {
    /// Host, port, user, password, database, sslmode.
    pub config: tokio_postgres::Config,
    /// The TLS connector (used only when sslmode asks for TLS).
    pub tls: MakeRustlsConnect,
}

/// What is wrong with a `--store` URL or its TLS settings; each says how to
/// fix it.
#[derive(Debug, thiserror::Error)]
pub(super) enum UrlError {
    /// Not a URL PostgreSQL's client reads.
    #[error("{0}; give it as postgres://USER:PASSWORD@HOST:PORT/DATABASE[?sslmode=require]")]
    NotPostgres(tokio_postgres::Error),
    /// `sslrootcert` cannot be read as PEM certificates.
    #[error("sslrootcert={path}: {source} (give a PEM file of CA certificates)")]
    RootCert {
        /// The file named.
        path: String,
        /// Why it cannot be read.
        source: rustls_pki_types::pem::Error,
    },
    /// `sslrootcert` holds no certificate.
    #[error("sslrootcert={0} holds no certificate (give a PEM file of CA certificates)")]
    NoRootCert(String),
    /// rustls refused the TLS configuration.
    #[error("TLS set-up: {0}")]
    Tls(rustls::Error),
}

/// Reads a `postgres://` URL; the error says what was wrong.
pub(super) fn parse(url: &str) -> Result<StoreUrl, UrlError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut root_cert = None;
    let mut sslmode_given = false;
    let mut kept = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "sslrootcert" => root_cert = Some(v.into_owned()),
            "sslmode" => {
                sslmode_given = true;
                if matches!(v.as_ref(), "verify-ca" | "verify-full") {
                    // Verification is what cipc always does with TLS.
                    kept.append_pair("sslmode", "require");
                } else {
                    kept.append_pair(&k, &v);
                }
            }
            _ => {
                kept.append_pair(&k, &v);
            }
        }
    }
    let kept = kept.finish();
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{kept}")
    };
    let mut config = tokio_postgres::Config::from_str(&url).map_err(UrlError::NotPostgres)?;
    if !sslmode_given {
        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
    }
    let tls = connector(root_cert.as_deref())?;
    Ok(StoreUrl { config, tls })
}

/// A rustls connector that trusts the system's roots and `root_cert`'s.
fn connector(root_cert: Option<&str>) -> Result<MakeRustlsConnect, UrlError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = root_cert {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|source| UrlError::RootCert {
                path: path.to_string(),
                source,
            })?;
        if certs.is_empty() {
            return Err(UrlError::NoRootCert(path.to_string()));
        }
        let (_, ignored) = roots.add_parsable_certificates(certs);
        if ignored > 0 {
            tracing::warn!(
                path,
                ignored,
                "some certificates in sslrootcert were not usable"
            );
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(UrlError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
