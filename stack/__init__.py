"""The production topology as local processes (`make stack`): Airflow 3 with the CeleryExecutor and the search server.

docker-compose.yaml lays the same services out in containers; this package runs them
on one machine without docker, for trying the pipeline for real and for the stack test.
"""
