"""Scores of the fitting images by models fitted without them (cross-fitting): good images for the threshold that the
model scoring them never saw, without taking any away from the model that ships.

PaDiM's backbone is fixed; fitting is a Gaussian per position of the training images' embeddings. So the embeddings
anomalib computes while it fits are kept (``KeepEmbeddings``), and for each of K folds a Gaussian is fitted on the
other folds and scores the fold's images as the torch model scores any image (anomalib's own anomaly map and
score). The model that ships is fitted on every image: on a new part it scores a little lower than a fold's model
(fitted on (K-1)/K of them), so a threshold set on these scores errs towards fewer false rejects.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

FOLDS = 10


def moments(embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """anomalib's Padim Gaussian, all positions at once: the mean (C, P) and the covariance (unbiased, + 0.01 I,
    + 1e-5 I) (P, C, C) of embeddings (N, C, h, w)."""
    count, channels, height, width = embeddings.shape
    vectors = embeddings.reshape(count, channels, height * width)
    mean = vectors.mean(dim=0)
    centred = (vectors - mean).permute(2, 1, 0).contiguous()  # (P, C, N)
    covariance = torch.bmm(centred, centred.transpose(1, 2)) / (count - 1)
    identity = torch.eye(channels, dtype=covariance.dtype)
    return mean, covariance + 0.01 * identity + 1e-5 * identity


def gaussian(embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """anomalib's ``MultiVariateGaussian.fit`` (the same values, bit for bit): the mean and the inverse covariance.
    anomalib loops over the positions in Python: 4096 covariances one by one at 256 px."""
    mean, covariance = moments(embeddings)
    return mean, torch.linalg.inv(covariance)


def distances(fitted_on: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    """anomalib's ``compute_distance`` of ``scored`` (M, C, h, w) to the Gaussian of ``fitted_on``, without inverting the
    covariances: ||L^-1 delta|| with L its Cholesky factor (a third of the work of an inverse)."""
    mean, covariance = moments(fitted_on)
    count, channels, height, width = scored.shape
    delta = (scored.reshape(count, channels, height * width) - mean).permute(2, 1, 0)  # (P, C, M)
    solved = torch.linalg.solve_triangular(torch.linalg.cholesky(covariance), delta, upper=False)
    return (solved * solved).sum(dim=1).permute(1, 0).reshape(count, 1, height, width).clamp(0).sqrt()


def keep_embeddings():
    """A lightning Callback that keeps the training embeddings and fits anomalib's Padim Gaussian itself, all positions
    at once (``gaussian``), before the module's own epoch-end hook would fit it one position at a time (callbacks'
    on_train_epoch_end run first; the module skips a fitted model). Imported lazily: lightning is heavy."""
    from lightning.pytorch.callbacks import Callback

    class KeepEmbeddings(Callback):
        embeddings: torch.Tensor | None = None

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            padim = pl_module.model
            bank = padim.memory_bank
            self.embeddings = torch.vstack(bank) if isinstance(bank, list) else bank
            with torch.no_grad():
                padim.gaussian.mean, padim.gaussian.inv_covariance = gaussian(self.embeddings)
            padim.memory_bank = []
            pl_module._is_fitted = torch.tensor([True], device=pl_module.device)

    return KeepEmbeddings()


def out_of_fold_scores(padim, embeddings: torch.Tensor, image_size: tuple[int, int], folds: int = FOLDS,
                       advance: Callable[[], None] = lambda: None) -> np.ndarray:
    """Each image's score (the anomaly map's maximum) by a Gaussian fitted on the other folds' embeddings.

    ``padim`` is anomalib's PadimModel (its anomaly-map generator: distance, up-sampling, smoothing), ``embeddings``
    (N, C, h, w) in any order; folds are every K-th image."""
    count = embeddings.shape[0]
    folds = min(folds, count)
    fold_of = np.arange(count) % folds
    scores = np.empty(count, dtype=np.float64)
    with torch.no_grad():
        for fold in range(folds):
            held = torch.from_numpy(fold_of == fold)
            generator = padim.anomaly_map_generator
            maps = generator.smooth_anomaly_map(generator.up_sample(distances(embeddings[~held], embeddings[held]), image_size))
            scores[held.numpy()] = torch.amax(maps, dim=(-2, -1)).reshape(-1).double().numpy()
            advance()
    return scores
