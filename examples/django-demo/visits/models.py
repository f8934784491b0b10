from django.db import models


class Visit(models.Model):
    """One request to the home page, kept in the shared database."""

    at = models.DateTimeField(auto_now_add=True)
