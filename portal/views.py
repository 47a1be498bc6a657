"""Error pages that answer JSON to API clients and HTML to browsers, and /favicon.ico."""

from django.http import HttpResponseRedirect, HttpResponseServerError, JsonResponse
from django.shortcuts import render
from django.template import loader
from django.templatetags.static import static
from django.views.decorators.cache import cache_control


def _wants_json(request) -> bool:
    return request.path.startswith("/api/")


def not_found(request, exception=None):
    if _wants_json(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return render(request, "errors/404.html", status=404)


def server_error(request):
    if _wants_json(request):
        return JsonResponse({"detail": "Internal error; it has been logged."}, status=500)
    # Without the request: its context processors read the database, which may be what failed.
    return HttpResponseServerError(loader.render_to_string("errors/500.html"))


# Browsers ask /favicon.ico whatever the page's <link rel="icon"> says (a bookmark, a tab opened
# on a JSON answer); the one icon is the SVG under static/, so this points there for a day.
@cache_control(max_age=86400, public=True)
def favicon(request):
    return HttpResponseRedirect(static("favicon.svg"))
