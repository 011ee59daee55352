"""The image-similarity status page served inside the Airflow UI (see image_similarity_plugin.py)."""
