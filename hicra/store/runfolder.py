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
* ``last_complete_checkpoint`` skips checkpoints a kill or a full disk left unloadable (a missing or truncated
  file: ``checkpoint_problem``), so resume uses the newest complete one and says which.

    from hicra.store.runfolder import claim
    with claim("runs/x", resume=False, overwrite=False) as lock:
        ...   # train
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import time
import zipfile
from pathlib import Path

RECORD = "hicra_params.json"  # the copy of params.json inside each checkpoint (hicra.training.resume reads it)
RUN_FILES = ("metrics.jsonl", "rollouts", "final", "final-merged", "summary.json", "params.json")
# what else a run (or this module) writes into its folder: the lock, earlier runs set aside, TRL's model card
# (README.md, only when it is TRL's: a user's README.md is foreign), transformers' default logging folder
OWN = {".lock", ".lock.takeover", "runs"}


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


def checkpoint_problem(ckpt) -> str | None:
    """Why ``ckpt`` cannot be resumed from (None: it can). Complete means loadable: ``trainer_state.json``
    parses; weights (safetensors with a whole header and data, or a torch file), ``optimizer.pt``,
    ``scheduler.pt`` and ``rng_state*.pth`` are present and whole (a torch file is a zip archive whose central
    directory, at its end, survives no truncation; DeepSpeed's ``global_step*/`` files are checked the same
    way). Cheap: headers and directories are read, not tensors."""

    p = Path(ckpt)
    try:
        json.loads((p / "trainer_state.json").read_text())
    except FileNotFoundError:
        return "no trainer_state.json"
    except (OSError, ValueError) as e:
        return f"trainer_state.json is unreadable ({e})"
    deepspeed = any(p.glob("global_step*"))
    weights = (
        sorted(p.glob("*.safetensors")) + sorted(p.glob("pytorch_model*.bin")) + sorted(p.glob("adapter_model.bin"))
    )
    if not weights and not deepspeed:
        return "no model weights (*.safetensors or pytorch_model.bin)"
    needed = ([] if deepspeed else ["optimizer.pt"]) + ["scheduler.pt"]
    missing = [n for n in needed if not (p / n).exists()] + ([] if any(p.glob("rng_state*.pth")) else ["rng_state.pth"])
    if missing:
        return f"missing {', '.join(missing)}"
    torch_files = [
        f
        for f in [*weights, *p.glob("*.pt"), *p.glob("*.pth"), *p.glob("global_step*/*.pt")]
        if f.suffix != ".safetensors"
    ]
    for f in weights:
        if f.suffix == ".safetensors" and not _safetensors_whole(f):
            return f"{f.name} is truncated or unreadable"
    for f in torch_files:
        try:
            with zipfile.ZipFile(f) as z:
                size = f.stat().st_size
                if any(i.header_offset + i.compress_size > size for i in z.infolist()):
                    return f"{f.name} is truncated"
        except (zipfile.BadZipFile, OSError) as e:
            return f"{f.name} is truncated or unreadable ({e})"
    return None


def _safetensors_whole(f: Path) -> bool:
    """A safetensors file's 8-byte header length, JSON header and every tensor's byte range fit in the file."""
    try:
        size = f.stat().st_size
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if n <= 0 or 8 + n > size:
                return False
            header = json.loads(fh.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        return 8 + n + end <= size
    except (OSError, ValueError, KeyError, TypeError):
        return False


def last_complete_checkpoint(run_dir) -> Path | None:
    """The newest checkpoint that can be resumed from (``checkpoint_problem``); each one skipped is named with
    its reason. Decided before anything in the folder is pruned."""
    for p in reversed(checkpoints(run_dir)):
        why = checkpoint_problem(p)
        if why is None:
            return p
        print(f"[hicra] {p} is incomplete ({why}); skipping it", flush=True)
    return None


def holds_run(run_dir) -> list[str]:
    """Names of earlier-run files in ``run_dir`` (empty: the folder is free to start in). A start that failed
    before its first step (params.json, at most the step-0 validation line) holds no run: the corrected rerun
    needs no --overwrite."""
    d = Path(run_dir)
    names = [n for n in RUN_FILES if (d / n).exists()] + [p.name for p in checkpoints(d)]
    if set(names) <= {"params.json", "metrics.jsonl"} and not _any_step(d / "metrics.jsonl"):
        return []
    return names


def _any_step(metrics: Path) -> bool:
    """Does a metrics file hold a line of a step >= 1? (torn lines are skipped)"""
    if not metrics.exists():
        return False
    for line in metrics.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) >= 1:
                return True
        except (ValueError, AttributeError):
            continue
    return False


def _model_card(f: Path) -> bool:
    """Is ``f`` the README.md that TRL writes at each checkpoint (its model card), not a user's file?"""
    try:
        return f.is_file() and "It has been trained using [TRL]" in f.read_text(errors="replace")[:20000]
    except OSError:
        return False


def foreign_files(run_dir) -> list[str]:
    """Entries of ``run_dir`` that no run wrote (a user's notes, another tool's output): a run never writes into a
    folder holding them, since it would replace some (TRL writes README.md) and mix in others."""
    d = Path(run_dir)
    if not d.is_dir():
        return []
    ckpts = {p.name for p in checkpoints(d)}
    return sorted(
        p.name
        for p in d.iterdir()
        if p.name not in RUN_FILES
        and p.name not in OWN
        and p.name not in ckpts
        and not p.name.startswith("replaced-")
        and not (p.name == "README.md" and _model_card(p))
    )


