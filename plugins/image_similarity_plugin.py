"""Airflow plugin: the image-similarity status page inside the Airflow UI.

Airflow 3 plugin interface: `fastapi_apps` mounts the status app on the
api-server under /image-similarity, and `external_views` adds it to the UI's
navigation (Browse menu), rendered in the UI's frame. The page shows, per
model version, images total / embedded / failed with the latest reasons, the
current index version, recent versions and links to the search server and to
its pages of each event's copies and similar shots (shown as thumbnails).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from image_similarity_view.app import create_app

URL_PREFIX = "/image-similarity"


class ImageSimilarityPlugin(AirflowPlugin):
    name = "image_similarity"
    fastapi_apps = [  # noqa: RUF012 - Airflow's plugin interface is class attributes
        {"app": create_app(), "url_prefix": URL_PREFIX, "name": "Image similarity status"}
    ]
    external_views = [  # noqa: RUF012
        {
            "name": "Image similarity",
            # Relative to the UI's base URL, so it works behind a proxy prefix too.
            "href": URL_PREFIX.lstrip("/") + "/",
            "destination": "nav",
            "category": "browse",
            "url_route": "image-similarity",
        }
    ]
