"""The web application (FastAPI): the ingest and JSON API with its OpenAPI schema,
server-rendered pages (Jinja2, no JavaScript), Prometheus metrics.  Why FastAPI: the
upload is read as a stream (``Request.stream()``) so a dump never sits whole in memory,
and the OpenAPI schema comes from the routes themselves."""

import json
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel
from sqlalchemy import delete, func, select
from starlette.concurrency import run_in_threadpool

from kdumpkit.server import views
from kdumpkit.server.db import QUEUED, RUNNING, Bucket, Dump, Problem, Token, lookup_token, utcnow
from kdumpkit.server.store import StoreError
from kdumpkit.server.work import Context, rebucket

COOKIE = "kdumpkit_token"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]")


def safe_name(name: str | None, limit: int = 200) -> str:
    """An uploaded file's name as shown: its last component, tame characters only."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _SAFE_NAME.sub("_", base).lstrip(".")
    return base[:limit] or "dump"


class Principal(BaseModel):
    """Who is asking: the token's role and, for an upload token, its host."""

    role: str
    host: str | None = None


class UploadAnswer(BaseModel):
    """What an upload returns."""

    id: int
    sha256: str
    status: str
    duplicate: bool


class FixedIn(BaseModel):
    """Body of ``POST /api/problems/{id}/fixed``."""

    release: str | None


