"""Your own PyTorch training loop in an Optuna objective, scored by aIQ and recorded by aiq-search.

The objective is a plain Optuna objective with its own training loop; aiq-search adds three things: the
study is prepared once (`prepare_study`), each trial is wrapped in an `AiqTrial` whose probe measures the
network's efficiency during the ordinary validation pass and reports aIQ to the pruner, and `finish`
records the trial (scores and weights) like aiq-search's own trials. Then, from this folder:

    export PYTHONPATH=$PWD    # export and evaluate import mlp_family, as this script does
    python train_torch.py
    aiq-search status --storage sqlite:///own-loop.db
    aiq-search plot own-loop-torch --storage sqlite:///own-loop.db
    aiq-search export own-loop-torch --storage sqlite:///own-loop.db --out exported/torch
    aiq-search evaluate exported/torch/trial-*

Under half a minute on one CPU core: scikit-learn's bundled 8x8 digits.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import optuna
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from aiq_search import AiqTrial, DataSplits, build_model, load_study_data, prepare_study

FAMILY = "mlp_family:mlp"  # module mlp_family (next to this file), attribute mlp


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy on (x, y) in eval mode. Batches of 1000, as aiq-search evaluates, so that `evaluate`
    measures the exported model bit for bit the same."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for xb, yb in DataLoader(TensorDataset(x, y), batch_size=1000):
            correct += int((model(xb).argmax(1) == yb).sum())
    return correct / len(y)


def objective(trial: optuna.Trial, data: DataSplits, epochs: int) -> float:
    n_layers = trial.suggest_int("n_layers", 1, 2)
    spec = {"family": FAMILY, "input_shape": list(data.input_shape), "num_classes": data.num_classes,
            "widths": [trial.suggest_int(f"width_{i}", 4, 64, log=True) for i in range(n_layers)],
            "dropout": trial.suggest_float("dropout", 0.0, 0.2)}
    lr = trial.suggest_float("lr", 3e-3, 3e-2, log=True)
    model = build_model(spec, seed=trial.number)  # model.spec is what the trial records and export rebuilds
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    batches = DataLoader(TensorDataset(data.train_x, data.train_y), batch_size=64, shuffle=True,
                         generator=torch.Generator().manual_seed(trial.number))

    with AiqTrial(trial, model) as aiq:  # records the architecture; an exception records why the trial failed
        for epoch in range(1, epochs + 1):
            model.train()
            for x, y in batches:
                optimizer.zero_grad()
                F.cross_entropy(model(x), y).backward()
                optimizer.step()
            with aiq.probe() as probe:  # counts the hidden layers' states during the validation pass
                val_accuracy = accuracy(model, data.val_x, data.val_y)
            efficiency = probe.report()
            aiq.report(epoch, val_accuracy, efficiency)  # aIQ to the pruner; raises TrialPruned
        test_accuracy = accuracy(model, data.test_x, data.test_y)
        return aiq.finish(val_accuracy, efficiency, test_accuracy=test_accuracy)  # scores and weights


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Search MLPs on digits with a plain PyTorch training loop.")
    parser.add_argument("--storage", default="sqlite:///own-loop.db")
    parser.add_argument("--study", default="own-loop-torch")
    parser.add_argument("--artifacts", default="artifacts/own-loop-torch")
    parser.add_argument("--n-trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # networks this small train fastest on one thread

    study = optuna.create_study(study_name=args.study, storage=args.storage, direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=0),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
                                load_if_exists=True)
    prepare_study(study, artifacts=args.artifacts, dataset="digits", family=FAMILY, n_trials=args.n_trials)
    data = load_study_data(study)  # the splits export and evaluate will rebuild
    # n_trials counts COMPLETE trials, as aiq-search's own studies do: pruned ones do not fill the target
    target = optuna.study.MaxTrialsCallback(args.n_trials, states=(optuna.trial.TrialState.COMPLETE,))
    if len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))) < args.n_trials:
        study.optimize(lambda trial: objective(trial, data, args.epochs), callbacks=[target])
    best = study.best_trial
    print(f"{study.study_name}: best aIQ {best.value:.4f} (trial {best.number}, "
          f"accuracy {best.user_attrs['accuracy']:.4f}, {best.user_attrs['n_params']:,} parameters)")


if __name__ == "__main__":
    main()
