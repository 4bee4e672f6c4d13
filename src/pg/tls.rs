//! TLS to PostgreSQL, as libpq's `sslmode` and `sslrootcert` say it:
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | |
//! | `prefer` (the default) | when the server offers it | not checked |
//! | `require` | always | not checked; checked against `sslrootcert` when one is given |
//! | `verify-ca` | always | signed by a CA of `sslrootcert` |
//! | `verify-full` | always | that, and made out to the host connected to |
//!
//! `sslrootcert` is a PEM file (its CAs only, never beside others) or `system` (this machine's
//! bundle, as OpenSSL finds it); the verify modes need one (libpq's `~/.postgresql/root.crt`
//! when it exists). Nothing but `prefer` ever falls back to plaintext. On the replication
//! stream `verify-ca` checks the host name too (its crate's verifier does). The plain connections speak it through
//! native-tls (the OpenSSL librdkafka links anyway), the replication stream through the
//! replication crate's own rustls.

use std::collections::HashMap;
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

/// Takes the keywords `keys` out of a connection string (a URL or `key=value` words): the
/// ones tokio-postgres does not know (the verify modes, the root certificate, the IAM login).
/// Returns their values, and the string left for tokio-postgres, the rest of it as written.
pub fn take_keywords(
    conn: &str,
    keys: &[&str],
) -> Result<(HashMap<String, String>, String), String> {
    let mut taken = HashMap::new();
    let mut take = |key: &str, value: String| {
        let ours = keys.contains(&key);
        if ours {
            taken.insert(key.to_owned(), value);
        }
        ours
    };
    let rest = match conn
        .strip_prefix("postgresql://")
        .or_else(|| conn.strip_prefix("postgres://"))
    {
        Some(after_scheme) => {
            // The query starts after the user part: a password may hold a `?`.
            let from = after_scheme.find('@').map_or(0, |at| at + 1);
            let base_len = conn.len() - after_scheme.len() + from;
            match conn[base_len..].find('?') {
                None => conn.to_owned(),
                Some(q) => {
                    let (base, query) = (&conn[..base_len + q], &conn[base_len + q + 1..]);
                    let mut kept = Vec::new();
                    for piece in query.split('&') {
                        let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
                        let decode = |t: &str| {
                            percent_encoding::percent_decode_str(t)
                                .decode_utf8_lossy()
                                .into_owned()
                        };
                        // The others go through as written, tokio-postgres decodes them.
                        if !take(&decode(k), decode(v)) {
                            kept.push(piece);
                        }
                    }
                    match kept.is_empty() {
                        true => base.to_owned(),
                        false => format!("{base}?{}", kept.join("&")),
                    }
                }
            }
        }
        None => {
            let mut rest = String::new();
            for w in words(conn)? {
                if !take(w.key, w.value) {
                    if !rest.is_empty() {
                        rest.push(' ');
                    }
                    rest.push_str(&conn[w.span]);
                }
            }
            rest
        }
    };
    Ok((taken, rest))
}

impl Tls {
    /// The TLS of `sslmode` and `sslrootcert`, as libpq reads them.
    pub fn from_keywords(taken: &HashMap<String, String>) -> Result<Tls, String> {
        let mode = match taken.get("sslmode") {
            Some(m) => SslMode::parse(m)?,
            None => SslMode::default(),
        };
        let root_cert = match (taken.get("sslrootcert").map(String::as_str), mode) {
            (Some("system"), _) => Some(system_roots()?),
            (Some(path), _) => Some(PathBuf::from(path)),
            (None, SslMode::VerifyCa | SslMode::VerifyFull) => Some(default_root(mode)?),
            (None, _) => None,
        };
        let mut tls = Tls { mode, root_cert };
        // libpq: `require` with a root certificate verifies the chain, as `verify-ca`.
        if tls.mode == SslMode::Require && tls.root_cert.is_some() {
            tls.mode = SslMode::VerifyCa;
        }
        Ok(tls)
    }

    /// `sslmode` and `sslrootcert` taken out of a connection string, and the rest of it.
    #[cfg(test)]
    fn split(conn: &str) -> Result<(Tls, String), String> {
        let (taken, rest) = take_keywords(conn, &["sslmode", "sslrootcert"])?;
        Ok((Tls::from_keywords(&taken)?, rest))
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
            // These CAs only, not beside the system's: a certificate any public CA signed
            // must not pass `verify-ca`.
            b.disable_built_in_roots(true);
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

/// One `key = value` word, and where it is in the string.
struct Word<'a> {
    span: std::ops::Range<usize>,
    key: &'a str,
    value: String,
}

/// The `key = value` words of a libpq connection string, as tokio-postgres reads them: spaces
/// around `=` allowed, a value quoted with `'` (then `\'` and `\\` escaped) or up to the next
/// space. Each with its span in the string, to keep the word as written.
fn words(conn: &str) -> Result<Vec<Word<'_>>, String> {
    let bytes = conn.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_spaces = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    loop {
        i = skip_spaces(i);
        if i == bytes.len() {
            return Ok(out);
        }
        let start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'=' {
            i += 1;
        }
        let key = &conn[start..i];
        i = skip_spaces(i);
        if bytes.get(i) != Some(&b'=') {
            return Err(format!(
                "{key:?} has no value: expected key=value words or a postgresql:// URL"
            ));
        }
        i = skip_spaces(i + 1);
        let mut value = String::new();
        if bytes.get(i) == Some(&b'\'') {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return Err(format!("the value of {key} has no closing quote")),
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < bytes.len() => {
                        let escaped = conn[i + 1..].chars().next().unwrap_or_default();
                        value.push(escaped);
                        i += 1 + escaped.len_utf8();
                    }
                    Some(_) => {
                        let c = conn[i..].chars().next().unwrap_or_default();
                        value.push(c);
                        i += c.len_utf8();
                    }
                }
            }
        } else {
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                let c = conn[i..].chars().next().unwrap_or_default();
                if c == '\\' && i + 1 < bytes.len() {
                    let escaped = conn[i + 1..].chars().next().unwrap_or_default();
                    value.push(escaped);
                    i += 1 + escaped.len_utf8();
                } else {
                    value.push(c);
                    i += c.len_utf8();
                }
            }
        }
        out.push(Word {
            span: start..i,
            key,
            value,
        });
    }
}

