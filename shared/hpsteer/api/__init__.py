"""The operator API: a small JSON API over HTTP (the ``api`` Cloud Function).

- :mod:`.routes`: the route table (method, path template, the role the operation needs, the
  models of its path, query, body and answers) and the handlers binding HTTP to
  :mod:`hpsteer.services.operator`;
- :mod:`.routing`: matching a request to a route (404 and 405 as JSON);
- :mod:`.auth`: who calls (a verified Google ID token mapped to a role; locally, a fixed admin);
- :mod:`.http`: one request in, one answer out: size and media-type checks, parsing and
  validation into the models, error mapping; never a 5xx for anything a client sent;
- :mod:`.errors`: the JSON error body every 4xx and 5xx carries;
- :mod:`.openapi`: the OpenAPI 3.1 document, generated from the route table and the models
  (``python -m hpsteer.api.openapi`` writes ``docs/openapi.json``; ``--check`` tells if stale).

Nothing here imports the planner or numpy: the function stays small and quick to start.
"""
