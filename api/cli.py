"""The `cco` command: a thin typer app; each command group lives in its own `cli_*` module.

The idea: commands only parse arguments and call the indexer; every CcoError becomes one line on
stderr and exit status 2, so users never see a traceback for a problem they can fix (typer's own
usage errors included). Building the typer app imports typer, click and rich (and the named
group's module), so `main` builds only the group a command line names, and ordinary `cco report …`,
`cco index run` and `cco index rebuild` command lines, read from the same option declarations
(api/options.py), run without it; help and mistakes still go through typer.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from api.output import fail
from indexer.errors import CcoError, IndexLocked, ServiceError

if TYPE_CHECKING:
    from collections.abc import Callable

    import typer

    from api.options import Opt


GROUPS = ("index", "report", "config")  # `monitor` is a lone command: typer would run it without its name
HANDOVERS = 16  # tries of a command that meets the index held by other cco processes in turn (see main)


def build_app(only: str | None = None) -> typer.Typer:
    """The `cco` typer app; with `only` (one of GROUPS) just that command group, which is all a
    command line naming it needs (each group's module and what it imports cost up to ~70 ms)."""
    import typer

    app = typer.Typer(
        name="cco",
        help="Claude Code usage and cost: a durable index of your transcripts, reports and a live service.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    def show_version(value: bool) -> None:
        if value:
            from importlib.metadata import version

            print(f"cco {version('cco')}")
            raise typer.Exit()

    @app.callback()
    def root(
        version: bool = typer.Option(
            False, "--version", "-V", callback=show_version, is_eager=True, help="Show cco's version and exit."
        ),
    ) -> None:
        """Claude Code usage and cost: a durable index of your transcripts, reports and a live service."""

    if only in (None, "index"):
        from api.cli_index import index_app
        from api.cli_rebuild import rebuild_command
        from api.cli_run import run_command
        from api.cli_status import status_command

        index_app.command("rebuild")(rebuild_command())
        index_app.command("run")(run_command())
        index_app.command("status")(status_command())
        app.add_typer(index_app, name="index")
    if only in (None, "report"):
        from api.cli_report import report_app

        app.add_typer(report_app(), name="report")
    if only in (None, "config"):
        from api.cli_config import config_app

        app.add_typer(config_app, name="config")
    if only is None:
        from api.cli_monitor import monitor_cmd

        app.command("monitor")(monitor_cmd)
    return app


def _run_report(args: list[str]) -> bool:
    """Run `cco report …` without typer when parse_args reads the command line; False if it cannot.

    Once the report is written the process ends at once (os._exit), leaving its DuckDB connection
    open: tearing down the interpreter and DuckDB would cost ~15 ms of a ~150 ms command, and
    nothing is left to save (the index is opened read-only). Python's cycle collector is off: such
    a process makes many containers (a session report, a dict per session) and no garbage cycles
    worth finding before it ends.
    """
    import gc

    gc.disable()
    import api.cli_report
    from api.cli_report import parse_args, run

    parsed = parse_args(args)
    if parsed is None:
        return False
    api.cli_report.leave_open = []
    try:
        run(*parsed)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): exit quietly, as click does for typer's commands.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
    sys.stderr.flush()
    os._exit(0)


def _run_index_command(args: list[str]) -> bool:
    """Run `cco index run|rebuild|status …` without typer when options.read reads the command line;
    False if it cannot (or for another command).

    typer, click and rich would stay resident in the service for its whole life (~12 MB), and
    add as much to a rebuild's peak memory.
    """
    from api.options import read

    options: dict[str, Opt]
    command: Callable[..., None]
    if args[:1] == ["run"]:
        from api.cli_run import RUN_OPTIONS as options
        from api.cli_run import run_service as command
    elif args[:1] == ["rebuild"]:
        from api.cli_rebuild import REBUILD_OPTIONS as options
        from api.cli_rebuild import run_rebuild as command
    elif args[:1] == ["status"]:
        from api.cli_status import STATUS_OPTIONS as options
        from api.cli_status import run_status as command
    else:
        return False
    values = read(args[1:], options, tuple(options))
    if values is None:
        return False
    command(**values)
    return True


def _run_typer(app: typer.Typer) -> None:
    """Run the typer app; a usage mistake is one line (`cco: error: …`), as every other error is.

    click's exceptions are told by their interface, not their class: typer vendors click from 0.28.
    """
    try:
        code = app(standalone_mode=False)
    except Exception as exc:
        kind = type(exc).__name__
        ctx = getattr(exc, "ctx", None)
        if kind == "NoArgsIsHelpError" and ctx is not None:  # a command group named alone: its help
            print(ctx.get_help())
            raise SystemExit(2) from None
        if kind == "Abort":  # Ctrl-C at a prompt
            print("Aborted!", file=sys.stderr)
            raise SystemExit(1) from None
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):  # not click's
            raise
        where = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
        fail(_elsewhere(exc, ctx) or f"{exc.format_message().rstrip('.')}{where}")
    if isinstance(code, int) and not isinstance(code, bool) and code:  # typer.Exit(code)
        raise SystemExit(code)


