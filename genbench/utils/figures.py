"""Artefacts written into a run's folder: sample grids, reconstructions, point clouds, waveforms."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from genbench.utils.pixels import images_to_uint8

MIN_TILE_PX = 48  # small images are enlarged (nearest neighbour) to at least this size


def grid_canvas(u8: torch.Tensor, columns: int) -> torch.Tensor:
    """uint8 tiles (N, C, H, W) -> (C, rows (H + 1) + 1, columns (W + 1) + 1): rows of
    `columns` tiles in reading order, with white 1-px separators and white cells after
    the last tile (torchvision.utils.make_grid)."""
    from torchvision.utils import make_grid  # only image grids need torchvision

    n, c = u8.shape[:2]
    blank = u8.new_full((math.ceil(n / columns) * columns - n, *u8.shape[1:]), 255)  # fill the last row
    tiles = torch.cat([u8, blank])  # (rows * columns, C, H, W)
    if len(tiles) == 1:  # make_grid returns a lone tile without its frame
        return F.pad(tiles[0], (1, 1, 1, 1), value=255)
    return make_grid(tiles, nrow=columns, padding=1, pad_value=255)[:c]  # gray tiles come back as RGB


def save_image_grid(images: torch.Tensor, path: Path, columns: int | None = None) -> Path:
    """images (N, C, H, W) in [-1, 1] -> one PNG grid with 1-px separators."""
    u8 = images_to_uint8(images.detach().cpu())  # (N, C, H, W)
    n, c, h, w = u8.shape
    canvas = grid_canvas(u8, columns or math.ceil(math.sqrt(n)))
    array = canvas.permute(1, 2, 0).numpy()
    image = Image.fromarray(array[:, :, 0] if c == 1 else array)
    scale = max(1, MIN_TILE_PX // max(h, w))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    image.save(path)
    return path


def save_reconstruction_grid(originals: torch.Tensor, reconstructions: torch.Tensor, path: Path,
                             columns: int = 8) -> Path:
    """Alternating rows: originals, then their reconstructions."""
    rows = []
    for start in range(0, originals.shape[0], columns):
        rows += [originals[start:start + columns], reconstructions[start:start + columns]]
    return save_image_grid(torch.cat(rows), path, columns)


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, imported on first use: the models
    import this module, and the kernel benchmarks build models on machines without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def save_points(samples: torch.Tensor, reference: torch.Tensor, path: Path, title: str) -> Path:
    """2-D samples over the reference points, viewed on the data's extent (padded); the
    title says how many samples fall outside the view."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4, 4))
    ref, smp = reference.detach().cpu(), samples.detach().cpu()
    lo, hi = ref.min(0).values, ref.max(0).values  # (2,) each
    pad = 0.25 * (hi - lo).max()
    lo, hi = lo - pad, hi + pad
    outside = int((~((smp >= lo) & (smp <= hi)).all(1)).sum())
    ax.scatter(ref[:, 0], ref[:, 1], s=2, alpha=0.3, label="data")
    ax.scatter(smp[:, 0], smp[:, 1], s=2, alpha=0.5, label="samples")
    ax.set_xlim(float(lo[0]), float(hi[0]))
    ax.set_ylim(float(lo[1]), float(hi[1]))
    ax.set_aspect("equal")
    ax.set_title(f"{title}\n{outside} of {len(smp)} samples outside this view", fontsize=8)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


WAVEFORM_COLUMNS = 4  # signals per row of a waveform figure


