from django.urls import path

from catalog import views

urlpatterns = [
    path("products/<int:pk>/", views.product),
    path("async/products/<int:pk>/", views.product_async),
    path("orders/", views.create_order),
    path("boom/", views.boom),
]
