from catalog import views
from django.urls import path

urlpatterns = [
    path("products/<int:pk>/", views.product),
    path("async/products/<int:pk>/", views.product_async),
    path("orders/", views.create_order),
    path("report/", views.report),
    path("boom/", views.boom),
]
