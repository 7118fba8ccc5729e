"""The dashboard's ASGI application: pages, the live list's event stream, actions, previews, the
viewer's files, ``/healthz`` and ``/metrics``.

Every page but the login, ``/healthz``, ``/metrics`` and the static files needs a session; a
state-changing request (POST) needs the session's CSRF token too (see
:mod:`~appliance.dashboard.auth`). Every response carries a content security policy that allows
only this origin's scripts, styles, images and connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from appliance import __version__
from appliance.dashboard import health, logs, metrics, previews, timeline, viewer
from appliance.dashboard.actions import JOB_ACTIONS, Context, Refused, run_intake_action, run_job_action
from appliance.dashboard.auth import LOGIN_COOKIE, SESSION_COOKIE, Session, Sessions, allowed, new_token, same_token
from appliance.dashboard.details import DetailsCache
from appliance.dashboard.joblist import Filters, JobFeed, JobList, count_outputs, short_duration
from appliance.dashboard.results import NoResult, ResultCache
from appliance.jobs import InvalidTransition, Job, JobState, JobStore, UnknownJob, control, operator
from appliance.settings import AdapterConfig
from appliance.storage import JOB_ID, PayloadLayout

LOG = logging.getLogger(__name__)

# Everything from this origin only. The one exception, data: images, is NiiVue's font atlas and
# material textures, which ship inside its script (nothing is fetched); without it the viewer fails.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
#: Longest accepted form body, bytes.
MAX_FORM_BYTES = 16 << 10
FINAL_STATES = (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


class SecurityHeaders:
    """Adds the content security policy and related headers to every HTTP response (pure ASGI, so
    the event stream is not buffered)."""

    def __init__(self, app: ASGIApp, https: bool) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", CSP.encode()),
            (b"x-content-type-options", b"nosniff"),
            # same-origin, not no-referrer: with no-referrer Chromium sends "Origin: null" on our own
            # form posts, which the CSRF check must refuse.
            (b"referrer-policy", b"same-origin"),
            (b"x-frame-options", b"DENY"),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]
        if https:
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + self.headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass
class Dashboard:
    """Everything the routes share, made once per application."""

    config: AdapterConfig
    store: JobStore
    layout: PayloadLayout
    sessions: Sessions
    jobs: JobList
    feed: JobFeed
    results: ResultCache
    cache_root: Path
    templates: Jinja2Templates
    https: bool

    @property
    def context(self) -> Context:
        return Context(self.config, self.store, self.layout)

    def render(self, request: Request, name: str, session: Session | None, status_code: int = 200,
               **values: Any) -> Response:
        notes = session.notes if session else []
        values.update(session=session, notes=list(notes), version=__version__, now=time.time(),
                      short_duration=short_duration, allowed=allowed)
        if session:
            session.notes.clear()
        return self.templates.TemplateResponse(request, name, values, status_code=status_code)


def _dashboard(request: Request) -> Dashboard:
    state: Dashboard = request.app.state.dashboard
    return state


def _session(request: Request) -> Session | None:
    return _dashboard(request).sessions.get(request.cookies.get(SESSION_COOKIE))


def _login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)


Handler = Callable[[Request, Session], Awaitable[Response]]


def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A route that needs a session (else: to the login page)."""

    async def route(request: Request) -> Response:
        session = _session(request)
        if session is None:
            return _login_redirect(request)
        return await handler(request, session)

    return route


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


def action(handler: Callable[[Request, Session, dict[str, str]], Awaitable[Response]]
           ) -> Callable[[Request], Awaitable[Response]]:
    """A POST route that needs a session and its CSRF token (checked before anything is done)."""

    async def route(request: Request) -> Response:
        session = _session(request)
        if session is None:
            return PlainTextResponse("not logged in", status_code=401)
        form = await _form(request)
        if not _same_origin(request) or not same_token(form.get("csrf"), session.csrf):
            control.audit(_dashboard(request).store.db, control.AuditEntry(
                time.time(), session.user, session.role, request.url.path, "", "refused: bad CSRF token or origin", ""))
            return PlainTextResponse("refused: missing or wrong CSRF token, or another site's request", status_code=403)
        return await handler(request, session, form)

    return route


# -- login ---------------------------------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    # Only paths of this site: never an absolute URL or scheme-relative //host.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


async def login_page(request: Request) -> Response:
    dash = _dashboard(request)
    token = new_token()
    response = dash.render(request, "login.html", None, next=_safe_next(request.query_params.get("next")),
                           login_token=token, error="")
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=dash.https, max_age=3600)
    return response


