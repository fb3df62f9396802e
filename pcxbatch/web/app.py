"""The ASGI application (Starlette): routing, sessions in cookies, CSRF, access on every route.

In: a :class:`~pcxbatch.web.flow.Flow` and an :class:`~pcxbatch.web.access.Access`. Out: a
Starlette app serving the pages (``views``) and the JSON API (``api``). Every route passes
through one gate, :func:`_endpoint`: the caller is found (a session cookie for pages, a bearer
token for the API), the route's roles are checked (a route naming no role is open to nobody),
a page's POST must carry the session's CSRF token, and a :class:`~pcxbatch.web.flow.Refused`
becomes its status with one line (JSON ``{"error"}`` or a page). Handlers run in a thread, so a
slow file or database never holds up other requests.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route as StarletteRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pcxbatch.web import api, uploads, views
from pcxbatch.web.access import SESSION_HOURS, Access, same_token
from pcxbatch.web.exchange import PUBLIC, Call, Reply, Route
from pcxbatch.web.flow import Flow, Refused
from pcxbatch.web.pages import Pages

SESSION_COOKIE = "pcxbatch_session"
LOGIN_COOKIE = "pcxbatch_login"  # the sign-in form's CSRF token, before there is a session
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


def create_app(flow: Flow, access: Access, pages: Pages | None = None) -> Starlette:
    """The service's ASGI app: every route of ``views`` and ``api``, sign-in and sign-out."""
    pages = pages or Pages()
    gate = _Gate(flow, access, pages)
    table = [*views.routes(flow), *api.routes(flow)]
    routes = [
        StarletteRoute(r.path, gate.endpoint(r), methods=[r.method]) for r in table
    ]  # fmt: skip
    routes += [
        StarletteRoute("/login", gate.login_form, methods=["GET"]),
        StarletteRoute("/login", gate.login, methods=["POST"]),
        StarletteRoute("/logout", gate.logout, methods=["POST"]),
        StarletteRoute("/static/{name}", gate.static, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: gate.http_error})
    app.add_middleware(_SecurityHeaders)
    return app


