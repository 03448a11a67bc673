"""The cache flush (flush.py); the jobs are in jollyjet/jobs."""
