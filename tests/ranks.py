"""What the multi-rank tests run in each rank: module-level functions, so they pickle to the
ranks that ``protloc.distributed.launch`` spawns."""

import logging


def build_cache_once_per_node(data_root: str, ids: list[str], cache_dir: str) -> list[int]:
    """Every rank asks for the same image cache through ``node_first``; returns (on rank 0)
    how many caches each rank decoded."""
    import torch.distributed as dist

    from protloc.data.cache import build_cache
    from protloc.data.identity import DataListing
    from protloc.distributed import init_distributed, node_first, teardown

    d = init_distributed()
    built: list[str] = []

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("image cache built"):
                built.append(record.getMessage())

    logger = logging.getLogger("protloc.data.cache")
    logger.addHandler(Count())
    logger.setLevel(logging.INFO)
    node_first(
        d, lambda: build_cache(DataListing(data_root), "train", ids, 80, cache_dir, workers=1)
    )
    counts: list = [None] * d.world
    dist.all_gather_object(counts, len(built))
    teardown(d)
    return counts