async def login(request: Request) -> Response:
    dash = _dashboard(request)
    form = await _form(request)
    target = _safe_next(form.get("next"))
    if not _same_origin(request) or not same_token(form.get("login_token"), request.cookies.get(LOGIN_COOKIE, "")):
        return PlainTextResponse("refused: stale or forged login form; reload the login page", status_code=403)
    name = form.get("user", "")
    session = await run_in_threadpool(dash.sessions.login, name, form.get("password", ""))
    if session is None:
        control.audit(dash.store.db, control.AuditEntry(time.time(), name[:64], "", "login", "", "refused: wrong "
                                                     "user name or password", ""))
        token = new_token()
        response = dash.render(request, "login.html", None, status_code=401, next=target, login_token=token,
                               error="Wrong user name or password.")
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=dash.https, max_age=3600)
        return response
    control.audit(dash.store.db, control.AuditEntry(time.time(), session.user, session.role, "login", "", "ok", ""))
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, session.token, httponly=True, samesite="strict", secure=dash.https, path="/")
    response.delete_cookie(LOGIN_COOKIE)
    return response


@action
async def logout(request: Request, session: Session, form: dict[str, str]) -> Response:
    dash = _dashboard(request)
    dash.sessions.logout(request.cookies.get(SESSION_COOKIE))
    control.audit(dash.store.db, control.AuditEntry(time.time(), session.user, session.role, "logout", "", "ok", ""))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- jobs ----------------------------------------------------------------------------------------------------


def _filters(request: Request) -> Filters:
    return Filters.parse(request.query_params, request.query_params.getlist("state"))


@page
async def jobs_page(request: Request, session: Session) -> Response:
    dash = _dashboard(request)
    filters = _filters(request)
    rows, total = await run_in_threadpool(dash.jobs.rows, filters)
    return dash.render(request, "jobs.html", session, rows=rows, total=total, filters=filters,
                       states=list(JobState), ae_titles=[a.ae_title for a in dash.config.dicom.scp.ae_titles],
                       since=f"{time.time() - JobFeed.OVERLAP_SECONDS:.3f}")


async def events(request: Request) -> Response:
    """Server-sent events: ``job`` with ``{"id", "state", "html"}`` for each changed job (``html``
    empty when it no longer matches the filters); ``job`` in the query follows one job only, and
    ``since`` (UNIX s, the page's rendering) first replays what changed since then."""
    dash = _dashboard(request)
    token = request.cookies.get(SESSION_COOKIE)
    if dash.sessions.get(token) is None:
        return PlainTextResponse("not logged in", status_code=401)
    filters = _filters(request)
    only = request.query_params.get("job")
    row_template = dash.templates.get_template("_row.html")

    try:
        since = float(request.query_params.get("since", ""))
    except ValueError:
        since = None

    async def stream() -> AsyncIterator[str]:
        queue = dash.feed.subscribe()
        try:
            yield "retry: 2000\n\n"
            # What changed between the page's rendering and this subscription.
            changed = dash.jobs.since(since) if since is not None else []
            while dash.sessions.alive(token):
                for job in changed:
                    if only and job.id != only:
                        continue
                    row = await run_in_threadpool(dash.jobs.row, job)
                    html = (row_template.render(r=row, now=time.time(), short_duration=short_duration)
                            if filters.matches(job, row.details) else "")
                    yield f"event: job\ndata: {json.dumps({'id': job.id, 'state': job.state.value, 'html': html})}\n\n"
                try:
                    changed = await asyncio.wait_for(queue.get(), 15)
                except asyncio.TimeoutError:
                    changed = []
                    yield ": keep-alive\n\n"
        finally:
            dash.feed.unsubscribe(queue)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _job_or_404(dash: Dashboard, job_id: str) -> Job | None:
    if not JOB_ID.match(job_id):
        return None
    try:
        return dash.store.get(job_id)
    except UnknownJob:
        return None


def _job_view(dash: Dashboard, job: Job) -> dict[str, Any]:
    stages = dash.store.stages(job.id)
    exports = dash.store.exports(job.id)
    dash.jobs.details.fill([job.id])
    outputs = count_outputs(dash.layout, job.id)
    segments: list[Any] = []
    result_error = ""
    if outputs or job.state in FINAL_STATES:
        try:
            segments = list(dash.results.segments(job.id, dash.cache_root / job.id))
        except NoResult as exc:
            result_error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a damaged SEG shows as a message, not a 500
            LOG.exception("job %s: cannot read the result", job.id)
            result_error = f"cannot read the result: {exc}"
    failed = operator.failed_destinations(dash.store, job.id) if job.state is JobState.FAILED else []
    return {
        "job": job,
        "details": dash.jobs.details.get(job.id),
        "steps": timeline.build(job, stages, exports, dash.layout.payload_dir(job.id)),
        "outputs": outputs,
        "segments": segments,
        "result_error": result_error,
        "log_lines": logs.job_lines(dash.config.dashboard.log_files, job.id),
        "audit": control.audit_log(dash.store.db, job.id, 50),
        "destinations": [d.name for d in dash.config.dicom.scu.destinations],
        "failed_destinations": failed,
        "export_tasks": {t.destination: t for t in dash.store.export_tasks(job.id)},
        "root": dash.layout.root,
        "final": job.state in FINAL_STATES,
        "since": f"{time.time() - JobFeed.OVERLAP_SECONDS:.3f}",
    }


