"""Reaching Ray: a private local instance on loopback, or an existing cluster.

Why a private instance by default: ``ray.init()`` with no arguments starts a
head node whose services (GCS, raylet, object manager, workers' gRPC servers)
listen on the machine's primary address, plus a dashboard on 8265, and reports
usage to Anyscale. A library that a user merely asked to run coroutines on
several processes must not open the machine to its network, so without an
``address`` loopgrid starts Ray with every service on 127.0.0.1
(``_node_ip_address``), no dashboard and no usage reporting. Ray reads some of
its switches from the environment when it is imported, so they are set (only
where the user has not set them) before the first ``import ray``.

With ``address=`` (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``) the grid
joins that cluster instead, and what listens where is the cluster's business.

Ownership: the module state below (``_users``, ``_owned``) is read and written
under ``_lock`` by whichever thread opens or closes a grid. A private instance
is shared by every :class:`~loopgrid.ray.RayGrid` of the process that is open
at the same time and shut down when the last of them closes, so that closing
one grid never kills another's actors. A Ray connection the user opened
(``ray.init`` before the grid) is used and left open.
"""

from __future__ import annotations

import os
import sys
import threading
from types import ModuleType
from typing import Any

__all__ = ["LOCAL_ENV", "LOCAL_INIT", "Connection", "connect", "import_ray"]

#: Environment Ray reads at import or start-up, for a private local instance.
LOCAL_ENV = {
    # Keep a local cluster a single-machine one (Ray's own switch for it).
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # No usage statistics sent anywhere, and no prompt about them.
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_USAGE_STATS_PROMPT_ENABLED": "0",
}

#: ``ray.init`` arguments of the private local instance.
LOCAL_INIT: dict[str, Any] = {
    "_node_ip_address": "127.0.0.1",
    "include_dashboard": False,
    # A library does not configure the process's logging (see logs.py).
    "configure_logging": False,
}

_lock = threading.Lock()
_users = 0
_owned = False


def import_ray() -> ModuleType:
    """Import Ray, with the local instance's environment set first."""
    for key, value in LOCAL_ENV.items():
        os.environ.setdefault(key, value)
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            "loopgrid.ray needs Ray, which is not installed (loopgrid's ray extra): "
            "pip install 'ray>=2.60' "
            "(Ray has wheels for CPython 3.10 to 3.13, not for free-threaded builds)"
        ) from exc
    module: ModuleType = ray  # (typed Any where mypy runs without Ray installed)
    return module


def _keep_to_loopback() -> None:
    """Make an already imported Ray start its services on loopback only.

    Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` once, when it is imported,
    into ``ray._private.ray_constants.ENABLE_RAY_CLUSTER``; with it on (Linux's
    default), its services listen on every address even with
    ``_node_ip_address="127.0.0.1"`` (seen with ``ss -ltnp``: raylet, GCS and
    workers on ``*``, the runtime-env agent on the primary address). When the
    user imported Ray before loopgrid.ray, the environment set above came too
    late for that read: set the constant as the variable would have.
    """
    constants: Any = sys.modules.get("ray._private.ray_constants")
    if constants is not None and getattr(constants, "ENABLE_RAY_CLUSTER", False):
        constants.ENABLE_RAY_CLUSTER = False


class Connection:
    """One grid's use of Ray; :meth:`release` once, when the grid closes."""

    def __init__(self, ray: ModuleType, address: str, private: bool) -> None:
        self.ray = ray
        #: Where the grid's actors run: "local (127.0.0.1)" or the address given.
        self.address = address
        #: Whether this process started the Ray instance (and stops it).
        self.private = private
        self._released = False

    def release(self) -> None:
        global _users, _owned
        if self._released:
            return
        self._released = True
        with _lock:
            _users -= 1
            if _users == 0 and _owned:
                _owned = False
                self.ray.shutdown()


def connect(address: str | None) -> Connection:
    """Join ``address``, or start (or share) the private local instance."""
    global _users, _owned
    if address is not None and not isinstance(address, str):
        raise TypeError(f"address must be a str (a Ray cluster address) or None, got {address!r}")
    ray = import_ray()
    with _lock:
        if ray.is_initialized():
            if address is not None and not _owned:
                # The user's own connection: we cannot tell whether it is that
                # address, and a second ray.init in one process fails.
                raise RuntimeError(
                    f"Ray is already initialised in this process, so address={address!r} "
                    "cannot be joined; pass address=None to use the existing connection"
                )
            private = _owned
            where = "local (127.0.0.1)" if _owned else "existing connection"
        elif address is None:
            _keep_to_loopback()
            ray.init(**LOCAL_INIT)
            _owned = private = True
            where = "local (127.0.0.1)"
        else:
            ray.init(address=address, configure_logging=False)
            _owned = True  # our connection: disconnect when the last grid closes
            private = False
            where = address
        _users += 1
    return Connection(ray, where, private)
