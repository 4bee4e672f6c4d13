"""A stand-in for the Amazon Redshift Data API, for Freshet's tests: Redshift cannot run here.

It speaks the Data API's JSON protocol (ExecuteStatement, BatchExecuteStatement,
DescribeStatement, GetStatementResult, CancelStatement) and runs the statements on PostgreSQL,
turning what only Redshift accepts into PostgreSQL's equivalent: table options (DISTKEY,
SORTKEY, DISTSTYLE) dropped, VARBYTE as bytea, SUPER as jsonb, JSON_EXTRACT_PATH_TEXT on text.
COPY ... FORMAT AS PARQUET MANIFEST reads the manifest and its Parquet objects from the S3
server and inserts the rows by column position, as Redshift's COPY does; like Redshift it
refuses a manifest entry without meta.content_length and a column count that differs from
the table's (with FILLRECORD, columns missing at a file's end load as NULL). A batch runs in one transaction; statements run in the background, so that the
client polls DescribeStatement as it must with Redshift.

usage: redshift_data.py PORT POSTGRES_URL S3_ENDPOINT [CONFLICTS]
  CONFLICTS: how many batches that write fail first with Redshift's serialization error 1023.
Prints "ready" once it listens.
"""

import io
import json
import re
import sys
import threading
import uuid
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import psycopg
import pyarrow.parquet as pq

PORT, PG_URL, S3_ENDPOINT = int(sys.argv[1]), sys.argv[2], sys.argv[3]
CONFLICTS = [int(sys.argv[4]) if len(sys.argv) > 4 else 0]
s3 = boto3.client("s3", endpoint_url=S3_ENDPOINT)
statements = {}
lock = threading.Lock()
COPY = re.compile(
    r"^COPY (\S+) FROM '([^']+)' IAM_ROLE '([^']*)' FORMAT AS PARQUET( SERIALIZETOJSON)?( FILLRECORD)? MANIFEST$",
    re.S,
)


def to_postgres(sql):
    sql = re.sub(r"\s+DISTKEY\([^)]*\)", "", sql)
    sql = re.sub(r"\s+SORTKEY\([^)]*\)", "", sql)
    sql = re.sub(r"\s+DISTSTYLE (ALL|AUTO|EVEN|KEY)", "", sql)
    sql = re.sub(r"\bvarbyte\(\d+\)", "bytea", sql)
    sql = re.sub(r"(?<=[\s(])super\b", "jsonb", sql)
    return sql


def s3_get(url):
    bucket, _, key = url[len("s3://"):].partition("/")
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def copy(cur, table, manifest_url, serialize, fill):
    manifest = json.loads(s3_get(manifest_url))
    cur.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (table,),
    )
    types = [t for _, t in cur.fetchall()]
    for entry in manifest["entries"]:
        if "content_length" not in entry.get("meta", {}):
            raise ValueError(f"manifest {manifest_url}: entry {entry['url']} has no meta.content_length, which COPY of Parquet needs")
        data = s3_get(entry["url"])
        if len(data) != entry["meta"]["content_length"]:
            raise ValueError(f"{entry['url']}: {len(data)} bytes, the manifest says {entry['meta']['content_length']}")
        parquet = pq.read_table(io.BytesIO(data))
        # FILLRECORD: columns missing at the end of a file load as NULL.
        if parquet.num_columns > len(types) or (parquet.num_columns < len(types) and not fill):
            raise ValueError(
                f"Mismatched number of columns: {entry['url']} has {parquet.num_columns}, {table} has {len(types)}"
            )
        columns = [c.to_pylist() for c in parquet.columns]
        columns += [[None] * parquet.num_rows] * (len(types) - parquet.num_columns)
        with cur.copy(f"COPY {table} FROM STDIN") as out:
            for row in zip(*columns):
                out.write_row([
                    json.dumps(v, default=str) if t == "jsonb" and v is not None and serialize else v
                    for v, t in zip(row, types)
                ])