def job_route(handler: Callable[[Request, Session, Dashboard, Job], Awaitable[Response]]
              ) -> Callable[[Request], Awaitable[Response]]:
    """A page about the job ``{job_id}`` (a session needed; 404 when there is no such job)."""

    @page
    async def route(request: Request, session: Session) -> Response:
        dash = _dashboard(request)
        job_id = request.path_params["job_id"]
        job = await run_in_threadpool(_job_or_404, dash, job_id)
        if job is None:
            return dash.render(request, "error.html", session, status_code=404, title="No such job",
                               message=f"There is no job {job_id!r}.")
        return await handler(request, session, dash, job)

    return route


@job_route
async def job_page(request: Request, session: Session, dash: Dashboard, job: Job) -> Response:
    view = await run_in_threadpool(_job_view, dash, job)
    return dash.render(request, "job.html", session, **view)


@action
async def job_action(request: Request, session: Session, form: dict[str, str]) -> Response:
    dash = _dashboard(request)
    job_id = request.path_params["job_id"]
    name = request.path_params["action"]
    if name not in JOB_ACTIONS or not JOB_ID.match(job_id):
        return PlainTextResponse("no such action", status_code=404)
    try:
        message = await run_in_threadpool(run_job_action, dash.context, session, name, job_id, form)
        session.notes.append(f"{name}: {message}")
    except Refused as exc:
        if not allowed(session.role, JOB_ACTIONS[name][1]):
            return PlainTextResponse(f"forbidden: {exc}", status_code=403)
        session.notes.append(f"{name} refused: {exc}")
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


def _result_folder(dash: Dashboard, job_id: str, key: str) -> Path:
    return dash.cache_root / job_id / key


@page
async def preview(request: Request, session: Session) -> Response:
    dash = _dashboard(request)
    job_id, name = request.path_params["job_id"], request.path_params["name"]
    if name not in previews.NAMES or not JOB_ID.match(job_id):
        return PlainTextResponse("no such preview", status_code=404)

    def make() -> Path:
        result = dash.results.get(job_id)
        return previews.cached(result, _result_folder(dash, job_id, result.key))[name]

    try:
        path = await run_in_threadpool(make)
    except NoResult as exc:
        return PlainTextResponse(str(exc), status_code=404)
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@job_route
async def viewer_page(request: Request, session: Session, dash: Dashboard, job: Job) -> Response:
    try:
        await run_in_threadpool(dash.results.files, job.id)
    except NoResult as exc:
        return dash.render(request, "error.html", session, status_code=404, title="No result to view",
                           message=str(exc))
    return dash.render(request, "viewer.html", session, job=job)


@page
async def viewer_file(request: Request, session: Session) -> Response:
    dash = _dashboard(request)
    job_id, name = request.path_params["job_id"], request.path_params["name"]
    if not viewer.NAME.match(name) or not JOB_ID.match(job_id):
        return PlainTextResponse("no such file", status_code=404)

    def make() -> viewer.ViewerFiles:
        files = dash.results.files(job_id)
        result = dash.results.get(job_id)
        return viewer.prepare(result, files, _result_folder(dash, job_id, result.key))

    try:
        prepared = await run_in_threadpool(make)
    except NoResult as exc:
        return PlainTextResponse(str(exc), status_code=404)
    if name == "segments.json":
        return JSONResponse({"segments": prepared.segments, "layers": prepared.layers})
    if name not in prepared.files:
        return PlainTextResponse("no such file", status_code=404)
    return FileResponse(prepared.files[name], media_type="application/octet-stream",
                        headers={"Cache-Control": "private, no-cache"})


# -- health, intake, audit -----------------------------------------------------------------------------------


def _health_view(dash: Dashboard) -> dict[str, Any]:
    gpus, gpu_note = health.gpus()
    return {
        "services": health.services(dash.store),
        "models": health.triton(dash.config),
        "gpus": gpus,
        "gpu_note": gpu_note,
        "storage": health.storage(dash.config),
        "ae_titles": [a.ae_title for a in dash.config.dicom.scp.ae_titles],
        "paused": control.paused_titles(dash.store.db),
        "destinations": dash.config.dicom.scu.destinations,
    }


@page
async def health_page(request: Request, session: Session) -> Response:
    dash = _dashboard(request)
    view = await run_in_threadpool(_health_view, dash)
    return dash.render(request, "health.html", session, **view)


