"""A small API for spraywatch's integration test.

GET /api/v1/clients/<client_id>/resource authenticates the X-API-Key header
against the client's key. POST /api/v1/clients/<client_id>/rotate, with the
current key, issues the client its next key (the old one stops working).
Every answer is logged through Flask's logger with the first 12 characters
of the key, never the key itself:

    auth failure client_id=client-007 key_prefix=sk_live_1a2b ip=127.0.3.7 status=401

Environment:
    SPRAY_UNKNOWN_404=1   answer 404 (not 401) for client ids that do not
                          exist: the enumeration oracle spraywatch reports.
    SPRAY_JSON_LOG=PATH   also write structlog-style JSON lines to PATH.
    SPRAY_ACCESS_LOG=PATH also write werkzeug's access lines (dev server
                          only) to PATH, besides stderr.

Run under gunicorn (app:app) or as the werkzeug dev server:
    python3 app.py PORT
"""

import datetime
import hashlib
import json
import logging
import os
import sys
import threading

from flask import Flask, jsonify, request

CLIENTS = {"client-%03d" % i for i in range(50)}
UNKNOWN_404 = os.environ.get("SPRAY_UNKNOWN_404") == "1"

# client-049 is a dormant test integration whose key was copied from the
# documentation's example: exactly the key a spray tries.
EXAMPLE_KEYS = {"client-049": "sk_live_c0ffee00example00c0ffee"}

generation = {}  # client id -> how many times its key was rotated
generation_lock = threading.Lock()


def key_for(client_id, gen=0):
    """The key a client is issued: deterministic so the test can send it."""
    if gen == 0 and client_id in EXAMPLE_KEYS:
        return EXAMPLE_KEYS[client_id]
    seed = client_id if gen == 0 else "%s#%d" % (client_id, gen)
    return "sk_live_" + hashlib.sha256(seed.encode()).hexdigest()[:24]


def current_key(client_id):
    with generation_lock:
        return key_for(client_id, generation.get(client_id, 0))


app = Flask("app")
app.logger.setLevel(logging.INFO)


class StructlogJSON(logging.Formatter):
    """One JSON object per line with structlog's keys (event, timestamp)."""

    def format(self, record):
        out = {
            "timestamp": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "event": record.getMessage().split(" ", 2)[0] + " " + record.getMessage().split(" ", 2)[1],
        }
        out.update(getattr(record, "fields", {}))
        return json.dumps(out)


if os.environ.get("SPRAY_ACCESS_LOG"):
    # werkzeug adds its own stderr handler only when the logger has none:
    # keep stderr (the interleaved dev-server log) and add the file.
    access = logging.getLogger("werkzeug")
    access.setLevel(logging.INFO)
    access.addHandler(logging.StreamHandler())
    access.addHandler(logging.FileHandler(os.environ["SPRAY_ACCESS_LOG"]))

if os.environ.get("SPRAY_JSON_LOG"):
    handler = logging.FileHandler(os.environ["SPRAY_JSON_LOG"])
    handler.setFormatter(StructlogJSON())
    app.logger.addHandler(handler)


def client_ip():
    forwarded = request.headers.get("X-Forwarded-For", "")
    return forwarded.split(",")[0].strip() or request.remote_addr


def log(level, what, client_id, key, status):
    prefix = key[:12] if key else "-"
    ip = client_ip()
    fields = {"client_id": client_id, "key_prefix": prefix, "ip": ip, "status": status}
    app.logger.log(level, "%s client_id=%s key_prefix=%s ip=%s status=%d", what, client_id, prefix, ip, status,
                   extra={"fields": fields})


@app.route("/healthz")
def healthz():
    return "ok\n"


def authenticate(client_id, key):
    """The failure response, or None when key is client_id's current key."""
    if client_id not in CLIENTS and UNKNOWN_404:
        log(logging.WARNING, "unknown client", client_id, key, 404)
        resp = jsonify(error="no such client")
        resp.status_code = 404
        resp.headers["X-Auth-Result"] = "unknown_identity"
        return resp
    if client_id not in CLIENTS or key != current_key(client_id):
        log(logging.WARNING, "auth failure", client_id, key, 401)
        resp = jsonify(error="invalid key")
        resp.status_code = 401
        resp.headers["X-Auth-Result"] = "failure"
        return resp
    return None


@app.route("/api/v1/clients/<client_id>/resource")
def resource(client_id):
    key = request.headers.get("X-API-Key", "")
    failed = authenticate(client_id, key)
    if failed is not None:
        return failed
    log(logging.INFO, "auth ok", client_id, key, 200)
    resp = jsonify(client=client_id, data=[1, 2, 3])
    resp.headers["X-Auth-Result"] = "success"
    return resp


@app.route("/api/v1/clients/<client_id>/rotate", methods=["POST"])
def rotate(client_id):
    key = request.headers.get("X-API-Key", "")
    failed = authenticate(client_id, key)
    if failed is not None:
        return failed
    with generation_lock:
        generation[client_id] = generation.get(client_id, 0) + 1
        new = key_for(client_id, generation[client_id])
    log(logging.INFO, "key rotated", client_id, key, 200)
    resp = jsonify(client=client_id, key=new)
    resp.headers["X-Auth-Result"] = "success"
    return resp


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)
