"""Where two photos become a relation: copy, same scene, or merely related.

No database, no web framework, no Airflow: pure functions over `Fingerprint`s
(what verification needs of one image, computed once by the pipeline) so the
server, the DAGs, the demo and the benchmark all decide the same way.
"""
