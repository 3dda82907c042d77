"""Build-time tools for deploying hpsteer: staging each function's source (``deploy.stage``) and
generating the BigQuery table schemas terraform applies (``deploy.bigquery_schemas``).

Nothing here is imported by a Cloud Function at run time.
"""
