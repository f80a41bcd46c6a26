"""The subcommands and their one-line help, in the order `fashionlab --help` lists them.

Kept apart from the command modules so that `fashionlab --help` (and a command's own parser)
never imports the library behind every other command: torch alone costs seconds."""

COMMANDS: dict[str, str] = {
    "data": "inspect or fetch the dataset",
    "models": "list the models: parameters, forward FLOPs, study, description",
    "train": "train a model (its study's recipe unless overridden)",
    "evaluate": "recompute a run's test metrics from its weights",
    "robustness": "score a run or a study on corrupted test images (noise, blur, affine, ...)",
    "audit": "find train/test duplicates and suspect labels; rescore runs without them",
    "study": "run a study file (runs x grid x seeds), then aggregate and report",
    "tune": "hyperparameter search (Ray Tune + ASHA) over a study file's 'tune:' ranges",
    "runs": "one row per run folder under a folder: model, seed, accuracy, state; sort, filter",
    "track": "experiment tracking: push existing run folders into MLflow (track import DIR)",
    "compare": "McNemar's test between two runs tested on the same images",
    "report": "write report.html (self-contained) and report.md for a run or study folder",
    "predict": "classify your own images with a trained run",
    "serve": "web page + JSON API to classify your own images",
    "export": "export a run's model (ONNX) and check it against PyTorch",
}
