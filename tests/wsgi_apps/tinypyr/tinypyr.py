"""A tiny Pyramid project, as `pcreate`/cookiecutter would lay one out."""

import json
from wsgiref.validate import validator

from pyramid.config import Configurator
from pyramid.response import Response

CALLS = {"n": 0}


def page(request):
    CALLS["n"] += 1
    body = json.dumps(
        {
            "greeting": request.registry.settings.get("greeting"),
            "name": request.matchdict.get("name"),
            "call": CALLS["n"],
        }
    )
    return Response(body, content_type="text/html")


def main(global_config, **settings):
    """The paste.app_factory pserve calls."""
    with Configurator(settings=settings) as config:
        config.add_route("page", "/page/{name}")
        config.add_view(page, route_name="page")
        return validator(config.make_wsgi_app())


class Stamp:
    def __init__(self, app, label):
        self.app, self.label = app, label

    def __call__(self, environ, start_response):
        def stamped(status, headers, exc_info=None):
            return start_response(status, headers + [("X-Stamp", self.label)], exc_info)

        return self.app(environ, stamped)


def stamp_factory(global_conf, label="stamp"):
    """A paste.filter_factory."""
    return lambda app: Stamp(app, label)


def wrap_app(app, global_conf, label="wrap"):
    """A paste.filter_app_factory."""
    return Stamp(app, label)
