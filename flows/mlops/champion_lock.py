"""Compare-and-set for the ``champion`` alias: MLflow has none, so it is built here.

The gate compares the new version with the champion it read, which can take minutes; by
then another retraining may have promoted its own version. ``set_champion_if`` moves the
alias only if it still points at the version the gate compared against, and it does the
read-compare-set under a lock, so two promotions cannot interleave between the read and
the set:

- **sqlite registry** (one machine): an exclusive ``fcntl`` lock on a file beside the
  database (``<db>.promotion.lock``). The operating system serialises every process and
  thread that takes it, and releases it if the holder dies. Exact.
- **any other registry** (an MLflow server): a lease in a registered-model tag
  (``promotion.lease``: owner and expiry). A promotion waits while another owner's lease
  is unexpired, writes its own, waits ``LEASE_SETTLE_S`` and reads it back: if another
  promotion wrote the tag in between, the later writer holds it and the earlier one waits.
  A tag write is not atomic, so this narrows the race to writes closer together than the
  settle time rather than closing it; the re-read after the alias is set (below) reports
  the rare loss instead of hiding it. A crashed holder's lease expires after ``ttl_s``.

After setting, the alias is read back; a version other than ours is reported, not hidden.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from flows.mlops.registry import get_alias_version, set_alias
from flows.mlops.runs import client, sqlite_path
from flows.pipeline.locks import exclusive_lock

CHAMPION, CHALLENGER = "champion", "challenger"
LEASE_TAG = "promotion.lease"
LEASE_SETTLE_S = 1.0
DEFAULT_TTL_S = 300.0
DEFAULT_WAIT_S = 600.0


class PromotionLockError(RuntimeError):
    """The promotion lock could not be taken in time."""


@dataclass(frozen=True)
class AliasOutcome:
    """What ``set_champion_if`` did: the alias set and, if the champion moved, to what."""

    alias: str
    promoted: bool
    champion_before: str | None  # what the champion was when the lock was held
    note: str = ""


def owner_id() -> str:
    """Who holds a lease: host, process and a random part (two threads differ too)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def set_champion_if(
    name: str,
    version: str,
    expected_champion: str | None,
    promote: bool,
    wait_s: float = DEFAULT_WAIT_S,
) -> AliasOutcome:
    """Point ``champion`` at ``version`` if ``promote`` and the champion is still
    ``expected_champion`` (None: there was none); otherwise point ``challenger`` at it."""
    with promotion_lock(name, wait_s=wait_s):
        current = get_alias_version(name, CHAMPION)
        if not promote:
            set_alias(name, CHALLENGER, version)
            return AliasOutcome(CHALLENGER, False, current)
        if current != expected_champion:
            set_alias(name, CHALLENGER, version)
            note = (
                f"the champion moved from {_label(expected_champion)} to {_label(current)} "
                "while this run was deciding; kept as challenger (compare again by retraining)"
            )
            return AliasOutcome(CHALLENGER, False, current, note)
        set_alias(name, CHAMPION, version)
        after = get_alias_version(name, CHAMPION)
    if after != str(version):
        note = f"the champion alias was set to v{version} but now points at {_label(after)}"
        return AliasOutcome(CHAMPION, False, current, note)
    return AliasOutcome(CHAMPION, True, current)


def _label(version: str | None) -> str:
    return "no champion" if version is None else f"v{version}"


@contextlib.contextmanager
def promotion_lock(name: str, wait_s: float = DEFAULT_WAIT_S) -> Iterator[None]:
    """Hold the promotion lock of registered model ``name`` (see the module docstring)."""
    db = sqlite_path(mlflow.get_registry_uri())
    if db is not None:
        with file_lock(db.expanduser().absolute().with_name(f"{db.name}.promotion.lock"), wait_s):
            yield
    else:
        with tag_lease(name, owner_id(), wait_s=wait_s):
            yield


def file_lock(
    path: Path, wait_s: float = DEFAULT_WAIT_S
) -> contextlib.AbstractContextManager[None]:
    """An exclusive ``fcntl`` lock on ``path`` (created if needed), waited for ``wait_s``."""
    return exclusive_lock(
        path,
        wait_s,
        lambda: PromotionLockError(
            f"the promotion lock {path} is still held after {wait_s:g} s; another "
            "promotion is running or hung"
        ),
    )


@contextlib.contextmanager
def tag_lease(
    name: str, owner: str, ttl_s: float = DEFAULT_TTL_S, wait_s: float = DEFAULT_WAIT_S
) -> Iterator[None]:
    """A lease in the registered model's ``promotion.lease`` tag (see the module docstring)."""
    deadline = time.monotonic() + wait_s
    while not _try_lease(name, owner, ttl_s):
        if time.monotonic() >= deadline:
            raise PromotionLockError(
                f"the promotion lease of model {name!r} is still held by {_lease(name)!r} "
                f"after {wait_s:g} s"
            )
        time.sleep(0.2)
    try:
        yield
    finally:
        with contextlib.suppress(MlflowException):  # left behind, the lease just expires
            lease = _lease(name)
            if lease is not None and lease.get("owner") == owner:
                client().delete_registered_model_tag(name, LEASE_TAG)


def _try_lease(name: str, owner: str, ttl_s: float) -> bool:
    lease = _lease(name)
    if lease is not None and lease.get("owner") != owner and lease.get("expires", 0) > time.time():
        return False
    value = json.dumps({"owner": owner, "expires": time.time() + ttl_s})
    try:
        client().set_registered_model_tag(name, LEASE_TAG, value)
    except MlflowException:
        return False  # another promotion wrote the tag at the same moment (sqlite says so)
    time.sleep(LEASE_SETTLE_S)  # let a concurrent writer's tag land, then see who won
    lease = _lease(name)
    return lease is not None and lease.get("owner") == owner


def _lease(name: str) -> dict | None:
    text = client().get_registered_model(name).tags.get(LEASE_TAG)
    if not text:
        return None
    try:
        lease = json.loads(text)
    except json.JSONDecodeError:
        return None  # a damaged lease holds nothing
    return lease if isinstance(lease, dict) else None