def run(sid, sqls, batch):
    rec = statements[sid]
    rec["Status"] = "STARTED"
    failing = None
    try:
        with psycopg.connect(PG_URL) as conn:
            with conn.cursor() as cur:
                if batch and CONFLICTS[0] > 0 and any(s.startswith(("MERGE", "INSERT")) for s in sqls):
                    with lock:
                        CONFLICTS[0] -= 1
                    failing = 0
                    raise RuntimeError(
                        "ERROR: 1023 DETAIL: Serializable isolation violation on table - 100123, "
                        "transactions forming the cycle are: 4711, 4712 (pid:1234)"
                    )
                for i, sql in enumerate(sqls):
                    failing = i
                    m = COPY.match(sql)
                    if m:
                        copy(cur, m.group(1), m.group(2), bool(m.group(4)), bool(m.group(5)))
                    else:
                        cur.execute(to_postgres(sql))
                    rec["SubStatements"][i]["Status"] = "FINISHED"
                    if cur.description is not None:
                        rec["columns"] = [d.name for d in cur.description]
                        rec["rows"] = cur.fetchall()
            conn.commit()
        rec["Status"] = "FINISHED"
    except Exception as e:  # the Data API reports every failure as the statement's
        message = str(e).strip()
        rec["Status"] = "FAILED"
        rec["Error"] = message
        if failing is not None:
            rec["SubStatements"][failing]["Status"] = "FAILED"
            rec["SubStatements"][failing]["Error"] = message
            for s in rec["SubStatements"][failing + 1:]:
                s["Status"] = "ABORTED"


def field(v):
    if v is None:
        return {"isNull": True}
    if isinstance(v, bool):
        return {"booleanValue": v}
    if isinstance(v, int):
        return {"longValue": v}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, Decimal):
        return {"stringValue": str(v)}
    return {"stringValue": str(v)}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        action = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
        if action in ("ExecuteStatement", "BatchExecuteStatement"):
            if not body.get("Database") or not (body.get("ClusterIdentifier") or body.get("WorkgroupName")):
                return self.reply(400, {"__type": "ValidationException", "message": "Database and a cluster or workgroup are required"})
            batch = action == "BatchExecuteStatement"
            sqls = body["Sqls"] if batch else [body["Sql"]]
            if batch and not 1 <= len(sqls) <= 40:
                return self.reply(400, {"__type": "ValidationException", "message": f"{len(sqls)} statements: between 1 and 40"})
            sid = str(uuid.uuid4())
            statements[sid] = {
                "Id": sid,
                "Status": "SUBMITTED",
                "batch": batch,
                "QueryString": None if batch else sqls[0],
                "SubStatements": [
                    {"Id": f"{sid}:{i + 1}", "Status": "SUBMITTED", "QueryString": s} for i, s in enumerate(sqls)
                ],
            }
            threading.Thread(target=run, args=(sid, sqls, batch), daemon=True).start()
            return self.reply(200, {"Id": sid, "Database": body["Database"]})
        rec = statements.get(body.get("Id", "").split(":")[0])
        if rec is None:
            return self.reply(400, {"__type": "ResourceNotFoundException", "message": f"no statement {body.get('Id')}"})
        if action == "DescribeStatement":
            out = {k: rec[k] for k in ("Id", "Status") }
            if rec.get("Error"):
                out["Error"] = rec["Error"]
            if rec["QueryString"]:
                out["QueryString"] = rec["QueryString"]
            if rec["batch"]:
                out["SubStatements"] = rec["SubStatements"]
            out["HasResultSet"] = "rows" in rec
            return self.reply(200, out)
        if action == "GetStatementResult":
            if rec["Status"] != "FINISHED" or "rows" not in rec:
                return self.reply(400, {"__type": "ValidationException", "message": "the statement has no result (yet)"})
            return self.reply(200, {
                "Records": [[field(v) for v in row] for row in rec["rows"]],
                "ColumnMetadata": [{"name": c} for c in rec["columns"]],
                "TotalNumRows": len(rec["rows"]),
            })
        if action == "CancelStatement":
            return self.reply(200, {"Status": True})
        return self.reply(400, {"__type": "UnknownOperationException", "message": action})


def main():
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        # Redshift's JSON_EXTRACT_PATH_TEXT takes the JSON as text.
        conn.execute(
            "CREATE OR REPLACE FUNCTION public.json_extract_path_text(text, text) RETURNS text "
            "LANGUAGE sql IMMUTABLE AS $$ SELECT ($1::json) ->> $2 $$"
        )
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    print("ready", flush=True)
    server.serve_forever()


main()
