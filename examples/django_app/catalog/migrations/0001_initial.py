from django.db import migrations, models
from django.db.models.functions import Now


def seed(apps, schema_editor):
    product = apps.get_model("catalog", "Product")
    product.objects.bulk_create([product(name="kettle", stock=12), product(name="teapot", stock=3),
                                 product(name="mug", stock=40)])


class Migration(migrations.Migration):
    initial = True
    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Product",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100)),
                ("stock", models.IntegerField()),
            ],
            options={"db_table": "django_example_product"},
        ),
        migrations.CreateModel(
            name="Order",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("quantity", models.IntegerField()),
                ("total", models.DecimalField(decimal_places=2, max_digits=10)),
                ("created", models.DateTimeField(db_default=Now())),
                ("product", models.ForeignKey(on_delete=models.PROTECT, to="catalog.product")),
            ],
            options={"db_table": "django_example_order"},
        ),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
