"""Optional GPU placement for a FAISS index; a no-op on CPU-only FAISS builds (import-safe there)."""

from __future__ import annotations

import faiss


def gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def to_gpu_if_available(index: faiss.Index) -> faiss.Index:
    """Copy `index` to all visible GPUs when FAISS has GPU support, else return it unchanged.

    HNSW has no GPU implementation, so its flat storage is copied instead (exact search on a GPU is
    fast at catalog sizes). GPU indexes do not take IDSelector filters, so keep the CPU index for
    filtered queries.
    """
    if not gpu_available():
        return index
    cpu = faiss.downcast_index(index)
    if isinstance(cpu, faiss.IndexHNSW):
        cpu = faiss.downcast_index(cpu.storage)
    options = faiss.GpuMultipleClonerOptions()
    options.shard = False  # replicate: the catalog fits on one GPU, replicas add throughput
    return faiss.index_cpu_to_all_gpus(cpu, co=options)
