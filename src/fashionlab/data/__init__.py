"""Fashion-MNIST: verified loading, splits, normalisation, batched augmentation, batches."""

from fashionlab.data.batches import BatchIterator
from fashionlab.data.dataset import (
    CLASS_NAMES,
    FashionMNIST,
    load_fashion_mnist,
    load_from_directory,
)
from fashionlab.data.idx import encode_idx, parse_idx, read_idx
from fashionlab.data.prepare import prepare_data
from fashionlab.data.splits import (
    Part,
    Split,
    make_split,
    random_split_indices,
    stratified_split_indices,
)
from fashionlab.data.transforms import (
    Normalizer,
    augment_batch,
    make_normalizer,
    translate,
    tta_average,
    tta_views,
)

__all__ = [
    "CLASS_NAMES",
    "BatchIterator",
    "FashionMNIST",
    "Normalizer",
    "Part",
    "Split",
    "augment_batch",
    "encode_idx",
    "load_fashion_mnist",
    "load_from_directory",
    "make_normalizer",
    "make_split",
    "parse_idx",
    "prepare_data",
    "random_split_indices",
    "read_idx",
    "stratified_split_indices",
    "translate",
    "tta_average",
    "tta_views",
]
