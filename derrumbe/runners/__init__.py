"""Where a shot's graph runs: in this process (derrumbe.pipeline) or on a Dask cluster (dask_cluster)."""
