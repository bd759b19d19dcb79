"""A stand-in for the pricing service the example calls (``flask --app upstream run --port 8001``)."""

from __future__ import annotations

import itertools

from flask import Flask, jsonify, request

app = Flask(__name__)
_audit_ids = itertools.count(1)


@app.get("/price")
def price():
    item = int(request.args["item"])
    return jsonify({"item": item, "price": round(9.99 + item * 1.5, 2), "currency": "EUR"})


@app.post("/audit")
def audit():
    request.get_json()
    return jsonify({"audit_id": next(_audit_ids)}), 201


@app.get("/users/<int:user_id>")
def user(user_id: int):
    return jsonify({"id": user_id, "name": f"user-{user_id}"})
