"""``stepstone``: serve, run workers, deploy workflows and manage instances from a terminal.

Every command that reads or changes state talks to the database directly (``--db``, else
``$STEPSTONE_DATABASE_URL``, else ``./.stepstone/stepstone.db``), so none needs a server.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from stepstone.cli import views
from stepstone.cli.process import Role, run_process
from stepstone.domain.errors import StepstoneError, ValidationError
from stepstone.domain.ids import check_tenant
from stepstone.domain.status import Action, InstanceStatus
from stepstone.engine import DEFAULT_TENANT, Engine
from stepstone.engine.engine import Deployed
from stepstone.engine.keys import KeyService
from stepstone.storage import open_store
from stepstone.storage.factory import ENV_URL

app = typer.Typer(
    name="stepstone",
    help="Stepstone: durable workflows. Every completed step is committed and never runs twice.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
instances_app = typer.Typer(help="List, inspect and change instances.", no_args_is_help=True)
events_app = typer.Typer(help="Send events to waiting instances.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema operations.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke tenants' API keys.", no_args_is_help=True)
app.add_typer(instances_app, name="instances")
app.add_typer(events_app, name="events")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")

out = Console()
err = Console(stderr=True)
T = TypeVar("T")

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar=ENV_URL,
        help="Database URL or SQLite file path.",
        show_default="./.stepstone/stepstone.db",
    ),
]
HostOption = Annotated[str, typer.Option(help="Address to listen on.")]
PortOption = Annotated[int, typer.Option(help="Port to listen on.")]


def _check_tenant(value: str | None) -> str | None:
    try:
        return None if value is None else check_tenant(value)
    except ValidationError as exc:
        raise typer.BadParameter(exc.message) from None


_TENANT_HELP = "Tenant (the account, project or organization of the HTTP APIs)."
TenantOption = Annotated[str, typer.Option(help=_TENANT_HELP, callback=_check_tenant)]


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    app()


def _run(fn: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    """Run an async command; a StepstoneError becomes a one-line message and exit code 1."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return asyncio.run(fn(*args, **kwargs))
        except StepstoneError as exc:
            err.print(f"[red]error:[/red] {exc.message}")
            raise typer.Exit(1) from None

    return wrapper


async def _with_engine(db: str | None, fn: Callable[[Engine], Awaitable[T]]) -> T:
    store = await open_store(db)
    try:
        return await fn(Engine(store))
    finally:
        await store.close()


async def _with_keys(db: str | None, fn: Callable[[KeyService], Awaitable[T]]) -> T:
    store = await open_store(db)
    try:
        return await fn(KeyService(store))
    finally:
        await store.close()


def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        err.print(f"[red]error:[/red] {what} is not valid JSON: {exc}")
        raise typer.Exit(2) from None


def _print_deployed(deployed: list[Deployed]) -> None:
    for d in deployed:
        err.print(
            f"deployed [bold]{d.workflow.name}[/bold] ({d.version.class_name} from "
            f"{d.version.script_name}) as version {d.version.number} [dim]{d.version.id}[/dim]"
        )


# ---------------------------------------------------------------------- processes
@app.command()
def serve(
    db: DbOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8787,
    role: Annotated[Role, typer.Option(help="api, worker, or all in one process.")] = Role.ALL,
) -> None:
    """Run the HTTP server and a worker in one process (Ctrl-C stops gracefully)."""
    _serve(db, host=host, port=port, role=role)


@app.command()
def dev(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders of workflow classes.")],
    db: DbOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8787,
    watch: Annotated[bool, typer.Option(help="Redeploy a path when its files change.")] = True,
) -> None:
    """Deploy every workflow class found in PATHS, then serve (redeploying on change)."""
    for path in paths:
        if not path.exists():
            err.print(f"[red]error:[/red] {path} does not exist")
            raise typer.Exit(2)
    if not _is_loopback(host):
        err.print(
            f"[red]error:[/red] stepstone dev accepts any token, so it only listens on loopback "
            f"(127.0.0.1, ::1, localhost), not {host!r}; use stepstone serve with API keys"
        )
        raise typer.Exit(2)
    _serve(db, host=host, port=port, role=Role.ALL, deploy=paths, watch=watch, open_access=True)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def worker(db: DbOption = None) -> None:
    """Run a worker without HTTP; start as many as you like against one database."""
    _serve(db, host="", port=0, role=Role.WORKER)


