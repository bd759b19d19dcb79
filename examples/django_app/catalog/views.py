"""Sync and async views: each reads the ORM (PostgreSQL) and asks the pricing upstream over HTTP."""

import json
from decimal import Decimal

import httpx
import requests
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.shortcuts import aget_object_or_404, get_object_or_404

from catalog.models import Order, Product

http = requests.Session()


def _price(product_id: int) -> Decimal:
    answer = http.get(f"{settings.UPSTREAM_URL}/price", params={"item": product_id}, timeout=5).json()
    return Decimal(str(answer["price"]))


def product(request: HttpRequest, pk: int) -> JsonResponse:
    item = get_object_or_404(Product, pk=pk)
    return JsonResponse({"id": item.pk, "name": item.name, "stock": item.stock, "price": str(_price(item.pk))})


async def product_async(request: HttpRequest, pk: int) -> JsonResponse:
    item = await aget_object_or_404(Product, pk=pk)
    async with httpx.AsyncClient(base_url=settings.UPSTREAM_URL, timeout=5) as client:
        price = (await client.get("/price", params={"item": item.pk})).json()["price"]
    return JsonResponse({"id": item.pk, "name": item.name, "stock": item.stock, "price": str(price), "async": True})


def create_order(request: HttpRequest) -> JsonResponse:
    if request.method != "POST":
        return JsonResponse({"error": "POST an order"}, status=405)
    wanted = json.loads(request.body)
    with transaction.atomic():
        item = Product.objects.select_for_update().get(pk=wanted["product"])
        if item.stock < wanted["quantity"]:
            return JsonResponse({"error": "not enough stock", "stock": item.stock}, status=409)
        order = Order.objects.create(product=item, quantity=wanted["quantity"],
                                     total=_price(item.pk) * wanted["quantity"])
    return JsonResponse({"order": order.pk, "product": item.name, "total": str(order.total)}, status=201)


def report(request: HttpRequest) -> StreamingHttpResponse:
    def lines():  # runs while the server sends the body, after the view returned
        for item in Product.objects.order_by("pk"):
            yield f"{item.name}: {_price(item.pk)}\n"

    return StreamingHttpResponse(lines(), content_type="text/plain")


def boom(request: HttpRequest) -> JsonResponse:
    Product.objects.count()
    raise RuntimeError("the database answered, then this view failed")
