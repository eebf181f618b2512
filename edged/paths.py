"""Configured files: one check that a path names a file this process can read, and why not, in words.

Every file edged is given (the model, the Haar cascade, a video file, the TLS files) is checked here before it is
used, so a file the service cannot read is a configuration error naming its variable, never a traceback. The
systemd unit runs edged as a dynamic user whose sandbox hides /home, /root and /run/user (`ProtectHome=yes`): a
file there that root can read is invisible to the service, which the message says.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from edged.errors import ConfigError

# What the unit's ProtectHome=yes makes empty and inaccessible to the service.
HIDDEN_BY_UNIT = (Path("/home"), Path("/root"), Path("/run/user"))


def _user() -> str:
    uid = os.geteuid()
    try:
        import pwd

        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):  # systemd's dynamic user where NSS does not know it
        return f"uid {uid}"


def _sandbox_hint(path: Path) -> str:
    absolute = Path(os.path.abspath(path))
    if any(absolute == hidden or hidden in absolute.parents for hidden in HIDDEN_BY_UNIT):
        return ("; the edged service cannot see /home, /root or /run/user (ProtectHome=yes in its unit): "
                "keep the file under /etc/edged, /opt/edged or /var/lib/edged")
    return ""


def why_unreadable(path: Path) -> str | None:
    """None when `path` is a regular file this process can open for reading, else the reason in words.

    The reasons: no such file, a parent that is not a directory, permission denied (naming the user we run as),
    is a directory, not a regular file; paths the systemd unit hides get a hint saying so.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "no such file" + _sandbox_hint(path)
    except NotADirectoryError:
        return "no such file (a part of the path is not a directory)"
    except PermissionError:
        return f"permission denied: a directory on the way cannot be searched by {_user()}" + _sandbox_hint(path)
    except OSError as exc:
        return f"cannot be examined: {exc.strerror or exc}"
    if stat.S_ISDIR(info.st_mode):
        return "is a directory, not a file"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        return f"permission denied: {_user()} may not read it" + _sandbox_hint(path)
    except OSError as exc:
        return f"cannot be opened: {exc.strerror or exc}"
    return None


def readable_file(path: Path | str, variable: str) -> Path:
    """`path` as a Path once it is a regular file this process can read; ConfigError `VARIABLE=path: reason`."""
    reason = why_unreadable(Path(path))
    if reason is not None:
        raise ConfigError(f"{variable}={path}: {reason}")
    return Path(path)


def why_unwritable(path: Path) -> str | None:
    """None when `path` can be a file this process writes (SQLite: its directory too, for the journal), else why not.

    The directories on the way are created. The reasons: a part of the path is a file, `path` is a directory,
    permission denied (naming the user), or the directory cannot be created.
    """
    path = Path(path)
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return f"{parent} is a file, not a directory"
    if path.is_dir():
        return "is a directory, not a file"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        return f"cannot create the directory {path.parent}: permission denied for {_user()}" + _sandbox_hint(path)
    except OSError as exc:
        return f"cannot create the directory {path.parent}: {exc.strerror or exc}"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return f"permission denied: {_user()} may not write in {path.parent}" + _sandbox_hint(path)
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return f"permission denied: {_user()} may not read and write it" + _sandbox_hint(path)
    return None
