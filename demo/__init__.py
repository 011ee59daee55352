"""`make demo`: the whole pipeline end to end on sample photos, then a live search server.

`python -m demo [PHOTO_FOLDER] [--port N] [--no-serve]` picks a PostgreSQL
(the configured one, else a private one under DATA_DIR/pg), migrates it,
registers the photos as images of a demo event, runs the `image_embeddings`
and `image_index` DAGs through Airflow (`airflow dags test`), starts the
search server and prints real requests with their answers. Each step is
idempotent, so a second run reuses what the first one made.
"""
