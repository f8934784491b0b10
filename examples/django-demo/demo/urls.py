"""The demo's URLs: the visit counter and the health check the deploy asks."""

from django.urls import path
from visits import views

urlpatterns = [
    path("", views.index),
    path("health", views.health),
]