def save_waveforms(rows: list[tuple[str, torch.Tensor]], path: Path, title: str = "") -> Path:
    """1-D signals (N, C, L) in [-1, 1] as line plots: one row per (label, signals) pair
    (its first WAVEFORM_COLUMNS signals, channels overlaid), every panel on the same
    [-1, 1] scale so that amplitudes compare across rows (generated vs test data, or
    samples over training)."""
    plt = pyplot()
    columns = min(WAVEFORM_COLUMNS, max(len(signals) for _, signals in rows))
    fig, axes = plt.subplots(len(rows), columns, figsize=(2.6 * columns, 1.3 * len(rows) + 0.4),
                             squeeze=False, sharex=True, sharey=True)
    for r, (label, signals) in enumerate(rows):
        x = signals.detach().cpu()[:columns]  # (n, C, L)
        for c, ax in enumerate(axes[r]):
            if c < len(x):
                for channel in x[c]:  # (L,)
                    ax.plot(channel.numpy(), linewidth=0.6)
            else:
                ax.axis("off")
            ax.set_ylim(-1.05, 1.05)
            ax.tick_params(labelsize=6)
        axes[r][0].set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_point_panels(snapshots: list[tuple[int, torch.Tensor]], reference: torch.Tensor, path: Path) -> Path:
    """One small scatter per (step, samples) snapshot, left to right."""
    plt = pyplot()
    n = len(snapshots)
    columns = min(n, 5)
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.2 * rows), squeeze=False)
    ref = reference.detach().cpu()
    lo, hi = ref.min(0).values, ref.max(0).values
    pad = 0.25 * float((hi - lo).max())
    for ax, (step, smp) in zip(axes.flat, snapshots):
        ax.scatter(ref[:, 0], ref[:, 1], s=1, alpha=0.2)
        ax.scatter(smp[:, 0], smp[:, 1], s=1, alpha=0.5)
        ax.set_xlim(float(lo[0]) - pad, float(hi[0]) + pad)
        ax.set_ylim(float(lo[1]) - pad, float(hi[1]) + pad)
        ax.set_title(f"step {step}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


TRAVERSAL_STEPS = 9  # values per traversed latent dimension
TRAVERSAL_MAX_DIMS = 12  # traverse at most this many dims (the most variable over the test data)
INTERPOLATION_PAIRS = 6
INTERPOLATION_STEPS = 10
ENCODED_FOR_RANGES = 1000  # test examples encoded to find each dim's range


@torch.no_grad()
def latent_figures(model, test_x: torch.Tensor, run_dir: Path) -> dict[str, Path]:
    """Latent traversal and interpolation grids for a model with encode_latent/decode_latent.

    Traversal (continuous latents only): one row per latent dimension -- all of them when
    there are at most TRAVERSAL_MAX_DIMS, else the most variable ones over the test data --
    each row moving that dimension of the first test example's encoding over the 5%..95%
    quantiles of its values on the test data, the others held fixed. Interpolation: rows of
    linear interpolations between the encodings of test-example pairs (ends included).
    """
    x = test_x[:ENCODED_FOR_RANGES]
    z = model.encode_latent(x)  # (N, *latent)
    flat = z.flatten(1)  # (N, d)
    paths = {"interpolation": save_image_grid(interpolations(model, z), run_dir / "interpolation.png",
                                              INTERPOLATION_STEPS)}
    if model.capabilities.representation != "categorical-probs":  # one-hot codes have no axis to move along
        paths["traversal"] = save_image_grid(traversals(model, flat, z.shape[1:]), run_dir / "traversal.png",
                                             TRAVERSAL_STEPS)
    return paths


def traversals(model, flat: torch.Tensor, latent_shape: torch.Size) -> torch.Tensor:
    spread = flat.var(0)  # (d,)
    dims = spread.argsort(descending=True)[:TRAVERSAL_MAX_DIMS]
    lo, hi = torch.quantile(flat[:, dims], 0.05, dim=0), torch.quantile(flat[:, dims], 0.95, dim=0)  # (m,)
    t = torch.linspace(0, 1, TRAVERSAL_STEPS, device=flat.device)  # (S,)
    rows = flat[0].expand(len(dims), TRAVERSAL_STEPS, -1).clone()  # (m, S, d)
    rows[torch.arange(len(dims)), :, dims] = lo[:, None] + (hi - lo)[:, None] * t  # (m, S)
    return model.decode_latent(rows.flatten(0, 1).view(-1, *latent_shape))  # (m*S, C, H, W)


def interpolations(model, z: torch.Tensor) -> torch.Tensor:
    pairs = min(INTERPOLATION_PAIRS, z.shape[0] // 2)
    a, b = z[:pairs], z[pairs:2 * pairs]  # (P, *latent) each
    t = torch.linspace(0, 1, INTERPOLATION_STEPS, device=z.device).view(1, -1, *[1] * (z.ndim - 1))
    path = a[:, None] + (b - a)[:, None] * t  # (P, S, *latent)
    return model.decode_latent(path.flatten(0, 1))  # (P*S, C, H, W)
