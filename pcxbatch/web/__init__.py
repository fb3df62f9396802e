"""The web service (``pcxbatch serve``): the compliance team's face of the same library.

In: HTTP requests from browsers (pages, forms, a session cookie) and from automation (the JSON
API under ``/api/v1``, a bearer token). Out: pages, JSON, report files, and runs made by the
runner's own operations (``pcxbatch.runner``): no stage is re-implemented here.

Modules, each holding at most one third-party library:
``app`` (Starlette: routing, requests, responses, cookies), ``pages`` (Jinja2 templates),
``uploads`` (python-multipart: a streamed upload to disk, hashed), ``passwords`` (argon2-cffi),
``store`` (SQLAlchemy Core on SQLite: accounts, sessions, tokens, jobs, approvals, runs),
``worker`` (the in-process queue of runs), ``flow`` (a job's states and the runner calls that
move it), ``access`` (who may do what, sessions, CSRF, sign-in limits), ``views`` and ``api``
(the handlers, free of any web library), ``events`` (the audit sink), ``server`` (uvicorn, the
``serve`` command's body). The CLI's start-up imports none of them.
"""