def create_app(ctx: Context, enqueue: Callable[[int], None]) -> FastAPI:
    """The app over a context; ``enqueue(dump_id)`` sends a dump to the workers."""
    config = ctx.config
    app = FastAPI(
        title="kdumpkit server",
        description="Dumps of a fleet, analysed on arrival and grouped into problems.",
        version="1",
    )
    templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
    templates.env.globals["urlencode"] = urlencode

    def principal(request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        token = token or request.cookies.get(COOKIE, "")
        if not token:
            return None
        with ctx.sessions() as session:
            row: Token | None = lookup_token(session, token)
            return Principal(role=row.role, host=row.host) if row else None

    def need(*roles: str) -> Callable[[Request], Principal]:
        def check(request: Request) -> Principal:
            who = principal(request)
            if who is None:
                raise HTTPException(
                    401, "a valid bearer token is needed", headers={"WWW-Authenticate": "Bearer"}
                )
            if who.role not in roles:
                raise HTTPException(403, f"a {who.role} token cannot do this")
            return who

        return check

    reader = Depends(need("read", "admin"))
    uploader = Depends(need("upload", "admin"))
    admin = Depends(need("admin"))

    # --- ingest ------------------------------------------------------------------------

    @app.post("/api/dumps", status_code=201, response_model=UploadAnswer)
    async def upload(
        request: Request,
        who: Annotated[Principal, uploader],
        filename: str | None = None,
        host: str | None = None,
    ) -> Any:
        """Store a dump sent as the raw request body (streamed; sha256 on the way in).
        The host is the upload token's; an admin token may name one."""
        length = request.headers.get("content-length")
        expected = int(length) if length and length.isdigit() else None
        name = safe_name(filename or request.headers.get("x-filename"))
        origin = safe_name(who.host if who.role == "upload" else host or "unknown")
        try:
            incoming = await run_in_threadpool(ctx.store.begin, expected)
        except StoreError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=exc.status)
        try:
            buffer = bytearray()
            async for chunk in request.stream():
                buffer += chunk
                if len(buffer) >= 1 << 20:
                    await run_in_threadpool(incoming.write, bytes(buffer))
                    buffer.clear()
            if buffer:
                await run_in_threadpool(incoming.write, bytes(buffer))
            sha256, _path = await run_in_threadpool(incoming.commit)
        except StoreError as exc:
            incoming.abort()
            return JSONResponse({"detail": str(exc)}, status_code=exc.status)
        except BaseException:
            incoming.abort()
            raise
        answer = await run_in_threadpool(_register, sha256, incoming.size, origin, name)
        if not answer.duplicate:
            await run_in_threadpool(enqueue, answer.id)
        return JSONResponse(answer.model_dump(), status_code=200 if answer.duplicate else 201)

    def _register(sha256: str, size: int, host: str, name: str) -> UploadAnswer:
        with ctx.sessions.begin() as session:
            existing = session.scalar(select(Dump).where(Dump.sha256 == sha256))
            if existing is not None:
                # the file was deleted by retention: the upload just put it back
                existing.stored = True
                return UploadAnswer(
                    id=existing.id, sha256=sha256, status=existing.status, duplicate=True
                )
            dump = Dump(
                sha256=sha256,
                size=size,
                host=host,
                filename=name,
                status=QUEUED,
                enqueued=utcnow(),
            )
            session.add(dump)
            session.flush()
            return UploadAnswer(id=dump.id, sha256=sha256, status=QUEUED, duplicate=False)

    @app.put("/api/dumps/{dump_id}/dmesg", status_code=204)
    async def put_dmesg(
        dump_id: int, request: Request, who: Annotated[Principal, uploader]
    ) -> Response:
        """Attach the kernel log saved with the dump (text, at most 16 MiB)."""
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > 16 << 20:
                raise HTTPException(413, "kernel log larger than 16 MiB")
        with ctx.sessions.begin() as session:
            dump = session.get(Dump, dump_id)
            if dump is None or (who.role == "upload" and dump.host != safe_name(who.host)):
                raise HTTPException(404, "no such dump")
            dump.dmesg = data.decode("utf-8", errors="replace")
        return Response(status_code=204)

    # --- reading ------------------------------------------------------------------------

    def _dump_or_404(session: Any, dump_id: int) -> Dump:
        dump = session.get(Dump, dump_id)
        if dump is None:
            raise HTTPException(404, "no such dump")
        return dump

    @app.get("/api/dumps")
    def list_dumps(_who: Annotated[Principal, reader]) -> list[dict[str, Any]]:
        """Every dump: id, status, sha256, host, problem, error (newest first)."""
        with ctx.sessions() as session:
            return [views.asdict(r) for r in views.dumps(session, config.scheme)]

    @app.get("/api/dumps/{dump_id}")
    def get_dump(dump_id: int, _who: Annotated[Principal, reader]) -> dict[str, Any]:
        """A dump: status, sha256, problem, error, its report, dmesg and command outputs."""
        with ctx.sessions() as session:
            dump = _dump_or_404(session, dump_id)
            row = views.dump_row(dump, views.problem_of(session, dump_id, config.scheme))
            data = views.asdict(row)
            data["report"] = json.loads(dump.report) if dump.report else None
            data["dmesg"] = dump.dmesg
            data["commands"] = views.command_outputs(dump)
            data["analysis_seconds"] = dump.analysis_seconds
            return data

    @app.get("/api/dumps/{dump_id}/download")
    def download(dump_id: int, _who: Annotated[Principal, reader]) -> FileResponse:
        """The dump file itself."""
        with ctx.sessions() as session:
            dump = _dump_or_404(session, dump_id)
            path = ctx.store.path_of(dump.sha256)
            if not dump.stored or not path.exists():
                raise HTTPException(410, "the dump's file was deleted by retention")
            return FileResponse(
                path,
                filename=dump.filename or f"dump-{dump.id}",
                media_type="application/octet-stream",
            )

    @app.delete("/api/dumps/{dump_id}", status_code=204)
    def delete_dump(dump_id: int, _who: Annotated[Principal, admin]) -> Response:
        """Delete a dump and its analysis (not while it is being analysed)."""
        with ctx.sessions.begin() as session:
            dump = _dump_or_404(session, dump_id)
            if dump.status == RUNNING:
                raise HTTPException(409, "the dump is being analysed")
            session.execute(delete(Bucket).where(Bucket.dump_id == dump_id))
            session.delete(dump)
            sha = dump.sha256
        ctx.store.delete(sha)
        return Response(status_code=204)

    def _filters(
        release: str | None,
        host: str | None,
        module: str | None,
        since: str | None,
        until: str | None,
    ) -> views.Filters:
        def when(text: str | None) -> datetime | None:
            if not text:
                return None
            try:
                return datetime.fromisoformat(text.rstrip("Z"))
            except ValueError:
                raise HTTPException(422, f"not a date: {text!r}") from None

        return views.Filters(
            release or None, host or None, module or None, when(since), when(until)
        )

    @app.get("/api/problems")
    def list_problems(
        _who: Annotated[Principal, reader],
        sort: Annotated[str, Query(pattern="^(count|last_seen)$")] = "count",
        release: str | None = None,
        host: str | None = None,
        module: str | None = None,
        since: str | None = None,
        until: str | None = None,
        scheme: int | None = None,
    ) -> list[dict[str, Any]]:
        """Problems: id, signature, count, hosts, releases, dumps (ids), first/last seen."""
        filters = _filters(release, host, module, since, until)
        with ctx.sessions() as session:
            rows = views.problems(session, scheme or config.scheme, filters, sort)
            return [r.as_json() for r in rows]

    def _problem(session: Any, problem_id: int) -> views.ProblemRow:
        problem = session.get(Problem, problem_id)
        if problem is None:
            raise HTTPException(404, "no such problem")
        rows = [r for r in views.problems(session, problem.scheme) if r.id == problem_id]
        if not rows:
            raise HTTPException(404, "no such problem")
        return rows[0]

    @app.get("/api/problems/{problem_id}")
    def get_problem(problem_id: int, _who: Annotated[Principal, reader]) -> dict[str, Any]:
        """A problem and its dumps."""
        with ctx.sessions() as session:
            return _problem(session, problem_id).as_json()

    @app.post("/api/problems/{problem_id}/fixed")
    def mark_fixed(
        problem_id: int, body: FixedIn, _who: Annotated[Principal, admin]
    ) -> dict[str, Any]:
        """Mark fixed in a release (null: not fixed); later occurrences are regressions."""
        with ctx.sessions.begin() as session:
            problem = session.get(Problem, problem_id)
            if problem is None:
                raise HTTPException(404, "no such problem")
            problem.fixed_in = body.release
        with ctx.sessions() as session:
            return _problem(session, problem_id).as_json()

    @app.get("/api/hosts")
    def list_hosts(_who: Annotated[Principal, reader]) -> list[dict[str, Any]]:
        """Hosts: their dumps, problems, releases."""
        with ctx.sessions() as session:
            return [views.asdict(h) for h in views.hosts(session, config.scheme)]

    @app.post("/api/rebucket")
    def rebucket_all(scheme: int, _who: Annotated[Principal, admin]) -> dict[str, int]:
        """Bucket every analysed dump under a signature scheme from its stored analysis."""
        from kdumpkit.server.signatures import SCHEMES

        if scheme not in SCHEMES:
            raise HTTPException(422, f"no signature scheme {scheme}")
        return {"scheme": scheme, "dumps": rebucket(ctx, scheme)}

    # --- metrics ------------------------------------------------------------------------

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics(_who: Annotated[Principal, reader]) -> str:
        """Prometheus metrics, counted from the database (so every worker's work shows)."""
        from kdumpkit.server.metrics import render

        return render(ctx)

    # --- pages --------------------------------------------------------------------------

    def page(request: Request, name: str, **values: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, values)

    def page_principal(request: Request) -> Principal | RedirectResponse:
        who = principal(request)
        if who is None or who.role not in ("read", "admin"):
            return RedirectResponse("/login", status_code=303)
        return who

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request) -> HTMLResponse:
        return page(request, "login.html", error=None)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode(errors="replace"))
        token = (form.get("token") or [""])[0].strip()
        with ctx.sessions() as session:
            row = lookup_token(session, token) if token else None
        if row is None or row.role not in ("read", "admin"):
            return page(request, "login.html", error="That token cannot read this server.")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.post("/logout", include_in_schema=False)
    def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def problems_page(
        request: Request,
        sort: str = "count",
        release: str | None = None,
        host: str | None = None,
        module: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> Response:
        who = page_principal(request)
        if isinstance(who, Response):
            return who
        filters = _filters(release, host, module, since, until)
        with ctx.sessions() as session:
            rows = views.problems(
                session, config.scheme, filters, "last_seen" if sort == "last_seen" else "count"
            )
            everything = views.problems(session, config.scheme)
            counts = session.execute(select(Dump.status, func.count()).group_by(Dump.status))
        choices = {
            "release": sorted({r for p in everything for r in p.releases}, key=views.release_key),
            "host": sorted({h for p in everything for h in p.hosts}),
            "module": sorted({m for p in everything for m in p.modules}),
        }
        params = {
            k: v
            for k, v in (
                ("release", release),
                ("host", host),
                ("module", module),
                ("since", since),
                ("until", until),
            )
            if v
        }
        return page(
            request,
            "problems.html",
            problems=rows,
            sort=sort,
            params=params,
            choices=choices,
            statuses=dict(counts.all()),
        )

    @app.get("/problems/{problem_id}", response_class=HTMLResponse, include_in_schema=False)
    def problem_page(request: Request, problem_id: int) -> Response:
        who = page_principal(request)
        if isinstance(who, Response):
            return who
        with ctx.sessions() as session:
            row = _problem(session, problem_id)
            chart = views.release_chart(session, row)
            dump_rows = views.dumps(session, config.scheme, problem_id)
        return page(
            request,
            "problem.html",
            problem=row,
            chart=chart,
            dumps=dump_rows,
            admin=who.role == "admin",
        )

    @app.post("/problems/{problem_id}/fixed", include_in_schema=False)
    async def problem_fixed_form(request: Request, problem_id: int) -> Response:
        who = page_principal(request)
        if isinstance(who, Response):
            return who
        if who.role != "admin":
            raise HTTPException(403, "a read token cannot mark problems fixed")
        form = parse_qs((await request.body()).decode(errors="replace"))
        release = (form.get("release") or [""])[0].strip() or None
        with ctx.sessions.begin() as session:
            problem = session.get(Problem, problem_id)
            if problem is None:
                raise HTTPException(404, "no such problem")
            problem.fixed_in = release
        return RedirectResponse(f"/problems/{problem_id}", status_code=303)

    @app.get("/dumps", response_class=HTMLResponse, include_in_schema=False)
    def dumps_page(request: Request) -> Response:
        who = page_principal(request)
        if isinstance(who, Response):
            return who
        with ctx.sessions() as session:
            rows = views.dumps(session, config.scheme)
        return page(request, "dumps.html", dumps=rows)

    @app.get("/dumps/{dump_id}", response_class=HTMLResponse, include_in_schema=False)
    def dump_page(request: Request, dump_id: int) -> Response:
        who = page_principal(request)
        if isinstance(who, Response):
            return who
        with ctx.sessions() as session:
            dump = _dump_or_404(session, dump_id)
            problem = views.problem_of(session, dump_id, config.scheme)
            row = views.dump_row(dump, problem)
            report_text = None
            if dump.report:
                from kdumpkit.server.analysis import report_text as render

                report_text = render(dump.report)
            return page(
                request,
                "dump.html",
                dump=row,
                problem=problem,
                report=report_text,
                dmesg=dump.dmesg,
                commands=views.command_outputs(dump),
            )

    @app.get("/hosts", response_class=HTMLResponse, include_in_schema=False)
    def hosts_page(request: Request) -> Response:
        who = page_principal(request)
        if isinstance(who, Response):
            return who
        with ctx.sessions() as session:
            rows = views.hosts(session, config.scheme)
        return page(request, "hosts.html", hosts=rows)

    return app
