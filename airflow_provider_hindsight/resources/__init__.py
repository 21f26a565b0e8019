"""The vendor's resources: ids, request bodies and statuses of the Hindsight API, with no HTTP and no Airflow."""
