"""One registry for every name a config chooses: models, data sources, tasks, samplers,
optimizers, schedules and augmentations. An unknown name is a UserError that lists the choices.

Entries also declare the config fields they read, so `research.config.validate` refuses a field
set for a component the run does not use.
"""

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from research.errors import UserError

T = TypeVar("T")


def unknown(
    kind: str,
    key: str,
    value: object,
    names: Iterable[str],
    note: str = "",
    others: Iterable[str] = (),
) -> UserError:
    """The message for a config value that names nothing: the key, the bad value, a close match
    among `names` and `others` (names that are valid yet not listed), and every name."""
    names = sorted(names)
    close = difflib.get_close_matches(str(value), [*names, *others], n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return UserError(
        f"Unknown {kind}: {key}={value!r}.{hint} Set --config.{key} to one of: "
        f"{', '.join(names)}.{' ' + note if note else ''}"
    )


class Registry(Generic[T]):
    """Entries of one kind by name, chosen by the config key `key` (e.g. "model.name").

    With `package`, every module of that package is imported on the first lookup, so an entry
    registered in a new module there is found with no list of modules to edit.

    Fields of `key`'s group (`data` for "data.name") that an entry lists in `reads` are read only
    under the entries that list them; `unregistered_reads` are those a name not registered reads
    (a TFDS dataset's, for data sources), and `declare` adds the fields entries read that the
    base config lacks, with their defaults and allowed values.
    """

    def __init__(
        self,
        kind: str,
        key: str,
        package: str | None = None,
        note: str = "",
        unregistered_reads: Iterable[str] = (),
    ) -> None:
        self.kind, self.key, self.note = kind, key, note
        self.group = key.rpartition(".")[0]
        self._entries: dict[str, T] = {}
        self._reads: dict[str, frozenset[str]] = {}
        self.unregistered_reads = frozenset(unregistered_reads)
        self.defaults: dict[str, Any] = {}
        self.checks: dict[str, Any] = {}  # research.config.Check by field name
        self._package = package  # None once its modules are imported

    def register(self, name: str, reads: Iterable[str] = ()) -> Callable[[T], T]:
        """Decorator that adds its target under `name`, reading the fields `reads` of the group;
        a name registered twice is a bug."""

        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = entry
            self._reads[name] = frozenset(reads)
            return entry

        return add

    def declare(self, defaults: Mapping[str, Any], checks: Mapping[str, Any]) -> None:
        """Declares fields entries read beyond the base config: their defaults (None: none) and
        their allowed values (a research.config.Check each)."""
        self.defaults.update(defaults)
        self.checks.update(checks)

    def reads(self, name: str) -> frozenset[str]:
        """The fields of the group that entry `name` reads, of those any entry lists."""
        self._discover()
        return self._reads.get(name, self.unregistered_reads)

    def readers(self, field: str) -> list[str]:
        """The registered names that read `field`."""
        self._discover()
        return sorted(name for name, reads in self._reads.items() if field in reads)

    def owned(self) -> frozenset[str]:
        """Every field some entry, or an unregistered name, reads: the rest are always read."""
        self._discover()
        return self.unregistered_reads.union(*self._reads.values())

    def known(self, name: object) -> bool:
        """Whether `name` is registered, or read as an unregistered name (a TFDS dataset)."""
        return name in self or bool(self.unregistered_reads)

    def _discover(self) -> None:
        if self._package is not None:
            path = importlib.import_module(self._package).__path__
            for module in pkgutil.iter_modules(path):
                importlib.import_module(f"{self._package}.{module.name}")
            self._package = None

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._entries

    def lookup(self, name: str) -> T:
        """The entry registered as `name`, or the UserError of `unknown`."""
        if name not in self:
            raise self.unknown(name)
        return self._entries[name]

    def unknown(self, name: str, others: Iterable[str] = ()) -> UserError:
        """The UserError for `name`; `others` are valid names offered only as close matches."""
        return unknown(self.kind, self.key, name, self.names(), self.note, others)
