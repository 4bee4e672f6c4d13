"""AWS's own token builders, at the instant of a token Freshet signed.

    tokens.py msk <region> <freshet's token>
    tokens.py rds <region> <host> <port> <user> <freshet's token>

Credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_SESSION_TOKEN), as both sides read them. The clock is frozen (freezegun) at the X-Amz-Date
of Freshet's token, so the two signatures are over the same instant. Prints one JSON object:
{"freshet": <URL>, "aws": <URL>}, Freshet's token decoded where it is encoded.
"""

import base64
import json
import sys
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

from freezegun import freeze_time


def signed_at(url):
    query = parse_qs(urlsplit(url if "://" in url else "https://" + url).query)
    return datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


def b64url_decode(token):
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()


def main():
    kind = sys.argv[1]
    if kind == "msk":
        region, freshet = sys.argv[2], b64url_decode(sys.argv[3])
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

        with freeze_time(signed_at(freshet)):
            token, _expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
        aws = b64url_decode(token)
    elif kind == "rds":
        region, host, port, user, freshet = sys.argv[2:7]
        import boto3

        client = boto3.client("rds", region_name=region)
        with freeze_time(signed_at(freshet)):
            aws = client.generate_db_auth_token(DBHostname=host, Port=int(port), DBUsername=user, Region=region)
    else:
        raise SystemExit(f"unknown token kind {kind!r}")
    print(json.dumps({"freshet": freshet, "aws": aws}))


if __name__ == "__main__":
    main()
