"""The Hopfield room: the AMICL associative memory (``hopfield``), its numba kernels and their plain
specification (``kernels``, ``reference``), the streaming engine, sweeps, figures, the notebook's
reproduction and the ``amicl memory`` commands. NumPy and numba only; never torch."""

from amicl.memory.hopfield import BACKENDS, SEPARATIONS, SIMILARITIES, MemoryConfig, Retrieval, retrieve, score_matrix

__all__ = ["BACKENDS", "SEPARATIONS", "SIMILARITIES", "MemoryConfig", "Retrieval", "retrieve", "score_matrix"]
