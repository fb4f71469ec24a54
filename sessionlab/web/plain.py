"""The same routes on a plain Flask app that keeps the session in Flask's own signed cookie.

What a user would write without a server-side session store: no store, no
lock, the session travels with every request. ``sessionlab bench --full``
compares its requests per second with the served managers'. Run it alone with
``python -m sessionlab.web.plain PORT`` (waitress, one process, 8 threads).
"""

from __future__ import annotations

import secrets
import sys

from flask import Flask, Response, jsonify, request, session


def create_app() -> Flask:
    app = Flask("sessionlab.web.plain")
    app.secret_key = secrets.token_bytes(32)

    @app.post("/login")
    def login() -> Response:
        data = request.get_json(silent=True) or {}
        session.clear()
        session.update(user=str(data.get("user", "")), name=str(data.get("name", "")), accesses=0, preferences={})
        response = jsonify(session=secrets.token_urlsafe(24))  # the cookie is the session; this is a label
        response.status_code = 201
        return response

    def unauthorized() -> Response:
        response = jsonify(error="no valid session: log in first")
        response.status_code = 401
        return response

    @app.get("/api/data")
    def read() -> Response:
        if "user" not in session:
            return unauthorized()
        session["accesses"] = session["accesses"] + 1
        return jsonify(user=session["user"], name=session["name"], accesses=session["accesses"],
                       stored_accesses=session["accesses"], preferences=session["preferences"])

    @app.post("/api/data")
    def save() -> Response:
        if "user" not in session:
            return unauthorized()
        data = request.get_json(silent=True) or {}
        session["preferences"] = {**session["preferences"], str(data.get("key")): data.get("value")}
        return jsonify(saved=data.get("key"))

    @app.post("/logout")
    def logout() -> Response:
        session.clear()
        return jsonify(logged_out=True)

    @app.get("/health")
    def health() -> Response:
        return jsonify(healthy=True)

    return app


def main(port: int) -> None:
    from waitress import serve

    serve(create_app(), host="127.0.0.1", port=port, threads=8, ident="sessionlab-plain")


if __name__ == "__main__":
    main(int(sys.argv[1]))
