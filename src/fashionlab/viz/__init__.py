"""Figures (PNG, drawn by matplotlib's Agg canvas without pyplot) and model inspection.

Every `plot_*` function takes data plus an output path, writes the PNG atomically and returns
the path. Functions that need a model take a `normalize` callable (uint8 (N, 28, 28) tensor ->
float (N, 1, 28, 28)), as `fashionlab.data.make_normalizer` / `runs.load_model` provide; images
for display are uint8. Figures that need a layer the model lacks (Grad-CAM and activation maps
of an MLP, which has no Conv2d) return None and write nothing.
"""

from fashionlab.viz.audit_figures import plot_duplicate_pairs, plot_label_issues
from fashionlab.viz.data_figures import plot_class_distribution, plot_sample_grid
from fashionlab.viz.eval_figures import (
    plot_confusion_matrix,
    plot_misclassified,
    plot_per_class_accuracy,
)
from fashionlab.viz.gradcam import (
    GradCAMResult,
    compute_gradcam,
    gradcam,
    overlay_heatmap,
    plot_gradcam,
)
from fashionlab.viz.hooks import capture_activations, find_layers, record_outputs
from fashionlab.viz.model_figures import (
    first_layer_filters,
    plot_activation_maps,
    plot_first_layer_filters,
)
from fashionlab.viz.pca import (
    PCAView,
    image_features,
    pca_view,
    plot_pca_data,
    plot_pca_features,
)
from fashionlab.viz.training_figures import (
    lr_changes,
    plot_learning_curves,
    plot_validation_curves,
)
from fashionlab.viz.trust_figures import (
    plot_corruption_examples,
    plot_reliability,
    plot_robustness_heatmap,
)

__all__ = [
    "plot_duplicate_pairs",
    "plot_label_issues",
    "GradCAMResult",
    "PCAView",
    "capture_activations",
    "compute_gradcam",
    "find_layers",
    "first_layer_filters",
    "gradcam",
    "lr_changes",
    "overlay_heatmap",
    "pca_view",
    "image_features",
    "plot_activation_maps",
    "plot_class_distribution",
    "plot_confusion_matrix",
    "plot_corruption_examples",
    "plot_first_layer_filters",
    "plot_gradcam",
    "plot_learning_curves",
    "plot_misclassified",
    "plot_reliability",
    "plot_robustness_heatmap",
    "plot_pca_data",
    "plot_pca_features",
    "plot_per_class_accuracy",
    "plot_sample_grid",
    "plot_validation_curves",
    "record_outputs",
]
