"""The study driver: runs a study's trials under Ray Tune, races its seeds, holds its lease and state,
and survives what kills a worker."""