def set_aside(run_dir) -> Path | None:
    """Move an earlier run's files (its own files only) into ``run_dir/replaced-<UTC time>/``; returns that
    folder."""
    names = holds_run(run_dir)
    if names and _model_card(Path(run_dir) / "README.md"):
        names.append("README.md")
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

    flag = "--run_dir"  # the option that picks another folder, named in the refusal

    def __init__(self, run_dir, resume: bool, overwrite: bool):
        self.dir, self.resume, self.overwrite = Path(run_dir), resume, overwrite
        self.lock = self.dir / ".lock"

    def __enter__(self):
        if self.dir.exists() and not self.dir.is_dir():
            raise RunFolderError(f"--run_dir {self.dir} is a file, not a folder: pick a folder (a new or empty one)")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._acquire()
        try:
            foreign = foreign_files(self.dir)
            if self.resume:  # resuming writes only the run's own files, but TRL's model card would replace this one
                foreign = [n for n in foreign if n == "README.md"]
            if foreign:
                raise RunFolderError(
                    f"{self.dir} holds files that are not a run's ({', '.join(foreign[:5])}"
                    f"{', ...' if len(foreign) > 5 else ''}); a run writes only into an empty folder or its own "
                    f"(TRL would replace a README.md). Move them out, or pick another --run_dir."
                )
            if not self.resume and holds_run(self.dir):
                if not self.overwrite:
                    raise RunFolderError(
                        f"{self.dir} already holds a run ({', '.join(holds_run(self.dir))}). Continue it with "
                        f"--resume true, replace it with --overwrite true (its files are kept under "
                        f"replaced-<time>/), or pick another --run_dir."
                    )
                set_aside(self.dir)
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc):
        self._release()
        return False

    def _acquire(self):
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        for _ in range(3):
            try:
                fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner == {} and not self.lock.exists():  # released meanwhile: try again
                    continue
                stale = owner is None or (
                    owner.get("host") == me["host"] and isinstance(owner.get("pid"), int) and not _alive(owner["pid"])
                )
                if stale:  # taken over here, or by another process first: either way, look again
                    if self._take_over(owner):
                        why = (
                            "an empty or unreadable lock (a full disk?)"
                            if owner is None
                            else f"a stale lock from dead pid {owner['pid']}"
                        )
                        print(f"[hicra] {why} in {self.dir}; taking it over", flush=True)
                    continue
                owner = owner or {}
                raise RunFolderError(
                    f"{self.dir} is in use by pid {owner.get('pid', '?')} on host {owner.get('host', '?')} "
                    f"(since {owner.get('started', '?')}). Wait for it, stop it, or pick another {self.flag}; "
                    f"if that process is gone, delete {self.lock}."
                ) from None
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(me, f)
            except OSError as e:  # a full disk: leave no empty lock behind, and say it in words
                self.lock.unlink(missing_ok=True)
                raise OSError(
                    e.errno,
                    f"could not write the lock {self.lock} ({e.strerror}): "
                    + ("no space left on its disk; free space, then " if e.errno == errno.ENOSPC else "")
                    + "run the command again",
                ) from None
            return
        raise RunFolderError(f"could not take the lock {self.lock}")

    def _owner(self) -> dict | None:
        """The lock's owner record; None when the lock is empty or unreadable and older than 10 s (a writer is
        never that slow between creating the file and writing its line: a full disk left it so)."""
        try:
            text = self.lock.read_text()
            return json.loads(text)
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError):
            try:
                return None if time.time() - self.lock.stat().st_mtime > 10 else {}
            except OSError:
                return {}

    def _take_over(self, owner) -> bool:
        """Remove the stale lock, if it is still the one judged stale: under an exclusive ``flock`` so that two
        processes taking over at once cannot both remove it (the second sees the first's new lock)."""
        import fcntl  # noqa: PLC0415  POSIX only: the lock is taken where it exists

        with open(self.dir / ".lock.takeover", "a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            try:
                if self._owner() != owner:
                    return False
                self.lock.unlink(missing_ok=True)
                return True
            finally:
                fcntl.flock(guard, fcntl.LOCK_UN)

    def _release(self):
        try:
            if json.loads(self.lock.read_text()).get("pid") == os.getpid():
                self.lock.unlink()
        except (OSError, json.JSONDecodeError):
            pass


class hold(claim):
    """Only the lock of ``claim`` (``run_dir/.pipeline.lock``; no run-file checks): one pipeline per run folder,
    so two pipelines never write each other's step logs and stamps. The refusal names the owner."""

    flag = "--run"

    def __init__(self, run_dir, name: str = ".pipeline.lock"):
        super().__init__(run_dir, resume=True, overwrite=False)
        self.lock = self.dir / name

    def __enter__(self):
        if self.dir.exists() and not self.dir.is_dir():
            raise RunFolderError(f"{self.flag} {self.dir} is a file, not a folder: pick a folder")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._acquire()
        return self
