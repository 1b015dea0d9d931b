"""Run-folder safety: one writer per run folder, no silent loss of an earlier run, robust resume.

A training run owns ``run_dir`` (metrics.jsonl, rollouts/, checkpoint-*, final/).
Long CPU runs get killed and restarted, and two commands can be pointed at one
folder by mistake; these rules make both safe:

* ``claim`` takes ``run_dir/.lock`` (pid, host, start time) with an exclusive
  create. A second process is refused with the owner's pid and host; a lock left
  by a dead process on this host is taken over, with a message.
* A fresh start in a folder that already holds a run is refused unless the user
  says ``--resume true`` or ``--overwrite true``. Overwriting deletes nothing: the
  earlier run's files move to ``run_dir/replaced-<UTC time>/``.
* ``last_complete_checkpoint`` skips checkpoints a kill left half-written (no
  ``trainer_state.json``), so resume uses the newest complete one and says which.

    from hicra.runfolder import claim
    with claim("runs/x", resume=False, overwrite=False) as lock:
        ...   # train
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from pathlib import Path

RUN_FILES = ("metrics.jsonl", "rollouts", "final", "summary.json", "params.json")


class RunFolderError(RuntimeError):
    """The run folder is in use, or holds a run the command would replace without being asked."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def checkpoints(run_dir) -> list[Path]:
    """``checkpoint-N`` folders, oldest first."""
    found = [p for p in Path(run_dir).glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def last_complete_checkpoint(run_dir) -> Path | None:
    """The newest checkpoint with a ``trainer_state.json`` (a kill mid-save leaves one without)."""
    for p in reversed(checkpoints(run_dir)):
        if (p / "trainer_state.json").exists():
            return p
        print(f"[hicra] {p} is incomplete (no trainer_state.json); skipping it", flush=True)
    return None


def holds_run(run_dir) -> list[str]:
    """Names of earlier-run files in ``run_dir`` (empty: the folder is free to start in)."""
    d = Path(run_dir)
    return [n for n in RUN_FILES if (d / n).exists()] + [p.name for p in checkpoints(d)]


def set_aside(run_dir) -> Path | None:
    """Move an earlier run's files into ``run_dir/replaced-<UTC time>/``; returns that folder."""
    names = holds_run(run_dir)
    if not names:
        return None
    dest = Path(run_dir) / time.strftime("replaced-%Y%m%dT%H%M%SZ", time.gmtime())
    dest.mkdir()
    for n in names:
        shutil.move(str(Path(run_dir) / n), str(dest / n))
    print(f"[hicra] the earlier run in {run_dir} was moved to {dest} (nothing deleted)", flush=True)
    return dest


class claim:
    """Context manager: lock ``run_dir`` and check that starting there loses nothing (see module doc)."""

    def __init__(self, run_dir, resume: bool, overwrite: bool):
        self.dir, self.resume, self.overwrite = Path(run_dir), resume, overwrite
        self.lock = self.dir / ".lock"

    def __enter__(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        self._acquire()
        try:
            if not self.resume and holds_run(self.dir):
                if not self.overwrite:
                    raise RunFolderError(
                        f"{self.dir} already holds a run ({', '.join(holds_run(self.dir))}). Continue it with "
                        f"--resume true, replace it with --overwrite true (its files are kept under "
                        f"replaced-<time>/), or pick another --run_dir.")
                set_aside(self.dir)
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc):
        self._release()
        return False

    def _acquire(self):
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                          time.gmtime())}
        for _ in range(2):
            try:
                fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    owner = json.loads(self.lock.read_text() or "{}")
                except (OSError, json.JSONDecodeError):
                    owner = {}
                if owner.get("host") == me["host"] and isinstance(owner.get("pid"), int) and not _alive(owner["pid"]):
                    print(f"[hicra] stale lock in {self.dir} from dead pid {owner['pid']}; taking it over", flush=True)
                    self.lock.unlink(missing_ok=True)
                    continue
                raise RunFolderError(
                    f"{self.dir} is in use by pid {owner.get('pid', '?')} on host {owner.get('host', '?')} "
                    f"(since {owner.get('started', '?')}). Wait for it, stop it, or pick another --run_dir; "
                    f"if that process is gone, delete {self.lock}.") from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            return
        raise RunFolderError(f"could not take the lock {self.lock}")

    def _release(self):
        try:
            if json.loads(self.lock.read_text()).get("pid") == os.getpid():
                self.lock.unlink()
        except (OSError, json.JSONDecodeError):
            pass
