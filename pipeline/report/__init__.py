"""What a run publishes: measures, the report pages, the feed, the workbook, the data files, publication."""
