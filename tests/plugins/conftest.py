"""The Airflow fixtures of tests/dags (metadata DB, `image_db` connection) serve the plugin tests too."""

from tests.dags.conftest import airflow_env, dag_bag, image_rows  # noqa: F401 - re-exported fixtures
