"""The S3-compatible server jobpulse's tests run against: moto's S3 in server mode, plus the
presigned-URL checks moto leaves out.

moto implements the S3 API jobpulse uses (objects, multipart uploads with ETag checks,
ListMultipartUploads, bucket CORS with real preflight answers, GetBucketCors) but accepts any
presigned URL, expired or forged. Real S3, R2 and MinIO refuse those with 403, and the upload flow
depends on it (an expired upload URL answers 403; the front end then asks for a fresh one). So a
small WSGI layer in front of moto verifies every query-signed request (`X-Amz-Signature`) the way
S3 does, with botocore's own SigV4 code: the signature over the canonical request, the access key,
and `X-Amz-Date` + `X-Amz-Expires` against the clock. Header-signed requests (the ones
object_store sends) and unsigned ones pass through to moto unchanged.

moto's blanket CORS (every answer allows every origin) is switched off, so only the bucket's own
CORS rule decides what a browser may do, as on real S3. Two more moto gaps are closed here:
- a preflight (`OPTIONS`) for an object that already exists is refused by moto's anonymous-read
  check (preflights carry no credentials); S3 answers it from the CORS rule, and so does this.
- completing or uploading a part of an upload that is gone (aborted, or never created) makes
  moto fail with 500; S3 answers 404 NoSuchUpload, and so does this.
- ListMultipartUploads reports every upload as initiated on 2010-11-10; this records when each
  upload was created and puts that time in the listing, so "abort uploads older than N" can be
  tested both ways.

Usage: s3_test_server.py PORT_FILE   (binds 127.0.0.1 on a free port, writes the port to PORT_FILE)
Credentials: JOBPULSE_TEST_S3_ACCESS_KEY / JOBPULSE_TEST_S3_SECRET_KEY (defaults below).
"""

import datetime
import os
import re
import sys
import threading
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

os.environ["MOTO_DISABLE_GLOBAL_CORS"] = "true"

from botocore.auth import S3SigV4QueryAuth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402
from moto.moto_server.werkzeug_app import create_backend_app  # noqa: E402
from moto.s3.exceptions import NoSuchUpload  # noqa: E402
from moto.s3.models import MultipartDict  # noqa: E402


def _no_such_upload(self, upload_id):
    raise NoSuchUpload(upload_id=upload_id)


MultipartDict.__missing__ = _no_such_upload
from werkzeug.serving import make_server  # noqa: E402

ACCESS_KEY = os.environ.get("JOBPULSE_TEST_S3_ACCESS_KEY", "jobpulse-test")
SECRET_KEY = os.environ.get("JOBPULSE_TEST_S3_SECRET_KEY", "jobpulse-test-secret")


def s3_error(start_response, code, message):
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()
    start_response(
        "403 Forbidden",
        [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))],
    )
    return [body]


def check_presigned(environ):
    """None when the query-signed request is valid, else (code, message)."""
    raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
    parts = urlsplit(raw_uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    params = dict(query)
    try:
        key_id, date, region, service, _ = params["X-Amz-Credential"].split("/")
        stamp = params["X-Amz-Date"]
        expires = int(params["X-Amz-Expires"])
        signed = params["X-Amz-SignedHeaders"].split(";")
        signature = params["X-Amz-Signature"]
    except (KeyError, ValueError):
        return ("AuthorizationQueryParametersError", "malformed presigned URL")
    if key_id != ACCESS_KEY:
        return ("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist")
    if not 1 <= expires <= 604800:
        return ("AuthorizationQueryParametersError", "X-Amz-Expires out of range")
    signed_at = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(
        tzinfo=datetime.timezone.utc
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    if now > signed_at + datetime.timedelta(seconds=expires):
        return ("AccessDenied", "Request has expired")
    if signed_at > now + datetime.timedelta(minutes=15):
        return ("AccessDenied", "Request is not yet valid")

    headers = {}
    for name in signed:
        if name == "host":
            headers["host"] = environ.get("HTTP_HOST", "")
            continue
        value = environ.get("HTTP_" + name.upper().replace("-", "_"))
        if value is None and name == "content-type":
            value = environ.get("CONTENT_TYPE")
        if value is None:
            return ("SignatureDoesNotMatch", f"signed header {name} missing")
        headers[name] = value
    unsigned_query = urlencode(
        [(k, v) for k, v in query if k != "X-Amz-Signature"], quote_via=quote
    )
    url = f"http://{environ.get('HTTP_HOST', '')}{parts.path}?{unsigned_query}"
    request = AWSRequest(method=environ["REQUEST_METHOD"], url=url, headers=headers)
    request.context["timestamp"] = stamp
    auth = S3SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), service, region, expires)
    canonical = auth.canonical_request(request)
    expected = auth.signature(auth.string_to_sign(request, canonical), request)
    if expected != signature:
        return (
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided",
        )
    return None


MOTO_INITIATED = b"<Initiated>2010-11-10T20:48:33.000Z</Initiated>"


class S3Fixes:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.initiated = {}  # upload id -> b"2026-01-01T00:00:00.000Z"

    def __call__(self, environ, start_response):
        query = environ.get("QUERY_STRING", "")
        method = environ["REQUEST_METHOD"]
        # A preflight carries the presigned URL's query but is never authenticated: S3 answers
        # it from the bucket's CORS rule alone (checking the PUT's signature against OPTIONS
        # refused every browser upload).
        if method != "OPTIONS" and ("X-Amz-Signature=" in query or "AWSAccessKeyId=" in query):
            failure = (
                check_presigned(environ)
                if "X-Amz-Signature=" in query
                else ("AccessDenied", "only SigV4 presigned URLs are accepted here")
            )
            if failure is not None:
                return s3_error(start_response, *failure)
        if method == "OPTIONS":
            environ["HTTP_AUTHORIZATION"] = "preflight"
            return self.app(environ, start_response)
        uploads = re.search(r"(^|&)uploads(=|&|$)", query) is not None
        if not uploads:
            return self.app(environ, start_response)
        # CreateMultipartUpload (POST ?uploads) and ListMultipartUploads (GET ?uploads): buffer
        # the answer to record or rewrite initiation times.
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        body = b"".join(self.app(environ, capture))
        if method == "POST":
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%S.000Z"
            )
            for upload_id in re.findall(rb"<UploadId>([^<]+)</UploadId>", body):
                with self.lock:
                    self.initiated[upload_id] = stamp.encode()
        elif method == "GET":

            def fix(m):
                block = m.group(0)
                found = re.search(rb"<UploadId>([^<]+)</UploadId>", block)
                with self.lock:
                    stamp = self.initiated.get(found.group(1)) if found else None
                if stamp is None:
                    return block
                return block.replace(MOTO_INITIATED, b"<Initiated>" + stamp + b"</Initiated>")

            body = re.sub(rb"<Upload>.*?</Upload>", fix, body, flags=re.S)
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(captured["status"], headers)
        return [body]


def main():
    port_file = sys.argv[1]
    app = S3Fixes(create_backend_app("s3"))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_port))
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
