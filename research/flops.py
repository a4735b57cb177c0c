"""Matrix-multiply FLOPs of a traced function, counted from its jaxpr.

Why not XLA's cost analysis: it counts a loop body once, so a model unrolled over time with
`scan` is undercounted by its sequence length; the jaxpr records every scan's length. Counted:
dot_general and convolutions, 2 FLOPs per multiply-add (the convention behind MFU); elementwise
work is left out. Global over all devices, as the function is written.
"""

import math
from collections.abc import Callable
from typing import Any

import jax
from jax.extend.core import ClosedJaxpr, Jaxpr


def matmul_flops(fn: Callable, *args: Any) -> float:
    """FLOPs of the matrix multiplies and convolutions of one call fn(*args)."""
    return _jaxpr_flops(jax.make_jaxpr(fn)(*args).jaxpr)


def _jaxpr_flops(jaxpr: Jaxpr) -> float:
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            (contracting, _), _ = eqn.params["dimension_numbers"]
            lhs, out = eqn.invars[0].aval.shape, eqn.outvars[0].aval.shape
            total += 2.0 * math.prod(out) * math.prod(lhs[d] for d in contracting)
        elif name == "conv_general_dilated":
            rhs, out = eqn.invars[1].aval.shape, eqn.outvars[0].aval.shape
            out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
            total += 2.0 * math.prod(out) * math.prod(rhs) / out_features
        else:
            inner = [_jaxpr_flops(sub) for sub in _subjaxprs(eqn.params)]
            if name == "cond":  # one branch runs
                total += max(inner, default=0.0)
            else:  # a while loop's trip count is unknown: its body counts once
                total += eqn.params.get("length", 1) * sum(inner)
    return total


def _subjaxprs(params: dict[str, Any]):
    for value in params.values():
        for item in value if isinstance(value, tuple | list) else (value,):
            if isinstance(item, ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, Jaxpr):
                yield item
