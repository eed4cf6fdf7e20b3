"""The experiment layer: YAML specs, variant resolution (budget matching), the Optuna study,
one trial's objective and the worker loop that runs trials until a study is done."""
