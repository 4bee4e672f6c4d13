//! Certificates made here by openssl, for the clusters that serve TLS.

use std::path::PathBuf;
use std::process::Command;

/// A CA, a server certificate it signed for `localhost` only, and a CA that signed nothing.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for (name, cn) in [("ca", "freshet-test-ca"), ("other-ca", "someone-else")] {
            let (key, pem, subj) = (
                format!("{name}.key"),
                format!("{name}.pem"),
                format!("/CN={cn}"),
            );
            let mut args = vec![
                "req", "-x509", "-days", "2", "-subj", &subj, "-keyout", &key, "-out", &pem,
            ];
            args.extend(ec);
            openssl(&args);
        }
        let mut args = vec![
            "req",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ];
        args.extend(ec);
        openssl(&args);
        std::fs::write(dir.path().join("san.ext"), "subjectAltName=DNS:localhost\n").expect("ext");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ]);
        // The server reads them as its own user: the key private to it.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::set_permissions(
            dir.path().join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod");
        if unsafe_is_root() {
            for f in ["server.key", "server.pem"] {
                let out = Command::new("chown")
                    .arg("postgres:")
                    .arg(dir.path().join(f))
                    .output()
                    .expect("chown");
                assert!(
                    out.status.success(),
                    "chown: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        Pki { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A cluster's settings to serve TLS with this certificate.
    pub fn server_settings(&self) -> Vec<String> {
        vec![
            "ssl=on".to_string(),
            format!("ssl_cert_file={}", self.path("server.pem").display()),
            format!("ssl_key_file={}", self.path("server.key").display()),
        ]
    }
}

/// Whether the tests run as root (then the clusters run as `postgres`, see scripts/pg.sh).
fn unsafe_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
