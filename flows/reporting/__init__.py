"""The batch anomaly report: HTML page, charts, Markdown and table artifacts."""
