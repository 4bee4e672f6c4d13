//! A FAKE of the Confluent Schema Registry: no real registry can be installed here, so this
//! serves the REST subset Freshet uses (register a version, fetch a schema by id) over real
//! HTTP, with a real BACKWARD check (Avro schema resolution, every union branch) against the
//! subject's latest version, as the registry's default compatibility level does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;
use serde_json::{json, Value as Json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    /// 200 with a body that is not JSON.
    Malformed,
    /// 500 Internal Server Error.
    Failing,
}

#[derive(Default)]
struct State {
    schemas: Vec<String>,
    subjects: HashMap<String, Vec<u32>>,
    behaviour: Option<Behaviour>,
}

pub struct FakeRegistry {
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeRegistry {
    pub async fn start() -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, s).await;
                });
            }
        });
        FakeRegistry { url, state, task }
    }

    pub fn set(&self, b: Behaviour) {
        self.state.lock().expect("state").behaviour = Some(b);
    }

    /// Versions registered under `subject`.
    pub fn versions(&self, subject: &str) -> usize {
        self.state
            .lock()
            .expect("state")
            .subjects
            .get(subject)
            .map_or(0, Vec::len)
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(stream: tokio::net::TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).await?;
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (status, text) = respond(&state, method, path, &body);
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        reader.get_mut().write_all(reply.as_bytes()).await?;
    }
}

fn error(code: u32, status: &'static str, message: &str) -> (&'static str, String) {
    (
        status,
        json!({"error_code": code, "message": message}).to_string(),
    )
}

fn respond(state: &Mutex<State>, method: &str, path: &str, body: &[u8]) -> (&'static str, String) {
    let mut st = state.lock().expect("state");
    match st.behaviour {
        Some(Behaviour::Malformed) => return ("200 OK", "<html>not json".into()),
        Some(Behaviour::Failing) => {
            return error(50001, "500 Internal Server Error", "store failed")
        }
        _ => {}
    }
    let path = path.split('?').next().unwrap_or("");
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("POST", ["subjects", subject, "versions"]) => {
            let subject = subject.to_string();
            let Ok(req) = serde_json::from_slice::<Json>(body) else {
                return error(42201, "422 Unprocessable Entity", "invalid request body");
            };
            let Some(text) = req["schema"].as_str() else {
                return error(42201, "422 Unprocessable Entity", "no schema");
            };
            let Ok(new) = Schema::parse_str(text) else {
                return error(42201, "422 Unprocessable Entity", "invalid Avro schema");
            };
            let canonical = new.canonical_form();
            let ids = st.subjects.get(&subject).cloned().unwrap_or_default();
            for &id in &ids {
                let old = Schema::parse_str(&st.schemas[id as usize - 1]).expect("stored schema");
                if old.canonical_form() == canonical {
                    return ("200 OK", json!({"id": id}).to_string());
                }
            }
            if let Some(&latest) = ids.last() {
                let old =
                    Schema::parse_str(&st.schemas[latest as usize - 1]).expect("stored schema");
                if let Err(why) = backward(&old, &new) {
                    return error(
                        409,
                        "409 Conflict",
                        &format!("Schema being registered is incompatible with an earlier schema for subject \"{subject}\": {why}"),
                    );
                }
            }
            st.schemas.push(text.to_owned());
            let id = st.schemas.len() as u32;
            st.subjects.entry(subject).or_default().push(id);
            ("200 OK", json!({"id": id}).to_string())
        }
        ("GET", ["schemas", "ids", id]) => match id
            .parse::<usize>()
            .ok()
            .and_then(|i| st.schemas.get(i.wrapping_sub(1)))
        {
            Some(s) => ("200 OK", json!({"schema": s}).to_string()),
            None => error(40403, "404 Not Found", "Schema not found"),
        },
        _ => error(404, "404 Not Found", "not in this fake"),
    }
}

/// BACKWARD per Avro schema resolution: the new (reader) schema reads the old (writer)
/// schema's data; a reader union must read every branch of the writer's union.
fn backward(old: &Schema, new: &Schema) -> Result<(), String> {
    SchemaCompatibility::can_read(old, new).map_err(|e| e.to_string())?;
    check(old, new)
}

fn check(w: &Schema, r: &Schema) -> Result<(), String> {
    match (w, r) {
        (Schema::Record(wr), Schema::Record(rr)) => {
            for wf in &wr.fields {
                if let Some(rf) = rr.fields.iter().find(|f| f.name == wf.name) {
                    check(&wf.schema, &rf.schema).map_err(|e| format!("{}: {e}", wf.name))?;
                }
            }
            Ok(())
        }
        (Schema::Union(wu), Schema::Union(ru)) => {
            for wb in wu.variants() {
                if !ru.variants().iter().any(|rb| check(wb, rb).is_ok()) {
                    return Err(format!(
                        "no reader branch for {:?}",
                        apache_avro::schema::SchemaKind::from(wb)
                    ));
                }
            }
            Ok(())
        }
        (Schema::Ref { name: a }, Schema::Ref { name: b }) => (a == b)
            .then_some(())
            .ok_or_else(|| "named types differ".into()),
        (Schema::Enum(a), Schema::Enum(b)) => (a.name == b.name)
            .then_some(())
            .ok_or_else(|| "enums differ".into()),
        (Schema::Ref { .. } | Schema::Enum(_), _) | (_, Schema::Ref { .. } | Schema::Enum(_)) => {
            Err("named vs unnamed".into())
        }
        _ => SchemaCompatibility::can_read(w, r)
            .map(|_| ())
            .map_err(|e| e.to_string()),
    }
}
