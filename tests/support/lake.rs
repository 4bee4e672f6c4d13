//! The lake read back by pyarrow (tests/lake/read_lake.py, from PyPI in the test venv), and
//! moto's S3 server (also from PyPI) as the S3 of the tests.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

pub fn python() -> String {
    let venv = std::env::var("FRESHET_VENV").unwrap_or_else(|_| {
        panic!("FRESHET_VENV is not set: run the tests with scripts/test.sh, which installs it")
    });
    format!("{venv}/bin/python")
}

/// What pyarrow found in the lake.
#[derive(Debug, Default)]
pub struct Lake {
    /// One per Parquet object: key, size, rows, row_groups, compression, types.
    pub objects: Vec<Json>,
    /// Every row, in the jsonl output's shape plus partition, offset and object.
    pub rows: Vec<Json>,
    /// key and the parsed manifest document.
    pub manifests: Vec<Json>,
    /// Anything else in the lake.
    pub strangers: Vec<String>,
}

fn read(args: &[&str], env: &[(&str, String)]) -> Lake {
    let out = Command::new(python())
        .arg(super::repo().join("tests/lake/read_lake.py"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run read_lake.py");
    assert!(
        out.status.success(),
        "read_lake.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lake = Lake::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut v: Json = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        if let Some(o) = v.get_mut("object") {
            lake.objects.push(o.take());
        } else if let Some(r) = v.get_mut("row") {
            lake.rows.push(r.take());
        } else if let Some(m) = v.get_mut("manifest") {
            lake.manifests.push(m.take());
        } else {
            lake.strangers
                .push(v["stranger"].as_str().unwrap_or_default().to_owned());
        }
    }
    lake
}

pub fn read_dir(dir: &Path) -> Lake {
    if !dir.exists() {
        return Lake::default();
    }
    read(&["dir", &dir.display().to_string()], &[])
}

pub fn read_s3(s3: &MotoS3, bucket: &str, prefix: &str) -> Lake {
    read(&["s3", &s3.endpoint(), bucket, prefix], &s3.env())
}

impl Lake {
    /// Rows of one table (`schema.table`).
    pub fn table(&self, table: &str) -> Vec<&Json> {
        let (schema, name) = table.split_once('.').expect("schema.table");
        self.rows
            .iter()
            .filter(|r| r["schema"] == schema && r["table"] == name)
            .collect()
    }

    /// Checks the lake's own invariants: each object's name is the span of offsets it holds,
    /// no two objects of a partition overlap, each object has its manifest with its size,
    /// and nothing else lies there. Returns (topic dir, partition) → offsets held.
    pub fn assert_consistent(&self) -> std::collections::BTreeMap<(String, i64), Vec<i64>> {
        assert!(
            self.strangers.is_empty(),
            "unexpected objects: {:?}",
            self.strangers
        );
        type Spans = std::collections::BTreeMap<(String, i64), Vec<(i64, i64, String)>>;
        let mut spans: Spans = Default::default();
        let mut held: std::collections::BTreeMap<(String, i64), Vec<i64>> = Default::default();
        for o in &self.objects {
            let key = o["key"].as_str().unwrap();
            let (dir, file) = key.rsplit_once('/').unwrap();
            let table_dir = dir.split('/').next().unwrap().to_owned();
            let stem = file.strip_suffix(".parquet").unwrap();
            let parts: Vec<i64> = stem.split('-').map(|p| p.parse().unwrap()).collect();
            let (partition, first, last) = (parts[0], parts[1], parts[2]);
            let rows: Vec<&Json> = self.rows.iter().filter(|r| r["object"] == key).collect();
            assert_eq!(rows.len() as u64, o["rows"].as_u64().unwrap(), "{key}");
            let offsets: Vec<i64> = rows.iter().map(|r| r["offset"].as_i64().unwrap()).collect();
            assert!(
                rows.iter().all(|r| r["partition"] == partition),
                "{key} holds rows of another partition"
            );
            assert_eq!(offsets.first(), Some(&first), "{key}: first offset");
            assert!(
                offsets.iter().all(|x| (first..=last).contains(x)),
                "{key} holds offsets outside its name: {offsets:?}"
            );
            let manifest = format!("{dir}/_{stem}.manifest");
            let m = self
                .manifests
                .iter()
                .find(|m| m["key"] == manifest.as_str())
                .unwrap_or_else(|| panic!("{key} has no manifest {manifest}"));
            let entry = &m["doc"]["entries"][0];
            assert_eq!(entry["meta"]["content_length"], o["size"], "{manifest}");
            assert!(
                entry["url"].as_str().unwrap().ends_with(key),
                "{manifest} names {}",
                entry["url"]
            );
            spans
                .entry((table_dir.clone(), partition))
                .or_default()
                .push((first, last, key.to_owned()));
            held.entry((table_dir, partition))
                .or_default()
                .extend(offsets);
        }
        for (tp, mut s) in spans {
            s.sort();
            for w in s.windows(2) {
                assert!(
                    w[0].1 < w[1].0,
                    "{tp:?}: objects {} and {} overlap",
                    w[0].2,
                    w[1].2
                );
            }
        }
        for offsets in held.values_mut() {
            offsets.sort();
            let n = offsets.len();
            offsets.dedup();
            assert_eq!(n, offsets.len(), "an offset is in the lake twice");
        }
        held
    }
}

/// moto's S3 server on a free port, in memory; killed when dropped.
pub struct MotoS3 {
    child: Child,
    pub port: u16,
}

impl MotoS3 {
    pub fn start() -> MotoS3 {
        MotoS3::start_env(&[])
    }

    /// moto with `env` set (its own settings, `MOTO_*`); every service answers on the port.
    pub fn start_env(env: &[(&str, &str)]) -> MotoS3 {
        let port = super::kafka::free_port();
        let child = Command::new(python())
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        MotoS3 { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The credentials and region moto accepts, for Freshet and for boto3.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            // Nothing may fall back to the instance metadata service on this machine.
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    pub fn create_bucket(&self, bucket: &str) {
        let script = format!(
            "import boto3; boto3.client('s3', endpoint_url='{}').create_bucket(Bucket='{bucket}')",
            self.endpoint()
        );
        let out = Command::new(python())
            .args(["-c", &script])
            .envs(self.env())
            .output()
            .expect("create bucket");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for MotoS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
