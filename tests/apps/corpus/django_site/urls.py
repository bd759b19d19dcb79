from django.urls import path

from tests.apps.corpus.django_site import views

urlpatterns = [
    path("echo/raw", views.echo_raw),
    path("echo/json", views.echo_json),
    path("echo/form", views.echo_form),
    path("items/<int:item_id>", views.item),
    path("blob", views.blob),
    path("nothing", views.nothing),
    path("cached", views.cached),
    path("redirect", views.redirect),
    path("stream", views.stream),
    path("events", views.events),
    path("boom", views.boom),
    path("health", views.health),
]
