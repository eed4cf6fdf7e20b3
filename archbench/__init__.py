"""archbench: a benchmarking suite for residual-network architecture variants."""

from __future__ import annotations

__version__ = "0.1.0"
