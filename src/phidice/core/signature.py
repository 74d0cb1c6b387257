"""The visible signatures of the losses, built from the fields of their configurations.

A loss takes its options as ``**options`` and hands them to :class:`~phidice.core.config.DiceConfig` (and
:class:`~phidice.core.config.CEConfig`), which checks them. :func:`config_signature` gives the loss the
signature those configurations imply: every field a keyword-only parameter with its type and default, so
that ``inspect.signature``, ``help()`` and IDEs name every option, and a field added to a configuration
appears in every loss that takes it without another edit. A *source* is a configuration class (its
dataclass fields) or a function whose parameters are options (:func:`phidice.tversky`'s α, β, γ).
No torch import: the Keras losses use it too.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Iterable
from enum import Enum

__all__ = ["option_parameters", "config_signature", "signature_options"]

_KW = inspect.Parameter.KEYWORD_ONLY


def _source_parameters(source) -> list[inspect.Parameter]:
    if dataclasses.is_dataclass(source):
        hints = typing.get_type_hints(source)
        out = []
        for f in dataclasses.fields(source):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[operator]
            default = default.value if isinstance(default, Enum) else default  # Φ shown as "I", as it is written
            annotation = f.metadata.get("accepts", hints.get(f.name, f.type))
            out.append(inspect.Parameter(f.name, _KW, default=default, annotation=annotation))
        return out
    params = inspect.signature(source, eval_str=True).parameters.values()
    return [p.replace(kind=_KW) for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def option_parameters(*sources, skip: Iterable[str] = (), only: Iterable[str] | None = None) -> list[inspect.Parameter]:
    """The options of ``sources`` as keyword-only parameters, in field order (the first source's first);
    ``skip`` leaves names out, ``only`` keeps just those names."""
    skip, only = set(skip), None if only is None else set(only)
    out, seen = [], set()
    for source in sources:
        for p in _source_parameters(source):
            if p.name in seen or p.name in skip or (only is not None and p.name not in only):
                continue
            seen.add(p.name)
            out.append(p)
    return out


def _build(func: Callable, sources, skip, only, positional) -> inspect.Signature:
    """``func``'s signature with ``**options`` replaced by the options of ``sources``: its positional
    parameters, then ``positional`` (a ``*args`` shim's names), then the options (Φ and ε first), then its
    own keyword-only parameters (``mask``, ``config``, …)."""
    known = {p.name: p for p in option_parameters(*sources, skip=skip, only=only)}
    own = [
        p.replace(annotation=known[p.name].annotation) if p.name in known and p.annotation is p.empty else p
        for p in inspect.signature(func).parameters.values()
    ]  # phi, eps of a class: the config's types
    head = [p for p in own if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    head += [known[n].replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in positional]
    keyword = [p for p in own if p.kind == p.KEYWORD_ONLY]
    taken = {p.name for p in head + keyword}
    options = [p for p in known.values() if p.name not in taken]
    options.sort(key=lambda p: p.name not in _FIRST)  # stable: Φ and ε lead, the rest in field order
    return inspect.Signature(head + options + keyword)


_FIRST = ("phi", "eps")
_INIT_DOC = (
    "Build the loss; every option is checked here, and a bad one raises a ValueError or TypeError "
    "naming it. The options are those of the class docstring."
)


def config_signature(
    *sources, skip: Iterable[str] = (), only: Iterable[str] | None = None, positional: Iterable[str] = ()
):
    """Decorator: give a loss function or class the signature of its configuration's fields.

    The parameters it declares keep their kind (``input, target``, or ``phi, eps`` of a class, positional;
    ``mask``, ``config`` keyword-only, last); ``**options`` becomes the fields of ``sources`` (minus
    ``skip``, or just ``only``), keyword-only, Φ and ε first. A ``*args`` shim (an old positional order,
    read with a warning) is shown as the parameters named in ``positional``. On a class the signature goes
    on an ``__init__`` of its own, which gets a docstring if it has none, so ``help()`` does not show
    ``nn.Module``'s; ``inspect.signature(cls)`` reads it there.
    """
    sources, skip, positional = tuple(sources), tuple(skip), tuple(positional)

    def apply(obj):
        if not isinstance(obj, type):
            obj.__signature__ = _build(obj, sources, skip, only, positional)
            return obj
        inherited = obj.__init__  # type: ignore[misc]  # obj is a class: its (inherited) __init__
        sig = _build(inspect.unwrap(inherited), sources, skip, only, positional)
        if "__init__" not in obj.__dict__:  # an __init__ of its own, to carry its own signature and docstring

            def __init__(self, *args, **options):
                inherited(self, *args, **options)

            __init__.__qualname__ = f"{obj.__qualname__}.__init__"
            obj.__init__ = __init__  # type: ignore[misc]
        init = obj.__dict__["__init__"]
        init.__signature__ = sig
        if not init.__doc__:
            init.__doc__ = _INIT_DOC
        return obj  # inspect.signature(cls) reads __init__'s (no class attribute: a subclass would inherit it)

    return apply


def signature_options(obj) -> list[str]:
    """The keyword-only parameter names of ``obj``'s visible signature (its options, for tests and docs)."""
    return [p.name for p in inspect.signature(obj).parameters.values() if p.kind == _KW]
