"""Support code for the image DAGs: assets, params and the task bodies.

Lives inside the DAGs folder (which Airflow puts on sys.path) and imports
nothing heavy at module level, so parsing the DAG files stays fast. The task
bodies import `embeddings`, `indexing` and `core` lazily, from the repo root
that must be on PYTHONPATH for the workers.
"""
