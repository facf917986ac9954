"""What an import run did: the outcome of each item, counted per kind, and the problems."""

import dataclasses
from collections import Counter

KINDS = ("users", "platforms", "tickets", "archives")
OUTCOMES = ("imported", "present", "merged", "conflict", "skipped")


class Skip(Exception):
    """This item is not imported: ``outcome`` is ``conflict`` or ``skipped``."""

    def __init__(self, outcome, message):
        super().__init__(message)
        self.outcome = outcome
        self.message = message


@dataclasses.dataclass
class Summary:
    dry_run: bool = False
    counts: dict = dataclasses.field(default_factory=lambda: {k: Counter() for k in KINDS})
    bytes: int = 0
    totp: int = 0
    backup_codes: int = 0
    problems: list = dataclasses.field(default_factory=list)
    unreferenced: list = dataclasses.field(default_factory=list)
    interrupted: bool = False

    def problem(self, kind, name, message):
        self.problems.append(f"{kind[:-1]} {name}: {message}")

    def as_dict(self):
        return {"dry_run": self.dry_run, "interrupted": self.interrupted,
                "counts": {kind: {o: self.counts[kind][o] for o in OUTCOMES} for kind in KINDS},
                "bytes": self.bytes, "totp": self.totp,
                "backup_codes": self.backup_codes, "problems": self.problems,
                "unreferenced": self.unreferenced}

    @property
    def exit_code(self):
        """0: all done; 2: done, but something was skipped (see the problems)."""
        if self.interrupted:
            return 130
        return 2 if self.problems else 0

    def lines(self):
        state = "interrupted: run again to continue" if self.interrupted else "done"
        yield f"summary: {state}{' (dry run: nothing was written)' if self.dry_run else ''}"
        yield f"  {'':10}" + "".join(f"{o:>10}" for o in OUTCOMES)
        for kind in KINDS:
            yield f"  {kind:10}" + "".join(f"{self.counts[kind][o]:>10}" for o in OUTCOMES)
        verb = "to copy" if self.dry_run else "stored"
        yield f"  archive bytes {verb}: {self.bytes}"
        yield f"  two-factor enrolments carried over: {self.totp}"
        yield f"  backup codes carried over as recovery codes: {self.backup_codes}"
        yield f"  problems: {len(self.problems)}"
        for problem in self.problems:
            yield f"    - {problem}"
        yield f"  files on disk that the old database does not reference (not imported): " \
              f"{len(self.unreferenced)}"
        for path in self.unreferenced:
            yield f"    - {path}"
