"""Built-in kinds every model uses: MLPs, distributions, embedded datasets, optimizers,
and the mixture-coverage metric. Registered through the same hooks as any third party."""

from __future__ import annotations

from typing import Any

from unigen import hookimpl

from . import data, dists, metrics, nets, optim, trackers, trackers_mlflow, trackers_wandb


@hookimpl
def unigen_register_networks(register: Any) -> None:
    register("mlp", nets.MLPArch())
    register("multi_mlp", nets.MultiMLPArch())


@hookimpl
def unigen_register_distributions(register: Any) -> None:
    register("normal", dists.NormalDist())
    register("bernoulli", dists.BernoulliDist())
    register("deterministic", dists.DeterministicDist())
    register("categorical", dists.CategoricalDist())
    register("uniform", dists.UniformDist())


@hookimpl
def unigen_register_datasets(register: Any) -> None:
    register("digits", data.Digits())
    register("ring2d", data.Ring2D())
    register("grid2d", data.Grid2D())


@hookimpl
def unigen_register_optimizers(register: Any) -> None:
    for name, opt in optim.OPTIMIZERS.items():
        register(name, opt)


@hookimpl
def unigen_register_metrics(register: Any) -> None:
    register("modes", metrics.ModeCoverage())


@hookimpl
def unigen_register_trackers(register: Any) -> None:
    register("tensorboard", trackers.TensorBoardTracker)
    register("mlflow", trackers_mlflow.MlflowTracker)
    register("wandb", trackers_wandb.WandbTracker)
