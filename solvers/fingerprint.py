"""Model hashes: what a standard form is, as a short string (one module for both kinds).

- :func:`structure_fingerprint`: shape, matrix pattern, group names and sizes — *not* the numbers. Two models
  with the same structure take each other's simplex basis as is (:class:`solvers.Basis`).
- :func:`data_fingerprint`: the model's numbers too (matrix values, row and column bounds, costs, integrality,
  objective constant and sense). Equal data fingerprints mean the same model, so a solution of one is a solution
  of the other with the same objective and bound (the repair loop sometimes re-solves an unchanged model).
"""

from __future__ import annotations

import hashlib

import numpy as np

from solvers.model import StandardForm


def structure_fingerprint(form: StandardForm) -> str:
    """A hash of the model's structure: shape, matrix pattern, group names and sizes (not the numbers)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.asarray(form.A.shape, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(form.A.indptr, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(form.A.indices, dtype=np.int64).tobytes())
    for kind, groups in (("c", form.variable_groups), ("r", form.constraint_groups)):
        for name, g in groups.items():
            h.update(f"{kind}:{name}:{g.size};".encode())
    return h.hexdigest()


def data_fingerprint(form: StandardForm) -> str:
    """A hash of the model's data: matrix, row and column bounds, costs, integrality, constant and sense."""
    h = hashlib.sha256()
    a = form.A
    for arr in (a.indptr, a.indices, a.data, form.row_lower, form.row_upper, form.col_lower, form.col_upper,
                form.objective, form.integrality):
        h.update(np.ascontiguousarray(arr).tobytes())
        h.update(b"|")
    h.update(f"{form.objective_constant!r}|{form.sense}".encode())
    return h.hexdigest()
