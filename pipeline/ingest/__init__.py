"""Ingest: find the extracts, read their headers, parse them to typed Parquet, merge them into the warehouse."""
