"""A small Flask app that calls an upstream service with requests (run it under opentelemetry-instrument)."""

from __future__ import annotations

import os

import requests
from flask import Flask, Response, jsonify, request, stream_with_context

UPSTREAM_URL = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:8001")

app = Flask(__name__)
http = requests.Session()


@app.get("/users/<int:user_id>")
def user(user_id: int) -> Response:
    return jsonify(http.get(f"{UPSTREAM_URL}/users/{user_id}", timeout=5).json())


@app.post("/checkout")
def checkout() -> Response:
    order = request.get_json()
    price = http.get(f"{UPSTREAM_URL}/price", params={"item": order["item"]}, timeout=5).json()
    audit = http.post(f"{UPSTREAM_URL}/audit", json=order, timeout=5).json()
    total = round(price["price"] * order.get("quantity", 1), 2)
    return jsonify({"order": order, "total": total, "audit_id": audit["audit_id"]})


@app.post("/form")
def form() -> Response:
    upload = request.files.get("note")
    price = http.get(f"{UPSTREAM_URL}/price", params={"item": request.form["item"]}, timeout=5).json()
    return jsonify({
        "form": request.form.to_dict(),
        "note": upload.read().decode() if upload else None,
        "price": price["price"],
    })


@app.get("/stream")
def stream() -> Response:
    def lines():  # runs after the view returned, while the server sends the body
        for item in (1, 2, 3):
            price = http.get(f"{UPSTREAM_URL}/price", params={"item": item}, timeout=5).json()
            yield f"{item}: {price['price']}\n"

    return Response(stream_with_context(lines()), mimetype="text/plain")


@app.get("/boom")
def boom() -> Response:
    http.get(f"{UPSTREAM_URL}/users/1", timeout=5)
    raise RuntimeError("the upstream answered, then this view failed")
