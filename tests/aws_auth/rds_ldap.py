"""RDS's side of an IAM login, as far as it can run here: PostgreSQL's `ldap` authentication
hands each login's user and password to this LDAP server (a simple bind), which accepts the
password only if it is an RDS IAM token that botocore would have signed for that user, host and
port, with the credentials of the environment, within its 15 minutes.

    rds_ldap.py <listen port> <log file> <region> <host:port the tokens must name>

Every bind is a JSON line in the log file: user, X-Amz-Date, when it arrived, accepted, why.
Only what PostgreSQL's simple bind sends is spoken: BindRequest, UnbindRequest.
"""

import asyncio
import json
import sys
import time
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlsplit

import boto3
from freezegun import freeze_time

PORT, LOG, REGION, ENDPOINT = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
RDS = boto3.client("rds", region_name=REGION)


class Malformed(Exception):
    pass


def tlv(data, at):
    """One BER element at `at`: (tag, value bytes, next position)."""
    if at + 2 > len(data):
        raise Malformed(f"an element cut short at {at}")
    tag = data[at]
    length = data[at + 1]
    at += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or at + n > len(data):
            raise Malformed("an indefinite or cut-short length")
        length = int.from_bytes(data[at : at + n], "big")
        at += n
    if at + length > len(data):
        raise Malformed(f"an element of {length} bytes where {len(data) - at} remain")
    return tag, data[at : at + length], at + length


def encode(tag, value):
    if len(value) < 0x80:
        return bytes([tag, len(value)]) + value
    n = (len(value).bit_length() + 7) // 8
    return bytes([tag, 0x80 | n]) + len(value).to_bytes(n, "big") + value


def check(user, token):
    """Why `token` is not a valid login for `user`, or None."""
    address, _, query = token.partition("?")
    params = dict(parse_qsl(query))
    if address != ENDPOINT + "/":
        return f"signed for {address!r}, not {ENDPOINT}/"
    if params.get("DBUser") != user:
        return f"signed for user {params.get('DBUser')!r}, not {user!r}"
    try:
        signed = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        expires = int(params["X-Amz-Expires"])
    except (KeyError, ValueError):
        return "no X-Amz-Date or X-Amz-Expires"
    age = time.time() - signed.timestamp()
    if age > expires or age < -5:
        return f"expired or from the future ({age:.0f} s old)"
    host, port = ENDPOINT.rsplit(":", 1)
    with freeze_time(signed):
        expected = RDS.generate_db_auth_token(DBHostname=host, Port=int(port), DBUsername=user, Region=REGION)
    if dict(parse_qsl(urlsplit("https://" + expected).query)) != params:
        return "the signature is not botocore's for these credentials"
    return None


async def serve(reader, writer):
    try:
        while True:
            # An LDAPMessage: SEQUENCE { messageID, protocolOp }.
            head = await reader.readexactly(2)
            length = head[1]
            if length & 0x80:
                length = int.from_bytes(await reader.readexactly(length & 0x7F), "big")
            body = await reader.readexactly(length)
            _, message_id, at = tlv(body, 0)
            op, op_body, _ = tlv(body, at)
            if op == 0x42:  # UnbindRequest
                return
            user, date = None, None
            try:
                if op != 0x60:
                    raise Malformed(f"operation {op:#x}: only BindRequest is answered")
                _, _version, at = tlv(op_body, 0)
                _, name, at = tlv(op_body, at)
                _, password, _ = tlv(op_body, at)
                user = name.decode().removeprefix("cn=")
                token = password.decode()
                date = dict(parse_qsl(token.partition("?")[2])).get("X-Amz-Date")
                why = check(user, token)
            except Exception as e:  # every login is recorded, a malformed one as refused
                why = f"malformed bind: {e!r}"
            with open(LOG, "a") as log:
                log.write(json.dumps({"user": user, "date": date, "at": time.time(), "accepted": why is None, "why": why}) + "\n")
            code = 0 if why is None else 49  # success, invalidCredentials
            response = encode(0x61, encode(0x0A, bytes([code])) + encode(0x04, b"") + encode(0x04, (why or "").encode()))
            writer.write(encode(0x30, encode(0x02, message_id) + response))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, Malformed):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", PORT)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