def _serve(
    db: str | None,
    *,
    host: str,
    port: int,
    role: Role,
    deploy: list[Path] | None = None,
    watch: bool = False,
    open_access: bool = False,
) -> None:
    def ready(where: str) -> None:
        err.print(f"[green]Stepstone ready[/green]: {where}")
        if open_access:
            err.print(
                "local dev mode: no API keys needed, any token works, and every account id "
                f"is the {DEFAULT_TENANT!r} tenant (listening on loopback only)"
            )

    try:
        asyncio.run(
            run_process(
                db,
                role=role,
                host=host,
                port=port,
                deploy=deploy or (),
                watch=watch,
                open_access=open_access,
                on_deployed=_print_deployed,
                on_ready=ready,
            )
        )
    except StepstoneError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass


# ---------------------------------------------------------------------- deploy and run
@app.command()
@_run
async def deploy(
    file: Annotated[Path, typer.Argument(help="A .py file, or a folder of modules.")],
    name: Annotated[str | None, typer.Option(help="Workflow name (default: class's).")] = None,
    class_name: Annotated[
        str | None, typer.Option("--class", help="Class to deploy (default: every one found).")
    ] = None,
    tenant: TenantOption = DEFAULT_TENANT,
    db: DbOption = None,
) -> None:
    """Store FILE as a new immutable version of its workflow(s)."""
    deployed = await _with_engine(
        db, lambda e: e.deploy_path(file, class_name=class_name, name=name, tenant=tenant)
    )
    _print_deployed(deployed)


@app.command()
@_run
async def run(
    name: Annotated[str, typer.Argument(help="Workflow name.")],
    params: Annotated[str | None, typer.Option(help="Params as JSON.")] = None,
    instance_id: Annotated[str | None, typer.Option("--id", help="Instance id.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the steps live until it ends.")] = False,
    tenant: TenantOption = DEFAULT_TENANT,
    db: DbOption = None,
) -> None:
    """Start an instance of NAME; with --wait, exit non-zero if it does not complete."""
    payload = _json_arg(params, "--params")

    async def go(engine: Engine) -> InstanceStatus:
        instance = await engine.create_instance(
            name, params=payload, instance_id=instance_id, tenant=tenant
        )
        out.print(instance.id)
        if not wait:
            return instance.status
        return await views.follow(engine, name, instance.id, err, tenant=tenant)

    status = await _with_engine(db, go)
    if wait and status is not InstanceStatus.COMPLETE:
        raise typer.Exit(1)


