"""One exception type for mistakes a user can fix.

The command line prints a `WMError` as a single paragraph (no traceback) and exits with code 2, so
every message must say what was wrong *and* what to do about it.
"""


class WMError(Exception):
    """A user-facing error whose message names the problem and the fix. Chapter 1."""


def check_fields(config, positive: tuple = (), non_negative: tuple = ()) -> None:
    """Raise ValueError if a field of a config dataclass holds a value of the wrong type or range.

    Dataclasses do not check types, and a string where a number belongs ("32" from a hand-edited
    JSON file) would otherwise fail far away, inside torch or numpy. Fields typed int, float, bool,
    str (or one of them | None) are checked; numpy numbers count as numbers. Fields named in `positive`
    must be > 0 and those in `non_negative` >= 0 (None passes where the type allows it): a batch of 0 or a
    negative learning rate would otherwise fail much later, or not at all.
    """
    import dataclasses
    import math
    import numbers
    import types
    import typing

    accept = {int: numbers.Integral, float: numbers.Real, bool: numbers.Integral, str: str, type(None): type(None)}
    for f in dataclasses.fields(config):
        kinds = typing.get_args(f.type) if isinstance(f.type, types.UnionType) else (f.type,)
        if not all(k in accept for k in kinds):
            continue  # a nested config or another type: not ours to check here
        value = getattr(config, f.name)
        if not isinstance(value, tuple(accept[k] for k in kinds)):
            want = " or ".join("None" if k is type(None) else k.__name__ for k in kinds)
            example = "" if f.default is dataclasses.MISSING else f" (the default is {f.name}={f.default!r})"
            raise ValueError(f"{type(config).__name__}.{f.name} must be {want}, got {value!r} of type "
                             f"{type(value).__name__}; use a value of type {want}{example}")
    for names, ok, want in ((positive, lambda v: v > 0, "> 0"), (non_negative, lambda v: v >= 0, ">= 0")):
        for name in names:
            value = getattr(config, name)
            if value is not None and not (math.isfinite(value) and ok(value)):
                default = next(f.default for f in dataclasses.fields(config) if f.name == name)
                example = "" if default is dataclasses.MISSING else f" (the default is {name}={default!r})"
                raise ValueError(f"{type(config).__name__}.{name} must be {want}, got {value!r}; use a finite "
                                 f"number {want}{example}")
