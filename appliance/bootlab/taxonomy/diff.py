"""Which leaves are new or changed, as `ilab taxonomy diff` finds them: the taxonomy's files
changed in the work tree against where HEAD left the base branch (or against a commit),
plus untracked ones. Git runs read-only (no index refresh written, no hooks)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bootlab.errors import Exit, die
from bootlab.run import run
from bootlab.taxonomy.model import TOP_FOLDERS
from bootlab.taxonomy.validate import tree_files

# The branches a taxonomy is compared with when no ref is given, in order; then HEAD.
DEFAULT_BRANCHES = ("main", "master", "origin/main", "origin/master")
Status = Literal["added", "modified", "untracked"]


@dataclass(frozen=True)
class Change:
    path: Path  # relative to the taxonomy's root
    status: Status


@dataclass(frozen=True)
class Changes:
    changes: list[Change]
    base: str  # for people: what they were compared with ("main (1a2b3c4d5e6f)"), or why
    # nothing was ("not a git repository: every leaf counts as new")
    compared: bool = True


def changes(root: Path, ref: str | None = None) -> Changes:
    """Taxonomy files added, modified or untracked in the git repository holding `root`,
    against `ref` (default: main, master, origin/main, origin/master, else HEAD). Outside a
    repository (or without git) every file counts as added."""
    if shutil.which("git") is None:
        return _everything(root, "git is not installed: every leaf counts as new", ref)
    inside = _git(root, "rev-parse", "--is-inside-work-tree")
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        error = inside.stderr.strip()
        if "dubious ownership" in error:
            raise die(
                f"git refuses to read {root}: it belongs to another user",
                hint="run bootlab taxonomy diff as the taxonomy's owner",
            )
        return _everything(root, "not a git repository: every leaf counts as new", ref)
    has_head = _git(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}").returncode == 0
    base, label = _base(root, ref, has_head)
    if base is None:
        label = "no commits yet: every leaf counts as new"
    found: dict[Path, Status] = {}
    if base is not None:
        listed = _git(
            root,
            "diff",
            "--name-status",
            "--no-renames",
            "-z",
            "--relative",
            base,
            "--",
            *TOP_FOLDERS,
        )
        _check(listed, "git diff")
        fields = listed.stdout.split("\0")
        for status, name in zip(fields[0::2], fields[1::2], strict=False):
            if status[:1] in ("A", "M", "T", "C"):
                found[Path(name)] = "added" if status[:1] in ("A", "C") else "modified"
    untracked = _git(root, "ls-files", "--others", "--exclude-standard", "-z", "--", *TOP_FOLDERS)
    _check(untracked, "git ls-files")
    for name in filter(None, untracked.stdout.split("\0")):
        found[Path(name)] = "untracked"
    taxonomy_files = {path for path in found if _is_taxonomy_file(path)}
    return Changes(
        [Change(path, found[path]) for path in sorted(taxonomy_files)],
        label,
        compared=base is not None,
    )


def _base(root: Path, ref: str | None, has_head: bool) -> tuple[str | None, str]:
    """The commit to diff the work tree against, and how to name it."""
    if ref is None:
        for branch in DEFAULT_BRANCHES:
            if _resolve(root, branch) is not None:
                ref = branch
                break
        else:
            if not has_head:
                return None, ""
            ref = "HEAD"
    commit = _resolve(root, ref)
    if commit is None:
        raise die(
            f"'{ref}' is not a branch, tag or commit of the repository at {root}",
            hint="name one with --ref (git branch -a lists the branches)",
            exit_code=Exit.USAGE,
        )
    if has_head and ref != "HEAD" and _is_branch(root, ref):
        # Like ilab: against the commit where HEAD left that branch, so what the branch
        # gained since is not counted as yours.
        fork = _git(root, "merge-base", commit, "HEAD")
        if fork.returncode == 0 and fork.stdout.strip():
            commit = fork.stdout.strip()
    return commit, f"{ref} ({commit[:12]})"


def _resolve(root: Path, ref: str) -> str | None:
    if ref.startswith("-"):
        return None
    found = _git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    return found.stdout.strip() or None if found.returncode == 0 else None


def _is_branch(root: Path, ref: str) -> bool:
    return any(
        _git(root, "show-ref", "--verify", "--quiet", f"refs/{kind}/{ref}").returncode == 0
        for kind in ("heads", "remotes")
    )


def _is_taxonomy_file(path: Path) -> bool:
    return len(path.parts) > 1 and path.parts[0] in TOP_FOLDERS and path.suffix in (".yaml", ".yml")


def _everything(root: Path, label: str, ref: str | None) -> Changes:
    if ref is not None:
        raise die(
            f"--ref {ref}: {root} is not in a git repository",
            hint="leave --ref out: every leaf counts as new",
            exit_code=Exit.USAGE,
        )
    files = [path for path in tree_files(root) if _is_taxonomy_file(path)]
    return Changes([Change(path, "added") for path in files], label, compared=False)


class _Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _git(root: Path, *args: str) -> _Result:
    # No optional locks: a diff must not write the user's index (nor race their git).
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    done = run(
        ["git", "-c", "core.quotepath=off", *args],
        capture=True,
        cwd=root,
        env=env,
        check=False,
        timeout=60,
        what="git",
    )
    return _Result(
        done.returncode,
        done.stdout.decode("utf-8", errors="surrogateescape"),
        done.stderr.decode("utf-8", errors="replace"),
    )


def _check(result: _Result, what: str) -> None:
    if result.returncode != 0:
        raise die(f"{what} failed: {result.stderr.strip() or f'exit {result.returncode}'}")