@action
async def echo(request: Request, session: Session, form: dict[str, str]) -> Response:
    dash = _dashboard(request)
    destination = dash.config.dicom.scu.destination(request.path_params["name"])
    if destination is None:
        return PlainTextResponse("no such destination", status_code=404)
    result = await run_in_threadpool(health.echo, destination, dash.config.dicom.scu.ae_title,
                                     min(dash.config.export.timeout_seconds, 10.0))
    session.notes.append(f"C-ECHO {destination.name} ({destination.ae_title}@{destination.host_ip}:"
                         f"{destination.port}): {'OK' if result.ok else 'FAILED'}, {result.detail}, "
                         f"{result.seconds * 1000:.0f} ms")
    return RedirectResponse("/health", status_code=303)


@action
async def intake(request: Request, session: Session, form: dict[str, str]) -> Response:
    dash = _dashboard(request)
    what = request.path_params["action"]
    if what not in ("pause", "resume"):
        return PlainTextResponse("no such action", status_code=404)
    try:
        message = await run_in_threadpool(run_intake_action, dash.context, session, what,
                                          request.path_params["ae"], form)
        session.notes.append(message)
    except Refused as exc:
        if not allowed(session.role, "operator"):
            return PlainTextResponse(f"forbidden: {exc}", status_code=403)
        session.notes.append(f"refused: {exc}")
    return RedirectResponse("/health", status_code=303)


@page
async def audit_page(request: Request, session: Session) -> Response:
    dash = _dashboard(request)
    if not allowed(session.role, "admin"):
        return dash.render(request, "error.html", session, status_code=403, title="Admins only",
                           message=f"The audit log is for admins; your role is {session.role}.")
    entries = await run_in_threadpool(control.audit_log, dash.store.db, None, 1000)
    return dash.render(request, "audit.html", session, entries=entries)


async def healthz(request: Request) -> Response:
    """Liveness for load balancers and systemd checks: the job store answers."""
    dash = _dashboard(request)
    try:
        await run_in_threadpool(dash.store.list_jobs, [JobState.RUNNING])
    except Exception as exc:  # noqa: BLE001
        return JSONResponse({"status": "error", "detail": str(exc)}, status_code=503)
    return JSONResponse({"status": "ok"})


async def metrics_route(request: Request) -> Response:
    dash = _dashboard(request)

    def build() -> str:
        return metrics.render(dash.store, health.services(dash.store))

    return Response(await run_in_threadpool(build), media_type=metrics.CONTENT_TYPE)


# -- the application -----------------------------------------------------------------------------------------


def create_app(config: AdapterConfig, *, feed_poll_seconds: float = 0.25) -> Starlette:
    """The dashboard for ``config`` (its job store, payload folders and ``dashboard:`` settings)."""
    layout = PayloadLayout(config.storage.root)
    cache_root = config.storage.root / config.dashboard.cache_dir
    store = JobStore(config.storage.job_store)
    details = DetailsCache(cache_root / "details.sqlite3", layout)
    jobs = JobList(store, details, layout)
    feed = JobFeed(jobs, feed_poll_seconds)
    env = jinja2.Environment(loader=jinja2.PackageLoader("appliance.dashboard", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["when"] = lambda t: "" if not t else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
    env.filters["seconds"] = lambda s: "" if s is None else f"{s:.2f} s"
    https = config.dashboard.tls_certificate is not None
    sessions = Sessions(config.dashboard.users, config.dashboard.session_minutes * 60)
    dashboard = Dashboard(config, store, layout, sessions, jobs, feed, ResultCache(layout), cache_root,
                          Jinja2Templates(env=env), https)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        feed.start()
        try:
            yield
        finally:
            feed.stop()
            details.close()
            store.close()

    routes = [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", jobs_page),
        Route("/events", events),
        Route("/jobs/{job_id}", job_page),
        Route("/jobs/{job_id}/preview/{name}.png", preview),
        Route("/jobs/{job_id}/viewer", viewer_page),
        Route("/jobs/{job_id}/viewer/{name}", viewer_file),
        Route("/jobs/{job_id}/{action}", job_action, methods=["POST"]),
        Route("/health", health_page),
        Route("/health/echo/{name}", echo, methods=["POST"]),
        Route("/intake/{ae}/{action}", intake, methods=["POST"]),
        Route("/audit", audit_page),
        Route("/healthz", healthz),
        Route("/metrics", metrics_route),
        Mount("/static", StaticFiles(packages=[("appliance.dashboard", "static")]), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.dashboard = dashboard
    app.add_middleware(SecurityHeaders, https=https)
    return app


__all__ = ["CSP", "Dashboard", "InvalidTransition", "create_app"]
