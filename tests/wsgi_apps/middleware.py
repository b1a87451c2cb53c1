"""Python middleware for the bridge's filter tests."""

from wsgiref.validate import validator


class Stamp:
    """Adds X-Py-Filter to the request and X-Py-Filter-Out to the response;
    answers /py-only itself without calling the app below."""

    def __init__(self, app, label="py"):
        self.app, self.label = app, label

    def __call__(self, environ, start_response):
        if environ["PATH_INFO"] == "/py-only":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"answered in Python"]
        environ["HTTP_X_PY_FILTER"] = self.label

        def stamped(status, headers, exc_info=None):
            return start_response(status, headers + [("X-Py-Filter-Out", self.label)], exc_info)

        return self.app(environ, stamped)


def checked(app):
    """`filter = middleware:checked`: Stamp, checked by wsgiref.validate on both sides."""
    return validator(Stamp(validator(app)))


def filter_factory(global_conf, label="py"):
    """A Paste filter_factory."""
    return lambda app: Stamp(app, label)


def filter_app_factory(app, global_conf, label="py"):
    """A Paste filter_app_factory (`paste.filter_app_factory = middleware:filter_app_factory`)."""
    return Stamp(app, label)


def app_factory(global_conf, greeting="hi", **local):
    """A Paste app_factory: answers its greeting, the global `here` and its other keys."""
    import json

    def app(environ, start_response):
        body = json.dumps({"greeting": greeting, "here": global_conf.get("here"), "local": local})
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body.encode()]

    return validator(app)
