"""Train step: one SGDR cycle at one image size.

python -m components.train --manifest URI --data URI --out URI --size S --batch-size B --epochs E
    [--init CHECKPOINT_URI] [--cycle I] [--lr-max] [--lr-min] [--momentum] [--weight-decay]
    [--clip-norm 10] [--clip-norm-type l2|l1|inf] [--loss soft_f1|bce] [--seed] [--workers]
    [--pretrained FILE] [--skip-bad] [--log-every N]

Run it again with the same arguments after an interruption: it resumes from the last completed
epoch; on a finished cycle it does nothing. Under torchrun it trains on every GPU of the node.
"""

import argparse
import sys
from collections.abc import Sequence

from protloc import cli
from protloc.config import NORM_TYPES, TrainConfig
from protloc.train import train_cycle


def main(argv: Sequence[str] | None = None) -> dict:
    d = TrainConfig(size=0, batch_size=0, epochs=0)
    p = argparse.ArgumentParser(
        prog="python -m components.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--manifest", required=True, help="manifest.parquet from the split step")
    p.add_argument("--data", required=True, help="data root (Kaggle layout), local or s3://")
    p.add_argument("--out", required=True, help="output folder for checkpoint.pt and metrics.json")
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--init", default=None, help="previous cycle's checkpoint.pt (warm start)")
    p.add_argument("--cycle", type=int, default=d.cycle)
    p.add_argument("--lr-max", type=float, default=d.lr_max)
    p.add_argument("--lr-min", type=float, default=d.lr_min)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--clip-norm", type=float, default=d.clip_norm, help="0 turns clipping off")
    p.add_argument("--clip-norm-type", choices=sorted(NORM_TYPES), default=d.clip_norm_type)
    p.add_argument("--loss", choices=("soft_f1", "bce"), default=d.loss)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--jitter", type=float, default=d.jitter, help="intensity jitter (+- share)")
    p.add_argument("--pretrained", default=None, help="local torchvision inception_v3 weights")
    p.add_argument("--workers", type=int, default=d.workers, help="data loader processes")
    p.add_argument(
        "--cache-dir", default=None, help="image cache folder (default $PROTLOC_CACHE_DIR)"
    )
    p.add_argument("--log-every", type=int, default=d.log_every, help="log every N steps")
    p.add_argument(
        "--skip-bad", action="store_true", help="skip unreadable samples, list them in metrics"
    )
    a = p.parse_args(argv)
    cfg = TrainConfig(
        size=a.size,
        batch_size=a.batch_size,
        epochs=a.epochs,
        cycle=a.cycle,
        lr_max=a.lr_max,
        lr_min=a.lr_min,
        momentum=a.momentum,
        weight_decay=a.weight_decay,
        clip_norm=a.clip_norm,
        clip_norm_type=a.clip_norm_type,
        loss=a.loss,
        seed=a.seed,
        dropout=a.dropout,
        jitter=a.jitter,
        init=a.init,
        pretrained=a.pretrained,
        workers=a.workers,
        cache_dir=a.cache_dir,
        skip_bad=a.skip_bad,
        log_every=a.log_every,
    )
    return train_cycle(a.manifest, a.data, a.out, cfg)


def kfp_component(image: str):
    """The train step as a KFP component on ``image`` (kfp is imported only here)."""
    from kfp import dsl
    from kfp.dsl import Artifact, Input, Output

    @dsl.component(base_image=image, install_kfp_package=False)
    def train(
        split: Input[Artifact],
        data_root: str,
        size: int,
        batch_size: int,
        epochs: int,
        cycle: int,
        lr_max: float,
        lr_min: float,
        momentum: float,
        weight_decay: float,
        clip_norm: float,
        clip_norm_type: str,
        loss: str,
        seed: int,
        workers: int,
        work_root: str,
        code_version: str,
        out: Output[Artifact],
        previous: Input[Artifact] = None,
    ):
        """One SGDR cycle, warm-started from the previous cycle's snapshot."""
        from protloc.cli import setup_logging
        from protloc.config import TrainConfig
        from protloc.steps import train_step

        setup_logging()
        cfg = TrainConfig(
            size=size,
            batch_size=batch_size,
            epochs=epochs,
            cycle=cycle,
            lr_max=lr_max,
            lr_min=lr_min,
            momentum=momentum,
            weight_decay=weight_decay,
            clip_norm=clip_norm,
            clip_norm_type=clip_norm_type,
            loss=loss,
            seed=seed,
            workers=workers,
        )
        train_step(
            split.path,
            data_root,
            out.path,
            out.uri,
            cfg,
            code_version,
            previous.path if previous is not None else None,
            work_root,
        )

    return train


if __name__ == "__main__":
    sys.exit(cli.run(main))