class _SecurityHeaders:
    """Every answer carries the headers that keep pages from being framed or sniffed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, sending)


def _origin(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class _Gate:
    """The one gate every request goes through."""

    def __init__(self, flow: Flow, access: Access, pages: Pages) -> None:
        self.flow, self.access, self.pages = flow, access, pages

    def endpoint(self, route: Route) -> Callable[[Request], Awaitable[Response]]:
        """The Starlette endpoint of ``route``: caller, roles, CSRF, then the handler."""

        async def handle(request: Request) -> Response:
            call = await self._caller(request, route)
            refusal = self._refusal(route, call)
            if refusal is not None:
                return refusal
            try:
                await self._read_body(request, route, call)
                reply = await run_in_threadpool(route.handler, call)
            except (Refused, uploads.TooLarge, uploads.BadUpload) as exc:
                if call.upload is not None and call.upload.path is not None:
                    call.upload.path.unlink(missing_ok=True)  # refused: nothing of it is kept
                reply = self._refused(route, self._as_refusal(exc))
            return self._respond(reply, call)

        return handle

    async def _caller(self, request: Request, route: Route) -> Call:
        origin, secure = _origin(request), request.url.scheme == "https"
        query = {k: v[:200] for k, v in request.query_params.items()}
        if route.api:
            who = await run_in_threadpool(
                self.access.bearer, request.headers.get("authorization"), origin
            )
            return Call(who, dict(request.path_params), query=query, secure=secure)
        session_id = request.cookies.get(SESSION_COOKIE)
        found = await run_in_threadpool(self.access.session, session_id, origin)
        who, csrf = found if found else (None, "")
        return Call(
            who, dict(request.path_params), query=query, csrf=csrf, session_id=session_id,
            secure=secure,
        )  # fmt: skip

    def _refusal(self, route: Route, call: Call) -> Response | None:
        """Default deny: the answer when the caller may not use ``route``, else None."""
        if route.roles == PUBLIC:
            return None
        if call.who is None:
            if route.api:
                return _json_error(401, "a valid API token is needed: Authorization: Bearer TOKEN")
            return RedirectResponse("/login", status_code=303)
        if call.who.role not in route.roles:
            self.access.sink.record(
                "access.refused",
                call.who.actor(),
                details={"route": f"{route.method} {route.path}"},
            )
            needed = " or ".join(sorted(route.roles))
            message = f"this needs the {needed} role; you are signed in as {call.who.role}"
            return self._respond(self._refused(route, Refused(403, message)), call)
        return None

    async def _read_body(self, request: Request, route: Route, call: Call) -> None:
        """The form (streamed to disk for an upload); a page's POST must carry the CSRF token."""
        if route.upload:
            call.upload = await uploads.receive(
                request.stream(), request.headers.get("content-type", ""),
                request.headers.get("content-length"),
                self.flow.config.data_dir / "uploads", self.flow.config.max_bytes,
            )  # fmt: skip
            call.fields = call.upload.fields
        elif request.method == "POST":
            call.fields = await _fields(request)
        posted_form = request.method == "POST" and not route.api
        if posted_form and not same_token(call.fields.get("csrf", ""), call.csrf):
            raise Refused(
                403, "this form has expired or did not come from this site; reload the page"
            )

    def _as_refusal(self, exc: Exception) -> Refused:
        if isinstance(exc, uploads.TooLarge):
            limit = self.flow.config.max_bytes // 1_000_000
            return Refused(413, f"the file is larger than {limit} MB, the limit of this service")
        if isinstance(exc, uploads.BadUpload):
            return Refused(400, str(exc))
        assert isinstance(exc, Refused)
        return exc

    def _refused(self, route: Route, exc: Refused) -> Reply:
        if route.api:
            return Reply(exc.status, json={"error": str(exc)})
        return views.refused_page(exc)

    def _respond(self, reply: Reply, call: Call) -> Response:
        response: Response
        if reply.redirect is not None:
            response = RedirectResponse(reply.redirect, status_code=303)
        elif reply.file is not None:
            response = FileResponse(reply.file, filename=reply.file.name)
        elif reply.page is not None:
            context = {"who": call.who, "csrf": call.csrf, **reply.context}
            response = HTMLResponse(self.pages.render(reply.page, context), reply.status)
        else:
            response = JSONResponse(reply.json, reply.status)
        return response

    # --- sign-in and sign-out ---------------------------------------------------------------

    async def login_form(self, request: Request, message: str = "", status: int = 200) -> Response:
        """The sign-in page, with a CSRF token of its own (there is no session yet)."""
        token = request.cookies.get(LOGIN_COOKIE) or _new_token()
        page = self.pages.render("login.html", {"who": None, "csrf": token, "message": message})
        response = HTMLResponse(page, status)
        _cookie(response, LOGIN_COOKIE, token, request, max_age=3600)
        return response

    async def login(self, request: Request) -> Response:
        """Check the form's token and the password; a session cookie, or the form again."""
        fields = await _fields(request)
        if not same_token(fields.get("csrf", ""), request.cookies.get(LOGIN_COOKIE, "")):
            return await self.login_form(request, "the form expired; please sign in again", 403)
        try:
            session_id, _csrf = await run_in_threadpool(
                self.access.sign_in, fields.get("name", ""), fields.get("password", ""),
                _origin(request),
            )  # fmt: skip
        except Refused as exc:
            return await self.login_form(request, str(exc), exc.status)
        response = RedirectResponse("/jobs", status_code=303)
        _cookie(response, SESSION_COOKIE, session_id, request, max_age=SESSION_HOURS * 3600)
        response.delete_cookie(LOGIN_COOKIE)
        return response

    async def logout(self, request: Request) -> Response:
        """End the session (the form's CSRF token must match it)."""
        session_id = request.cookies.get(SESSION_COOKIE)
        found = await run_in_threadpool(self.access.session, session_id, _origin(request))
        fields = await _fields(request)
        if found is None or session_id is None:
            return RedirectResponse("/login", status_code=303)
        who, csrf = found
        if not same_token(fields.get("csrf", ""), csrf):
            return self._respond(
                views.refused_page(Refused(403, "this form has expired; reload the page")),
                Call(who),
            )
        await run_in_threadpool(self.access.sign_out, session_id, who)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    async def static(self, request: Request) -> Response:
        """The stylesheet and the page script (both ours)."""
        found = self.pages.static(request.path_params["name"])
        if found is None:
            return Response("not found", 404)
        body, media_type = found
        return Response(body, media_type=media_type)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        """Unknown paths and methods: JSON under /api, a page elsewhere (never a traceback)."""
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        message = "no such page" if status == 404 else "not allowed here"
        if request.url.path.startswith("/api/"):
            return _json_error(status, message)
        page = self.pages.render(
            "refused.html", {"who": None, "status": status, "message": message}
        )
        return HTMLResponse(page, status)


async def _fields(request: Request) -> dict[str, str]:
    """A POST's fields: a url-encoded or multipart form (no files), or a JSON object."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise Refused(400, "the body is not JSON") from None
        return {str(k): str(v) for k, v in body.items()} if isinstance(body, dict) else {}
    form = await request.form(max_files=0, max_fields=20)
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _json_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status)


def _new_token() -> str:
    import secrets

    return secrets.token_urlsafe(32)


def _cookie(response: Response, name: str, value: str, request: Request, *, max_age: int) -> None:
    """HttpOnly, SameSite=Lax, and Secure when the page came over https."""
    response.set_cookie(
        name, value, max_age=max_age, httponly=True, samesite="lax",
        secure=request.url.scheme == "https", path="/",
    )  # fmt: skip


__all__ = ["create_app"]
