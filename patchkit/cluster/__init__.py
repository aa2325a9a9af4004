"""`patchkit test --cluster ADDRESS`: boots as tasks of a Dask distributed cluster (the optional extra `cluster`).

``blobs`` (files by content key), ``task`` (what goes to a worker and back), ``worker`` (runs on
the workers), ``client`` (runs in `patchkit test`). Only ``worker`` and ``client`` import Dask.
"""
