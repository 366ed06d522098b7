"""aws-sigv4 — AWS Signature Version 4, a first-party Vultrino plugin written in Python.

The agent names an `aws_key` credential and describes a request; the plugin answers the
headers to send (`Authorization`, `X-Amz-Date`, and `X-Amz-Content-Sha256` when asked for).
Temporary (STS) credentials are not supported: their session token is a secret the request
itself must carry. The secret access key never leaves the plugin.
Built into a WASI 0.2 component with componentize-py (`vultrino plugin install --build`).
"""

import hashlib
import hmac
import re
import time
from urllib.parse import quote, unquote, urlsplit

from wit_world import exports

from vultrino_pdk import InvalidCredential, InvalidParams, run

_TIME = re.compile(r"^\d{8}T\d{6}Z$")
_NAME = re.compile(r"^[a-z0-9-]+$")


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _hmac(key, text):
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def _uri_encode(text, safe):
    return quote(text, safe=safe + "-_.~")


def _canonical_query(query):
    pairs = []
    for part in query.split("&") if query else []:
        name, _, value = part.partition("=")
        pairs.append((_uri_encode(_unquote(name), ""), _uri_encode(_unquote(value), "")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _unquote(text):
    return unquote(text.replace("+", "%20"))


def sign(params, fields):
    fields = fields or {}
    key_id = fields.get("access_key_id")
    secret = fields.get("secret_access_key")
    if not key_id or not secret:
        raise InvalidCredential("the credential needs access_key_id and secret_access_key")
    method = str(params.get("method", "")).upper()
    if not method.isalpha():
        raise InvalidParams("method must be an HTTP method such as GET")
    url = urlsplit(str(params.get("url", "")))
    if url.scheme not in ("http", "https") or not url.hostname:
        raise InvalidParams("url must be an absolute http(s) URL")
    service = str(params.get("service", ""))
    region = str(params.get("region") or fields.get("region") or "us-east-1")
    if not _NAME.match(service) or not _NAME.match(region):
        raise InvalidParams("service and region must be lowercase names such as s3, us-east-1")
    when = params.get("time") or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    if not _TIME.match(str(when)):
        raise InvalidParams("time must look like 20150830T123600Z")
    body = str(params.get("body") or "").encode("utf-8")
    extra = params.get("headers") or {}
    if not isinstance(extra, dict) or not all(isinstance(v, str) for v in extra.values()):
        raise InvalidParams("headers must map header names to strings")

    host = url.hostname + (f":{url.port}" if url.port else "")
    payload_hash = _sha256(body)
    headers = {str(k).strip().lower(): " ".join(v.split()) for k, v in extra.items()}
    headers["host"] = host
    headers["x-amz-date"] = when
    added = {"X-Amz-Date": when}
    if params.get("sign_payload_header"):
        headers["x-amz-content-sha256"] = payload_hash
        added["X-Amz-Content-Sha256"] = payload_hash
    names = sorted(headers)
    signed = ";".join(names)
    canonical = "\n".join(
        [
            method,
            _uri_encode(url.path or "/", "/"),
            _canonical_query(url.query),
            "".join(f"{n}:{headers[n]}\n" for n in names),
            signed,
            payload_hash,
        ]
    )
    scope = f"{when[:8]}/{region}/{service}/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{when}\n{scope}\n{_sha256(canonical.encode('utf-8'))}"
    key = _hmac(("AWS4" + secret).encode("utf-8"), when[:8])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    added["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders={signed}, "
        f"Signature={signature}"
    )
    return {"headers": added, "signed_headers": signed, "scope": scope}


ACTIONS = {"sign": sign}


class Handler(exports.Handler):
    def execute(self, request: bytes) -> bytes:
        return run(request, ACTIONS)
