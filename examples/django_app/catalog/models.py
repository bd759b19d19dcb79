from django.db import models
from django.db.models.functions import Now


class Product(models.Model):
    name = models.CharField(max_length=100)
    stock = models.IntegerField()

    class Meta:
        db_table = "django_example_product"


class Order(models.Model):
    product = models.ForeignKey(Product, on_delete=models.PROTECT)
    quantity = models.IntegerField()
    total = models.DecimalField(max_digits=10, decimal_places=2)
    created = models.DateTimeField(db_default=Now())  # set by the database: replay sees the recorded one

    class Meta:
        db_table = "django_example_order"
