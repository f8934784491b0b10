from django.http import HttpRequest, HttpResponse
from django.templatetags.static import static

from visits.models import Visit


def index(request: HttpRequest) -> HttpResponse:
    """Count this visit in the database and say how many there were, with the stylesheet's URL."""
    Visit.objects.create()
    return HttpResponse(f"visits: {Visit.objects.count()}\nstyle: {static('visits/style.css')}\n")


def health(request: HttpRequest) -> HttpResponse:
    """The deploy's check: the app loads and answers, before the release commands migrate the database."""
    return HttpResponse("ok\n")