def _elsewhere(exc: Exception, ctx: Any) -> str | None:
    """For an option another `cco report` command takes (`blocks --since`): which ones do, instead of
    click's guess at a similar option of this one."""
    flag = getattr(exc, "option_name", None)
    command = ctx.command_path.split()[-1] if ctx is not None else ""
    if not flag or ctx is None or not ctx.command_path.startswith("cco report "):
        return None
    from api.cli_report import COMMANDS, OPTIONS

    takers = [c for c, (_, names) in COMMANDS.items() if any(flag in OPTIONS[n].flags for n in names)]
    if not takers or command in takers:
        return None
    verb = "takes" if len(takers) == 1 else "take"
    return f"{flag} is not an option of `cco report {command}`; {', '.join(takers)} {verb} it"


def _run(args: list[str]) -> None:
    from api.options import empty_path

    if flag := empty_path(args):
        fail(f"{flag} needs a path, got ''")
    if args[:1] == ["report"] and _run_report(args[1:]):
        return
    if args[:1] == ["index"] and _run_index_command(args[1:]):
        return
    _run_typer(build_app(args[0] if args[:1] and args[0] in GROUPS else None))


def main() -> None:
    args = sys.argv[1:]
    try:
        # A `cco index run` that is starting or stopping holds the index without serving it, and
        # other cco commands hold it for a moment: once it is served (or let go of) the command
        # runs again, through the service or on the file, a few times if others take it meanwhile.
        # Commands fail on the lock or the connection before they change anything.
        for attempt in range(HANDOVERS):
            try:
                _run(args)
                break
            except (IndexLocked, ServiceError) as exc:
                from api.client import handed_over

                if attempt == HANDOVERS - 1 or not handed_over(exc):
                    raise
    except CcoError as exc:
        fail(str(exc))
    except BrokenPipeError:
        raise SystemExit(1) from None  # the reader went away (`| head`)
    except KeyboardInterrupt:
        # Ctrl-C: what a sync committed stays (offsets commit with rows); no traceback for it
        print("cco: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except OSError as exc:
        # A folder that cannot be made or a file that cannot be written (CCO_HOME naming a file, a
        # read-only disk): the system's reason and the path, in one line.
        where = f": {exc.filename}" if exc.filename else ""
        fail(f"{exc.strerror or exc}{where}")
    except Exception as exc:
        # Commands holding an Index already name the file; this catches the rest (one line, no traceback).
        # duckdb is looked up, not imported: commands that never touch the index do not pay for it
        # (a report may have loaded only its engine, `_duckdb`, whose Error the package re-exports).
        duckdb = sys.modules.get("duckdb") or sys.modules.get("_duckdb")
        if duckdb is None or not isinstance(exc, duckdb.Error):
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        fail(f"index database error: {first}; if the index is damaged, run `cco index rebuild`")


if __name__ == "__main__":
    main()
