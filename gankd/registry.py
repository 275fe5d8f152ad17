"""A small name -> object registry, shared by distillation terms, structures and schedules.

Naming policy, so that a package written against one release keeps importing with the next:

- the names gankd builds in are bare words (``l1``, ``cosine``, ``KDGAN-2``); gankd never registers a name
  with a dot in it;
- a package registering its own names prefixes them with its namespace: ``mypkg.cosine``. No later built-in
  can take such a name, so the registration can never collide with one;
- a bare name from outside gankd is accepted (it may collide with a built-in of a later release, and then
  fails at import); a name registered twice raises one line naming both owners (the modules that registered
  them) and the two ways out: a dotted name, or ``override=True`` to replace the other on purpose.

Re-running the module that registered a function (``importlib.reload``, a notebook cell run again) replaces
its own earlier registration: same owner, same qualified name.
"""
from __future__ import annotations

import inspect
import sys
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


def _owner(obj: Any) -> str:
    """The module a registration comes from: a function's or class's own module, else the caller's."""
    if inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj):
        return getattr(obj, "__module__", None) or "?"
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    return frame.f_globals.get("__name__", "?") if frame is not None else "?"


def _qualname(obj: Any) -> str | None:
    return getattr(obj, "__qualname__", None) if inspect.isfunction(obj) or inspect.isclass(obj) else None


class Registry(Generic[T]):
    """Maps unique names to objects, with a decorator for registration.

    Names are case-sensitive. Registering a name twice raises (naming both owners), so two plugins can never
    silently shadow each other; looking up an unknown name raises listing what exists. See the module's naming
    policy: built-in names are bare, other packages' names are ``package.name``.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._owners: dict[str, tuple[str, str | None]] = {}  # name -> (module, qualified name or None)

    def register(self, name: str, obj: T | None = None, *, override: bool = False,
                 source: Any = None) -> Callable[[T], T] | T:
        """``registry.register("mypkg.l1", fn)`` or ``@registry.register("mypkg.l1")`` above ``fn``.

        ``override=True`` replaces a name registered by another owner (on purpose: e.g. a faster built-in);
        ``source``: the function or class the entry stands for, where ``obj`` wraps it (a LossEntry); its module
        is the owner named in messages.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")

        def add(item: T) -> T:
            defined = item if source is None else source
            who, qualname = _owner(defined), _qualname(defined)
            previous = self._owners.get(name)
            same_definition = previous is not None and qualname is not None and previous == (who, qualname)
            if name in self._items and not override and not same_definition:
                namespaced = f"{who.split('.')[0]}.{name.rsplit('.', 1)[-1]}"
                raise KeyError(f"{self.kind} {name!r} is registered twice: by {previous[0] if previous else '?'} and "
                               f"by {who}; register yours as {namespaced!r} (a dotted name, which no gankd built-in "
                               "takes) or pass override=True to replace the other")
            self._items[name] = item
            self._owners[name] = (who, qualname)
            return item

        return add if obj is None else add(obj)

    def owner(self, name: str) -> str:
        """The module that registered ``name``."""
        self.get(name)
        return self._owners[name][0]

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} {name!r}; registered: {', '.join(sorted(self._items)) or '(none)'}"
            ) from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._items)

    def in_registration_order(self) -> list[str]:
        """The registered names, first registered first (e.g. the order a family lists its datasets in)."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
