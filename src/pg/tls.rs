//! TLS to PostgreSQL, as libpq's `sslmode` and `sslrootcert` say it:
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | |
//! | `prefer` (the default) | when the server offers it | not checked |
//! | `require` | always | not checked; checked against `sslrootcert` when one is given |
//! | `verify-ca` | always | signed by a CA of `sslrootcert` (else the system's roots) |
//! | `verify-full` | always | that, and made out to the host connected to |
//!
//! Nothing but `prefer` ever falls back to plaintext. The plain connections speak it through
//! native-tls (the OpenSSL librdkafka links anyway), the replication stream through the
//! replication crate's own rustls.

use std::path::PathBuf;

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<SslMode, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            // libpq's `allow` prefers plaintext: never what a CDC pipeline wants.
            other => {
                return Err(format!(
                    "sslmode={other:?}: expected disable, prefer, require, verify-ca or verify-full"
                ))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// How a connection uses TLS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tls {
    pub mode: SslMode,
    /// `sslrootcert`: the CAs (PEM) a server's certificate must be signed by.
    pub root_cert: Option<PathBuf>,
}

impl Tls {
    /// Takes `sslmode` and `sslrootcert` out of a connection string (a URL or `key=value`
    /// words): tokio-postgres knows neither the verify modes nor the root certificate.
    /// Returns them, and the string left for tokio-postgres.
    pub fn split(conn: &str) -> Result<(Tls, String), String> {
        let mut tls = Tls::default();
        let mut take = |key: &str, value: &str| -> Result<bool, String> {
            match key {
                "sslmode" => tls.mode = SslMode::parse(value)?,
                "sslrootcert" => tls.root_cert = Some(PathBuf::from(value)),
                _ => return Ok(false),
            }
            Ok(true)
        };
        let rest = if conn.starts_with("postgres://") || conn.starts_with("postgresql://") {
            match conn.split_once('?') {
                None => conn.to_owned(),
                Some((base, query)) => {
                    let mut kept = form_urlencoded::Serializer::new(String::new());
                    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                        if !take(&k, &v)? {
                            kept.append_pair(&k, &v);
                        }
                    }
                    match kept.finish() {
                        q if q.is_empty() => base.to_owned(),
                        q => format!("{base}?{q}"),
                    }
                }
            }
        } else {
            // `key=value` words; a quoted value holding spaces is never one of these two.
            let mut kept = Vec::new();
            for word in conn.split_whitespace() {
                let taken = match word.split_once('=') {
                    Some((k, v)) => take(k.trim(), v.trim_matches('\''))?,
                    None => false,
                };
                if !taken {
                    kept.push(word);
                }
            }
            kept.join(" ")
        };
        // libpq: `require` with a root certificate verifies the chain, as `verify-ca`.
        if tls.mode == SslMode::Require && tls.root_cert.is_some() {
            tls.mode = SslMode::VerifyCa;
        }
        Ok((tls, rest))
    }

    /// What tokio-postgres is told: whether to ask for TLS, and whether it must have it.
    pub fn negotiation(&self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Pg;
        match self.mode {
            SslMode::Disable => Pg::Disable,
            SslMode::Prefer => Pg::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Pg::Require,
        }
    }

    /// The replication crate's settings for the same.
    pub fn replication(&self) -> pgwire_replication::config::TlsConfig {
        use pgwire_replication::config::TlsConfig;
        match self.mode {
            SslMode::Disable => TlsConfig::disabled(),
            SslMode::Prefer => TlsConfig {
                mode: pgwire_replication::config::SslMode::Prefer,
                ..TlsConfig::default()
            },
            SslMode::Require => TlsConfig::require(),
            SslMode::VerifyCa => TlsConfig::verify_ca(self.root_cert.clone()),
            SslMode::VerifyFull => TlsConfig::verify_full(self.root_cert.clone()),
        }
    }

    /// The native-tls connector for the plain connections.
    #[cfg(feature = "kafka")]
    pub fn connector(&self) -> Result<postgres_native_tls::MakeTlsConnector, String> {
        let mut b = native_tls::TlsConnector::builder();
        if let Some(path) = &self.root_cert {
            let pem =
                std::fs::read(path).map_err(|e| format!("sslrootcert={}: {e}", path.display()))?;
            // Every certificate of the bundle (the RDS one holds dozens).
            let certs = native_tls::Certificate::stack_from_pem(&pem).map_err(|e| {
                format!("sslrootcert={}: not PEM certificates: {e}", path.display())
            })?;
            if certs.is_empty() {
                return Err(format!(
                    "sslrootcert={}: no certificate in it",
                    path.display()
                ));
            }
            for cert in certs {
                b.add_root_certificate(cert);
            }
        }
        match self.mode {
            SslMode::Disable | SslMode::Prefer | SslMode::Require => {
                b.danger_accept_invalid_certs(true);
            }
            SslMode::VerifyCa => {
                b.danger_accept_invalid_hostnames(true);
            }
            SslMode::VerifyFull => {}
        }
        let connector = b.build().map_err(|e| format!("TLS setup: {e}"))?;
        Ok(postgres_native_tls::MakeTlsConnector::new(connector))
    }
}

