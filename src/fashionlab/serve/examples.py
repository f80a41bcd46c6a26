"""A few Fashion-MNIST test images for the page's "try one" buttons."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from fashionlab.errors import FashionlabError
from fashionlab.serve.encoding import png_data_url

NUM_EXAMPLES = 6


class ExampleImages:
    """Loaded on first use, not at startup: the dataset takes seconds to verify, and the API
    works without it. If it cannot be found the page simply shows no examples (no download is
    started from a web request)."""

    def __init__(self, data_dir: str | Path | None, class_names: tuple[str, ...]) -> None:
        self.data_dir = data_dir
        self.class_names = class_names
        self._lock = threading.Lock()
        self._payload: dict[str, Any] | None = None

    def payload(self) -> dict[str, Any]:
        with self._lock:
            if self._payload is None:
                self._payload = self._load()
            return self._payload

    def _load(self) -> dict[str, Any]:
        from fashionlab.data import load_fashion_mnist

        try:
            dataset = load_fashion_mnist(self.data_dir, download=False)
        except FashionlabError:
            # Not the error itself: it names folders on the server, which are not the
            # client's business.
            return {
                "examples": [],
                "unavailable": "the Fashion-MNIST test set is not on this server",
            }
        labels = dataset.test_labels.tolist()
        examples, seen = [], set()
        # The first test image of each of the first NUM_EXAMPLES classes met: different
        # garments, always the same ones.
        for index, label in enumerate(labels):
            if label in seen:
                continue
            seen.add(label)
            image = dataset.test_images[index].numpy()
            examples.append(
                {"index": index, "label": self.class_names[label], "png": png_data_url(image)}
            )
            if len(examples) == NUM_EXAMPLES:
                break
        return {"examples": examples, "source": "Fashion-MNIST test set"}
