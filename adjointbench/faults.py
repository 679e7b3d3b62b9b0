"""Faults of the harness itself, as opposed to outcomes of code under test."""

from __future__ import annotations


class HarnessFault(RuntimeError):
    """The harness cannot go on: a folder it must write is unwritable, the disk
    is full, another run holds the results folder. The command line exits 2
    naming the path; no record blames an implementation for it."""


class FolderInUse(HarnessFault):
    """Another adjointbench run holds the results folder's lock."""
