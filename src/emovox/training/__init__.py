"""Training and honest evaluation: data preparation (:mod:`.data`), splits, solvers and the training run
(:mod:`.train`), calibration, metrics, augmentation, evaluation and the benchmark runner. It imports the model and
inference helpers; nothing outside this package (but the CLI) imports it."""
