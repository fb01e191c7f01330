"""Sufficient statistics: the one thing an E-step produces.

A :class:`SufficientStats` holds the expected counts of one batch of
sequences. Statistics of disjoint batches add up (``a + b``) to the
statistics of their union, and serialise losslessly to bytes, which is what
lets a Spark executor send one small record per batch to the driver.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

_MAGIC = b"HMMSTATS1\n"


@dataclass
class SufficientStats:
    """Expected counts of an E-step over some sequences.

    ``start[i]``: expected number of sequences starting in state i.
    ``trans[i, j]``: expected number of i -> j transitions.
    ``emission``: model-specific arrays (e.g. ``obs`` for categorical).
    ``log_likelihood``: log P(sequences | parameters the E-step used).
    """

    start: np.ndarray
    trans: np.ndarray
    emission: dict[str, np.ndarray] = field(default_factory=dict)
    log_likelihood: float = 0.0
    n_sequences: int = 0
    n_observations: int = 0

    @classmethod
    def zeros(cls, n_components: int, emission: Mapping[str, np.ndarray]) -> SufficientStats:
        return cls(
            start=np.zeros(n_components),
            trans=np.zeros((n_components, n_components)),
            emission=dict(emission),
        )

    def __add__(self, other: SufficientStats) -> SufficientStats:
        if not isinstance(other, SufficientStats):
            return NotImplemented
        if self.emission.keys() != other.emission.keys() or self.start.shape != other.start.shape:
            raise ValueError(
                "cannot add statistics of different models: "
                f"{sorted(self.emission)} with {self.start.shape[0]} states vs "
                f"{sorted(other.emission)} with {other.start.shape[0]} states"
            )
        return SufficientStats(
            start=self.start + other.start,
            trans=self.trans + other.trans,
            emission={k: v + other.emission[k] for k, v in self.emission.items()},
            log_likelihood=self.log_likelihood + other.log_likelihood,
            n_sequences=self.n_sequences + other.n_sequences,
            n_observations=self.n_observations + other.n_observations,
        )

    def __iadd__(self, other: SufficientStats) -> SufficientStats:
        merged = self + other
        self.start, self.trans, self.emission = merged.start, merged.trans, merged.emission
        self.log_likelihood = merged.log_likelihood
        self.n_sequences, self.n_observations = merged.n_sequences, merged.n_observations
        return self

    def to_bytes(self) -> bytes:
        """Lossless binary form: a JSON header of scalars, then raw arrays (npz)."""
        header = {
            "log_likelihood": float(self.log_likelihood).hex(),
            "n_sequences": int(self.n_sequences),
            "n_observations": int(self.n_observations),
            "emission": sorted(self.emission),
        }
        arrays = {"start": self.start, "trans": self.trans}
        arrays.update({f"emission.{k}": v for k, v in self.emission.items()})
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
        head = json.dumps(header, sort_keys=True).encode()
        return _MAGIC + len(head).to_bytes(8, "little") + head + buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> SufficientStats:
        if not data.startswith(_MAGIC):
            raise ValueError("not a serialised SufficientStats record (bad magic bytes)")
        cursor = len(_MAGIC)
        size = int.from_bytes(data[cursor : cursor + 8], "little")
        cursor += 8
        header = json.loads(data[cursor : cursor + size])
        with np.load(io.BytesIO(data[cursor + size :]), allow_pickle=False) as arrays:
            return cls(
                start=arrays["start"],
                trans=arrays["trans"],
                emission={k: arrays[f"emission.{k}"] for k in header["emission"]},
                log_likelihood=float.fromhex(header["log_likelihood"]),
                n_sequences=header["n_sequences"],
                n_observations=header["n_observations"],
            )

    def __getitem__(self, name: str) -> np.ndarray:
        """hmmlearn-style access: ``stats['start']``, ``stats['obs']``, ..."""
        if name == "start":
            return self.start
        if name == "trans":
            return self.trans
        return self.emission[name]


_SET_MAGIC = b"HMMSTATSET1\n"


@dataclass
class StatisticsSet:
    """The statistics of several models over the same batch (candidates in one pass), in model order.

    Additive and serialisable as :class:`SufficientStats` is, so a batch's record carries one of
    these instead of one ``SufficientStats`` and every driver sums records the same way.
    """

    parts: list[SufficientStats]

    def __add__(self, other: StatisticsSet) -> StatisticsSet:
        if not isinstance(other, StatisticsSet):
            return NotImplemented
        if len(self.parts) != len(other.parts):
            raise ValueError(f"cannot add statistics of {len(self.parts)} models to those of {len(other.parts)}")
        return StatisticsSet([a + b for a, b in zip(self.parts, other.parts, strict=True)])

    def __iadd__(self, other: StatisticsSet) -> StatisticsSet:
        self.parts = (self + other).parts
        return self

    def to_bytes(self) -> bytes:
        """The parts' :meth:`SufficientStats.to_bytes`, each preceded by its length."""
        chunks = [part.to_bytes() for part in self.parts]
        return _SET_MAGIC + b"".join(len(chunk).to_bytes(8, "little") + chunk for chunk in chunks)

    @classmethod
    def from_bytes(cls, data: bytes) -> StatisticsSet:
        if not data.startswith(_SET_MAGIC):
            raise ValueError("not a serialised StatisticsSet record (bad magic bytes)")
        parts, cursor = [], len(_SET_MAGIC)
        while cursor < len(data):
            size = int.from_bytes(data[cursor : cursor + 8], "little")
            parts.append(SufficientStats.from_bytes(data[cursor + 8 : cursor + 8 + size]))
            cursor += 8 + size
        return cls(parts)
