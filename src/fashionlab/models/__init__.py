"""Model zoo: every architecture of the reference studies plus general MLPs, in one registry.

`create_model(name, **model_args)` builds a fresh model; `list_models()` names them all;
`get_model_spec(name)` gives the study, description, training recipe and stated parameter count.
`fashionlab models` prints the table (parameters and forward FLOPs from `models.summary`).

Every PyTorch model takes (N,1,28,28) float and returns logits (N,10), and is a
`FashionNet` = `head(trunk(x))` (see `models.base`). Inspection protocol -- use these functions,
which also work (by fallback) on an nn.Module that is not a FashionNet:

- `feature_layers(model) -> OrderedDict[name, module]`: the activation-map stages in forward
  order, names as in `model.get_submodule(name)` (e.g. "trunk.conv1", "trunk.stage2.block1").
  Hook one with `register_forward_hook`; its output is a post-ReLU map (N,C,H,W). Empty for MLPs.
  First-layer filters: `feature_layers(model)["trunk.conv1"].conv.weight` (S0-M2:
  "trunk.stage1.block1").
- `trunk_features(model, x) -> (N,D)`: the network minus its classifier head (flattened conv
  output; for S1-CNN5 the C5 values the S1-FEAT NumPy MLP is trained on). For MLPs: the pixels.
- `penultimate_features(model, x) -> (N,F)`: the input to the final Linear (PCA of features).
  Call it under `model.eval()` so dropout is off.
- `gradcam_layer(model) -> module | None`: the last stage whose output is still spatial
  (H*W > 1 for a 28x28 input); None for MLPs.

Identity of architectures: `models.summary.architecture_signature` / `same_architecture`.
"""

from fashionlab.models._registry import (
    ModelSpec,
    check_model,
    create_model,
    get_model_spec,
    list_models,
    model_skeleton,
    register_model,
)
from fashionlab.models.base import (
    FashionNet,
    feature_layers,
    gradcam_layer,
    penultimate_features,
    trunk_features,
)
from fashionlab.models.configs import build_config

# Importing the families registers their models.
from fashionlab.models import cnn5, fast, mlp, numpy_mlp, studies  # noqa: E402,F401  isort: skip

__all__ = [
    "FashionNet",
    "ModelSpec",
    "build_config",
    "check_model",
    "create_model",
    "feature_layers",
    "get_model_spec",
    "gradcam_layer",
    "list_models",
    "model_skeleton",
    "penultimate_features",
    "register_model",
    "trunk_features",
]
