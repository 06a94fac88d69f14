"""Your own Lightning training in an Optuna objective, scored by aIQ and recorded by aiq-search.

The LightningModule and Trainer are ordinary; aiq-search adds an `AiqCallback`, which measures accuracy and
efficiency in the validation loop, reports aIQ to the pruner each validation epoch (raising TrialPruned when
it says so), takes the test accuracy from `trainer.test`, and records the trial on `finish`. Needs
Lightning (pip install 'aiq-search[lightning]'). Then, from this folder:

    export PYTHONPATH=$PWD    # export and evaluate import mlp_family, as this script does
    python train_lightning.py
    aiq-search status --storage sqlite:///own-loop.db
    aiq-search plot own-loop-lightning --storage sqlite:///own-loop.db
    aiq-search export own-loop-lightning --storage sqlite:///own-loop.db --out exported/lightning
    aiq-search evaluate exported/lightning/trial-*

Under half a minute on one CPU core: scikit-learn's bundled 8x8 digits.
"""

from __future__ import annotations

import argparse
import logging
import warnings
from collections.abc import Sequence

import lightning
import optuna
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from aiq_search import AiqCallback, AiqTrial, DataSplits, build_model, load_study_data, prepare_study

FAMILY = "mlp_family:mlp"  # module mlp_family (next to this file), attribute mlp


class Classifier(lightning.LightningModule):
    """Trains ``net`` with cross-entropy; the network itself is what the trial records and exports."""

    def __init__(self, net: nn.Module, lr: float) -> None:
        super().__init__()
        self.net = net
        self.lr = lr

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", F.cross_entropy(self.net(x), y))

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("test_loss", F.cross_entropy(self.net(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.net.parameters(), lr=self.lr)


def loader(x: torch.Tensor, y: torch.Tensor, *, train: bool = False, seed: int = 0) -> DataLoader:
    """Training batches of 64, shuffled; evaluation batches of 1000, as aiq-search evaluates, so that
    `evaluate` measures the exported model bit for bit the same."""
    if train:
        return DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True,
                          generator=torch.Generator().manual_seed(seed))
    return DataLoader(TensorDataset(x, y), batch_size=1000)


def objective(trial: optuna.Trial, data: DataSplits, epochs: int) -> float:
    n_layers = trial.suggest_int("n_layers", 1, 2)
    spec = {"family": FAMILY, "input_shape": list(data.input_shape), "num_classes": data.num_classes,
            "widths": [trial.suggest_int(f"width_{i}", 4, 64, log=True) for i in range(n_layers)],
            "dropout": trial.suggest_float("dropout", 0.0, 0.2)}
    lr = trial.suggest_float("lr", 3e-3, 3e-2, log=True)
    net = build_model(spec, seed=trial.number)  # net.spec is what the trial records and export rebuilds

    with AiqTrial(trial, net) as aiq:  # records the architecture; an exception records why the trial failed
        callback = AiqCallback(aiq)
        trainer = lightning.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, callbacks=[callback],
                                    logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                    enable_model_summary=False, num_sanity_val_steps=0)
        module = Classifier(net, lr)
        trainer.fit(module, loader(data.train_x, data.train_y, train=True, seed=trial.number),
                    loader(data.val_x, data.val_y))  # aIQ reported each epoch; TrialPruned when pruned
        trainer.test(module, loader(data.test_x, data.test_y), verbose=False)  # the test accuracy
        return callback.finish()  # scores and weights


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Search MLPs on digits with a Lightning training loop.")
    parser.add_argument("--storage", default="sqlite:///own-loop.db")
    parser.add_argument("--study", default="own-loop-lightning")
    parser.add_argument("--artifacts", default="artifacts/own-loop-lightning")
    parser.add_argument("--n-trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # networks this small train fastest on one thread
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no banner per trial
    warnings.filterwarnings("ignore", ".*does not have many workers.*")  # tensors in memory need none

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