/// What a TLS failure means, for an operator: the cause by name, with what to do.
pub fn explain(message: &str, tls: &Tls) -> Option<String> {
    let root = match &tls.root_cert {
        Some(p) => format!("sslrootcert={}", p.display()),
        None => "the system's CAs (no sslrootcert given)".to_owned(),
    };
    let m = message.to_ascii_lowercase();
    let why = if m.contains("does not support tls") || m.contains("sslrequest rejected") {
        format!(
            "the server does not offer TLS, and sslmode={} requires it: turn on ssl in postgresql.conf (nothing falls back to plaintext)",
            tls.mode.as_str()
        )
    } else if m.contains("hostname mismatch")
        || m.contains("ip address mismatch")
        || m.contains("notvalidforname")
        || m.contains("not valid for name")
        || m.contains("is an ip address")
    {
        "the server's certificate is not made out to this host name (sslmode=verify-full checks it): connect by a name the certificate lists, or use sslmode=verify-ca".to_owned()
    } else if m.contains("unable to get local issuer")
        || m.contains("self-signed certificate")
        || m.contains("self signed certificate")
        || m.contains("unknownissuer")
        || m.contains("unknown issuer")
        || m.contains("certificate verify failed")
    {
        format!("the server's certificate is not signed by a CA of {root} (unknown CA)")
    } else {
        return None;
    };
    Some(format!("{why} ({message})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_urls_and_words() {
        let (tls, rest) = Tls::split(
            "postgresql://u:pw@db.example:6543/app?sslmode=verify-full&sslrootcert=/etc/rds.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert, Some(PathBuf::from("/etc/rds.pem")));
        assert_eq!(
            rest,
            "postgresql://u:pw@db.example:6543/app?application_name=x"
        );
        assert!(rest.parse::<tokio_postgres::Config>().is_ok());

        let (tls, rest) =
            Tls::split("host=db user=u sslmode=verify-ca sslrootcert='/ca.pem'").unwrap();
        assert_eq!(
            (tls.mode, rest.as_str()),
            (SslMode::VerifyCa, "host=db user=u")
        );
        assert_eq!(tls.root_cert, Some(PathBuf::from("/ca.pem")));

        let (tls, rest) = Tls::split("postgresql://u@db/app").unwrap();
        assert_eq!(
            (tls.mode, rest.as_str()),
            (SslMode::Prefer, "postgresql://u@db/app")
        );
        // libpq: `require` with a root certificate checks the chain.
        let (tls, _) =
            Tls::split("postgresql://db/app?sslmode=require&sslrootcert=/ca.pem").unwrap();
        assert_eq!(tls.mode, SslMode::VerifyCa);
        let err = Tls::split("postgresql://db/app?sslmode=allow").unwrap_err();
        assert!(err.contains("sslmode=\"allow\""), "{err}");
    }

    #[test]
    fn failures_are_named() {
        let tls = Tls {
            mode: SslMode::VerifyFull,
            root_cert: Some("/ca.pem".into()),
        };
        let unknown = explain("error performing TLS handshake: certificate verify failed (unable to get local issuer certificate)", &tls).unwrap();
        assert!(
            unknown.contains("unknown CA") && unknown.contains("sslrootcert=/ca.pem"),
            "{unknown}"
        );
        let name = explain("error performing TLS handshake: hostname mismatch", &tls).unwrap();
        assert!(name.contains("host name"), "{name}");
        let plain = explain(
            "error performing TLS handshake: server does not support TLS",
            &tls,
        )
        .unwrap();
        assert!(plain.contains("does not offer TLS"), "{plain}");
        assert_eq!(explain("password authentication failed", &tls), None);
    }
}