# ---------------------------------------------------------------------- instances
@instances_app.command("list")
@_run
async def list_instances(
    name: Annotated[str, typer.Argument(help="Workflow name.")],
    status: Annotated[InstanceStatus | None, typer.Option(help="Only this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    tenant: TenantOption = DEFAULT_TENANT,
    db: DbOption = None,
) -> None:
    """List NAME's instances, newest first."""
    page = await _with_engine(
        db, lambda e: e.list_instances(name, status=status, limit=limit, tenant=tenant)
    )
    if as_json:
        out.print_json(data=[views.instance_json(i) for i in page.items])
    else:
        out.print(views.instances_table(page.items))


@instances_app.command("show")
@_run
async def show_instance(
    name: Annotated[str, typer.Argument(help="Workflow name.")],
    instance_id: Annotated[str, typer.Argument(help="Instance id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    tenant: TenantOption = DEFAULT_TENANT,
    db: DbOption = None,
) -> None:
    """Show an instance: status, params, output or error, and every step."""
    view = await _with_engine(db, lambda e: e.get_instance(name, instance_id, tenant=tenant))
    if as_json:
        out.print_json(data=views.view_json(view))
    else:
        out.print(views.instance_panel(view))


def _action_command(action: Action) -> None:
    @instances_app.command(action.value, help=f"{action.value.capitalize()} an instance.")
    @_run
    async def command(
        name: Annotated[str, typer.Argument(help="Workflow name.")],
        instance_id: Annotated[str, typer.Argument(help="Instance id.")],
        tenant: TenantOption = DEFAULT_TENANT,
        db: DbOption = None,
    ) -> None:
        instance = await _with_engine(
            db, lambda e: e.change_status(name, instance_id, action, tenant=tenant)
        )
        out.print(f"{instance.id}: {instance.status.value}")


for _action in Action:
    _action_command(_action)


# ---------------------------------------------------------------------- events
@events_app.command("send")
@_run
async def send_event(
    name: Annotated[str, typer.Argument(help="Workflow name.")],
    instance_id: Annotated[str, typer.Argument(help="Instance id.")],
    event_type: Annotated[str, typer.Argument(metavar="TYPE", help="Event type.")],
    payload: Annotated[str | None, typer.Option(help="Payload as JSON.")] = None,
    tenant: TenantOption = DEFAULT_TENANT,
    db: DbOption = None,
) -> None:
    """Send an event of TYPE to an instance (buffered until a wait takes it)."""
    data = _json_arg(payload, "--payload")
    await _with_engine(
        db, lambda e: e.send_event(name, instance_id, event_type, data, tenant=tenant)
    )
    out.print(f"sent {event_type!r} to {instance_id}")


# ---------------------------------------------------------------------- keys
@keys_app.command("create")
@_run
async def create_key(
    tenant: Annotated[str, typer.Option(help=_TENANT_HELP, callback=_check_tenant)],
    scopes: Annotated[
        str,
        typer.Option(
            help="Comma-separated: workflows:read, workflows:write, workflows:execute, admin."
        ),
    ],
    name: Annotated[str | None, typer.Option(help="A label for people.")] = None,
    owner: Annotated[str | None, typer.Option(help="Who the key belongs to.")] = None,
    db: DbOption = None,
) -> None:
    """Create a key and print it alone on standard output: it is shown only this once."""
    wanted = [s for s in scopes.split(",") if s.strip()]
    key, token = await _with_keys(db, lambda k: k.create(tenant, wanted, name=name, owner=owner))
    err.print(
        f"created key {key.id} for tenant {key.tenant} ({', '.join(key.scopes)}); "
        "store it now, only its hash is kept",
        markup=False,
    )
    # Plain echo: no markup, no wrapping, so `KEY=$(stepstone keys create ...)` gets the key.
    typer.echo(token)


@keys_app.command("list")
@_run
async def list_keys(
    tenant: Annotated[
        str | None, typer.Option(help="Only this tenant's keys.", callback=_check_tenant)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    db: DbOption = None,
) -> None:
    """List keys (never their secrets), revoked ones included."""
    keys = await _with_keys(db, lambda k: k.list(tenant))
    if as_json:
        out.print_json(data=[views.key_json(k) for k in keys])
    else:
        out.print(views.keys_table(keys))


@keys_app.command("revoke")
@_run
async def revoke_key(
    key_id: Annotated[str, typer.Argument(help="Key id (as `keys list` shows it).")],
    db: DbOption = None,
) -> None:
    """Revoke a key: every request with it is refused from now on."""
    key = await _with_keys(db, lambda k: k.revoke(key_id))
    out.print(f"{key.id}: revoked", markup=False)


# ---------------------------------------------------------------------- database
@db_app.command("upgrade")
@_run
async def db_upgrade(db: DbOption = None) -> None:
    """Apply every pending schema migration."""
    store = await open_store(db)
    await store.close()
    out.print(f"database is up to date: {store.url}")


@db_app.command("check")
@_run
async def db_check(db: DbOption = None) -> None:
    """Check that the database is reachable and its schema current; exit 1 if not."""
    store = await open_store(db, migrate=False)
    try:
        await store.ping()
        current, head = await store.revisions()
    finally:
        await store.close()
    out.print(f"database: {store.url}")
    out.print(f"schema revision: {current or 'none (empty database)'}; this version needs {head}")
    if current != head:
        err.print("[yellow]the schema is not current: run `stepstone db upgrade`[/yellow]")
        raise typer.Exit(1)
    out.print("[green]ok[/green]")


if __name__ == "__main__":  # pragma: no cover
    main()
