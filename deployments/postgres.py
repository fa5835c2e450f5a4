"""A throwaway PostgreSQL server for the Prefect server of the distributed mode.

Debian's `postgresql` package (`make postgres` installs it) provides the programs; a
cluster is made in a folder of the caller's with `initdb`, then `postgres` listens on
127.0.0.1 at a free port, its unix socket in the same folder. PostgreSQL refuses to run
as root, so as root both run as the `postgres` user that the package creates. Prefect
reaches it with the URL `start_postgres` returns, as PREFECT_API_DATABASE_CONNECTION_URL.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

from deployments.local import Process, Stack, StartError, free_port

DATABASE = "prefect"
ROLE = "prefect"
# Who runs PostgreSQL when this process is root.
SYSTEM_USER = "postgres"


def server_programs() -> Path:
    """The folder of `initdb`, `postgres` and `pg_isready`: Debian's newest version, or
    the one on PATH; StartError when neither is installed."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    raise StartError("no PostgreSQL server installed: run `make postgres` (Debian's postgresql)")


def reachable(folder: Path) -> None:
    """Let every user pass through `folder` and the folders above it (not list them), so
    that the `postgres` user reaches its own folder inside, say, a private temp folder."""
    for each in (folder, *folder.parents):
        mode = each.stat().st_mode
        if mode & 0o001 == 0:
            each.chmod(mode | 0o001)


def start_postgres(stack: Stack, folder: Path, timeout: float = 60.0) -> tuple[Process, str]:
    """A new PostgreSQL cluster in `folder` (empty or missing), served until `stack`
    stops; the server and the SQLAlchemy URL of its database for Prefect. As root, the
    folder is given to the `postgres` user, and the folders above it made passable."""
    programs = server_programs()
    user = SYSTEM_USER if os.geteuid() == 0 else None
    folder.mkdir(parents=True, exist_ok=True)
    if user is not None:
        shutil.chown(folder, user)
        reachable(folder.parent)
    data = folder / "data"
    initdb = [str(programs / "initdb"), "-D", str(data), "-U", ROLE, "--auth=trust"]
    made = subprocess.run(
        [*initdb, "-E", "UTF8", "--no-sync"],
        capture_output=True,
        text=True,
        user=user,
        group=None if user is None else pwd.getpwnam(user).pw_gid,
        extra_groups=None if user is None else [],
    )
    if made.returncode != 0:
        raise StartError(f"initdb failed: {made.stderr.strip()}")
    port = free_port()
    args = [str(programs / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port)]
    # The socket beside the data, not in /run/postgresql, which may not exist or be shared.
    args += ["-k", str(folder)]
    address = ["-h", "127.0.0.1", "-p", str(port), "-U", ROLE]

    def ready() -> bool:
        # To a database that exists from the start: a ping to `prefect` (the default, as
        # the role is) has the server log a FATAL "does not exist" before createdb.
        check = [str(programs / "pg_isready"), *address, "-d", "postgres", "-q"]
        return subprocess.run(check, check=False).returncode == 0

    server = stack.start("postgres", args, ready, timeout, user=user, stop_signal=signal.SIGINT)
    created = subprocess.run(
        [str(programs / "createdb"), *address, DATABASE], capture_output=True, text=True
    )
    if created.returncode != 0:
        raise StartError(f"createdb failed: {created.stderr.strip()}")
    return server, f"postgresql+asyncpg://{ROLE}@127.0.0.1:{port}/{DATABASE}"
