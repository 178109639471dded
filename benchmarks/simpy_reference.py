"""A discrete-event reference of the flow simulator, written in SimPy (test and benchmark only).

The same DC network as :func:`engine.simulator.simulate_arrays`, at the same time resolution, but built
the SimPy way: every stage queue is a ``simpy.Container``, every stage a process, every hand-over between
stages an event. Within step t (time t to t + 1):

* t + 0.00: external work and last step's upstream output are put into the stage queues;
* t + 0.50: each stage takes ``min(queue, capacity[t])`` (putaway also at most the free storage space,
  measured before this step's picks) and sends it on, to arrive downstream at t + 1.00; putaway puts
  its output into storage at once;
* t + 0.75: picks leave storage (a plain level: without stock limits it may go below zero).

Arrivals are either given (an array, to compare step by step with the vectorized core) or drawn inside
the model from a seeded ``random.Random`` (Poisson per step, to compare statistics of independent runs).
"""

from __future__ import annotations

import math
import random

import numpy as np
import simpy

PUTAWAY, PICK = 1, 2


def _poisson(rng: random.Random, lam: float) -> float:
    """Poisson draw by inversion (Knuth for small means, normal approximation above 30)."""
    if lam <= 0:
        return 0.0
    if lam >= 30:
        return float(max(0, round(rng.gauss(lam, math.sqrt(lam)))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return float(k)
        k += 1


class SiteModel:
    """One DC and one replication: stage containers, stage processes, records."""

    def __init__(self, env: simpy.Environment, capacity: np.ndarray, upstream: np.ndarray, T: int,
                 arrivals: np.ndarray | None = None, lam: np.ndarray | None = None, rng: random.Random | None = None,
                 storage_capacity: float | None = None, storage_initial: float = 0.0) -> None:
        K = capacity.shape[1]
        self.env, self.cap, self.up, self.T = env, capacity, upstream, T
        self.queues = [simpy.Container(env) for _ in range(K)]
        self.arrived = np.zeros((T, K))
        self.throughput = np.zeros((T, K))
        self.backlog = np.zeros((T, K))
        self.storage_capacity = storage_capacity
        self.level = storage_initial
        self.levels = np.zeros(T)
        self.downstream = {int(u): k for k, u in enumerate(upstream) if u >= 0}
        env.process(self._source(arrivals, lam, rng))
        for k in range(K):
            env.process(self._stage(k))
        if storage_capacity is not None:
            env.process(self._picks_from_storage())

    def _source(self, arrivals: np.ndarray | None, lam: np.ndarray | None, rng: random.Random | None):
        for t in range(self.T):
            for k, q in enumerate(self.queues):
                x = float(arrivals[t, k]) if arrivals is not None else _poisson(rng, float(lam[t, k]))
                if x > 0:
                    q.put(x)
                self.arrived[t, k] += x
            yield self.env.timeout(1.0)

    def _deliver(self, k: int, amount: float, t: int):
        yield self.env.timeout(0.5)
        self.queues[k].put(amount)
        if t + 1 < self.T:
            self.arrived[t + 1, k] += amount

    def _stage(self, k: int):
        yield self.env.timeout(0.5)
        for t in range(self.T):
            q = self.queues[k]
            amount = min(q.level, float(self.cap[t, k]))
            if k == PUTAWAY and self.storage_capacity is not None:
                amount = min(amount, self.storage_capacity - self.level)
            if amount > 0:
                yield q.get(amount)
            self.throughput[t, k] = amount
            self.backlog[t, k] = q.level
            if k == PUTAWAY and self.storage_capacity is not None:
                self.level += amount
            if k in self.downstream and amount > 0:
                self.env.process(self._deliver(self.downstream[k], amount, t))
            yield self.env.timeout(1.0)

    def _picks_from_storage(self):
        yield self.env.timeout(0.75)
        for t in range(self.T):
            self.level -= self.throughput[t, PICK]
            self.levels[t] = self.level
            yield self.env.timeout(1.0)


def simulate_simpy(capacity: np.ndarray, upstream: np.ndarray, *, arrivals: np.ndarray | None = None,
                   lam: np.ndarray | None = None, replications: int | None = None, seed: int = 0,
                   storage_capacity: np.ndarray | None = None, storage_initial: np.ndarray | None = None
                   ) -> dict[str, np.ndarray]:
    """Run the SimPy model for every site and replication.

    Parameters
    ----------
    capacity : (T, S, K) units per step.
    arrivals : (T, S, K, B) given external work, or
    lam : (T, S, K) Poisson means, drawn per replication (``replications`` of them) from ``seed``.

    Returns arrays like :class:`engine.simulator.ArrayRun`: arrivals, throughput, backlog (T, S, K, B) and
    storage_level (T, S, B).
    """
    T, S, K = capacity.shape
    B = arrivals.shape[3] if arrivals is not None else int(replications)
    out = {name: np.zeros((T, S, K, B)) for name in ("arrivals", "throughput", "backlog")}
    out["storage_level"] = np.zeros((T, S, B))
    for s in range(S):
        for b in range(B):
            env = simpy.Environment()
            rng = random.Random(f"{seed}-{s}-{b}")
            site = SiteModel(env, capacity[:, s], np.asarray(upstream), T,
                             arrivals=None if arrivals is None else arrivals[:, s, :, b],
                             lam=None if lam is None else lam[:, s], rng=rng,
                             storage_capacity=None if storage_capacity is None else float(storage_capacity[s]),
                             storage_initial=0.0 if storage_initial is None else float(storage_initial[s]))
            env.run()
            out["arrivals"][:, s, :, b] = site.arrived
            out["throughput"][:, s, :, b] = site.throughput
            out["backlog"][:, s, :, b] = site.backlog
            out["storage_level"][:, s, b] = site.levels
    return out