/// This machine's CA bundle, as OpenSSL finds it (`sslrootcert=system`), for both the plain
/// connections and the stream.
fn system_roots() -> Result<PathBuf, String> {
    openssl_probe::probe()
        .cert_file
        .ok_or_else(|| "sslrootcert=system, but no CA bundle was found on this machine (install ca-certificates, or give sslrootcert=PATH)".to_owned())
}

/// libpq's default for the verify modes: `~/.postgresql/root.crt`, when it exists.
fn default_root(mode: SslMode) -> Result<PathBuf, String> {
    let default = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".postgresql/root.crt"));
    match default {
        Some(path) if path.exists() => Ok(path),
        _ => Err(format!(
            "sslmode={} checks the server's certificate against CAs: give sslrootcert=PATH (the RDS bundle, for RDS) or sslrootcert=system (this machine's CAs)",
            mode.as_str()
        )),
    }
}

/// What a TLS failure means, for an operator: the cause by name, with what to do.
pub fn explain(message: &str, tls: &Tls) -> Option<String> {
    let root = match &tls.root_cert {
        Some(p) => format!("sslrootcert={}", p.display()),
        None => "no CA (no sslrootcert given)".to_owned(),
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
    } else if m.contains("expired") || m.contains("not yet valid") {
        "the server's certificate has expired or is not valid yet (a rotated server CA? check the bundle in sslrootcert and the server's certificate)".to_owned()
    } else if m.contains("unable to get local issuer")
        || m.contains("self-signed certificate")
        || m.contains("self signed certificate")
        || m.contains("unknownissuer")
        || m.contains("unknown issuer")
    {
        format!("the server's certificate is not signed by a CA of {root} (unknown CA)")
    } else if m.contains("certificate verify failed") || m.contains("invalid peer certificate") {
        format!("the server's certificate did not verify against {root}")
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
    fn the_rest_of_the_string_goes_through_as_written() {
        // Spaces around `=`, quoted values with spaces and escapes, as tokio-postgres reads them.
        let (tls, rest) = Tls::split(
            "host=db password='a  b\\'c' sslmode = verify-full sslrootcert = '/ca dir/rds.pem' user=u",
        )
        .unwrap();
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert, Some(PathBuf::from("/ca dir/rds.pem")));
        assert_eq!(rest, "host=db password='a  b\\'c' user=u");
        let config: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(config.get_password(), Some(&b"a  b'c"[..]));
        // An escaped character beyond ASCII stays whole.
        let (tls, _) = Tls::split("sslmode=verify-ca sslrootcert='/ca\\é.pem'").unwrap();
        assert_eq!(tls.root_cert, Some(PathBuf::from("/caé.pem")));
        // Percent-encoded parameters stay so (`+` is no space to tokio-postgres).
        let (_, rest) = Tls::split(
            "postgresql://u@db/app?options=-c%20search_path%3Dx&sslmode=require&application_name=a+b",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgresql://u@db/app?options=-c%20search_path%3Dx&application_name=a+b"
        );
        // A `?` in the password is not the query.
        let (tls, rest) = Tls::split("postgresql://u:p?w@db:5432/app?sslmode=disable").unwrap();
        assert_eq!(
            (tls.mode, rest.as_str()),
            (SslMode::Disable, "postgresql://u:p?w@db:5432/app")
        );
        // The verify modes need CAs to verify against.
        if !std::env::var_os("HOME")
            .is_some_and(|h| PathBuf::from(h).join(".postgresql/root.crt").exists())
        {
            let err = Tls::split("postgresql://db/app?sslmode=verify-full").unwrap_err();
            assert!(
                err.contains("sslrootcert=PATH") && err.contains("sslrootcert=system"),
                "{err}"
            );
        }
        match Tls::split("postgresql://db/app?sslmode=verify-full&sslrootcert=system") {
            Ok((tls, _)) => assert!(tls.root_cert.is_some_and(|p| p.exists())),
            Err(e) => assert!(e.contains("no CA bundle"), "{e}"),
        }
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
