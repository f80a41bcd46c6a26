"""fashionlab: image-classification studies on Fashion-MNIST.

The small public API; everything here is also reachable from the `fashionlab` command.
"""

from __future__ import annotations

__version__ = "0.1.0"

from fashionlab.data import CLASS_NAMES, FashionMNIST, load_fashion_mnist  # noqa: E402

__all__ = ["__version__", "CLASS_NAMES", "FashionMNIST", "load_fashion_mnist"]
