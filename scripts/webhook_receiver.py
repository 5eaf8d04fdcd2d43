"""A webhook receiver for the tests: verifies every delivery with the Standard Webhooks
reference implementation (the `standardwebhooks` package) and logs it.

    webhook_receiver.py --port P --log FILE [--secret whsec_...]

Every POST other than /_control is a delivery: it is verified with the secret last set through
/_control (the reference library's `Webhook.verify`: signature and timestamp tolerance) and one
JSON line is appended to FILE at receipt:
    {"id", "verified", "error", "body", "answered", "path"}
`answered` is the status it will answer: 500 while `fail` is above 0 (each failing delivery
counts it down), 401 when the signature does not verify, else 204. With `delay` above 0 the
answer is held `delay_secs` seconds first (each delayed delivery counts it down).

POST /_control with JSON {"secret"?, "fail"?, "delay"?, "delay_secs"?} changes the behaviour.
"""

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

STATE = {"secret": None, "fail": 0, "delay": 0, "delay_secs": 0.0}
LOCK = threading.Lock()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--secret")
    args = ap.parse_args()
    STATE["secret"] = args.secret

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            n = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(n)
            if self.path == "/_control":
                with LOCK:
                    STATE.update(json.loads(body or b"{}"))
                self.send_response(204)
                self.end_headers()
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            verified, error = False, None
            with LOCK:
                secret = STATE["secret"]
            try:
                if secret is None:
                    raise WebhookVerificationError("no secret set")
                Webhook(secret).verify(body, headers)
                verified = True
            except Exception as e:  # noqa: BLE001 - any failure is a failed verification
                error = f"{type(e).__name__}: {e}"
            with LOCK:
                if not verified:
                    answered = 401
                elif STATE["fail"] > 0:
                    STATE["fail"] -= 1
                    answered = 500
                else:
                    answered = 204
                delay = 0.0
                if STATE["delay"] > 0:
                    STATE["delay"] -= 1
                    delay = float(STATE["delay_secs"])
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                line = {
                    "id": headers.get("webhook-id"),
                    "verified": verified,
                    "error": error,
                    "body": parsed,
                    "answered": answered,
                    "path": self.path,
                }
                with open(args.log, "a", encoding="utf-8") as f:
                    f.write(json.dumps(line) + "\n")
            if delay:
                time.sleep(delay)
            self.send_response(answered)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
