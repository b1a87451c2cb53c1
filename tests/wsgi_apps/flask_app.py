"""A small Flask app for the bridge's tests."""

from flask import Flask, jsonify, request
from wsgiref.validate import validator

flask = Flask(__name__)


@flask.get("/hello/<name>")
def hello(name):
    return jsonify(greeting="hello " + name, query=request.args.get("q"))


@flask.post("/form")
def form():
    return jsonify(fields=request.form.to_dict(), length=request.content_length)


@flask.get("/stream")
def stream():
    def gen():
        for i in range(3):
            yield "line %d\n" % i
    return flask.response_class(gen(), mimetype="text/plain")


# wsgiref.validate refuses `wsgi.input.read()` without a size, which werkzeug's
# form parser calls; the form route is therefore served unvalidated as `raw`.
app = validator(flask.wsgi_app)
raw = flask.wsgi_app
